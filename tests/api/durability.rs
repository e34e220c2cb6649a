//! A crash loses nothing that was acknowledged: the server is killed with SIGKILL in the middle
//! of a create load, started again on the same store, and every create it had answered 201 to
//! is there, with its audit trail intact.
//!
//! SIGKILL ends the process but not the operating system, whose page cache survives: this
//! guards process crashes. A power loss is guarded by the commit waiting for the disk
//! (`synchronous = FULL` on SQLite, PostgreSQL's `fsync` and `synchronous_commit`), which a
//! test on one machine cannot cut.

use crate::common::*;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start(url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hospital"))
        .env("DATABASE_URL", url)
        .env("HOSPITAL_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("HOSPITAL_RECORDS_GRPC_ADDR", "127.0.0.1:0")
        .env("HOSPITAL_TELEMEDICINE_GRPC_ADDR", "127.0.0.1:0")
        .env("HOSPITAL_BILLING_GRPC_ADDR", "127.0.0.1:0")
        .env("HOSPITAL_JWT_SECRET", hospital::config::TEST_SECRET)
        .env("HOSPITAL_LOG", "error")
        .env("HOSPITAL_METRICS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the hospital binary")
}

async fn wait_ready(base: &str, child: &mut Child) {
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("{base}/metadata")).await
            && r.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not start");
}

async fn killed_mid_load_keeps_every_acknowledged_write(backend: Backend) {
    let db = fresh_database(backend).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let mut server = start(&db.url, port);
    wait_ready(&base, &mut server).await;
    let http = client_with(&mint(
        hospital_core::auth::Role::Service,
        "durability-test",
        None,
        None,
        None,
    ));

    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for lane in 0..16 {
        let (http, base, acknowledged) = (http.clone(), base.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let body = json!({
                    "resourceType": "Patient",
                    "name": [{"family": "Trần", "given": [format!("Lane{lane} No{n}")]}],
                    "gender": "female",
                    "birthDate": "1990-01-01"
                });
                let Ok(r) = http
                    .post(format!("{base}/Patient"))
                    .header("content-type", FHIR)
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 201 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let id = v["id"].as_str().expect("a created id").to_owned();
                acknowledged.lock().unwrap().push(id);
            }
        }));
    }
    // Kill once the load is well under way.
    for _ in 0..200 {
        if acknowledged.lock().unwrap().len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 300,
        "the load was under way when the server was killed: {}",
        acknowledged.len()
    );

    let mut server = start(&db.url, port);
    wait_ready(&base, &mut server).await;
    let mut missing = Vec::new();
    for ids in acknowledged.chunks(100) {
        let r = http
            .get(format!("{base}/Patient?_id={}&_count=100", ids.join(",")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let bundle: Value = r.json().await.unwrap();
        let found: Vec<&str> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str())
            .collect();
        missing.extend(
            ids.iter()
                .filter(|id| !found.contains(&id.as_str()))
                .cloned(),
        );
    }
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "of {} acknowledged creates, these are gone after the crash",
        acknowledged.len()
    );
    // Facility codes (MA_BN) come from a counter whose values SQLite reserves in blocks
    // before handing them out: after the crash, new patients get codes no patient has.
    let mut codes = std::collections::HashSet::new();
    let mut taken = 0;
    let mut next = Some(format!("{base}/Patient?_count=100"));
    while let Some(url) = next.take() {
        let bundle: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        for e in bundle["entry"].as_array().into_iter().flatten() {
            if let Some(code) = facility_code(&e["resource"]) {
                codes.insert(code);
                taken += 1;
            }
        }
        next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
    }
    assert!(taken >= acknowledged.len(), "{taken} codes read");
    assert_eq!(codes.len(), taken, "no two patients share a facility code");
    for n in 0..5 {
        let (s, v) = {
            let r = http
                .post(format!("{base}/Patient"))
                .header("content-type", FHIR)
                .json(&json!({"resourceType": "Patient", "name": [{"family": "Lê", "given": [format!("After{n}")]}]}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        };
        assert_eq!(s, 201, "{v}");
        let code = facility_code(&v).expect("a facility code");
        assert!(
            codes.insert(code.clone()),
            "{code} was given before the crash"
        );
    }

    let _ = Command::new("kill").arg(server.id().to_string()).status();
    server.wait().expect("stopped");

    // Every acknowledged create left its audit record (written in its own transaction).
    let store = hospital_store::Store::open(&db.url, Default::default())
        .await
        .unwrap();
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'create' AND outcome = 201",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    store.close().await;
    assert!(
        audited as usize >= acknowledged.len(),
        "{audited} create audit records for {} acknowledged creates",
        acknowledged.len()
    );

    let out = hospital_cli(&["audit", "verify"], &db.url);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("audit trail intact"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes arriving together commit together (SQLite's group commit shares one transaction
/// among them): a write refused in the middle of such a group takes nothing of the others
/// with it, and leaves nothing of its own.
async fn a_refused_write_among_concurrent_ones_takes_nothing_with_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app.versions().await;
    let mut requests = Vec::new();
    for n in 0..40 {
        // Half distinct patients, half claiming one personal ID (one of those can win).
        let nid = if n % 2 == 0 {
            format!("0510850002{:02}", n)
        } else {
            "051085000199".to_owned()
        };
        let req = app
            .http
            .post(app.url("Patient"))
            .header("content-type", FHIR)
            .body(patient_an(&nid).to_string());
        requests.push(tokio::spawn(async move {
            (nid, req.send().await.expect("request").status().as_u16())
        }));
    }
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap());
    }
    let created = statuses.iter().filter(|(_, s)| *s == 201).count();
    assert_eq!(created, 21, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|(nid, s)| *s == 201 || (nid == "051085000199" && *s == 409)),
        "{statuses:?}"
    );
    assert_eq!(app.versions().await, before + 21);
    for (nid, _) in statuses.iter().filter(|(_, s)| *s == 201) {
        let ids = app
            .search_ids(&format!("Patient?identifier={NATIONAL_ID}|{nid}"))
            .await;
        assert_eq!(ids.len(), 1, "{nid}");
    }
    app.stop().await;
}

