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
        }
    }
}

/// The parameters of every service, gathered once at start-up. Each service declares the
/// parameters of the types it owns in its own crate; every process installs all of them, so
/// every process indexes and searches the same way.
static INSTALLED: std::sync::OnceLock<Vec<&'static SearchParam>> = std::sync::OnceLock::new();

/// Installs the declarations (once per process; installing the same set again is a no-op,
/// a different one an error).
pub fn install(sets: &[&'static [SearchParam]]) -> Result<(), std::string::String> {
    let mut all: Vec<&'static SearchParam> = sets.iter().flat_map(|s| s.iter()).collect();
    for (i, p) in all.iter().enumerate() {
        if all[..i]
            .iter()
            .any(|q| q.resource_type == p.resource_type && q.name == p.name)
        {
            return Err(format!("{}.{} is declared twice", p.resource_type, p.name));
        }
    }
    let key = |v: &[&'static SearchParam]| {
        let mut k: Vec<(&str, &str)> = v.iter().map(|p| (p.resource_type, p.name)).collect();
        k.sort_unstable();
        k
    };
    let installed = INSTALLED.get_or_init(|| std::mem::take(&mut all));
    if !all.is_empty() && key(installed) != key(&all) {
        return Err("a different set of search parameters is already installed".into());
    }
    Ok(())
}

/// Every installed parameter, besides the common `_id` and `_lastUpdated`.
pub fn all() -> impl Iterator<Item = &'static SearchParam> {
    INSTALLED.get().into_iter().flatten().copied()
}

/// The parameter `name` of `resource_type`, if declared.
pub fn find(resource_type: &str, name: &str) -> Option<&'static SearchParam> {
    all().find(|p| p.resource_type == resource_type && p.name == name)
}

/// The declared parameters of one resource type.
pub fn of_type(resource_type: &str) -> impl Iterator<Item = &'static SearchParam> + '_ {
    all().filter(move |p| p.resource_type == resource_type)
}

/// The patient compartment (<https://hl7.org/fhir/R4B/compartmentdefinition-patient.html>):
/// for each type, the parameters whose Patient references put a resource in that patient's
/// compartment. Types not listed are in no patient's compartment. This is the one definition
/// of "belongs to this patient": searches, reads by id, history and the audit trail use it.
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
