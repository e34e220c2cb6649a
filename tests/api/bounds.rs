//! The bounds on the work one caller may cause, through every door: requests in flight per
//! caller (REST and gRPC share one lane), the time limit of one request (its writes are not
//! kept), a panicking handler (a 500 that is audited), the audit rows a locked-out client may
//! cause, and a hostile patient who throws the worst requests it can think of.

use crate::common::*;
use hospital_core::auth::{Principal, Role};
use hospital_core::{Caller, codes};
use hospital_proto::records::v1 as pb;
use serde_json::{Value, json};
use std::time::Duration;

hospital_test_kit::on_both_backends!(
    a_request_past_the_time_limit_is_refused_and_keeps_nothing,
    a_caller_past_their_in_flight_bound_is_refused_at_every_door_and_others_are_not,
    a_panicking_handler_is_a_500_with_an_audit_record,
    a_locked_out_client_cannot_fill_the_audit_trail,
    a_hostile_patient_gets_only_clear_refusals_and_a_clinician_keeps_reading,
);

fn code_of(oo: &Value) -> String {
    oo["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A transaction of `n` searches, each including as much as one search may.
fn search_bundle(n: usize) -> Value {
    let includes = [
        "_include=Observation:subject",
        "_include=Observation:patient",
        "_include=Observation:encounter",
        "_include=Observation:performer",
        "_revinclude=Provenance:target",
        "_revinclude=DiagnosticReport:result",
        "_revinclude=Invoice:subject",
        "_revinclude=ChargeItem:subject",
        "_revinclude=Appointment:actor",
        "_revinclude=Schedule:actor",
    ]
    .join("&");
    let entry =
        json!({"request": {"method": "GET", "url": format!("Observation?{includes}&_count=50")}});
    json!({"resourceType": "Bundle", "type": "transaction", "entry": vec![entry; n]})
}

async fn with_observations(app: &TestApp, national_id: &str) -> String {
    let an = app.create(patient_an(national_id)).await;
    for i in 0..20 {
        app.create(json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("x{i}")},
            "subject": {"reference": format!("Patient/{an}")}}))
            .await;
    }
    an
}

