//! Search parameters, declared once. The same table drives index extraction
//! (`extract.rs`), query parsing (`search/`) and the CapabilityStatement, so the
//! server never claims a parameter it cannot search.
//!
//! Paths are dotted element paths from the resource root; arrays are walked transparently.
//! A step may filter on a sibling element, `telecom(system=phone)`.

/// The FHIR search parameter types we implement
/// (<https://hl7.org/fhir/R4B/search.html#ptypes>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    String,
    Date,
    Reference,
    Quantity,
    Number,
    /// A URI, matched whole (<https://hl7.org/fhir/R4B/search.html#uri>); kept in the token
    /// index, without a system.
    Uri,
}

impl ParamKind {
    pub fn fhir_name(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::String => "string",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
            ParamKind::Quantity => "quantity",
            ParamKind::Number => "number",
            ParamKind::Uri => "uri",
        }
    }
}

/// One declared search parameter.
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    pub resource_type: &'static str,
    pub name: &'static str,
    pub kind: ParamKind,
    /// Alternative element paths; values from all of them are indexed.
    pub paths: &'static [&'static str],
    /// For references: the target types this parameter may point to (empty: any).
    pub targets: &'static [&'static str],
    /// A date parameter over FHIR `instant`s only (precise to the second or finer): a search
    /// from a date on (`ge`) then reads the index from that date, not from a year before it.
    pub instant: bool,
}

impl SearchParam {
    /// A parameter of any kind but reference.
    pub const fn new(
        resource_type: &'static str,
        name: &'static str,
        kind: ParamKind,
        paths: &'static [&'static str],
    ) -> SearchParam {
        SearchParam {
            resource_type,
            name,
            kind,
            paths,
            targets: &[],
            instant: false,
        }
    }

    /// The same date parameter, declared over `instant` elements only.
    pub const fn instant(self) -> SearchParam {
        SearchParam {
            instant: true,
            ..self
        }
    }

    /// A reference parameter, restricted to `targets` (empty: any type).
    pub const fn reference(
        resource_type: &'static str,
        name: &'static str,
        paths: &'static [&'static str],
        targets: &'static [&'static str],
    ) -> SearchParam {
        SearchParam {
            resource_type,
            name,
            kind: ParamKind::Reference,
            paths,
            targets,
            instant: false,
        }
    }
}

/// A combined index over several parameters of one type (what HAPI FHIR calls a "combo"
/// search parameter): one row per combination of its token and reference parameters' values,
/// with the date parameter's range. A search that names every one of its parameters (and a
/// range of its date) reads one range of one index instead of intersecting large sets — a
/// specialty's free video slots are a quarter, half and nearly all of every slot, and proving
/// that there are none cost 300 ms that way. Not a search parameter: clients never see it;
/// the search compiler uses it when a query allows, and answers the same either way.
#[derive(Debug, Clone, Copy)]
pub struct ComboIndex {
    pub resource_type: &'static str,
    /// Unique among the type's combined indexes; stored as the index rows' `param`.
    pub name: &'static str,
    /// Token and reference parameters of the type, each of which a search must name for the
    /// index to serve it.
    pub parts: &'static [&'static str],
    /// A single-valued date parameter of the type: a resource without it has no rows, so the
    /// index serves only searches that bound this date.
    pub date: &'static str,
}

/// The most rows one resource may have in one combined index (the product of its values of
/// the index's parameters, each value counted in both its forms: `code` and `system|code`,
/// `id` and `Type/id`);
/// a write over it is refused, since its index would cost more than the search it serves.
pub const MAX_COMBO_ROWS: usize = 256;

/// The declarations of every service, gathered once at start-up. Each service declares the
/// parameters of the types it owns in its own crate; every process installs all of them, so
/// every process indexes and searches the same way.
struct Installed {
    params: Vec<&'static SearchParam>,
    combos: Vec<&'static ComboIndex>,
    /// Parameters that index exactly what an earlier one of their type indexes (FHIR's
    /// `phonetic` is `name` here): searched through that one's rows, and given none of their
    /// own (five more string rows per Patient, for nothing).
    aliases: Vec<(&'static SearchParam, &'static SearchParam)>,
}

/// The parameter whose rows `p` reads: `p`, or the earlier one of its type it duplicates (a
/// parameter of the patient compartment is never an alias; it keeps its own rows).
fn canonical_of(
    all: &[&'static SearchParam],
    p: &'static SearchParam,
) -> Option<&'static SearchParam> {
    if compartment_params(p.resource_type).contains(&p.name) {
        return None;
    }
    all.iter()
        .take_while(|q| !std::ptr::eq(**q, p))
        .find(|q| {
            q.resource_type == p.resource_type
                && q.kind == p.kind
                && q.paths == p.paths
                && q.targets == p.targets
                && q.instant == p.instant
        })
        .copied()
}

