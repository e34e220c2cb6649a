//! What the people who run the system rely on: backups that restore exactly (audit chain and
//! signatures included), draining on SIGTERM, metrics a Prometheus parser reads, and an
//! Ingress that is the ownership table's.

use crate::common::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

hospital_test_kit::on_both_backends!(
    a_restore_drill_brings_back_the_backup_exactly,
    a_rolled_back_release_starts_on_a_schema_a_newer_one_migrated,
);

/// Rolling back is running the previous release on the newer schema: it must start (its
/// migrations are a prefix of the newer release's) and serve.
async fn a_rolled_back_release_starts_on_a_schema_a_newer_one_migrated(b: Backend) {
    let mut app = spawn_app(b).await;
    let id = app.create(patient_an("051085000903")).await;
    // What a newer release leaves behind: a migration this one does not know.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', TRUE, $1, 0)",
    )
    .bind(vec![0u8])
    .execute(app.store.pool())
    .await
    .unwrap_or_else(|_| panic!("could not record a newer migration"));
    restart_app(&mut app, hospital_core::Deployment::all(), |_| {}).await;
    assert_eq!(app.get_json(&format!("Patient/{id}")).await.0, 200);
}

async fn status_of(app: &TestApp, path: &str) -> (u16, Value) {
    app.get_json(path).await
}

