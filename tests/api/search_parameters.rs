//! The search parameters are FHIR's own: every parameter HL7 defines for a type this server
//! accepts is declared, with FHIR's type (but composite and special ones, listed below), and
//! every parameter of the patient compartment is a declared reference parameter, the
//! compartment being FHIR's own (`compartmentdefinition-patient.json`, R4B).

use crate::common::*;
use serde_json::Value;

/// FHIR parameters this server does not offer, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    // Composite parameters (a code and a value of the same component) and `near` (distance
    // from a point) need kinds of index this store does not keep.
    ("Location", "near"),
    // `deceased` is a FHIRPath test (`exists() and != false`), not a path.
    ("Patient", "deceased"),
    // Defined without an expression.
    ("Patient", "age"),
    ("Patient", "birthOrderBoolean"),
    // Answers of items flagged by an extension: a FHIRPath filter, not a path.
    ("QuestionnaireResponse", "item-subject"),
];

fn installed() {
    hospital_host::registry(&hospital::registrations()).expect("the declarations install");
}

#[test]
fn every_fhir_parameter_of_a_supported_type_is_declared_with_its_type() {
    installed();
    let defs: Value = serde_json::from_str(include_str!(
        "../../services/fhir-model/data/search-parameters-r4b.json"
    ))
    .unwrap();
    let mut checked = 0;
    for d in defs["parameters"].as_array().unwrap() {
        let code = d["code"].as_str().unwrap();
        let kind = d["type"].as_str().unwrap();
        // A few extension parameters of the package name no base: none of them is of a
        // type this server keeps.
        for base in d["base"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let example = d["id"].as_str().unwrap_or_default().starts_with("example");
            if !hospital_fhir_model::is_supported(base) || kind == "composite" || example {
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

/// The patient compartment is FHIR's CompartmentDefinition, for every supported type, with no
/// other parameter — but PaymentNotice's `patient`, the hospital's own (FHIR's compartment
/// leaves payments out; a patient reads their own receipts).
#[test]
fn the_patient_compartment_is_fhirs_own() {
    let def: Value = serde_json::from_str(include_str!(
        "../../services/fhir-model/data/compartmentdefinition-patient.json"
    ))
    .unwrap();
    for r in def["resource"].as_array().unwrap() {
        let t = r["code"].as_str().unwrap();
        if !hospital_fhir_model::is_supported(t) {
            continue;
        }
        let mut fhir: Vec<&str> = r["param"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut ours = hospital_core::store::params::compartment_params(t).to_vec();
        if t == "PaymentNotice" {
            assert!(fhir.is_empty());
            assert_eq!(ours, ["patient"]);
            continue;
        }
        fhir.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, fhir, "{t}");
    }
}

hospital_test_kit::on_both_backends!(a_parameter_that_duplicates_another_reads_its_rows);

/// FHIR's `phonetic` is `name` here, and Coverage's `patient` is its `beneficiary`: each
/// finds what the other finds, from the same index rows.
async fn a_parameter_that_duplicates_another_reads_its_rows(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000123")).await;
    assert_eq!(
        app.search_ids("Patient?phonetic=nguyen%20van").await,
        vec![an.clone()]
    );
    assert_eq!(
        app.search_ids("Patient?name=nguyen%20van").await,
        vec![an.clone()]
    );
    let rows = |param: &'static str| {
        let store = app.store.clone();
        async move {
            let row = sqlx::query(&format!(
                "SELECT COUNT(*) FROM idx_string WHERE resource_type = 'Patient' AND param = '{param}'"
            ))
            .fetch_one(store.pool())
            .await
            .unwrap();
            sqlx::Row::try_get::<i64, _>(&row, 0).unwrap()
        }
    };
    assert!(rows("name").await > 0);
    assert_eq!(rows("phonetic").await, 0, "no rows of its own");
}