async fn a_request_past_the_time_limit_is_refused_and_keeps_nothing(b: Backend) {
    let app = spawn_app_with(b, |c| c.request_time_limit_ms = 150).await;
    with_observations(&app, "051085000950").await;
    let before = app.store.count(None).await.unwrap();

    // A read-only transaction of 1,000 searches, with their includes.
    let (s, _, oo) = app.post("", &search_bundle(1000)).await;
    assert_eq!(s, 400, "{oo}");
    assert_eq!(code_of(&oo), codes::TIME_LIMIT.id, "{oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("150 ms"),
        "the answer names the bound: {oo}"
    );

    // A transaction of 1,000 creates, cut off by the limit: none of them is kept.
    let entries: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": format!("y{i}")}},
                "request": {"method": "POST", "url": "Observation"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let (s, _, oo) = app.post("", &bundle).await;
    assert_eq!(
        (s, code_of(&oo)),
        (400, codes::TIME_LIMIT.id.into()),
        "{oo}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.store.count(None).await.unwrap(), before);

    // The refusal is audited as the caller's, with its target and outcome.
    let trail = app.audit_events("agent=service:test-suite").await;
    let refused: Vec<&Value> = trail
        .iter()
        .filter(|e| e["subtype"][0]["code"] == "request")
        .collect();
    assert_eq!(refused.len(), 2, "{trail:#?}");
    assert!(
        refused.iter().all(|e| e["outcomeDesc"] == "HTTP 400"),
        "{refused:#?}"
    );
    app.stop().await;
}

async fn grpc_get_patient(app: &TestApp, token: &str, patient: &str) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = pb::records_client::RecordsClient::new(channel);
    let mut req = tonic::Request::new(pb::GetPatientRequest {
        patient_id: patient.to_owned(),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    c.get_patient(req).await.map(|_| ())
}

async fn a_caller_past_their_in_flight_bound_is_refused_at_every_door_and_others_are_not(
    b: Backend,
) {
    let app = spawn_app_with(b, |c| {
        c.caller_running = 1;
        c.caller_queued = 0;
        c.request_time_limit_ms = 5000;
    })
    .await;
    let an = with_observations(&app, "051085000951").await;
    let token = mint(Role::Patient, "an", Some(&an), None, None);
    let patient = client_with(&token);

    // The patient's long transaction holds their only place...
    let long = {
        let patient = patient.clone();
        let url = app.url("");
        tokio::spawn(async move {
            patient
                .post(url)
                .header("content-type", FHIR)
                .body(search_bundle(1000).to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!long.is_finished(), "the long transaction is still running");

    // ...so their next request is refused on REST and on gRPC alike, naming the bound...
    let r = patient
        .get(app.url(&format!("Patient/{an}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let oo: Value = r.json().await.unwrap();
    assert_eq!(code_of(&oo), codes::TOO_MANY_IN_FLIGHT.id, "{oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("1 run at once"),
        "{oo}"
    );
    let status = grpc_get_patient(&app, &token, &an).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        status.metadata().get("hospital-error-code").unwrap(),
        codes::TOO_MANY_IN_FLIGHT.id
    );

    // ...while a clinician is not held up: lanes are per identity, not per address.
    let clinician = app.client_for(Role::Clinician, None, Some("bs-lan"));
    let r = clinician
        .get(app.url(&format!("Patient/{an}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // It ends, done or past its time limit, and frees the place.
    let status = long.await.unwrap();
    eprintln!(
        "the long transaction: {status} after {:?}",
        started.elapsed()
    );
    assert!(matches!(status, 200 | 400), "{status}");
    let r = patient
        .get(app.url(&format!("Patient/{an}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the place is free again");
    grpc_get_patient(&app, &token, &an).await.unwrap();

    // The refusals are in the patient's trail, with their targets.
    let trail = app.audit_events("agent=patient:an").await;
    let refused: Vec<&Value> = trail
        .iter()
        .filter(|e| e["outcomeDesc"] == "HTTP 429")
        .collect();
    assert_eq!(refused.len(), 2, "{trail:#?}");
    let targets: Vec<&str> = refused
        .iter()
        .map(|e| e["entity"][0]["what"]["reference"].as_str().unwrap_or(""))
        .collect();
    assert!(
        targets.contains(&format!("Patient/{an}").as_str()),
        "{targets:?}"
    );
    assert!(
        targets.contains(&"/hospital.records.v1.Records/GetPatient"),
        "{targets:?}"
    );
    app.stop().await;
}

async fn a_panicking_handler_is_a_500_with_an_audit_record(b: Backend) {
    let app = spawn_app(b).await;
    let platform = app.running.as_ref().unwrap().platform.clone();
    let caller = Caller {
        principal: Principal {
            subject: "bs-hoa".into(),
            role: Role::Clinician,
            patient: None,
            practitioner: Some("bs-hoa".into()),
            scopes: None,
        },
        via: None,
        client: "192.0.2.10".into(),
        user_agent: "test".into(),
    };
    let err = platform
        .bounded(&caller, "Observation/obs-1", async {
            let v: Vec<u8> = Vec::new();
            v[usize::from(v.is_empty())]
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::INTERNAL);
    assert!(!err.message.contains("index"), "no detail leaks: {err}");
    let trail = app.audit_events("agent=clinician:bs-hoa").await;
    assert_eq!(trail.len(), 1, "{trail:#?}");
    assert_eq!(trail[0]["outcomeDesc"], "HTTP 500");
    assert_eq!(trail[0]["subtype"][0]["code"], "request");
    assert_eq!(
        trail[0]["entity"][0]["what"]["reference"],
        "Observation/obs-1"
    );

    // The server still answers after it.
    let (s, _) = app.get_json("metadata").await;
    assert_eq!(s, 200);
    app.stop().await;
}

async fn a_locked_out_client_cannot_fill_the_audit_trail(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]
    })
    .await;
    let client = "203.0.113.77";
    for _ in 0..60 {
        let r = app
            .anonymous
            .get(app.url("Patient/x"))
            .header("x-forwarded-for", client)
            .header("authorization", "Bearer not-a-token")
            .send()
            .await
            .unwrap();
        assert!(matches!(r.status().as_u16(), 401 | 429));
    }
    let trail = app.audit_events("agent=anonymous").await;
    let from_client: Vec<&Value> = trail
        .iter()
        .filter(|e| e["agent"][0]["network"]["address"] == client)
        .collect();
    assert_eq!(
        from_client.len(),
        11,
        "ten failures and the lock-out are recorded, the other 49 refusals are not"
    );
    assert_eq!(
        from_client
            .iter()
            .filter(|e| e["outcomeDesc"] == "HTTP 429")
            .count(),
        1
    );
    app.stop().await;
}

/// JSON nested `depth` deep.
fn deep(depth: usize) -> String {
    format!(
        "{{\"resourceType\":\"Patient\",\"extension\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

async fn a_hostile_patient_gets_only_clear_refusals_and_a_clinician_keeps_reading(b: Backend) {
    let app = spawn_app_with(b, |c| c.request_time_limit_ms = 2000).await;
    let an = with_observations(&app, "051085000952").await;
    let binh = app.create(patient_an("051085000953")).await;
    let attacker = client_with(&mint(Role::Patient, "an", Some(&an), None, None));
    let clinician = app.client_for(Role::Clinician, None, Some("bs-lan"));

    let bomb = vec!["_include=Observation:subject"; 110].join("&");
    let many: Vec<String> = (0..20_000).map(|i| format!("n{i}")).collect();
    let creates: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": format!("z{i}")},
                "subject": {"reference": format!("Patient/{binh}")}}, "request": {"method": "POST", "url": "Observation"}})
        })
        .collect();
    // (method, path, content type, body)
    let attacks: Vec<(&str, String, &str, String)> = vec![
        ("POST", String::new(), FHIR, search_bundle(1000).to_string()),
        ("POST", String::new(), FHIR, search_bundle(2000).to_string()),
        ("GET", format!("Observation?{bomb}"), "", String::new()),
        (
            "POST",
            "Patient/_search".into(),
            "application/x-www-form-urlencoded",
            format!("name={}", many.join(",")),
        ),
        ("POST", "Patient".into(), FHIR, deep(100_000)),
        (
            "POST",
            "Patient".into(),
            FHIR,
            "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\u{0}\u{202e}\u{fffd}\"}]}"
                .into(),
        ),
        (
            "GET",
            "Patient?name=%C3%28%FF%FE%ED%A0%80".into(),
            "",
            String::new(),
        ),
        (
            "GET",
            "AuditEvent?date=a%C3%A92024".into(),
            "",
            String::new(),
        ),
        (
            "GET",
            format!("Patient/{binh}/_history/1"),
            "",
            String::new(),
        ),
        (
            "GET",
            "Patient?identifier=a%7Cb%2Cc%7Cd%5C%2C".into(),
            "",
            String::new(),
        ),
        (
            "POST",
            String::new(),
            FHIR,
            json!({"resourceType": "Bundle", "type": "transaction", "entry": creates}).to_string(),
        ),
        (
            "POST",
            String::new(),
            FHIR,
            format!(
                "{{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{}]}}",
                "{},".repeat(5000).trim_end_matches(',')
            ),
        ),
    ];

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let attacker = attacker.clone();
        let attacks = attacks.clone();
        let stop = stop.clone();
        let base = app.base.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = w;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (method, path, ct, body) = &attacks[i % attacks.len()];
                i += 1;
                let url = if path.is_empty() {
                    base.clone()
                } else {
                    format!("{base}/{path}")
                };
                let mut req = if *method == "GET" {
                    attacker.get(url)
                } else {
                    attacker.post(url).body(body.clone())
                };
                if !ct.is_empty() {
                    req = req.header("content-type", *ct);
                }
                let status = match req.send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => panic!("{method} {path}: the connection failed: {e}"),
                };
                seen.push((format!("{method} {}", &path[..path.len().min(60)]), status));
            }
            seen
        }));
    }
    let mut reads = 0;
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        let r = clinician
            .get(app.url(&format!("Patient/{binh}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the clinician's read under attack");
        reads += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    assert!(reads > 10, "the clinician read {reads} times in 4 s");
    let failures: Vec<&(String, u16)> = seen
        .iter()
        .filter(|(_, s)| !(200..500).contains(s))
        .collect();
    assert!(
        failures.is_empty(),
        "server errors under attack: {failures:?}"
    );
    // Nothing the attacker sent wrote anything, or showed them Bình.
    assert!(
        seen.iter()
            .filter(|(what, _)| what.contains("_history"))
            .all(|(_, s)| *s == 404)
    );
    assert_eq!(
        app.search_ids(&format!("Observation?subject=Patient/{binh}"))
            .await
            .len(),
        0
    );
    app.stop().await;
}
