//! A FHIR client written by others (fhir-sdk, R4B) drives the running server: create, read,
//! vread, update with If-Match, search with paging, history, delete and a transaction.

use crate::common::*;
use fhir_sdk::TryStreamExt;
use fhir_sdk::client::{Client, ResourceWrite, SearchParameters, TokenSearch};
use fhir_sdk::r4b::resources::{Patient, Resource, ResourceType};
use fhir_sdk::version::FhirR4B;
use serde_json::json;

hospital_test_kit::on_both_backends!(the_fhir_sdk_client_works_against_the_server);

fn patient(national_id: &str, family: &str) -> Patient {
    serde_json::from_value(json!({
        "resourceType": "Patient",
        "identifier": [{"system": NATIONAL_ID, "value": national_id}],
        "name": [{"family": family, "given": ["Thị", "Lan"]}],
        "gender": "female",
        "birthDate": "1990-05-01"
    }))
    .expect("a valid R4B Patient")
}

async fn the_fhir_sdk_client_works_against_the_server(b: Backend) {
    let app = spawn_app(b).await;
    let settings = fhir_sdk::client::RequestSettings::default().header(
        fhir_sdk::header::AUTHORIZATION,
        format!("Bearer {}", app.token).parse().unwrap(),
    );
    let client: Client<FhirR4B> = Client::builder()
        .base_url(format!("{}/", app.base).parse().unwrap())
        .request_settings(settings)
        .build()
        .unwrap();

    // create
    let mut lan = patient("051190000301", "Hồ");
    let id = lan.create(&client).await.expect("create");
    assert_eq!(lan.id.as_deref(), Some(id.as_str()));

    // read
    let read: Patient = client.read(&id).await.expect("read").expect("exists");
    assert_eq!(
        serde_json::to_value(&read.birth_date).unwrap(),
        json!("1990-05-01")
    );
    assert_eq!(
        read.meta
            .as_ref()
            .and_then(|m| m.version_id.clone())
            .as_deref(),
        Some("1")
    );

    // update with If-Match
    let mut changed = read.clone();
    changed.active = Some(true);
    let created = changed
        .update(true, &client)
        .await
        .expect("conditional update");
    assert!(!created);
    let mut stale = read.clone();
    stale.active = Some(false);
    assert!(
        stale.update(true, &client).await.is_err(),
        "a stale If-Match must fail"
    );

    // vread
    let v1: Patient = client
        .read_version(&id, "1")
        .await
        .expect("vread")
        .expect("v1");
    assert_eq!(v1.active, None);

    // search with paging
    for i in 0..4 {
        patient(&format!("05119000031{i}"), "Hồ")
            .create(&client)
            .await
            .expect("create more");
    }
    let found: Vec<Patient> = client
        .search(
            SearchParameters::empty()
                .and(TokenSearch::Standard {
                    name: "gender",
                    system: None,
                    code: Some("female"),
                    not: false,
                })
                .and_raw("_count", "2"),
        )
        .await
        .expect("search")
        .all_matches()
        .try_collect()
        .await
        .expect("paging");
    assert_eq!(found.len(), 5);

    // history
    let history = client.history::<Patient>(Some(&id)).await.expect("history");
    assert_eq!(history.entries().count(), 2);

    // transaction: a patient and an observation that points at it by urn:uuid
    let mut tx = client.transaction();
    let urn = tx.create(patient("051190000320", "Đinh"));
    let obs: fhir_sdk::r4b::resources::Observation = serde_json::from_value(json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": urn},
        "valueQuantity": {"value": 72, "unit": "/min"}
    }))
    .unwrap();
    tx.create(obs);
    let response = tx.send().await.expect("transaction");
    assert_eq!(response.entry.len(), 2);
    let dinh = app.search_ids("Patient?family=dinh").await;
    assert_eq!(dinh.len(), 1);
    assert_eq!(
        app.search_ids(&format!("Observation?patient={}", dinh[0]))
            .await
            .len(),
        1
    );

    // delete
    client
        .delete(ResourceType::Patient, &id)
        .await
        .expect("delete");
    assert!(
        client.read::<Patient>(&id).await.is_err()
            || client.read::<Patient>(&id).await.unwrap().is_none()
    );
    let _ = Resource::Patient(read);
    app.stop().await;
}