hospital_test_kit::on_both_backends!(
    a_refused_write_among_concurrent_ones_takes_nothing_with_it,
    clients_that_hang_up_mid_write_never_fail_the_next_write,
);

/// Clients that hang up in the middle of their writes (a load tool stopping, phones losing
/// their signal) cancel those requests wherever they are — in a statement, releasing their
/// savepoint, waiting for the group's commit. The next write must not pay for it: seen once
/// as a 500 ("no such savepoint") after a `wrk` burst ended, when a request cancelled while
/// its savepoint was being released left the writer believing it was still open.
async fn clients_that_hang_up_mid_write_never_fail_the_next_write(backend: Backend) {
    let app = spawn_app(backend).await;
    for round in 0..15u64 {
        let burst: Vec<_> = (0..32u64)
            .map(|i| {
                let (base, token) = (app.url("Patient"), app.token.clone());
                tokio::spawn(async move {
                    // Gone after 1 to 12 ms: somewhere inside the write.
                    let impatient = reqwest::Client::builder()
                        .timeout(Duration::from_millis(1 + (round * 7 + i * 3) % 12))
                        .build()
                        .unwrap();
                    let _ = impatient
                        .post(base)
                        .bearer_auth(token)
                        .header("content-type", FHIR)
                        .body(json!({"resourceType": "Patient", "gender": "female"}).to_string())
                        .send()
                        .await;
                })
            })
            .collect();
        for b in burst {
            b.await.unwrap();
        }
        let r = app
            .http
            .post(app.url("Patient"))
            .header("content-type", FHIR)
            .body(json!({"resourceType": "Patient", "gender": "male"}).to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 201, "round {round}: {}", r.text().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_killed_mid_load_keeps_every_acknowledged_write() {
    killed_mid_load_keeps_every_acknowledged_write(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_killed_mid_load_keeps_every_acknowledged_write() {
    killed_mid_load_keeps_every_acknowledged_write(Backend::Postgres).await;
}

/// Two processes (here two stores) writing one SQLite file: a write transaction that only
/// read so far must not fail when the other writes in between — it holds the write lock from
/// its start, and the other waits for it (a deferred transaction would fail at its first
/// write with SQLITE_BUSY_SNAPSHOT, and with it every write in its group).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_began_with_a_read_is_not_failed_by_another_process_writing() {
    let db = fresh_database(Backend::Sqlite).await;
    let open = || hospital_store::Store::open(&db.url, Default::default());
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let key = &hospital_store::WriteKey::PLATFORM;
    let patient = |family: &str| json!({"resourceType": "Patient", "name": [{"family": family}]});

    let mut first = a.begin(key).await.unwrap();
    assert!(!first.exists("Patient", "nobody").await.unwrap());
    let other = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut tx = b.begin(key).await.unwrap();
            tx.create_with_id(key, "Patient", "from-b", patient("B"))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    first
        .create_with_id(key, "Patient", "from-a", patient("A"))
        .await
        .unwrap();
    first.commit().await.unwrap();
    other.await.unwrap();
    for id in ["from-a", "from-b"] {
        assert!(a.read("Patient", id).await.is_ok(), "{id}");
    }
    a.close().await;
    b.close().await;
}

/// PostgreSQL drops every connection of the store (a restarted server, a cut network): the
/// pool does not test a connection in steady use before each request (a round trip each), so
/// the request that meets a dead one fails (the database unavailable: 503) — and that failure
/// makes the pool test the others, so that at most one request fails and the store carries on
/// by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_dropping_every_connection_fails_at_most_one_request() {
    let db = fresh_database(Backend::Postgres).await;
    let name = format!("drop_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}&application_name={name}", db.url);
    let store = hospital_store::Store::open(&url, Default::default())
        .await
        .unwrap();
    let key = &hospital_store::WriteKey::PLATFORM;
    let mut tx = store.begin(key).await.unwrap();
    tx.create_with_id(key, "Patient", "p1", json!({"resourceType": "Patient"}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Four connections in the pool (four transactions open at once), all just used.
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut tx = store.begin(key).await.unwrap();
        assert!(tx.exists("Patient", "p1").await.unwrap());
        open.push(tx);
    }
    for tx in open {
        tx.rollback().await.unwrap();
    }

    let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) t",
    )
    .bind(&name)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(dropped >= 4, "the store held {dropped} connections");
    admin.close().await;

    let mut failed = 0;
    for _ in 0..20 {
        if let Err(e) = store.read("Patient", "p1").await {
            // Told as the database being unavailable (503), not as a fault of the request.
            assert!(e.is_connection_lost(), "{e}");
            failed += 1;
        }
    }
    assert!(
        failed <= 1,
        "{failed} of 20 reads failed after the connections were dropped"
    );
    assert!(store.read("Patient", "p1").await.is_ok());
    store.close().await;
}
