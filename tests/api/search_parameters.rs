//! The search parameters are FHIR's own: every parameter HL7 defines for a type this server
//! accepts is declared, with FHIR's type (but composite and special ones, listed below), and
//! every parameter of the patient compartment is a declared reference parameter.

use serde_json::Value;

/// FHIR parameters this server does not offer, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    // Composite parameters (a code and a value of the same component) and `near` (distance
    // from a point) need kinds of index this store does not keep.
    ("Location", "near"),
    // `deceased` is a FHIRPath test (`exists() and != false`), not a path.
    ("Patient", "deceased"),
];

fn installed() {
    hospital_host::registry(&hospital::registrations()).expect("the declarations install");
}

#[test]
fn every_fhir_parameter_of_a_supported_type_is_declared_with_its_type() {
    installed();
    let defs: Value = serde_json::from_str(include_str!(
        "../../services/fhir-model/data/search-parameters-r4.json"
    ))
    .unwrap();
    let mut checked = 0;
    for d in defs["parameters"].as_array().unwrap() {
        let code = d["code"].as_str().unwrap();
        let kind = d["type"].as_str().unwrap();
        for base in d["base"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
        {
            if !hospital_fhir_model::is_supported(base) || kind == "composite" {
                continue;
            }
            if LEFT_OUT.contains(&(base, code)) {
                assert!(hospital_core::store::params::find(base, code).is_none());
                continue;
            }
            let p = hospital_core::store::params::find(base, code)
                .unwrap_or_else(|| panic!("{base}.{code} ({kind}) is not declared"));
            assert_eq!(p.kind.fhir_name(), kind, "{base}.{code}");
            checked += 1;
        }
    }
    assert!(checked > 700, "{checked}");
}

#[test]
fn every_compartment_parameter_is_a_declared_reference_to_patients() {
    installed();
    for (t, names) in hospital_core::store::params::PATIENT_COMPARTMENT {
        assert!(hospital_fhir_model::is_supported(t), "{t}");
        for n in *names {
            let p = hospital_core::store::params::find(t, n)
                .unwrap_or_else(|| panic!("{t}.{n} is not declared"));
            assert_eq!(p.kind.fhir_name(), "reference", "{t}.{n}");
            assert!(
                p.targets.is_empty() || p.targets.contains(&"Patient"),
                "{t}.{n} cannot point at a Patient"
            );
        }
    }
}
