//! The platform under every service: one authentication for REST and gRPC, the fixed
//! ownership table and per-service processes, the one write path of every door, the lock on
//! what a condition means, stable error codes.

use crate::access_control::{hs256, now};
use crate::common::*;
use base64::Engine as _;
use hospital_core::auth::Role;
use hospital_core::{Deployment, ServiceName};
use hospital_proto::records::v1 as pb;
use serde_json::{Value, json};
use tonic::Code;

hospital_test_kit::on_both_backends!(
    rest_and_grpc_give_the_same_verdict_on_every_credential,
    the_records_service_alone_reads_everything_and_names_the_owner_of_what_it_does_not_write,
    a_path_with_a_trailing_slash_is_the_same_route,
    a_conditional_put_works_in_a_batch_as_in_a_transaction,
    a_grpc_read_is_audited_as_a_read,
    a_grpc_open_and_a_rest_conditional_create_on_one_key_make_one_encounter,
    an_idempotency_key_is_bound_to_its_patient,
    a_transaction_that_writes_one_resource_twice_is_refused_naming_both_entries,
    two_spellings_of_one_condition_racing_make_one_patient,
    conditions_that_merely_share_a_value_are_not_one_condition,
    transactions_taking_conditions_in_opposite_orders_never_fail_the_server,
);

/// The client address each call claims through the (trusted) proxy: each case of the table
/// is its own client, so one case's failures never throttle the next.
async fn rest_status(
    app: &TestApp,
    client: &str,
    authorization: Option<&str>,
    on_behalf_of: Option<&str>,
) -> u16 {
    let mut req = app
        .anonymous
        .get(app.url("Patient?_count=1"))
        .header("x-forwarded-for", client);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some(o) = on_behalf_of {
        req = req.header("x-on-behalf-of", o);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn grpc_code(
    app: &TestApp,
    client: &str,
    patient: &str,
    authorization: Option<&str>,
    on_behalf_of: Option<&str>,
) -> Code {
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
        .insert("x-forwarded-for", client.parse().unwrap());
    if let Some(a) = authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    if let Some(o) = on_behalf_of {
        req.metadata_mut()
            .insert("x-on-behalf-of", o.parse().unwrap());
    }
    match c.get_patient(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn verdict_of_rest(status: u16) -> &'static str {
    match status {
        200 => "ok",
        401 => "unauthenticated",
        403 => "forbidden",
        429 => "throttled",
        _ => "other",
    }
}

fn verdict_of_grpc(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "forbidden",
        Code::ResourceExhausted => "throttled",
        _ => "other",
    }
}

fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

async fn rest_and_grpc_give_the_same_verdict_on_every_credential(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]
    })
    .await;
    let an = app.create(patient_an("051085000601")).await;
    let secret = hospital::config::TEST_SECRET;
    let claims = |iss: &str, aud: &str, exp: u64| json!({"sub": "bs-lan", "role": "clinician", "iss": iss, "aud": aud, "exp": exp, "iat": now()});
    let valid = mint(Role::Clinician, "bs-lan", None, None, None);
    let patient_nobody = mint(Role::Patient, "ghost", Some("no-such-patient"), None, None);
    let patient_an = mint(Role::Patient, "an", Some(&an), None, None);
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(&str, Option<String>, Option<String>, &str)> = vec![
        ("missing", None, None, "unauthenticated"),
        (
            "malformed",
            Some("Bearer not-a-jwt".into()),
            None,
            "unauthenticated",
        ),
        (
            "not a bearer scheme",
            Some(format!("Basic {valid}")),
            None,
            "unauthenticated",
        ),
        (
            "expired",
            Some(bearer(&hs256(
                secret,
                claims("hospital-local", "hospital", now() - 3600),
            ))),
            None,
            "unauthenticated",
        ),
        (
            "wrong issuer",
            Some(bearer(&hs256(
                secret,
                claims("someone-else", "hospital", now() + 600),
            ))),
            None,
            "unauthenticated",
        ),
        (
            "wrong audience",
            Some(bearer(&hs256(
                secret,
                claims("hospital-local", "another-app", now() + 600),
            ))),
            None,
            "unauthenticated",
        ),
        (
            "alg none",
            Some(bearer(&unsigned(&claims(
                "hospital-local",
                "hospital",
                now() + 600,
            )))),
            None,
            "unauthenticated",
        ),
        (
            "a patient token naming no patient",
            Some(bearer(&patient_nobody)),
            None,
            "unauthenticated",
        ),
        (
            "on-behalf-of from a non-service token",
            Some(bearer(&valid)),
            Some(patient_an.clone()),
            "forbidden",
        ),
        (
            "valid, scheme in lower case",
            Some(format!("bearer {valid}")),
            None,
            "ok",
        ),
        ("valid", Some(bearer(&valid)), None, "ok"),
    ];
    for (i, (why, auth, obo, want)) in cases.iter().enumerate() {
        let client = format!("203.0.113.{}", i + 1);
        let rest = rest_status(&app, &client, auth.as_deref(), obo.as_deref()).await;
        let grpc = grpc_code(&app, &client, &an, auth.as_deref(), obo.as_deref()).await;
        assert_eq!(
            (verdict_of_rest(rest), verdict_of_grpc(grpc)),
            (*want, *want),
            "{why}"
        );
    }
    // The throttle counts one client's failures from both doors and refuses them past ten,
    // on either door; another client is not affected, and a valid token passes everywhere.
    let noisy = "198.51.100.7";
    for _ in 0..6 {
        rest_status(&app, noisy, Some("Bearer forged"), None).await;
        grpc_code(&app, noisy, &an, Some("Bearer forged"), None).await;
    }
    let forged = Some("Bearer forged");
    assert_eq!(
        verdict_of_rest(rest_status(&app, noisy, forged, None).await),
        "throttled"
    );
    assert_eq!(
        verdict_of_grpc(grpc_code(&app, noisy, &an, forged, None).await),
        "throttled"
    );
    let quiet = "198.51.100.8";
    assert_eq!(
        verdict_of_rest(rest_status(&app, quiet, forged, None).await),
        "unauthenticated"
    );
    let good = bearer(&valid);
    assert_eq!(
        verdict_of_rest(rest_status(&app, noisy, Some(&good), None).await),
        "ok"
    );
    assert_eq!(
        verdict_of_grpc(grpc_code(&app, noisy, &an, Some(&good), None).await),
        "ok"
    );
    // Every refusal is in the trail, naming what it addressed.
    let trail = app.audit_events("_count=200").await;
    let refusals: Vec<&Value> = trail
        .iter()
        .filter(|r| r["subtype"][0]["code"] == "authenticate")
        .collect();
    assert!(refusals.len() >= 2 * 9, "{}", refusals.len());
    assert!(
        refusals
            .iter()
            .any(|r| r["entity"][0]["what"]["reference"]
                == "/hospital.records.v1.Records/GetPatient"),
        "a gRPC refusal names its method"
    );
    app.stop().await;
}

