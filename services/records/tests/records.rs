//! The records service on its own — only what it needs is started (the test kit with its
//! registration alone) — driven through a real tonic client over TCP.

use hospital_core::{Deployment, ServiceName};
use hospital_test_kit::*;

/// The records service alone on a fresh `backend` store.
async fn spawn_app(backend: Backend) -> TestApp {
    spawn(
        &[hospital_records::registration()],
        Deployment::only(ServiceName::Records),
        backend,
        |_| {},
    )
    .await
}

use hospital_proto::records::v1 as pb;
use pb::records_client::RecordsClient;
use serde_json::json;
use std::time::Duration;
use tonic::Code;

on_both_backends!(
    the_health_service_reports_records_serving,
    patients_are_found_by_id_and_by_identifier,
    active_coverage_is_found_by_patient_card_or_personal_id_on_a_date,
    opening_an_encounter_twice_with_one_key_gives_one_encounter,
    bad_requests_get_precise_status_codes_and_change_nothing,
    calls_without_a_valid_token_are_unauthenticated,
    a_patient_token_reaches_only_its_own_patient_over_grpc,
    find_patient_by_identifier_is_no_existence_oracle_for_a_patient,
);

async fn calls_without_a_valid_token_are_unauthenticated(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000203")).await;
    let channel = tonic::transport::Endpoint::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bare = RecordsClient::new(channel);
    let e = bare
        .get_patient(pb::GetPatientRequest {
            patient_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut forged = client_as(&app, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA").await;
    let e = forged
        .get_patient(pb::GetPatientRequest { patient_id: id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    app.stop().await;
}

async fn a_patient_token_reaches_only_its_own_patient_over_grpc(b: Backend) {
    let app = spawn_app(b).await;
    let mine = app.create(patient_an("051085000204")).await;
    let other = app.create(patient_an("051085000205")).await;
    let token = mint(
        hospital_core::auth::Role::Patient,
        "an",
        Some(&mine),
        None,
        None,
    );
    let mut c = client_as(&app, &token).await;
    let me = c
        .get_patient(pb::GetPatientRequest {
            patient_id: mine.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.id, mine);
    let e = c
        .get_patient(pb::GetPatientRequest {
            patient_id: other.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "another patient is not revealed");
    let e = c
        .find_patient_by_identifier(pb::FindPatientByIdentifierRequest {
            system: NATIONAL_ID.into(),
            value: "051085000205".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .open_encounter(pb::OpenEncounterRequest {
            patient_id: mine,
            appointment_id: String::new(),
            encounter_class: pb::EncounterClass::Virtual as i32,
            practitioner_id: String::new(),
            idempotency_key: "k".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    app.stop().await;
}

/// Adds a bearer token to every call.
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Client = RecordsClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

async fn client_as(app: &TestApp, token: &str) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(app.grpc.clone())
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect");
    RecordsClient::with_interceptor(channel, Bearer(format!("Bearer {token}").parse().unwrap()))
}

async fn client(app: &TestApp) -> Client {
    client_as(app, &app.token).await
}

async fn the_health_service_reports_records_serving(b: Backend) {
    let app = spawn_app(b).await;
    let channel = tonic::transport::Endpoint::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hospital.records.v1.Records".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    app.stop().await;
}

async fn patients_are_found_by_id_and_by_identifier(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000200")).await;
    let mut c = client(&app).await;
    let p = c
        .get_patient(pb::GetPatientRequest {
            patient_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.full_name, "Nguyễn Văn An");
    assert_eq!(p.national_id, "051085000200");
    assert_eq!(p.birth_date, "1985-03-12");
    assert!(p.facility_patient_code.starts_with("BN"));
    let found = c
        .find_patient_by_identifier(pb::FindPatientByIdentifierRequest {
            system: NATIONAL_ID.into(),
            value: "051085000200".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.id, id);
    let by_code = c
        .find_patient_by_identifier(pb::FindPatientByIdentifierRequest {
            system: String::new(),
            value: p.facility_patient_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_code.id, id);
    let missing = c
        .get_patient(pb::GetPatientRequest {
            patient_id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    app.stop().await;
}

async fn active_coverage_is_found_by_patient_card_or_personal_id_on_a_date(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000201")).await;
    let old = app
        .create(json!({"resourceType": "Coverage", "status": "active",
            "identifier": [{"system": INSURANCE, "value": "DN4510000000001"}],
            "beneficiary": {"reference": format!("Patient/{id}")},
            "payor": [{"display": "BHXH"}],
            "period": {"start": "2025-01-01", "end": "2025-12-31"}}))
        .await;
    let current = app
        .create(json!({"resourceType": "Coverage", "status": "active",
            "identifier": [{"system": INSURANCE, "value": "DN4510000000002"}],
            "beneficiary": {"reference": format!("Patient/{id}")},
            "payor": [{"display": "BHXH"}],
            "period": {"start": "2026-01-01", "end": "2026-12-31"}}))
        .await;
    let mut c = client(&app).await;
    use pb::get_active_coverage_request::Patient as P;
    let ask = |p: P, date: &str| pb::GetActiveCoverageRequest {
        patient: Some(p),
        date: date.into(),
        include_expired: false,
    };
    let or_expired = |p: P, date: &str| pb::GetActiveCoverageRequest {
        include_expired: true,
        ..ask(p, date)
    };
    let r = c
        .get_active_coverage(ask(P::PatientId(id.clone()), "2026-08-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.id, current);
    assert_eq!(r.benefit_level, 4);
    assert_eq!(r.card_number, "DN4510000000002");
    let r = c
        .get_active_coverage(ask(P::PatientId(id.clone()), "2025-06-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.id, old);
    let r = c
        .get_active_coverage(ask(P::NationalId("051085000201".into()), "2026-08-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.id, current);
    let r = c
        .get_active_coverage(ask(P::CardNumber("DN4510000000002".into()), "2026-08-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.patient_id, id);
    let none = c
        .get_active_coverage(ask(P::PatientId(id.clone()), "2024-06-01"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound);
    assert!(r.in_force);
    // After both ran out: not found, unless the caller asks for the last one that expired.
    let none = c
        .get_active_coverage(ask(P::PatientId(id.clone()), "2027-02-01"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound);
    for who in [
        P::PatientId(id.clone()),
        P::NationalId("051085000201".into()),
        P::CardNumber("DN4510000000002".into()),
    ] {
        let r = c
            .get_active_coverage(or_expired(who, "2027-02-01"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.id.as_str(), r.valid_to.as_str(), r.in_force),
            (current.as_str(), "2026-12-31", false)
        );
    }
    let r = c
        .get_active_coverage(or_expired(
            P::CardNumber("DN4510000000001".into()),
            "2026-08-01",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.id.as_str(), r.in_force),
        (old.as_str(), false),
        "a card shown after it expired"
    );
    let r = c
        .get_active_coverage(or_expired(P::PatientId(id.clone()), "2026-08-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.id.as_str(), r.in_force),
        (current.as_str(), true),
        "in force first"
    );
    let none = c
        .get_active_coverage(or_expired(P::PatientId(id.clone()), "2024-06-01"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound, "none ended before");
    let bad = c
        .get_active_coverage(ask(P::CardNumber("XX".into()), ""))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad = c
        .get_active_coverage(ask(P::PatientId(id), "01/08/2026"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    app.stop().await;
}

async fn opening_an_encounter_twice_with_one_key_gives_one_encounter(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000202")).await;
    let c = client(&app).await;
    let req = pb::OpenEncounterRequest {
        patient_id: id.clone(),
        appointment_id: String::new(),
        encounter_class: pb::EncounterClass::Virtual as i32,
        practitioner_id: String::new(),
        idempotency_key: "appt-42-open".into(),
    };
    let mut handles = Vec::new();
    for _ in 0..5 {
        let mut c = c.clone();
        let req = req.clone();
        handles.push(tokio::spawn(async move {
            c.open_encounter(req).await.unwrap().into_inner()
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "retries return the same encounter");
    assert_eq!(
        app.search_ids(&format!("Encounter?patient={id}"))
            .await
            .len(),
        1
    );
    assert_eq!(
        app.search_ids("Encounter?class=VR&status=in-progress")
            .await
            .len(),
        1
    );
    let mut c2 = c.clone();
    let closed = c2
        .close_encounter(pb::CloseEncounterRequest {
            encounter_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.status, "finished");
    let again = c2
        .close_encounter(pb::CloseEncounterRequest {
            encounter_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.version_id, closed.version_id,
        "closing twice changes nothing"
    );
    let (_, enc) = app.get_json(&format!("Encounter/{}", ids[0])).await;
    assert!(enc["period"]["end"].is_string());
    app.stop().await;
}

async fn bad_requests_get_precise_status_codes_and_change_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app).await;
    let before = app.versions().await;
    let open = |patient: &str, class: pb::EncounterClass, key: &str| pb::OpenEncounterRequest {
        patient_id: patient.into(),
        appointment_id: String::new(),
        encounter_class: class as i32,
        practitioner_id: String::new(),
        idempotency_key: key.into(),
    };
    let e = c
        .open_encounter(open("nobody", pb::EncounterClass::Virtual, "k1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("Patient/nobody"));
    let e = c
        .open_encounter(open("x", pb::EncounterClass::Unspecified, "k2"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .open_encounter(open("x", pb::EncounterClass::Virtual, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .open_encounter(open("bad id'--", pb::EncounterClass::Virtual, "k3"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .close_encounter(pb::CloseEncounterRequest {
            encounter_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .find_patient_by_identifier(pb::FindPatientByIdentifierRequest {
            system: String::new(),
            value: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(app.versions().await, before);
    app.stop().await;
}

/// The attack: with An's token, ask for An's own personal ID OR a probed one (a comma in
/// `system`), and tell from the answer whether the probed number is registered.
async fn find_patient_by_identifier_is_no_existence_oracle_for_a_patient(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000221")).await;
    let _binh = app.create(patient_an("051085000222")).await;
    let token = mint(
        hospital_core::auth::Role::Patient,
        &an,
        Some(&an),
        None,
        None,
    );
    let mut c = client_as(&app, &token).await;
    let probe = |value: &str| pb::FindPatientByIdentifierRequest {
        system: format!("{NATIONAL_ID}|051085000221,{NATIONAL_ID}"),
        value: value.into(),
    };
    for registered in ["051085000222", "051085000299"] {
        let e = c
            .find_patient_by_identifier(probe(registered))
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "system is a value, never search syntax"
        );
    }
    // Plain lookups run in An's compartment: someone else's number and a number nobody has
    // give the same answer.
    let lookup = |value: &str| pb::FindPatientByIdentifierRequest {
        system: NATIONAL_ID.into(),
        value: value.into(),
    };
    let taken = c
        .find_patient_by_identifier(lookup("051085000222"))
        .await
        .unwrap_err();
    let free = c
        .find_patient_by_identifier(lookup("051085000299"))
        .await
        .unwrap_err();
    assert_eq!(
        (taken.code(), free.code()),
        (Code::NotFound, Code::NotFound)
    );
    assert_eq!(taken.message(), free.message());
    // Values with commas are values too: no OR.
    let e = c
        .find_patient_by_identifier(pb::FindPatientByIdentifierRequest {
            system: String::new(),
            value: "051085000221,051085000222".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let me = c
        .find_patient_by_identifier(lookup("051085000221"))
        .await
        .unwrap();
    assert_eq!(me.into_inner().id, an);
    app.stop().await;
}