/// Backs up while writes continue, changes the data, restores, and compares: what the backup
/// held is back exactly (versions, a signed entry that still verifies, an audit chain that
/// still verifies and goes on), what came after it is gone, and a write that raced the
/// backup is there whole or not at all.
async fn a_restore_drill_brings_back_the_backup_exactly(b: Backend) {
    // A signed Observation (the signatures' ward: a doctor, a patient, a reading).
    let mut w = crate::signatures::ward(b).await;
    let url = w.app.database_url().to_owned();
    crate::signatures::sign(&w).await;
    assert!(crate::signatures::verify(&w).await.0);
    let mut before = Vec::new();
    for i in 0..20 {
        before.push(
            w.app
                .create(json!({"resourceType": "Patient",
                "identifier": [{"system": "urn:test:drill", "value": format!("B{i}")}]}))
                .await,
        );
    }

    // Writes go on while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let raced = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (http, base, stop, raced) = (
            w.app.http.clone(),
            w.app.url("Patient"),
            stop.clone(),
            raced.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = http
                    .post(&base)
                    .header("content-type", FHIR)
                    .body(
                        json!({"resourceType": "Patient",
                        "identifier": [{"system": "urn:test:drill", "value": format!("W{i}")}]})
                        .to_string(),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let v: Value = r.json().await.unwrap();
                raced
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_owned());
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tmp = hospital_test_kit::tempdir::TempDir::new();
    let file = tmp.0.join("hospital.backup");
    let file_s = file.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking({
        let (file_s, url) = (file_s.clone(), url.clone());
        move || hospital_cli(&["backup", &file_s], &url)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("backup written"), "{}", said(&out));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let raced = raced.lock().unwrap().clone();
    assert!(raced.len() > 2, "writes went on around the backup");
    // A backup never overwrites.
    let again = hospital_cli(&["backup", &file_s], &url);
    assert!(!again.status.success() && said(&again).contains("exists"));

    // After it: a patient changed, more registered.
    let (_, mut first) = status_of(&w.app, &format!("Patient/{}", before[0])).await;
    first["active"] = json!(false);
    let (s, _, _) = w.app.put(&format!("Patient/{}", before[0]), &first).await;
    assert_eq!(s, 200);
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(
            w.app
                .create(json!({"resourceType": "Patient",
                "identifier": [{"system": "urn:test:drill", "value": format!("A{i}")}]}))
                .await,
        );
    }

    // Restore, with the services stopped, and start again.
    let restored = Arc::new(Mutex::new(String::new()));
    let keep = restored.clone();
    restart_app(&mut w.app, hospital_core::Deployment::all(), move |_| {
        let out = hospital_cli(&["restore", &file_s], &url);
        assert!(out.status.success(), "{}", said(&out));
        *keep.lock().unwrap() = said(&out);
    })
    .await;
    assert!(
        restored.lock().unwrap().contains("audit trail intact"),
        "{}",
        restored.lock().unwrap()
    );

    // What the backup held is back, as it was.
    for id in &before {
        let (s, p) = status_of(&w.app, &format!("Patient/{id}")).await;
        assert_eq!(
            (s, p["meta"]["versionId"].as_str()),
            (200, Some("1")),
            "{p}"
        );
    }
    let (_, history) = status_of(&w.app, &format!("Patient/{}/_history", before[0])).await;
    let versions = |h: &Value| h["entry"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(
        versions(&history),
        1,
        "the change after the backup is gone: {history}"
    );
    for id in &after {
        assert_eq!(status_of(&w.app, &format!("Patient/{id}")).await.0, 404);
    }
    // A write that raced the backup is there with its history, or not at all.
    let mut kept = 0;
    for id in &raced {
        let (s, _) = status_of(&w.app, &format!("Patient/{id}")).await;
        let (_, h) = status_of(&w.app, &format!("Patient/{id}/_history")).await;
        match s {
            200 => {
                kept += 1;
                assert_eq!(versions(&h), 1, "{id}: {h}");
            }
            404 => assert_eq!(versions(&h), 0, "{id}: history without the resource: {h}"),
            other => panic!("{id}: {other}"),
        }
    }
    assert!(
        kept < raced.len(),
        "the writes after the snapshot are not in it"
    );
    assert!(
        crate::signatures::verify(&w).await.0,
        "the signature verifies after the restore"
    );
    // The restored trail goes on: new writes chain onto it and the whole verifies.
    w.app.create(json!({"resourceType": "Patient"})).await;
    w.app.store.audit_seal().await.unwrap();
    let report = w.app.store.audit_verify().await.unwrap();
    assert!(report.first_break.is_none(), "{:?}", report.first_break);
    let out = hospital_cli(&["audit", "verify"], w.app.database_url());
    assert!(out.status.success(), "{}", said(&out));
}

#[tokio::test]
async fn a_restore_refuses_what_is_not_a_backup_and_changes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = app.database_url().to_owned();
    let id = app.create(patient_an("051085000902")).await;
    let tmp = hospital_test_kit::tempdir::TempDir::new();
    let junk = tmp.0.join("junk.backup");
    std::fs::write(&junk, b"this is not a database, just text").unwrap();
    let out = hospital_cli(&["restore", junk.to_str().unwrap()], &url);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("not a SQLite database") || said(&out).contains("damaged"),
        "{}",
        said(&out)
    );
    let missing = hospital_cli(&["restore", "/nonexistent/backup"], &url);
    assert!(!missing.status.success() && said(&missing).contains("no backup at"));
    assert_eq!(app.get_json(&format!("Patient/{id}")).await.0, 200);
}