async fn the_records_service_alone_reads_everything_and_names_the_owner_of_what_it_does_not_write(
    b: Backend,
) {
    let app = spawn(
        &hospital::registrations(),
        Deployment::only(ServiceName::Records),
        b,
        |_| {},
    )
    .await;
    let an = app.create(patient_an("051085000602")).await;
    for (rtype, body, owner) in [
        (
            "Appointment",
            json!({"resourceType": "Appointment", "status": "booked",
                "participant": [{"actor": {"reference": format!("Patient/{an}")}, "status": "accepted"}]}),
            "telemedicine",
        ),
        (
            "Invoice",
            json!({"resourceType": "Invoice", "status": "draft"}),
            "billing",
        ),
    ] {
        let (s, _, oo) = app.post(rtype, &body).await;
        assert_eq!(s, 405, "{rtype}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
        let why = oo["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(why.contains(owner), "{why}");
        assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "OW_01");
        let (s, _) = app.get_json(&format!("{rtype}?_count=1")).await;
        assert_eq!(s, 200, "records reads {rtype}");
    }
    // A Bundle may still carry any type: each entry runs its owner's rules here.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Appointment", "status": "proposed",
            "participant": [{"actor": {"display": "Bác sĩ trực"}, "status": "needs-action"}]},
         "request": {"method": "POST", "url": "Appointment"}}
    ]});
    let (s, _, out) = app.post("", &bundle).await;
    assert_eq!(s, 200, "{out}");
    let (_, cs) = app.get_json("metadata").await;
    let writable: Vec<&str> = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["interaction"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["code"] == "create")
        })
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> =
        hospital_core::ownership::owned_by(ServiceName::Records).collect();
    expected.sort_unstable();
    let mut got = writable.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    app.stop().await;
}

