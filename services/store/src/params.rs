//! Search parameters, declared once. The same table drives index extraction
//! ([`crate::extract`]), query parsing ([`crate::search`]) and the CapabilityStatement, so the
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

const fn p(
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

const fn r(
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

use ParamKind::*;

const SUBJECT: &[&str] = &["subject"];
const PATIENT: &[&str] = &["Patient"];
const ENCOUNTER: &[&str] = &["Encounter"];

/// Every search parameter the server supports, besides the common `_id` and `_lastUpdated`.
pub static SEARCH_PARAMS: &[SearchParam] = &[
    p("Patient", "identifier", Token, &["identifier"]),
    p("Patient", "name", String, &["name"]),
    p("Patient", "family", String, &["name.family"]),
    p("Patient", "given", String, &["name.given"]),
    p("Patient", "birthdate", Date, &["birthDate"]),
    p("Patient", "gender", Token, &["gender"]),
    p("Patient", "telecom", Token, &["telecom"]),
    p("Patient", "phone", Token, &["telecom(system=phone)"]),
    p("Patient", "address", String, &["address"]),
    r(
        "Patient",
        "link",
        &["link.other"],
        &["Patient", "RelatedPerson"],
    ),
    r(
        "Patient",
        "organization",
        &["managingOrganization"],
        &["Organization"],
    ),
    p("Practitioner", "identifier", Token, &["identifier"]),
    p("Practitioner", "name", String, &["name"]),
    p("PractitionerRole", "identifier", Token, &["identifier"]),
    r(
        "PractitionerRole",
        "practitioner",
        &["practitioner"],
        &["Practitioner"],
    ),
    r(
        "PractitionerRole",
        "organization",
        &["organization"],
        &["Organization"],
    ),
    p("Organization", "identifier", Token, &["identifier"]),
    p("Organization", "name", String, &["name", "alias"]),
    p("Location", "identifier", Token, &["identifier"]),
    p("Location", "name", String, &["name", "alias"]),
    p("Coverage", "identifier", Token, &["identifier"]),
    r("Coverage", "beneficiary", &["beneficiary"], PATIENT),
    r("Coverage", "patient", &["beneficiary"], PATIENT),
    r(
        "Coverage",
        "payor",
        &["payor"],
        &["Organization", "Patient", "RelatedPerson"],
    ),
    p("Coverage", "status", Token, &["status"]),
    r(
        "Coverage",
        "policy-holder",
        &["policyHolder"],
        &["Organization", "Patient", "RelatedPerson"],
    ),
    r(
        "Coverage",
        "subscriber",
        &["subscriber"],
        &["Patient", "RelatedPerson"],
    ),
    p("Encounter", "identifier", Token, &["identifier"]),
    r("Encounter", "patient", SUBJECT, PATIENT),
    r("Encounter", "subject", SUBJECT, &[]),
    p("Encounter", "date", Date, &["period"]),
    p("Encounter", "status", Token, &["status"]),
    p("Encounter", "class", Token, &["class"]),
    r("Encounter", "participant", &["participant.individual"], &[]),
    r(
        "Encounter",
        "practitioner",
        &["participant.individual"],
        &["Practitioner"],
    ),
    r(
        "Encounter",
        "service-provider",
        &["serviceProvider"],
        &["Organization"],
    ),
    p("Observation", "identifier", Token, &["identifier"]),
    r("Observation", "patient", SUBJECT, PATIENT),
    r("Observation", "subject", SUBJECT, &[]),
    p("Observation", "code", Token, &["code"]),
    p("Observation", "category", Token, &["category"]),
    p("Observation", "status", Token, &["status"]),
    p(
        "Observation",
        "date",
        Date,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
    ),
    p(
        "Observation",
        "value-quantity",
        Quantity,
        &["valueQuantity"],
    ),
    r("Observation", "encounter", &["encounter"], ENCOUNTER),
    r("Observation", "performer", &["performer"], &[]),
    p("Condition", "identifier", Token, &["identifier"]),
    r("Condition", "patient", SUBJECT, PATIENT),
    r("Condition", "subject", SUBJECT, &[]),
    p("Condition", "code", Token, &["code"]),
    p("Condition", "clinical-status", Token, &["clinicalStatus"]),
    r("Condition", "encounter", &["encounter"], ENCOUNTER),
    r("Condition", "asserter", &["asserter"], &[]),
    p(
        "Condition",
        "onset-date",
        Date,
        &["onsetDateTime", "onsetPeriod"],
    ),
    r("AllergyIntolerance", "patient", &["patient"], PATIENT),
    r("AllergyIntolerance", "recorder", &["recorder"], &[]),
    r("AllergyIntolerance", "asserter", &["asserter"], &[]),
    p(
        "AllergyIntolerance",
        "code",
        Token,
        &["code", "reaction.substance"],
    ),
    p(
        "AllergyIntolerance",
        "clinical-status",
        Token,
        &["clinicalStatus"],
    ),
    p("MedicationRequest", "identifier", Token, &["identifier"]),
    r("MedicationRequest", "patient", SUBJECT, PATIENT),
    r("MedicationRequest", "subject", SUBJECT, &[]),
    p("MedicationRequest", "status", Token, &["status"]),
    p("MedicationRequest", "authoredon", Date, &["authoredOn"]),
    r("MedicationRequest", "encounter", &["encounter"], ENCOUNTER),
    p(
        "MedicationRequest",
        "code",
        Token,
        &["medicationCodeableConcept"],
    ),
    p("Procedure", "identifier", Token, &["identifier"]),
    r("Procedure", "patient", SUBJECT, PATIENT),
    r("Procedure", "subject", SUBJECT, &[]),
    p(
        "Procedure",
        "date",
        Date,
        &["performedDateTime", "performedPeriod"],
    ),
    p("Procedure", "code", Token, &["code"]),
    r("Procedure", "encounter", &["encounter"], ENCOUNTER),
    r("Procedure", "performer", &["performer.actor"], &[]),
    p("DiagnosticReport", "identifier", Token, &["identifier"]),
    r("DiagnosticReport", "patient", SUBJECT, PATIENT),
    r("DiagnosticReport", "subject", SUBJECT, &[]),
    p("DiagnosticReport", "code", Token, &["code"]),
    p(
        "DiagnosticReport",
        "date",
        Date,
        &["effectiveDateTime", "effectivePeriod"],
    ),
    r("DiagnosticReport", "encounter", &["encounter"], ENCOUNTER),
    r("DiagnosticReport", "result", &["result"], &["Observation"]),
    p("DocumentReference", "identifier", Token, &["identifier"]),
    r("DocumentReference", "patient", SUBJECT, PATIENT),
    r("DocumentReference", "subject", SUBJECT, &[]),
    r("DocumentReference", "author", &["author"], &[]),
    p("DocumentReference", "date", Date, &["date"]),
    p("DocumentReference", "type", Token, &["type"]),
    r(
        "DocumentReference",
        "encounter",
        &["context.encounter"],
        ENCOUNTER,
    ),
    p("ServiceRequest", "identifier", Token, &["identifier"]),
    r("ServiceRequest", "patient", SUBJECT, PATIENT),
    r("ServiceRequest", "encounter", &["encounter"], ENCOUNTER),
    p("ServiceRequest", "code", Token, &["code"]),
    p("ServiceRequest", "status", Token, &["status"]),
    r("ServiceRequest", "subject", SUBJECT, &[]),
    r("ServiceRequest", "performer", &["performer"], &[]),
    r("Provenance", "target", &["target"], &[]),
    r("Provenance", "patient", &["target"], PATIENT),
    r("Schedule", "actor", &["actor"], &[]),
    r("Appointment", "actor", &["participant.actor"], &[]),
    r("Appointment", "patient", &["participant.actor"], PATIENT),
    r("ChargeItem", "subject", SUBJECT, &[]),
    r("ChargeItem", "patient", SUBJECT, PATIENT),
    r("Invoice", "subject", SUBJECT, &[]),
    r("Invoice", "patient", SUBJECT, PATIENT),
    r("Invoice", "recipient", &["recipient"], &[]),
    r("Account", "subject", SUBJECT, &[]),
    r("Account", "patient", SUBJECT, PATIENT),
];

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
    ("Provenance", &["patient"]),
    ("Schedule", &["actor"]),
    ("Appointment", &["actor"]),
    ("ChargeItem", &["subject"]),
    ("Invoice", &["subject", "patient", "recipient"]),
    ("Account", &["subject"]),
];

/// The compartment parameters of `resource_type` (empty: in no patient's compartment).
pub fn compartment_params(resource_type: &str) -> &'static [&'static str] {
    PATIENT_COMPARTMENT
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map_or(&[], |(_, p)| p)
}

/// The patients whose compartment holds `resource_type/id` with this body: a Patient is in
/// its own, and anything is in the compartment of every Patient its compartment parameters
/// reference.
pub fn compartment_patients(
    resource_type: &str,
    id: &str,
    body: &serde_json::Value,
) -> Vec<std::string::String> {
    let mut out = Vec::new();
    if resource_type == "Patient" {
        out.push(id.to_owned());
    }
    let names = compartment_params(resource_type);
    if names.is_empty() {
        return out;
    }
    let rows = crate::extract::extract(resource_type, body);
    for (param, t, target) in &rows.references {
        if t == "Patient" && names.contains(param) && !out.contains(target) {
            out.push(target.clone());
        }
    }
    out
}

/// The parameter `name` of `resource_type`, if declared.
pub fn find(resource_type: &str, name: &str) -> Option<&'static SearchParam> {
    SEARCH_PARAMS
        .iter()
        .find(|p| p.resource_type == resource_type && p.name == name)
}

/// The declared parameters of one resource type.
pub fn of_type(resource_type: &str) -> impl Iterator<Item = &'static SearchParam> + '_ {
    SEARCH_PARAMS
        .iter()
        .filter(move |p| p.resource_type == resource_type)
}