/// On SIGTERM the process stops saying it is ready, keeps serving for the drain time (so a
/// load balancer moves away without failing a request), then stops.
#[tokio::test]
async fn sigterm_turns_readiness_off_while_requests_are_still_served() {
    let tmp = hospital_test_kit::tempdir::TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hospital"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/hospital.db", tmp.0.display()),
        )
        .env("HOSPITAL_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("HOSPITAL_RECORDS_GRPC_ADDR", "127.0.0.1:0")
        .env("HOSPITAL_TELEMEDICINE_GRPC_ADDR", "127.0.0.1:0")
        .env("HOSPITAL_BILLING_GRPC_ADDR", "127.0.0.1:0")
        .env("HOSPITAL_METRICS_ADDR", "127.0.0.1:0")
        .env("HOSPITAL_JWT_SECRET", hospital::config::TEST_SECRET)
        .env("HOSPITAL_DRAIN_SECS", "3")
        .env("HOSPITAL_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let site = format!("http://127.0.0.1:{port}");
    let get = |path: &str| {
        let url = format!("{site}{path}");
        async move { reqwest::get(url).await.map(|r| r.status().as_u16()).ok() }
    };
    for _ in 0..300 {
        if get("/readyz").await == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/readyz").await, Some(200));
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get("/readyz").await, Some(503), "not ready while draining");
    assert_eq!(get("/healthz").await, Some(200), "alive while draining");
    assert_eq!(
        get("/fhir/metadata").await,
        Some(200),
        "requests still served while draining"
    );
    let mut exited = None;
    for _ in 0..150 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = exited.expect("the process stops after draining");
    assert!(exited.success(), "{exited}");
    assert_eq!(get("/fhir/metadata").await, None, "it no longer listens");
}

/// The metrics, read by the Prometheus project's own Python parser (`prometheus_client`):
/// requests by route and status with latency histograms, gRPC calls, the pool, audit group
/// sizes, and the domain counters, after the end-to-end story and a forged webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_prometheus_text_with_every_counter_an_operator_watches() {
    let app = spawn_app(Backend::Sqlite).await;
    crate::story::story(&app, &|url, _| url.to_owned()).await;
    let (body, _) = crate::billing::casso(1, 10_000, "forged", "000");
    let r = app
        .anonymous
        .post(format!(
            "{}/webhooks/casso",
            app.base.trim_end_matches("/fhir")
        ))
        .header("content-type", "application/json")
        .header("x-casso-signature", "t=1,v1=00")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let addr = app.running.as_ref().unwrap().metrics_addr.expect("served");
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    // No authentication on its own port, and nothing of a patient in it.
    assert!(!text.contains("Nguyễn") && !text.contains("051085"));
    let python = std::env::var("HOSPITAL_PYTHON").unwrap_or_else(|_| {
        panic!("HOSPITAL_PYTHON must name a Python with prometheus-client (.ci/run installs it)")
    });
    let mut parser = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, json\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             out = {}\n\
             for f in text_string_to_metric_families(sys.stdin.read()):\n\
             \x20   for s in f.samples:\n\
             \x20       out.setdefault(f.name + '|' + f.type, []).append([s.name, s.labels, s.value])\n\
             print(json.dumps(out))\n",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    {
        use std::io::Write;
        parser
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = parser.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    let samples = |family: &str| -> Vec<Value> {
        families
            .get(family)
            .unwrap_or_else(|| panic!("no {family}: {:?}", families.keys().collect::<Vec<_>>()))
            .as_array()
            .unwrap()
            .clone()
    };
    let total = |family: &str, name: &str, label: Option<(&str, &str)>| -> f64 {
        samples(family)
            .iter()
            .filter(|s| s[0] == name)
            .filter(|s| label.is_none_or(|(k, v)| s[1][k] == v))
            .map(|s| s[2].as_f64().unwrap())
            .sum()
    };
    // Requests by route and status, with latencies.
    assert!(samples("hospital_http_requests|counter").iter().any(|s| {
        s[1]["route"] == "/fhir/{rtype}/{id}" && s[1]["status"] == "200" && s[1]["service"] == "all"
    }));
    assert!(
        total(
            "hospital_http_request_duration_seconds|histogram",
            "hospital_http_request_duration_seconds_count",
            None
        ) > 10.0
    );
    assert!(
        total(
            "hospital_grpc_requests|counter",
            "hospital_grpc_requests_total",
            Some(("method", "/hospital.billing.v1.Billing/CreateInvoice"))
        ) >= 1.0
    );
    assert!(
        total(
            "hospital_db_pool_max_connections|gauge",
            "hospital_db_pool_max_connections",
            None
        ) >= 1.0
    );
    assert!(
        total(
            "hospital_audit_group_size|histogram",
            "hospital_audit_group_size_count",
            None
        ) >= 1.0
    );
    // SQLite: the story's creates went to the writer as lone writes.
    assert!(
        total(
            "hospital_write_group_size|histogram",
            "hospital_write_group_size_count",
            None
        ) >= 1.0
    );
    // The domain's counters.
    let c = |family: &str, name: &str, label: Option<(&str, &str)>| total(family, name, label);
    assert!(c("hospital_bookings|counter", "hospital_bookings_total", None) >= 1.0);
    assert!(
        c(
            "hospital_invoices_issued|counter",
            "hospital_invoices_issued_total",
            None
        ) >= 2.0,
        "the fee's invoice and the lab invoice"
    );
    assert!(
        c(
            "hospital_payments|counter",
            "hospital_payments_total",
            Some(("outcome", "matched"))
        ) >= 2.0
    );
    assert_eq!(
        c(
            "hospital_webhook_signature_failures|counter",
            "hospital_webhook_signature_failures_total",
            Some(("provider", "casso"))
        ),
        1.0
    );
    assert!(
        c(
            "hospital_signalling_sessions|counter",
            "hospital_signalling_sessions_total",
            None
        ) >= 2.0,
        "the patient's and the doctor's connections"
    );
    assert_eq!(
        c("hospital_ready|gauge", "hospital_ready", None),
        1.0,
        "ready"
    );
    assert!(
        c(
            "process_resident_memory_bytes|gauge",
            "process_resident_memory_bytes",
            None
        ) > 1e6
    );
}

