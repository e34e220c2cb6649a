//! The system as a hospital runs it beyond one machine: the three services as separate
//! processes, two replicas of each, on one PostgreSQL, behind a real nginx routed like the
//! Kubernetes Ingress (both generated from the ownership table: `hospital routes`). gRPC
//! between services goes through nginx too, balanced over the replicas as a Kubernetes
//! Service would.
//!
//! Through it the end-to-end story runs, with the visit's two participants on different
//! telemedicine replicas, every process exporting its spans over OTLP to a receiver here: the
//! patient's booking is one trace from telemedicine's HTTP edge to billing's gRPC (the fee's
//! invoice), the cashier's lab invoice one from billing's HTTP edge to records' gRPC (the
//! patient's coverage), and the payment one from the bank's webhook at billing through
//! telemedicine's `ConfirmPayment` (billing telling it the visit is paid) to billing's
//! `GetInvoice` (telemedicine checking) — HTTP → gRPC → gRPC across three processes — each
//! server span the child of its caller's client span; the JSON log lines carry the trace id.
//! Then, with clinics registering patients and patients booking and paying, one replica of
//! each service is killed with SIGKILL; afterwards no registration, booking or payment is
//! lost or doubled, the call's participant on the killed replica reconnects, every visit's
//! reminder was sent once, and the audit trail verifies.