async fn a_path_with_a_trailing_slash_is_the_same_route(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000603")).await;
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{id}")}}
    ]});
    let r = app
        .http
        .post(format!("{}/", app.base))
        .header("content-type", FHIR)
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "POST /fhir/");
    for path in [
        format!("Patient/{id}/"),
        "Patient/".into(),
        "metadata/".into(),
    ] {
        let r = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    app.stop().await;
}

async fn a_conditional_put_works_in_a_batch_as_in_a_transaction(b: Backend) {
    let app = spawn_app(b).await;
    for (kind, nid) in [("batch", "051085000604"), ("transaction", "051085000605")] {
        let cond = format!("Patient?identifier={NATIONAL_ID}|{nid}");
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": patient_an(nid), "request": {"method": "PUT", "url": cond}}
        ]});
        let (s, _, out) = app.post("", &bundle).await;
        assert_eq!(s, 200, "{kind}: {out}");
        let status = out["entry"][0]["response"]["status"].as_str().unwrap();
        assert!(status.starts_with("201"), "{kind}: {out}");
        // Again: the same Patient is updated, not a second one created.
        let (_, _, out) = app.post("", &bundle).await;
        let status = out["entry"][0]["response"]["status"].as_str().unwrap();
        assert!(status.starts_with("200"), "{kind}: {out}");
        let ids = app
            .search_ids(&format!("Patient?identifier={NATIONAL_ID}|{nid}"))
            .await;
        assert_eq!(ids.len(), 1, "{kind}");
    }
    app.stop().await;
}

async fn a_grpc_read_is_audited_as_a_read(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000606")).await;
    let auth = format!("Bearer {}", app.token);
    assert_eq!(
        grpc_code(&app, "127.0.0.1", &an, Some(&auth), None).await,
        Code::Ok
    );
    let names: Vec<String> = app
        .audit_events(&format!("action=R&patient={an}"))
        .await
        .iter()
        .map(|e| e["subtype"][0]["code"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.iter().any(|n| n == "GetPatient"), "{names:?}");
    app.stop().await;
}

async fn open_over_grpc(app: &TestApp, patient: &str, key: &str) -> Result<String, Code> {
    let channel = tonic::transport::Endpoint::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = pb::records_client::RecordsClient::new(channel);
    let mut req = tonic::Request::new(pb::OpenEncounterRequest {
        patient_id: patient.to_owned(),
        appointment_id: String::new(),
        encounter_class: pb::EncounterClass::Virtual as i32,
        practitioner_id: String::new(),
        idempotency_key: key.to_owned(),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token).parse().unwrap(),
    );
    c.open_encounter(req)
        .await
        .map(|r| r.into_inner().id)
        .map_err(|s| s.code())
}

async fn a_grpc_open_and_a_rest_conditional_create_on_one_key_make_one_encounter(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000607")).await;
    for round in 0..5 {
        let key = format!("visit-{round}");
        let encounter = json!({"resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
            "identifier": [{"system": "urn:hospital:idempotency-key", "value": key}],
            "subject": {"reference": format!("Patient/{an}")}});
        let cond = format!("identifier=urn:hospital:idempotency-key|{key}");
        let headers = [("if-none-exist", cond.as_str())];
        let rest = app.post_concurrently(3, "Encounter", &encounter, &headers);
        let grpc = async {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(open_over_grpc(&app, &an, &key).await);
            }
            out
        };
        let (rest, grpc) = tokio::join!(rest, grpc);
        assert!(rest.iter().all(|s| *s == 200 || *s == 201), "{rest:?}");
        assert!(grpc.iter().all(Result::is_ok), "{grpc:?}");
        let ids = app
            .search_ids(&format!(
                "Encounter?identifier=urn:hospital:idempotency-key|{key}"
            ))
            .await;
        assert_eq!(ids.len(), 1, "round {round}: one encounter per key");
    }
    app.stop().await;
}

async fn an_idempotency_key_is_bound_to_its_patient(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000608")).await;
    let binh = app.create(patient_an("051085000609")).await;
    let first = open_over_grpc(&app, &an, "shared-key").await.unwrap();
    assert_eq!(open_over_grpc(&app, &an, "shared-key").await, Ok(first));
    assert_eq!(
        open_over_grpc(&app, &binh, "shared-key").await,
        Err(Code::AlreadyExists),
        "another patient never gets An's encounter"
    );
    app.stop().await;
}