/// Whatever methods and gRPC paths clients send, the metrics' labels stay a bounded set:
/// unknown HTTP methods count as `other`, gRPC paths no service answers as `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_stay_bounded_whatever_clients_send() {
    use hospital_proto::records::v1 as pb;
    let app = spawn_app(Backend::Sqlite).await;
    let running = app.running.as_ref().unwrap();
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let r = app
            .anonymous
            .request(method, app.url("metadata"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let grpc = running.grpc_addrs[&hospital_core::ServiceName::Records];
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..20 {
        let mut client = tonic::client::Grpc::new(channel.clone());
        client.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_maybe_shared(format!(
            "/hospital.records.v1.Records/Nope{i}"
        ))
        .unwrap();
        let mut req = tonic::Request::new(pb::GetPatientRequest::default());
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", app.token).parse().unwrap(),
        );
        let answer: Result<tonic::Response<pb::PatientRecord>, _> = client
            .unary(
                req,
                path,
                tonic_prost::ProstCodec::<pb::GetPatientRequest, pb::PatientRecord>::default(),
            )
            .await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::Unimplemented);
    }
    let addr = running.metrics_addr.unwrap();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("BREW") && !text.contains("Nope"), "{text}");
    assert!(
        text.contains("method=\"other\",route=\"/fhir/metadata\""),
        "{text}"
    );
    assert!(
        text.contains("hospital_grpc_requests_total{service=\"all\",method=\"unknown\",code=\"Unimplemented\"} 20"),
        "{text}"
    );
}

/// The Ingress in `k8s/base` is the ownership table's: regenerated, it is the same file.
#[test]
fn the_ingress_is_generated_from_the_ownership_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_hospital"))
        .args(["routes", "--ingress"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let kept = include_str!("../../k8s/base/ingress.yaml");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        kept,
        "k8s/base/ingress.yaml is stale: run `hospital routes --ingress > k8s/base/ingress.yaml`"
    );
    // Every type a service other than records writes is routed to it.
    for (t, owner) in hospital_core::ownership::OWNERSHIP {
        if *owner != hospital_core::ServiceName::Records {
            assert!(
                kept.contains(&format!(
                    "- path: /fhir/{t}\n            pathType: Prefix\n            backend:\n              service:\n                name: {owner}\n"
                )),
                "{t} routes to {owner}"
            );
        }
    }
}