use crate::billing::casso;
use crate::common::*;
use crate::story::{Who, story};
use crate::telemedicine::{Peer, from_now, join_token, parameters, schedule, slot};
use hospital_core::auth::Role;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A port free now, from below the kernel's ephemeral range: the processes bind it a moment
/// later, and a port the kernel hands out to `127.0.0.1:0` (other tests running at the same
/// time do that all the while) could be taken in between.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..1000 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && GIVEN.lock().unwrap().insert(port)
        {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A child process killed when the test ends, however it ends.
struct Proc {
    name: String,
    child: Child,
    http: u16,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

const SERVICES: [&str; 3] = ["records", "telemedicine", "billing"];

struct Ports {
    nginx_http: u16,
    /// nginx's gRPC listener of each service (what the services dial).
    nginx_grpc: BTreeMap<&'static str, u16>,
    /// Per service, its replicas' (HTTP, gRPC) ports.
    replicas: BTreeMap<&'static str, Vec<(u16, u16)>>,
}

fn nginx_binary() -> String {
    if let Ok(n) = std::env::var("HOSPITAL_NGINX") {
        return n;
    }
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    panic!(
        "this test runs nginx: install it (Debian: apt-get install nginx) or set HOSPITAL_NGINX"
    );
}

/// nginx in front of the replicas: the generated routes, WebSocket upgrades, gRPC.
fn start_nginx(dir: &Path, ports: &Ports) -> Proc {
    let routes = Command::new(env!("CARGO_BIN_EXE_hospital"))
        .args(["routes", "--nginx"])
        .output()
        .expect("hospital routes --nginx");
    assert!(routes.status.success());
    std::fs::write(dir.join("routes.conf"), &routes.stdout).unwrap();
    std::fs::write(
        dir.join("hospital_proxy_params"),
        "proxy_http_version 1.1;\n\
         proxy_set_header Host $http_host;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         proxy_set_header Upgrade $http_upgrade;\n\
         proxy_set_header Connection $connection_upgrade;\n\
         proxy_read_timeout 3600s;\n\
         proxy_buffering off;\n",
    )
    .unwrap();
    let mut upstreams = String::new();
    for s in SERVICES {
        let servers = |i: usize| {
            ports.replicas[s]
                .iter()
                .map(|p| {
                    format!(
                        "    server 127.0.0.1:{} max_fails=1 fail_timeout=30s;\n",
                        if i == 0 { p.0 } else { p.1 }
                    )
                })
                .collect::<String>()
        };
        upstreams.push_str(&format!("  upstream {s} {{\n{}  }}\n", servers(0)));
        upstreams.push_str(&format!("  upstream {s}_grpc {{\n{}  }}\n", servers(1)));
        upstreams.push_str(&format!(
            "  server {{\n    listen 127.0.0.1:{} http2;\n    location / {{\n      \
             grpc_pass grpc://{s}_grpc;\n      grpc_read_timeout 3600s;\n      \
             grpc_next_upstream error timeout http_502 http_503;\n    }}\n  }}\n",
            ports.nginx_grpc[s]
        ));
    }
    let d = dir.display();
    let user = if unsafe_free_is_root() {
        "user root;\n"
    } else {
        ""
    };
    let conf = format!(
        "{user}worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_max_body_size 10m;\n\
         \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}\n\
         {upstreams}\
         \x20 server {{\n    listen 127.0.0.1:{};\n    include {d}/routes.conf;\n  }}\n}}\n",
        ports.nginx_http
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.join("nginx.out");
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .expect("nginx starts");
    Proc {
        name: "nginx".into(),
        child,
        http: ports.nginx_http,
        log,
    }
}

/// Whether the test runs as root (nginx's workers then need `user root` to use the test's
/// private directory).
fn unsafe_free_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// One replica of `service`, configured as the in-process tests are (the same keys, bank
/// account and sweeps), logging JSON lines to a file.
fn start_replica(
    dir: &Path,
    db: &str,
    service: &'static str,
    n: usize,
    ports: &Ports,
    otlp: u16,
) -> Proc {
    let cfg = hospital::Config::for_tests(db);
    let (http, grpc) = ports.replicas[service][n];
    let name = format!("{service}-{n}");
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hospital"));
    cmd.arg(service)
        .env("DATABASE_URL", db)
        .env("HOSPITAL_DB_MAX_CONNECTIONS", "5")
        .env("HOSPITAL_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env(
            format!("HOSPITAL_{}_GRPC_ADDR", service.to_uppercase()),
            format!("127.0.0.1:{grpc}"),
        )
        .env("HOSPITAL_METRICS_ADDR", "127.0.0.1:0")
        .env(
            "HOSPITAL_PUBLIC_URL",
            format!("http://127.0.0.1:{}", ports.nginx_http),
        )
        .env("HOSPITAL_TRUSTED_PROXIES", "127.0.0.1")
        .env("HOSPITAL_JWT_SECRET", hospital::config::TEST_SECRET)
        .env("HOSPITAL_SECRET_FILE", dir.join("no-secret-file"))
        .env("HOSPITAL_BANK_BIN", &cfg.bank_bin)
        .env("HOSPITAL_BANK_ACCOUNT", &cfg.bank_account)
        .env("HOSPITAL_BANK_ACCOUNT_NAME", &cfg.bank_account_name)
        .env(
            "HOSPITAL_SEPAY_API_KEY",
            cfg.sepay_api_key.as_deref().unwrap(),
        )
        .env("HOSPITAL_CASSO_KEY", cfg.casso_key.as_deref().unwrap())
        .env(
            "HOSPITAL_PAYOS_CHECKSUM_KEY",
            cfg.payos_checksum_key.as_deref().unwrap(),
        )
        .env(
            "HOSPITAL_VNPAY_HASH_SECRET",
            cfg.vnpay_hash_secret.as_deref().unwrap(),
        )
        .env("HOSPITAL_SWEEP_MS", cfg.sweep_ms.to_string())
        .env("HOSPITAL_LOG", "info,sqlx=warn,tower_http=debug")
        .env("HOSPITAL_LOG_FORMAT", "json")
        .env("HOSPITAL_DRAIN_SECS", "0")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{otlp}"),
        )
        .env("OTEL_SERVICE_NAME", &name);
    for s in SERVICES {
        cmd.env(
            format!("HOSPITAL_{}_GRPC_URL", s.to_uppercase()),
            format!("http://127.0.0.1:{}", ports.nginx_grpc[s]),
        );
    }
    let child = cmd
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .expect("the hospital binary starts");
    Proc {
        name,
        child,
        http,
        log,
    }
}

async fn wait_ready(p: &mut Proc) {
    let url = format!("http://127.0.0.1:{}/readyz", p.http);
    for _ in 0..600 {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!(
                "{} exited ({status}): {}",
                p.name,
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not become ready", p.name);
}

/// An OTLP/HTTP receiver: every JSON export posted to `/v1/traces`.
async fn otlp_receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                keep.lock().unwrap().push(v);
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, got)
}

/// A received span: which process sent it, and the span.
#[derive(Debug, Clone)]
struct Span {
    process: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

fn spans(exports: &[Value]) -> Vec<Span> {
    let mut out = Vec::new();
    for e in exports {
        for rs in e["resourceSpans"].as_array().into_iter().flatten() {
            let process = rs["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["key"] == "service.name"))
                .and_then(|x| x["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push(Span {
                        process: process.clone(),
                        trace: s["traceId"].as_str().unwrap_or_default().to_owned(),
                        id: s["spanId"].as_str().unwrap_or_default().to_owned(),
                        parent: s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                        name: s["name"].as_str().unwrap_or_default().to_owned(),
                        attributes: s["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| {
                                (
                                    a["key"].as_str().unwrap_or_default().to_owned(),
                                    a["value"]["stringValue"]
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_owned(),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    out
}

/// Sends a request again while the proxy answers that no replica could take it (a replica
/// died under it: 502, 503, 504) or the connection failed; any other answer is returned.
async fn retried(make: impl Fn() -> reqwest::RequestBuilder) -> (u16, Value) {
    let mut last = String::new();
    for attempt in 0..60 {
        if attempt > 0 {
            RETRIES.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        match make().send().await {
            Ok(r) if matches!(r.status().as_u16(), 502..=504) => {
                last = format!("{}", r.status());
            }
            Ok(r) => {
                let s = r.status().as_u16();
                return (s, r.json().await.unwrap_or(Value::Null));
            }
            Err(e) => last = e.to_string(),
        }
    }
    panic!("no replica answered after 60 attempts: {last}");
}

/// Requests sent again because a replica died under them (reported, not asserted: when a
/// kill lands between requests, nginx alone moves the next one to the live replica).
static RETRIES: AtomicUsize = AtomicUsize::new(0);

const ID_SYSTEM: &str = "urn:test:replicas";

/// Registers a patient once, however often it must be asked (a conditional create on the
/// identifier: a retry of a create that was done finds it).
async fn register(app: &TestApp, n: usize) -> String {
    let value = format!("R{n:05}");
    let body = json!({"resourceType": "Patient",
        "identifier": [{"system": ID_SYSTEM, "value": value}],
        "name": [{"family": "Phạm", "given": [format!("Bệnh nhân {n}")]}],
        "gender": "female", "birthDate": "1990-01-01"});
    let (s, v) = retried(|| {
        app.http
            .post(app.url("Patient"))
            .header("content-type", FHIR)
            .header("if-none-exist", format!("identifier={ID_SYSTEM}|{value}"))
            .body(body.to_string())
    })
    .await;
    assert!(s == 201 || s == 200, "register {n}: {s} {v}");
    v["id"].as_str().expect("an id").to_owned()
}

/// A patient books a video slot, prepays it (the bank's feed delivered twice, as feeds do),
/// and waits until it is booked. A booking retried after its answer was lost finds itself.
async fn book_and_pay(app: &TestApp, n: usize, slot_id: &str, account: &str) -> String {
    let patient = register(app, 10_000 + n).await;
    let me = app.client_for(Role::Patient, Some(&patient), None);
    let ask = parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{slot_id}")}}]));
    let (s, v) = retried(|| {
        me.post(app.url("Appointment/$book"))
            .header("content-type", FHIR)
            .body(ask.to_string())
    })
    .await;
    let appointment = if s == 200 {
        v["id"].as_str().unwrap().to_owned()
    } else {
        // Taken: by this patient's own earlier attempt, whose answer was lost?
        let (_, found) = retried(|| {
            app.http
                .get(app.url(&format!("Appointment?slot=Slot/{slot_id}")))
        })
        .await;
        let mine = found["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .find(|a| {
                a["participant"].as_array().into_iter().flatten().any(|p| {
                    p["actor"]["reference"].as_str() == Some(&format!("Patient/{patient}"))
                })
            });
        mine.unwrap_or_else(|| panic!("booking {n} refused ({s}): {v}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, a) = retried(|| app.http.get(app.url(&format!("Appointment/{appointment}")))).await;
    let invoice = a["extension"]
        .as_array()
        .and_then(|x| {
            x.iter()
                .find(|e| e["url"] == "urn:hospital:appointment:invoice")
        })
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .unwrap_or_else(|| panic!("no prepaid invoice on {a}"))
        .to_owned();
    let (_, bill) = retried(|| app.http.get(app.url(&invoice))).await;
    let code = bill["identifier"]
        .as_array()
        .and_then(|x| {
            x.iter()
                .find(|i| i["system"] == "urn:hospital:payment-code")
        })
        .and_then(|i| i["value"].as_str())
        .unwrap()
        .to_owned();
    let (body, sig) = casso(
        9_100_000 + n as i64,
        150_000,
        &format!("MBVCB.2.{code}.CT"),
        account,
    );
    for _ in 0..2 {
        let (s, _) = retried(|| {
            app.anonymous
                .post(format!(
                    "{}/webhooks/casso",
                    app.base.trim_end_matches("/fhir")
                ))
                .header("content-type", "application/json")
                .header("x-casso-signature", &sig)
                .body(body.clone())
        })
        .await;
        assert_eq!(s, 200, "the feed's delivery of payment {n}");
    }
    for _ in 0..600 {
        let (_, a) = retried(|| app.http.get(app.url(&format!("Appointment/{appointment}")))).await;
        if a["status"] == "booked" {
            return appointment;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Appointment/{appointment} (payment {n}) was never booked");
}

/// Every "visit reminder" line of every process's log: its key, how many times.
fn reminders_sent(dir: &Path) -> BTreeMap<String, usize> {
    let mut sent = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["message"] == "visit reminder"
                && let Some(key) = v["fields"]["key"].as_str()
            {
                *sent.entry(key.to_owned()).or_insert(0) += 1;
            }
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_services_two_replicas_each_behind_nginx_survive_replica_kills() {
    let db = fresh_database(Backend::Postgres).await;
    let url = db.url.clone();
    let tmp = hospital_test_kit::tempdir::TempDir::new();
    let dir = tmp.0.clone();
    let migrated = hospital_cli(&["migrate"], &url);
    assert!(migrated.status.success(), "{migrated:?}");
    let ports = Ports {
        nginx_http: free_port(),
        nginx_grpc: SERVICES.iter().map(|s| (*s, free_port())).collect(),
        replicas: SERVICES
            .iter()
            .map(|s| (*s, (0..2).map(|_| (free_port(), free_port())).collect()))
            .collect(),
    };
    let (otlp, exports) = otlp_receiver().await;
    let mut nginx = start_nginx(&dir, &ports);
    let mut procs: BTreeMap<String, Proc> = BTreeMap::new();
    for s in SERVICES {
        for n in 0..2 {
            let p = start_replica(&dir, &url, s, n, &ports, otlp);
            procs.insert(p.name.clone(), p);
        }
    }
    for p in procs.values_mut() {
        wait_ready(p).await;
    }
    let site = format!("http://127.0.0.1:{}", ports.nginx_http);
    for _ in 0..100 {
        if reqwest::get(format!("{site}/fhir/metadata")).await.is_ok() {
            break;
        }
        if let Ok(Some(s)) = nginx.child.try_wait() {
            panic!(
                "nginx exited ({s}): {}{}",
                std::fs::read_to_string(&nginx.log).unwrap_or_default(),
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = hospital::open_store(&hospital::Config::for_tests(&url))
        .await
        .unwrap();
    let app = Arc::new(TestApp::external(&site, store, db));

    // The story, through the proxy; the patient's call on telemedicine-0, the doctor's on
    // telemedicine-1.
    let nginx_host = format!("127.0.0.1:{}", ports.nginx_http);
    let tele = ports.replicas["telemedicine"].clone();
    let placed = tele.clone();
    let place = move |url: &str, who: Who| {
        let replica = match who {
            Who::Patient => placed[0].0,
            Who::Doctor => placed[1].0,
        };
        url.replace(&nginx_host, &format!("127.0.0.1:{replica}"))
    };
    story(&app, &place).await;

    // Traces across processes: the patient's `$book` (HTTP at telemedicine) made billing issue
    // the fee's invoice (gRPC), and the cashier's `$issue` of the lab invoice (HTTP at billing)
    // asked records for the patient's coverage (gRPC): each one trace, the server's span a
    // child of the caller's client span.
    // The chain of spans from a served call of `method` up to the HTTP request it began with
    // (whose route is `route`, when given).
    let chain_to = |all: &[Span], method: &str, route: Option<&str>| -> Option<Vec<Span>> {
        let by_id: BTreeMap<&str, &Span> = all.iter().map(|s| (s.id.as_str(), s)).collect();
        all.iter()
            .filter(|s| {
                s.name == "grpc"
                    && s.attributes.get("rpc.method").map(String::as_str) == Some(method)
            })
            .find_map(|call| {
                let mut chain = vec![call.clone()];
                while let Some(parent) = by_id.get(chain.last().unwrap().parent.as_str()) {
                    chain.push((*parent).clone());
                }
                let root = chain.last().unwrap();
                (root.name == "http"
                    && chain.len() >= 3
                    && route.is_none_or(|r| {
                        root.attributes.get("route").map(String::as_str) == Some(r)
                    }))
                .then_some(chain)
            })
    };
    let mut chains = None;
    for _ in 0..50 {
        let all = spans(&exports.lock().unwrap());
        if let (Some(a), Some(b), Some(c)) = (
            chain_to(&all, "/hospital.billing.v1.Billing/CreateInvoice", None),
            chain_to(&all, "/hospital.records.v1.Records/GetActiveCoverage", None),
            // The payment: the bank's webhook at billing, billing telling telemedicine
            // (ConfirmPayment), telemedicine asking billing for the invoice (GetInvoice).
            chain_to(
                &all,
                "/hospital.billing.v1.Billing/GetInvoice",
                Some("/webhooks/{provider}"),
            ),
        ) {
            chains = Some((a, b, c));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (booking, issuing, payment) = chains.unwrap_or_else(|| {
        let all = spans(&exports.lock().unwrap());
        panic!("the traces of the booking, the lab invoice and the payment did not arrive whole: {all:#?}")
    });
    // HTTP → gRPC → gRPC, across three processes, one trace.
    let methods: Vec<&str> = payment
        .iter()
        .filter_map(|s| s.attributes.get("rpc.method").map(String::as_str))
        .collect();
    assert_eq!(
        methods,
        [
            "/hospital.billing.v1.Billing/GetInvoice",
            "/hospital.telemedicine.v1.Telemedicine/ConfirmPayment"
        ],
        "{payment:#?}"
    );
    assert!(payment.iter().all(|s| s.trace == payment[0].trace));
    assert!(payment.last().unwrap().process.starts_with("billing-"));
    assert!(
        payment[2].process.starts_with("telemedicine-"),
        "{payment:#?}"
    );
    for (chain, caller, server) in [
        (&booking, "telemedicine-", "billing-"),
        (&issuing, "billing-", "records-"),
    ] {
        let root = chain.last().unwrap();
        assert!(
            root.process.starts_with(caller)
                && root
                    .attributes
                    .get("route")
                    .is_some_and(|r| r.starts_with("/fhir/")),
            "the trace begins at {caller}'s HTTP edge: {chain:#?}"
        );
        assert!(chain[0].process.starts_with(server), "{chain:#?}");
        assert_eq!(chain[1].name, "grpc.client", "{chain:#?}");
        assert!(chain[1].process.starts_with(caller), "{chain:#?}");
        assert!(chain.iter().all(|s| s.trace == root.trace), "{chain:#?}");
    }
    let root = booking.last().unwrap().clone();
    // The log lines said while serving it carry its trace id (the JSON logs).
    let logged = std::fs::read_to_string(&procs[&root.process].log).unwrap();
    assert!(
        logged.lines().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["trace_id"] == root.trace.as_str())
        }),
        "a log line of {} carries the trace id {}",
        root.process,
        root.trace
    );

    // Clinics register, patients book and pay, and one replica of each service dies.
    let admin = app.client_for(Role::Admin, None, None);
    let (s, _) = retried(|| {
        admin
            .put(app.url("Practitioner/bs-replica"))
            .header("content-type", FHIR)
            .body(
                json!({"resourceType": "Practitioner", "id": "bs-replica",
                    "name": [{"family": "Lê", "given": ["Văn", "Bình"]}]})
                .to_string(),
            )
    })
    .await;
    assert!(s == 201 || s == 200);
    let sched = app.create(schedule("bs-replica", "video", 30, 1)).await;
    const BOOKINGS: usize = 10;
    let mut slots = Vec::new();
    for i in 0..BOOKINGS as i64 {
        slots.push(
            app.create(slot(&sched, &from_now(6 + 4 * i), &from_now(9 + 4 * i)))
                .await,
        );
    }
    let account = hospital::Config::for_tests("unused").bank_account;
    // The first visit, booked and paid, is in its call when the replicas die: the patient on
    // telemedicine-0, the doctor on telemedicine-1.
    let first = book_and_pay(&app, 0, &slots[0], &account).await;
    let (_, first_appt) = app.get_json(&format!("Appointment/{first}")).await;
    let first_patient = first_appt["participant"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .find_map(|r| r.strip_prefix("Patient/"))
        .unwrap()
        .to_owned();
    let me = app.client_for(Role::Patient, Some(&first_patient), None);
    let doctor = app.client_for(Role::Clinician, None, Some("bs-replica"));
    let (signalling, patient_token) = join_token(&me, &app, &first, true).await;
    let (_, doctor_token) = join_token(&doctor, &app, &first, false).await;
    let on = |port: u16| {
        signalling.replace(
            &format!("127.0.0.1:{}", ports.nginx_http),
            &format!("127.0.0.1:{port}"),
        )
    };
    let (mut patient_ws, _) = Peer::open(&on(tele[0].0), &patient_token).await;
    let (mut doctor_ws, _) = Peer::open(&on(tele[1].0), &doctor_token).await;

    let registered = Arc::new(AtomicUsize::new(0));
    let booked = Arc::new(AtomicUsize::new(0));
    const REGISTRATIONS: usize = 60;
    let registering = {
        let (app, registered) = (app.clone(), registered.clone());
        tokio::spawn(async move {
            let mut ids = BTreeSet::new();
            for n in 0..REGISTRATIONS {
                ids.insert(register(&app, n).await);
                registered.fetch_add(1, Ordering::SeqCst);
            }
            ids
        })
    };
    let booking = {
        let (app, booked, slots, account) =
            (app.clone(), booked.clone(), slots.clone(), account.clone());
        tokio::spawn(async move {
            let mut done = vec![];
            for (n, s) in slots.iter().enumerate().skip(1) {
                done.push(book_and_pay(&app, n, s, &account).await);
                booked.fetch_add(1, Ordering::SeqCst);
            }
            done
        })
    };
    while registered.load(Ordering::SeqCst) < 15 || booked.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in SERVICES {
        procs.get_mut(&format!("{s}-0")).unwrap().sigkill();
    }

    // The patient's connection died with telemedicine-0; the app reconnects through the
    // proxy (to the replica that lives) with its join token, and the doctor sees them return.
    let mut lost = None;
    while let Some(m) = patient_ws.within(10_000).await {
        if m["type"] == "closed" {
            lost = Some(m);
            break;
        }
    }
    assert!(
        lost.is_some(),
        "the patient's connection ended with its replica"
    );
    let (_, welcome) = Peer::open(&signalling, &patient_token).await;
    assert_eq!(welcome["role"], "patient", "{welcome}");
    let mut back = false;
    for _ in 0..10 {
        let m = doctor_ws.next().await;
        if m["type"] == "presence" && m["from"] == "patient" && m["data"]["state"] == "joined" {
            back = true;
            break;
        }
    }
    assert!(back, "the doctor saw the patient come back");

    let registered_ids = tokio::time::timeout(Duration::from_secs(300), registering)
        .await
        .expect("registrations finish")
        .unwrap();
    let mut appointments = tokio::time::timeout(Duration::from_secs(300), booking)
        .await
        .expect("bookings finish")
        .unwrap();
    appointments.push(first.clone());

    // Nothing lost, nothing doubled.
    assert_eq!(registered_ids.len(), REGISTRATIONS);
    for n in 0..REGISTRATIONS {
        let found = app
            .search_ids(&format!("Patient?identifier={ID_SYSTEM}|R{n:05}"))
            .await;
        assert_eq!(found.len(), 1, "patient R{n:05} registered once: {found:?}");
    }
    for (n, s) in slots.iter().enumerate() {
        let (_, b) = app.get_json(&format!("Appointment?slot=Slot/{s}")).await;
        let live: Vec<&Value> = b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .filter(|a| a["status"] != "cancelled")
            .collect();
        assert_eq!(live.len(), 1, "slot {n} booked once: {b}");
        // The first is in its call (arrived); the others wait for theirs.
        assert!(
            live[0]["status"] == "booked" || (n == 0 && live[0]["status"] == "arrived"),
            "slot {n}: {}",
            live[0]
        );
        let invoice = live[0]["extension"]
            .as_array()
            .and_then(|x| {
                x.iter()
                    .find(|e| e["url"] == "urn:hospital:appointment:invoice")
            })
            .and_then(|e| e["valueReference"]["reference"].as_str())
            .unwrap()
            .to_owned();
        let (_, bill) = app.get_json(&invoice).await;
        assert_eq!(bill["status"], "balanced", "{invoice} paid");
        let paid = app
            .search_ids(&format!("PaymentNotice?request={invoice}"))
            .await;
        assert_eq!(paid.len(), 1, "{invoice} credited once: {paid:?}");
    }
    // Every visit's reminder was sent, once. A reminder the killed replica had claimed waits
    // for its claim's lease (60 s) to run out before a live replica sends it.
    let mut sent = BTreeMap::new();
    let lease = hospital_telemedicine::reminders::Delivery::default().lease;
    let until = std::time::Instant::now() + lease + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        sent = reminders_sent(&dir);
        if appointments
            .iter()
            .all(|a| sent.keys().any(|k| k.contains(&format!(":{a}:"))))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for a in &appointments {
        let keys: Vec<(&String, &usize)> = sent
            .iter()
            .filter(|(k, _)| k.contains(&format!(":{a}:")))
            .collect();
        assert!(
            !keys.is_empty(),
            "no reminder for Appointment/{a}: {sent:?}"
        );
        for (k, n) in keys {
            assert_eq!(*n, 1, "reminder {k} sent {n} times");
        }
    }
    // The survivors are still up, and the audit trail of it all verifies.
    for (name, p) in procs.iter_mut() {
        if !name.ends_with("-0") {
            assert!(p.child.try_wait().unwrap().is_none(), "{name} still runs");
        }
    }
    let out = hospital_cli(&["audit", "verify"], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "replica kills: {} requests sent again after a 502/503/504 or a dropped connection",
        RETRIES.load(Ordering::SeqCst)
    );
    drop(nginx);
}