static INSTALLED: std::sync::OnceLock<Installed> = std::sync::OnceLock::new();

/// Installs the declarations (once per process; installing the same set again is a no-op,
/// a different one an error). A combined index must name declared token parameters and a
/// declared date parameter of its type.
pub fn install(
    sets: &[&'static [SearchParam]],
    combos: &[&'static [ComboIndex]],
) -> Result<(), std::string::String> {
    let all: Vec<&'static SearchParam> = sets.iter().flat_map(|s| s.iter()).collect();
    for (i, p) in all.iter().enumerate() {
        if all[..i]
            .iter()
            .any(|q| q.resource_type == p.resource_type && q.name == p.name)
        {
            return Err(format!("{}.{} is declared twice", p.resource_type, p.name));
        }
    }
    let combos: Vec<&'static ComboIndex> = combos.iter().flat_map(|s| s.iter()).collect();
    for (i, c) in combos.iter().enumerate() {
        if combos[..i]
            .iter()
            .any(|d| d.resource_type == c.resource_type && d.name == c.name)
        {
            return Err(format!(
                "the combined index {}.{} is declared twice",
                c.resource_type, c.name
            ));
        }
        let declared = |name: &str, kind: ParamKind| {
            all.iter()
                .any(|p| p.resource_type == c.resource_type && p.name == name && p.kind == kind)
        };
        if c.parts.is_empty()
            || !c
                .parts
                .iter()
                .all(|t| declared(t, ParamKind::Token) || declared(t, ParamKind::Reference))
        {
            return Err(format!(
                "the combined index {}.{} must name declared token or reference parameters",
                c.resource_type, c.name
            ));
        }
        if !declared(c.date, ParamKind::Date) {
            return Err(format!(
                "the combined index {}.{} must name a declared date parameter",
                c.resource_type, c.name
            ));
        }
    }
    let key = |i: &Installed| {
        let mut k: Vec<(&str, &str)> = i
            .params
            .iter()
            .map(|p| (p.resource_type, p.name))
            .chain(i.combos.iter().map(|c| (c.resource_type, c.name)))
            .collect();
        k.sort_unstable();
        k
    };
    let aliases = all
        .iter()
        .filter_map(|p| canonical_of(&all, p).map(|c| (*p, c)))
        .collect();
    let offered = Installed {
        params: all,
        combos,
        aliases,
    };
    let mut fresh = Some(offered);
    let installed = INSTALLED.get_or_init(|| fresh.take().expect("offered once"));
    if let Some(offered) = fresh
        && !(offered.params.is_empty() && offered.combos.is_empty())
        && key(installed) != key(&offered)
    {
        return Err("a different set of search parameters is already installed".into());
    }
    Ok(())
}

/// Every installed parameter, besides the common `_id` and `_lastUpdated`.
pub fn all() -> impl Iterator<Item = &'static SearchParam> {
    INSTALLED
        .get()
        .into_iter()
        .flat_map(|i| i.params.iter())
        .copied()
}

/// The combined indexes of one resource type.
pub fn combos_of(resource_type: &str) -> impl Iterator<Item = &'static ComboIndex> + '_ {
    INSTALLED
        .get()
        .into_iter()
        .flat_map(|i| i.combos.iter())
        .copied()
        .filter(move |c| c.resource_type == resource_type)
}

/// Whether declarations have been installed in this process (a process that has none, such
/// as a unit test of the store, must not judge the stored index by them).
pub fn installed() -> bool {
    INSTALLED.get().is_some()
}

/// The resource types with declarations, each once, sorted.
pub fn declared_types() -> Vec<&'static str> {
    let mut t: Vec<&'static str> = all()
        .map(|p| p.resource_type)
        .chain(
            INSTALLED
                .get()
                .into_iter()
                .flat_map(|i| i.combos.iter().map(|c| c.resource_type)),
        )
        .collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// A digest of everything that decides the index rows of `resource_type`: its parameters and
/// combined indexes as declared, and the version of the extraction code. When it differs from
/// the one the database recorded, the stored index rows of that type are rebuilt.
pub fn fingerprint(resource_type: &str) -> std::string::String {
    use sha2::Digest;
    /// Raised whenever extraction changes what rows a declaration gives (2: aliases).
    const EXTRACTION: u32 = 2;
    // What extraction reads of a parameter, and nothing else (a change elsewhere needs no
    // rebuild).
    let mut params: Vec<std::string::String> = of_type(resource_type)
        .map(|p| format!("{} {:?} {:?} {:?}", p.name, p.kind, p.paths, p.targets))
        .collect();
    params.sort();
    let mut combos: Vec<std::string::String> =
        combos_of(resource_type).map(|c| format!("{c:?}")).collect();
    combos.sort();
    let mut h = sha2::Sha256::new();
    h.update(format!("extraction {EXTRACTION}\n").as_bytes());
    for line in params.iter().chain(&combos) {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The parameter `name` of `resource_type`, if declared: for an alias, the parameter whose
/// rows it reads.
pub fn find(resource_type: &str, name: &str) -> Option<&'static SearchParam> {
    let p = all().find(|p| p.resource_type == resource_type && p.name == name)?;
    Some(canonical(p))
}

/// The parameter whose index rows `p` reads (itself, unless it is an alias).
pub fn canonical(p: &'static SearchParam) -> &'static SearchParam {
    INSTALLED
        .get()
        .and_then(|i| i.aliases.iter().find(|(a, _)| std::ptr::eq(*a, p)))
        .map_or(p, |(_, c)| c)
}

/// The declared parameters of one resource type that have index rows of their own.
pub fn indexed_of_type(resource_type: &str) -> impl Iterator<Item = &'static SearchParam> + '_ {
    of_type(resource_type).filter(|p| std::ptr::eq(canonical(p), *p))
}

/// The declared parameters of one resource type.
pub fn of_type(resource_type: &str) -> impl Iterator<Item = &'static SearchParam> + '_ {
    all().filter(move |p| p.resource_type == resource_type)
}

/// The patient compartment (<https://hl7.org/fhir/R4B/compartmentdefinition-patient.html>):
/// for each type, the parameters whose Patient references put a resource in that patient's
/// compartment, as FHIR defines them and no others (but one, below). Types not listed — a
/// Medication, a Task, a Device, a HealthcareService — are in no patient's compartment. This
/// is the one definition of "belongs to this patient": searches, reads by id, history and the
/// audit trail use it.
pub static PATIENT_COMPARTMENT: &[(&str, &[&str])] = &[
    ("Patient", &["link"]),
    (
        "Coverage",
        &["policy-holder", "subscriber", "beneficiary", "payor"],
    ),
    ("Encounter", &["patient"]),
    ("Observation", &["subject", "performer"]),
    ("Condition", &["patient", "asserter"]),
    ("AllergyIntolerance", &["patient", "recorder", "asserter"]),
    ("MedicationRequest", &["subject"]),
    ("Procedure", &["patient", "performer"]),
    ("DiagnosticReport", &["subject"]),
    ("DocumentReference", &["subject", "author"]),
    ("ServiceRequest", &["subject", "performer"]),
    ("Consent", &["patient"]),
    ("Provenance", &["patient"]),
    ("Schedule", &["actor"]),
    ("Appointment", &["actor"]),
    ("ChargeItem", &["subject"]),
    ("Invoice", &["subject", "patient", "recipient"]),
    ("Account", &["subject"]),
    ("RelatedPerson", &["patient"]),
    ("MedicationDispense", &["subject", "patient", "receiver"]),
    (
        "MedicationAdministration",
        &["patient", "performer", "subject"],
    ),
    ("Immunization", &["patient"]),
    ("Specimen", &["subject"]),
    ("ImagingStudy", &["patient"]),
    ("CarePlan", &["patient", "performer"]),
    ("CareTeam", &["patient", "participant"]),
    ("Goal", &["patient"]),
    ("Composition", &["subject", "author", "attester"]),
    ("EpisodeOfCare", &["patient"]),
    ("Flag", &["patient"]),
    ("FamilyMemberHistory", &["patient"]),
    ("ClinicalImpression", &["subject"]),
    ("QuestionnaireResponse", &["subject", "author"]),
    ("Communication", &["subject", "sender", "recipient"]),
    ("DeviceRequest", &["subject", "performer"]),
    ("List", &["subject", "source"]),
    ("AppointmentResponse", &["actor"]),
    ("Claim", &["patient", "payee"]),
    ("ClaimResponse", &["patient"]),
    // Not in FHIR's definition, which leaves payments out of every compartment: the hospital's
    // own parameter (billing's), so that a patient reads their own payments and receipts.
    ("PaymentNotice", &["patient"]),
];

/// The compartment parameters of `resource_type` (empty: in no patient's compartment).
pub fn compartment_params(resource_type: &str) -> &'static [&'static str] {
    PATIENT_COMPARTMENT
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map_or(&[], |(_, p)| p)
}