#[test]
fn every_error_code_is_in_the_catalogue_once() {
    let doc = include_str!("../../docs/errors.md");
    let mut seen = std::collections::HashSet::new();
    for c in hospital_core::codes::ALL {
        assert!(seen.insert(c.id), "{} is defined twice", c.id);
        assert!(
            doc.contains(&format!("| `{}` |", c.id)),
            "docs/errors.md lacks {}",
            c.id
        );
    }
}

#[test]
fn every_supported_type_has_an_owner() {
    for t in hospital_fhir_model_types() {
        assert!(
            hospital_core::ownership::owner_of(t).is_some(),
            "{t} has no owner in the ownership table"
        );
    }
}

fn hospital_fhir_model_types() -> &'static [&'static str] {
    hospital_fhir_model::SUPPORTED_TYPES
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_test_schema_is_dropped_when_the_test_ends() {
    let db = fresh_database(Backend::Postgres).await;
    let schema = db.url.rsplit("search_path%3D").next().unwrap().to_owned();
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let count = |pool: sqlx::PgPool, schema: String| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
        )
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(count(pool.clone(), schema.clone()).await, 1);
    drop(db);
    assert_eq!(count(pool.clone(), schema).await, 0);
    pool.close().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_secret_and_the_database_are_private_and_a_shared_secret_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("hospital-perm-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let mut cfg = hospital::Config::for_tests(&format!("sqlite://{}/hospital.db", data.display()));
    cfg.jwt_secret = None;
    cfg.secret_file = data.join("jwt-secret").display().to_string();
    let running = hospital::start(&cfg, hospital::Service::All).await.unwrap();
    running.shutdown().await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("jwt-secret")), 0o600, "the token secret");
    assert_eq!(mode(&data.join("hospital.db")), 0o600, "the database");
    // Someone loosened the secret: the server refuses to start, saying why.
    std::fs::set_permissions(
        data.join("jwt-secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = match hospital::start(&cfg, hospital::Service::All).await {
        Ok(_) => panic!("started with a world-readable secret"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("readable by other users") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(
        data.join("jwt-secret"),
        std::fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    let running = hospital::start(&cfg, hospital::Service::All).await.unwrap();
    running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hospital_token_names_its_real_subject() {
    let dir = std::env::temp_dir().join(format!("hospital-token-{}", uuid::Uuid::new_v4()));
    let token = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hospital"))
            .arg("token")
            .args(args)
            .env("HOSPITAL_JWT_SECRET", hospital::config::TEST_SECRET)
            .env("HOSPITAL_SECRET_FILE", dir.join("secret"))
            .output()
            .unwrap()
    };
    let sub = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t = String::from_utf8(out.stdout).unwrap();
        let payload = t.trim().split('.').nth(1).unwrap().to_owned();
        use base64::Engine as _;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["sub"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        sub(token(&["--role", "patient", "--patient", "nguyen-van-an"])),
        "nguyen-van-an"
    );
    assert_eq!(
        sub(token(&[
            "--role",
            "clinician",
            "--practitioner",
            "bs-le-van-hung"
        ])),
        "bs-le-van-hung"
    );
    assert_eq!(
        sub(token(&["--role", "admin", "--subject", "quantri"])),
        "quantri"
    );
    let bare = token(&["--role", "admin"]);
    assert!(!bare.status.success(), "a token for nobody in particular");
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--subject"));
}

async fn a_transaction_that_writes_one_resource_twice_is_refused_naming_both_entries(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000610")).await;
    let (_, current) = app.get_json(&format!("Patient/{an}")).await;
    let before = app.versions().await;
    let put = |id: &str| {
        let mut p = current.clone();
        p["id"] = json!(id);
        json!({"resource": p, "request": {"method": "PUT", "url": format!("Patient/{id}")}})
    };
    let delete = json!({"request": {"method": "DELETE", "url": format!("Patient/{an}")}});
    let cond = format!("Patient?identifier={NATIONAL_ID}|051085000611");
    let conditional =
        json!({"resource": patient_an("051085000611"), "request": {"method": "PUT", "url": cond}});
    let spelled_otherwise = json!({"resource": patient_an("051085000611"),
        "request": {"method": "PUT", "url": "Patient?identifier=051085000611"}});
    for (why, entries) in [
        ("PUT + PUT", vec![put(&an), put(&an)]),
        ("PUT + DELETE", vec![put(&an), delete.clone()]),
        (
            "two conditional PUTs of one new identifier",
            vec![conditional.clone(), spelled_otherwise],
        ),
    ] {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let (s, _, oo) = app.post("", &bundle).await;
        assert_eq!(s, 400, "{why}: {oo}");
        let msg = oo["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(
            msg.contains("Bundle.entry[0]") && msg.contains("Bundle.entry[1]"),
            "{why}: {msg}"
        );
        assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "IR_05");
    }
    assert_eq!(app.versions().await, before, "nothing was written");
    let (s, _) = app.get_json(&format!("Patient/{an}")).await;
    assert_eq!(s, 200, "the DELETE did not happen");
    app.stop().await;
}

/// Concurrent conditional PUTs and If-None-Exist creates with `identifier=system|V` and
/// `identifier=V` lock the same value, so they make one Patient (PostgreSQL made two).
async fn two_spellings_of_one_condition_racing_make_one_patient(b: Backend) {
    let app = spawn_app(b).await;
    for round in 0..3 {
        let value = format!("MRN-{round}");
        let body = json!({"resourceType": "Patient", "identifier": [{"system": "urn:probe:mrn", "value": value}],
            "name": [{"family": "Đỗ", "given": ["Văn", "Khoa"]}]});
        let mut tasks = Vec::new();
        for i in 0..20 {
            let condition = if i % 2 == 0 {
                format!("identifier=urn:probe:mrn|{value}")
            } else {
                format!("identifier={value}")
            };
            let req = if i % 4 < 2 {
                app.http
                    .put(app.url(&format!("Patient?{condition}")))
                    .header("content-type", FHIR)
                    .body(body.to_string())
            } else {
                app.http
                    .post(app.url("Patient"))
                    .header("content-type", FHIR)
                    .header("if-none-exist", condition)
                    .body(body.to_string())
            };
            tasks.push(tokio::spawn(async move {
                req.send().await.unwrap().status().as_u16()
            }));
        }
        for t in tasks {
            let s = t.await.unwrap();
            assert!(s == 200 || s == 201, "round {round}: {s}");
        }
        let ids = app.search_ids(&format!("Patient?identifier={value}")).await;
        assert_eq!(ids.len(), 1, "round {round}: one Patient");
    }
    app.stop().await;
}

/// Two conditional creates that share one parameter value but name different patients are
/// two conditions: the transaction writes both.
async fn conditions_that_merely_share_a_value_are_not_one_condition(b: Backend) {
    let app = spawn_app(b).await;
    let entry = |nid: &str| {
        json!({"resource": patient_an(nid), "request": {"method": "POST", "url": "Patient",
            "ifNoneExist": format!("identifier={NATIONAL_ID}|{nid}&gender=male")}})
    };
    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [entry("051085000612"), entry("051085000613")]});
    let (s, _, out) = app.post("", &bundle).await;
    assert_eq!(s, 200, "{out}");
    for nid in ["051085000612", "051085000613"] {
        let ids = app
            .search_ids(&format!("Patient?identifier={NATIONAL_ID}|{nid}"))
            .await;
        assert_eq!(ids.len(), 1, "{nid}");
    }
    app.stop().await;
}

