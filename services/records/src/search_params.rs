//! The search parameters of the types the records service owns, declared once: the same
//! declaration drives index extraction, query parsing and the CapabilityStatement. Every
//! process installs them (with every other service's), so every process indexes alike.

use hospital_core::store::params::ParamKind::*;
use hospital_core::store::params::SearchParam;

const SUBJECT: &[&str] = &["subject"];
const PATIENT: &[&str] = &["Patient"];
const ENCOUNTER: &[&str] = &["Encounter"];

/// The records service's search parameters, besides the common `_id` and `_lastUpdated`.
pub static SEARCH_PARAMS: &[SearchParam] = &[
    SearchParam::new("Patient", "identifier", Token, &["identifier"]),
    SearchParam::new("Patient", "name", String, &["name"]),
    SearchParam::new("Patient", "family", String, &["name.family"]),
    SearchParam::new("Patient", "given", String, &["name.given"]),
    SearchParam::new("Patient", "birthdate", Date, &["birthDate"]),
    SearchParam::new("Patient", "gender", Token, &["gender"]),
    SearchParam::new("Patient", "telecom", Token, &["telecom"]),
    SearchParam::new("Patient", "phone", Token, &["telecom(system=phone)"]),
    SearchParam::new("Patient", "address", String, &["address"]),
    SearchParam::reference(
        "Patient",
        "link",
        &["link.other"],
        &["Patient", "RelatedPerson"],
    ),
    SearchParam::reference(
        "Patient",
        "organization",
        &["managingOrganization"],
        &["Organization"],
    ),
    SearchParam::new("Practitioner", "identifier", Token, &["identifier"]),
    SearchParam::new("Practitioner", "name", String, &["name"]),
    SearchParam::new("PractitionerRole", "identifier", Token, &["identifier"]),
    SearchParam::reference(
        "PractitionerRole",
        "practitioner",
        &["practitioner"],
        &["Practitioner"],
    ),
    SearchParam::reference(
        "PractitionerRole",
        "organization",
        &["organization"],
        &["Organization"],
    ),
    SearchParam::new("Organization", "identifier", Token, &["identifier"]),
    SearchParam::new("Organization", "name", String, &["name", "alias"]),
    SearchParam::new("Location", "identifier", Token, &["identifier"]),
    SearchParam::new("Location", "name", String, &["name", "alias"]),
    SearchParam::new("Coverage", "identifier", Token, &["identifier"]),
    SearchParam::reference("Coverage", "beneficiary", &["beneficiary"], PATIENT),
    SearchParam::reference("Coverage", "patient", &["beneficiary"], PATIENT),
    SearchParam::reference(
        "Coverage",
        "payor",
        &["payor"],
        &["Organization", "Patient", "RelatedPerson"],
    ),
    SearchParam::new("Coverage", "status", Token, &["status"]),
    SearchParam::reference(
        "Coverage",
        "policy-holder",
        &["policyHolder"],
        &["Organization", "Patient", "RelatedPerson"],
    ),
    SearchParam::reference(
        "Coverage",
        "subscriber",
        &["subscriber"],
        &["Patient", "RelatedPerson"],
    ),
    SearchParam::new("Encounter", "identifier", Token, &["identifier"]),
    SearchParam::reference("Encounter", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Encounter", "subject", SUBJECT, &[]),
    SearchParam::new("Encounter", "date", Date, &["period"]),
    SearchParam::new("Encounter", "status", Token, &["status"]),
    SearchParam::new("Encounter", "class", Token, &["class"]),
    SearchParam::reference(
        "Encounter",
        "appointment",
        &["appointment"],
        &["Appointment"],
    ),
    SearchParam::reference("Encounter", "participant", &["participant.individual"], &[]),
    SearchParam::reference(
        "Encounter",
        "practitioner",
        &["participant.individual"],
        &["Practitioner"],
    ),
    SearchParam::reference(
        "Encounter",
        "service-provider",
        &["serviceProvider"],
        &["Organization"],
    ),
    SearchParam::new("Observation", "identifier", Token, &["identifier"]),
    SearchParam::reference("Observation", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Observation", "subject", SUBJECT, &[]),
    SearchParam::new("Observation", "code", Token, &["code"]),
    SearchParam::new("Observation", "category", Token, &["category"]),
    SearchParam::new("Observation", "status", Token, &["status"]),
    SearchParam::new(
        "Observation",
        "date",
        Date,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
    ),
    SearchParam::new(
        "Observation",
        "value-quantity",
        Quantity,
        &["valueQuantity"],
    ),
    SearchParam::reference("Observation", "encounter", &["encounter"], ENCOUNTER),
    SearchParam::reference("Observation", "performer", &["performer"], &[]),
    SearchParam::new("Condition", "identifier", Token, &["identifier"]),
    SearchParam::reference("Condition", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Condition", "subject", SUBJECT, &[]),
    SearchParam::new("Condition", "code", Token, &["code"]),
    SearchParam::new("Condition", "clinical-status", Token, &["clinicalStatus"]),
    SearchParam::reference("Condition", "encounter", &["encounter"], ENCOUNTER),
    SearchParam::reference("Condition", "asserter", &["asserter"], &[]),
    SearchParam::new(
        "Condition",
        "onset-date",
        Date,
        &["onsetDateTime", "onsetPeriod"],
    ),
    SearchParam::reference("AllergyIntolerance", "patient", &["patient"], PATIENT),
    SearchParam::reference("AllergyIntolerance", "recorder", &["recorder"], &[]),
    SearchParam::reference("AllergyIntolerance", "asserter", &["asserter"], &[]),
    SearchParam::new(
        "AllergyIntolerance",
        "code",
        Token,
        &["code", "reaction.substance"],
    ),
    SearchParam::new(
        "AllergyIntolerance",
        "clinical-status",
        Token,
        &["clinicalStatus"],
    ),
    SearchParam::new("MedicationRequest", "identifier", Token, &["identifier"]),
    SearchParam::reference("MedicationRequest", "patient", SUBJECT, PATIENT),
    SearchParam::reference("MedicationRequest", "subject", SUBJECT, &[]),
    SearchParam::new("MedicationRequest", "status", Token, &["status"]),
    SearchParam::new("MedicationRequest", "authoredon", Date, &["authoredOn"]),
    SearchParam::reference("MedicationRequest", "encounter", &["encounter"], ENCOUNTER),
    SearchParam::new(
        "MedicationRequest",
        "code",
        Token,
        &["medicationCodeableConcept"],
    ),
    SearchParam::new("Procedure", "identifier", Token, &["identifier"]),
    SearchParam::reference("Procedure", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Procedure", "subject", SUBJECT, &[]),
    SearchParam::new(
        "Procedure",
        "date",
        Date,
        &["performedDateTime", "performedPeriod"],
    ),
    SearchParam::new("Procedure", "code", Token, &["code"]),
    SearchParam::reference("Procedure", "encounter", &["encounter"], ENCOUNTER),
    SearchParam::reference("Procedure", "performer", &["performer.actor"], &[]),
    SearchParam::new("DiagnosticReport", "identifier", Token, &["identifier"]),
    SearchParam::reference("DiagnosticReport", "patient", SUBJECT, PATIENT),
    SearchParam::reference("DiagnosticReport", "subject", SUBJECT, &[]),
    SearchParam::new("DiagnosticReport", "code", Token, &["code"]),
    SearchParam::new(
        "DiagnosticReport",
        "date",
        Date,
        &["effectiveDateTime", "effectivePeriod"],
    ),
    SearchParam::reference("DiagnosticReport", "encounter", &["encounter"], ENCOUNTER),
    SearchParam::reference("DiagnosticReport", "result", &["result"], &["Observation"]),
    SearchParam::reference("Consent", "patient", &["patient"], PATIENT),
    SearchParam::new("Consent", "status", Token, &["status"]),
    SearchParam::new("Consent", "category", Token, &["category"]),
    SearchParam::new("Consent", "scope", Token, &["scope"]),
    SearchParam::new("Consent", "date", Date, &["dateTime"]),
    SearchParam::reference("Consent", "data", &["provision.data.reference"], &[]),
    SearchParam::new("DocumentReference", "identifier", Token, &["identifier"]),
    SearchParam::reference("DocumentReference", "patient", SUBJECT, PATIENT),
    SearchParam::reference("DocumentReference", "subject", SUBJECT, &[]),
    SearchParam::reference("DocumentReference", "author", &["author"], &[]),
    SearchParam::new("DocumentReference", "date", Date, &["date"]).instant(),
    SearchParam::new("DocumentReference", "type", Token, &["type"]),
    SearchParam::reference(
        "DocumentReference",
        "encounter",
        &["context.encounter"],
        ENCOUNTER,
    ),
    SearchParam::new("ServiceRequest", "identifier", Token, &["identifier"]),
    SearchParam::reference("ServiceRequest", "patient", SUBJECT, PATIENT),
    SearchParam::reference("ServiceRequest", "encounter", &["encounter"], ENCOUNTER),
    SearchParam::new("ServiceRequest", "code", Token, &["code"]),
    SearchParam::new("ServiceRequest", "status", Token, &["status"]),
    SearchParam::reference("ServiceRequest", "subject", SUBJECT, &[]),
    SearchParam::reference("ServiceRequest", "performer", &["performer"], &[]),
    SearchParam::reference("Provenance", "target", &["target"], &[]),
    SearchParam::reference("Provenance", "patient", &["target"], PATIENT),
];

#[cfg(test)]
mod tests {
    use hospital_core::store::extract::extract;
    use serde_json::json;

    #[test]
    fn a_patient_yields_identifier_name_birthdate_and_phone_rows() {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": "123"}],
            "name": [{"family": "Nguyễn", "given": ["Văn", "An"]}],
            "telecom": [{"system": "phone", "value": "0905123456"}, {"system": "email", "value": "a@b.vn"}],
            "birthDate": "1985-03-12"
        });
        hospital_core::store::params::install(&[super::SEARCH_PARAMS], &[]).unwrap();
        let rows = extract("Patient", &p);
        assert!(
            rows.tokens
                .contains(&("identifier", "urn:x".into(), "123".into()))
        );
        assert!(
            rows.tokens
                .contains(&("phone", "phone".into(), "0905123456".into()))
        );
        assert!(
            !rows
                .tokens
                .iter()
                .any(|t| t.0 == "phone" && t.2 == "a@b.vn")
        );
        assert!(
            rows.strings
                .iter()
                .any(|s| s.0 == "name" && s.1 == "nguyen van an")
        );
        assert!(
            rows.strings
                .iter()
                .any(|s| s.0 == "family" && s.1 == "nguyen" && s.2 == "Nguyễn")
        );
        assert_eq!(rows.dates.len(), 1);
    }
}
