//! The audit trail: every access recorded, readable as AuditEvent by admins only, and
//! tampering detected by `hospital audit verify`.

use crate::common::*;
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    every_read_search_and_write_is_recorded_and_searchable_as_audit_event,
    tampering_with_one_audit_row_is_detected_and_named,
    a_request_whose_audit_record_cannot_be_written_fails,
    an_audit_row_deleted_before_it_was_sealed_is_detected,
);

async fn an_audit_row_deleted_before_it_was_sealed_is_detected(b: Backend) {
    let db = fresh_database(b).await;
    let store = hospital_store::Store::open(&db.url, Default::default())
        .await
        .unwrap();
    let mut tx = store
        .begin(&hospital_store::WriteKey::PLATFORM)
        .await
        .unwrap();
    for actor in ["clinician:a", "clinician:b", "clinician:c"] {
        let record = hospital_store::audit::AuditRecord {
            at: 1,
            actor: actor.into(),
            action: "read".into(),
            outcome: 200,
            ..Default::default()
        };
        tx.audit(&record).await.unwrap();
    }
    tx.commit().await.unwrap();
    // No sealer has run yet: remove the middle row around the append-only trigger.
    behind_the_triggers(b, store.pool(), "DELETE FROM audit_log WHERE seq = 2").await;
    store.audit_seal().await.unwrap();
    let report = store.audit_verify().await.unwrap();
    let why = report.first_break.expect("the deletion is detected");
    assert!(why.contains("seq 2 "), "{why}");
    store.close().await;
}

async fn every_read_search_and_write_is_recorded_and_searchable_as_audit_event(b: Backend) {
    let app = spawn_app(b).await;
    let doctor = app
        .create(
            json!({"resourceType": "Practitioner", "name": [{"family": "Trần", "given": ["Mai"]}]}),
        )
        .await;
    let clinician = app.client_for(Role::Clinician, None, Some(&doctor));
    let r = clinician
        .post(app.url("Patient"))
        .header("content-type", FHIR)
        .header("user-agent", "his-desktop/2.1")
        .body(patient_an("051085000401").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let pid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        clinician
            .get(app.url(&format!("Patient/{pid}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        clinician
            .get(app.url("Patient?name=nguyen"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        clinician
            .get(app.url("Patient/nobody"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let admin = app.client_for(Role::Admin, None, None);
    let trail: Value = admin
        .get(app.url(&format!("AuditEvent?patient={pid}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = trail["entry"].as_array().expect("events");
    let subtypes: Vec<&str> = events
        .iter()
        .map(|e| e["resource"]["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        subtypes,
        vec!["search-type", "read", "create"],
        "newest first: {trail}"
    );
    let create = &events[2]["resource"];
    assert_eq!(create["action"], "C");
    assert_eq!(create["outcome"], "0");
    assert_eq!(
        create["agent"][0]["who"]["identifier"]["value"],
        "clinician:clinician"
    );
    assert_eq!(create["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(create["source"]["site"], "his-desktop/2.1");
    assert!(
        create["entity"]
            .to_string()
            .contains(&format!("Patient/{pid}"))
    );

    // Search by agent, action and date; the failed read is there too.
    let reads: Value = admin
        .get(app.url("AuditEvent?agent=clinician&action=R&date=ge2026-01-01"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = reads["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["4", "0", "0"], "{reads}");
    let future: Value = admin
        .get(app.url("AuditEvent?date=ge2999-01-01"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(future["entry"].as_array().unwrap().is_empty());
    // Nobody but admins reads the trail.
    for role in [Role::Clinician, Role::Cashier, Role::Service] {
        let s = app
            .client_for(role, None, Some(&doctor))
            .get(app.url("AuditEvent"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 403, "{role:?}");
    }
    let s = app
        .client_for(Role::Patient, Some(&pid), None)
        .get(app.url("AuditEvent"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 403);
    app.stop().await;
}

/// Runs `sql` on the audit trail as someone with database access would: the append-only
/// triggers have to go first.
async fn behind_the_triggers(b: Backend, pool: &sqlx::AnyPool, sql: &str) {
    let disable = match b {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete",
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    };
    for s in [disable, sql] {
        sqlx::query(s).execute(pool).await.unwrap();
    }
}

/// Runs `hospital audit verify` against the test's database.
fn verify_cli(url: &str) -> (i32, String) {
    let out = hospital_cli(&["audit", "verify"], url);
    (out.status.code().unwrap_or(-1), said(&out))
}

async fn tampering_with_one_audit_row_is_detected_and_named(b: Backend) {
    let db = fresh_database(b).await;
    let url = db.url.clone();
    let cfg = hospital::Config::for_tests(&url);
    let running = hospital::start(&cfg, hospital::Service::All).await.unwrap();
    let base = format!("http://{}/fhir", running.http_addr);
    let http = client_with(&mint(Role::Service, "tester", None, None, None));
    for i in 0..5 {
        let r = http
            .post(format!("{base}/Organization"))
            .header("content-type", FHIR)
            .body(json!({"resourceType": "Organization", "name": format!("Khoa {i}")}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(
            http.get(format!("{base}/Organization"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let store = running.store.clone();
    running.shutdown().await.unwrap();

    let (code, out) = verify_cli(&url);
    assert_eq!(code, 0, "an untouched trail verifies: {out}");
    assert!(out.contains("10 records chained"), "{out}");

    // Someone with database access rewrites history: the append-only trigger must be
    // removed first, and the chain still tells.
    let victim = 4;
    let raw = hospital_store::Store::open(&url, Default::default())
        .await
        .unwrap();
    behind_the_triggers(
        b,
        raw.pool(),
        &format!("UPDATE audit_log SET actor = 'service:someone-else' WHERE seq = {victim}"),
    )
    .await;
    raw.close().await;
    drop(store);
    let (code, out) = verify_cli(&url);
    assert_ne!(code, 0, "a tampered trail fails: {out}");
    assert!(
        out.contains(&format!("seq {victim} ")),
        "names the row: {out}"
    );
}

async fn a_request_whose_audit_record_cannot_be_written_fails(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000402")).await;
    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_away")
        .execute(app.store.pool())
        .await
        .unwrap();
    let r = app
        .http
        .get(app.url(&format!("Patient/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "no unaudited access");
    let before = app.versions().await;
    let (s, _, _) = app
        .post(
            "Organization",
            &json!({"resourceType": "Organization", "name": "X"}),
        )
        .await;
    assert_eq!(s, 500);
    assert_eq!(
        app.versions().await,
        before,
        "the write rolled back with its audit record"
    );
    sqlx::query("ALTER TABLE audit_log_away RENAME TO audit_log")
        .execute(app.store.pool())
        .await
        .unwrap();
    let r = app
        .http
        .get(app.url(&format!("Patient/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_date_cut_inside_a_character_is_a_400_not_a_dropped_connection() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.client_for(Role::Admin, None, None);
    for q in ["date=a%C3%A92024", "date=%C3%A92024", "date=%C3%A9"] {
        let r = admin
            .get(app.url(&format!("AuditEvent?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let oo: Value = r.json().await.unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    app.stop().await;
}