/// Transactions whose conditional entries name the same two identifiers in opposite orders:
/// each takes all its conditions' locks at once in one global order, so they wait for each
/// other and never deadlock (on PostgreSQL, before, most of them died as deadlock victims with
/// a 500). Every one commits, and each identifier ends with exactly one Patient.
async fn transactions_taking_conditions_in_opposite_orders_never_fail_the_server(b: Backend) {
    let app = spawn_app(b).await;
    let put = |value: &str| {
        json!({"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:probe:mrn", "value": value}],
            "name": [{"family": "Lê", "given": [value]}]},
            "request": {"method": "PUT", "url": format!("Patient?identifier=urn:probe:mrn|{value}")}})
    };
    for round in 0..5 {
        let (a, b2) = (format!("X-{round}"), format!("Y-{round}"));
        let mut tasks = Vec::new();
        for i in 0..12 {
            let entries = if i % 2 == 0 {
                vec![put(&a), put(&b2)]
            } else {
                vec![put(&b2), put(&a)]
            };
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            let req = app
                .http
                .post(app.url(""))
                .header("content-type", FHIR)
                .body(bundle.to_string());
            tasks.push(tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or_default();
                (status, body)
            }));
        }
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert_eq!(status, 200, "round {round}: {body}");
        }
        for v in [&a, &b2] {
            let ids = app
                .search_ids(&format!("Patient?identifier=urn:probe:mrn|{v}"))
                .await;
            assert_eq!(ids.len(), 1, "round {round}: one Patient for {v}");
        }
    }
    app.stop().await;
}
