//! The validator's promises, through its public function.

use hospital_fhir_model::validate;
use serde_json::json;

#[test]
fn a_minimal_patient_is_valid() {
    let p = json!({"resourceType": "Patient", "name": [{"family": "Nguyễn", "given": ["Văn", "An"]}], "birthDate": "1985-03-12", "gender": "male"});
    validate("Patient", &p).unwrap();
}

#[test]
fn a_wrong_datatype_names_its_element() {
    let p = json!({"resourceType": "Patient", "birthDate": 1985});
    let e = validate("Patient", &p).unwrap_err();
    assert_eq!(e.path, "Patient.birthDate", "{e}");
}

#[test]
fn an_unknown_element_is_refused_with_its_path() {
    let p = json!({"resourceType": "Patient", "name": [{"family": "X", "nickname": "Y"}]});
    let e = validate("Patient", &p).unwrap_err();
    assert_eq!(e.path, "Patient.name[0].nickname", "{e}");
}

#[test]
fn an_unknown_code_is_refused() {
    let p = json!({"resourceType": "Patient", "gender": "robot"});
    let e = validate("Patient", &p).unwrap_err();
    assert_eq!(e.path, "Patient.gender", "{e}");
}

#[test]
fn empty_values_are_refused() {
    let p = json!({"resourceType": "Patient", "name": []});
    assert_eq!(validate("Patient", &p).unwrap_err().path, "Patient.name");
}
