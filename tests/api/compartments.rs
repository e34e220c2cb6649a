//! Every department's types in the patient compartment: for each, a patient token reads and
//! finds its own and never another patient's — by id, by search, through a chain from the
//! resource to the patient, and through a reverse chain from the patient to the resource.

use crate::common::*;
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    each_departments_record_is_its_patients_own_through_every_door
);

/// A small valid resource of each added type in the compartment, for the patient `P`, and a
/// reference parameter of the type that names the patient.
fn bodies(p: &str) -> Vec<(&'static str, Value)> {
    let r = json!({"reference": format!("Patient/{p}")});
    let text = |t: &str| json!({"text": t});
    vec![
        (
            "patient",
            json!({"resourceType": "RelatedPerson", "patient": r,
            "relationship": [{"text": "vợ"}], "name": [{"family": "Lê", "given": ["Thị", "Hoa"]}]}),
        ),
        (
            "patient",
            json!({"resourceType": "MedicationDispense", "status": "completed",
            "medicationCodeableConcept": text("Paracetamol 500mg"), "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "MedicationAdministration", "status": "completed",
            "medicationCodeableConcept": text("Ceftriaxone 1g"), "subject": r,
            "effectiveDateTime": "2026-11-21T08:00:00+07:00"}),
        ),
        (
            "patient",
            json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": text("Viêm gan B"), "patient": r, "occurrenceDateTime": "2026-11-20"}),
        ),
        (
            "patient",
            json!({"resourceType": "Specimen", "subject": r, "type": text("Máu tĩnh mạch")}),
        ),
        (
            "patient",
            json!({"resourceType": "ImagingStudy", "status": "available", "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "CareTeam", "subject": r, "name": "Nhóm điều trị"}),
        ),
        (
            "patient",
            json!({"resourceType": "Goal", "lifecycleStatus": "active",
            "description": text("HbA1c dưới 7%"), "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "Composition", "status": "final", "type": text("Ghi chú"),
            "subject": r, "date": "2026-11-20", "author": [{"display": "BS. Hùng"}], "title": "Ghi chú"}),
        ),
        (
            "patient",
            json!({"resourceType": "EpisodeOfCare", "status": "active", "patient": r}),
        ),
        (
            "patient",
            json!({"resourceType": "Flag", "status": "active", "code": text("Dị ứng penicillin"), "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "FamilyMemberHistory", "status": "completed", "patient": r,
            "relationship": text("mẹ")}),
        ),
        (
            "patient",
            json!({"resourceType": "ClinicalImpression", "status": "completed", "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "QuestionnaireResponse", "status": "completed", "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "Communication", "status": "completed", "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "DeviceRequest", "status": "active", "intent": "order",
            "codeCodeableConcept": text("Máy đo đường huyết"), "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "List", "status": "current", "mode": "working", "subject": r}),
        ),
        (
            "patient",
            json!({"resourceType": "Claim", "status": "active", "type": text("ngoại trú"),
            "use": "claim", "patient": r, "created": "2026-11-20", "provider": {"display": "Bệnh viện"},
            "priority": text("bình thường"),
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "BHYT"}}]}),
        ),
        (
            "patient",
            json!({"resourceType": "ClaimResponse", "status": "active", "type": text("ngoại trú"),
            "use": "claim", "patient": r, "created": "2026-11-20", "insurer": {"display": "BHXH"},
            "outcome": "complete"}),
        ),
        (
            "patient",
            json!({"resourceType": "AppointmentResponse",
            "appointment": {"display": "Lịch khám"}, "actor": r, "participantStatus": "accepted"}),
        ),
    ]
}

fn ids(v: &Value) -> Vec<String> {
    v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn each_departments_record_is_its_patients_own_through_every_door(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000123")).await;
    let binh = app
        .create(json!({"resourceType": "Patient",
            "identifier": [{"system": NATIONAL_ID, "value": "051190001234"}],
            "name": [{"family": "Trần", "given": ["Thị", "Bình"]}],
            "gender": "female", "birthDate": "1990-04-02"}))
        .await;
    let patient = app.client_for(Role::Patient, Some(&an), None);
    let get = |path: String| {
        let c = patient.clone();
        let url = app.url(&path);
        async move {
            let r = c.get(url).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for ((param, mine), (_, theirs)) in bodies(&an).into_iter().zip(bodies(&binh)) {
        let t = mine["resourceType"].as_str().unwrap().to_owned();
        assert!(
            !hospital_core::store::params::compartment_params(&t).is_empty(),
            "{t} is in the patient compartment"
        );
        let own = app.create(mine).await;
        let other = app.create(theirs).await;
        // By id and by search.
        assert_eq!(get(format!("{t}/{own}")).await.0, 200, "{t}");
        assert_eq!(get(format!("{t}/{other}")).await.0, 404, "{t}");
        let (s, all) = get(t.clone()).await;
        assert_eq!((s, ids(&all)), (200, vec![own.clone()]), "{t}");
        // Through a chain to the patient: asked about Bình, nothing.
        let chain_param = param;
        let (s, v) = get(format!("{t}?{chain_param}:Patient.name=binh")).await;
        assert_eq!((s, ids(&v)), (200, vec![]), "{t} chain: {v}");
        let (s, v) = get(format!("{t}?{chain_param}:Patient.name=nguyen")).await;
        assert_eq!((s, ids(&v)), (200, vec![own.clone()]), "{t} chain: {v}");
        // Through a reverse chain from the patient: Bình's resource says nothing.
        let (s, v) = get(format!("Patient?_has:{t}:{chain_param}:_id={other}")).await;
        assert_eq!((s, ids(&v)), (200, vec![]), "{t} _has: {v}");
        let (s, v) = get(format!("Patient?_has:{t}:{chain_param}:_id={own}")).await;
        assert_eq!((s, ids(&v)), (200, vec![an.clone()]), "{t} _has: {v}");
        // Staff see both.
        let (_, v) = app
            .get_json(&format!("Patient?_has:{t}:{chain_param}:_id={other}"))
            .await;
        assert_eq!(ids(&v), vec![binh.clone()], "{t}");
    }
}
