//! Test kit (dev-only): [`spawn`] starts the services a test needs on ephemeral ports with a
//! fresh store — a new SQLite file, or a new schema in the PostgreSQL test database (which must
//! be reachable: a PostgreSQL test never skips itself; the schema is dropped afterwards).
//! Each service's tests start only what they need; the system's end-to-end tests start all.
//! [`TestApp::restart`] stops a process and starts another on the same database.

use hospital_core::{Deployment, ServiceName};
use hospital_host::{Config, Registration, Running};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    /// Sends a service token with every request (a service may do everything but read the
    /// audit trail); tests of other roles use [`TestApp::client_for`].
    pub http: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    pub token: String,
    pub running: Option<Running>,
    pub store: hospital_core::store::Store,
    /// The records gRPC endpoint (`http://addr`), when this app runs records.
    pub grpc: String,
    _db: Database,
}

/// A fresh database that is removed when the test ends.
pub struct Database {
    pub url: String,
    dir: Option<tempdir::TempDir>,
    schema: Option<String>,
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = &self.dir;
        if let Some(schema) = self.schema.take() {
            // Drop the schema from a thread of its own: Drop cannot await.
            let admin = postgres_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                            // A failed test can leave its own server's transaction open in
                            // this process: give up on the schema rather than wait for it.
                            let _ = sqlx::raw_sql(&format!(
                                "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                            ))
                            .execute(&pool)
                            .await;
                            pool.close().await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// The PostgreSQL database tests create their schemas in.
pub fn postgres_url() -> String {
    std::env::var("HOSPITAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/hospital_test".into())
}

pub mod tempdir {
    /// A directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!("hospital-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Default for TempDir {
        fn default() -> TempDir {
            TempDir::new()
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh, empty database for `backend`, removed on drop.
pub async fn fresh_database(backend: Backend) -> Database {
    match backend {
        Backend::Sqlite => {
            let dir = tempdir::TempDir::new();
            let url = format!("sqlite://{}/hospital.db", dir.0.display());
            Database {
                url,
                dir: Some(dir),
                schema: None,
            }
        }
        Backend::Postgres => {
            let admin = postgres_url();
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&admin).await.expect(
                "the PostgreSQL test database must be reachable (HOSPITAL_TEST_POSTGRES_URL)",
            );
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&pool)
                .await
                .expect("create schema");
            pool.close().await;
            let sep = if admin.contains('?') { '&' } else { '?' };
            Database {
                url: format!("{admin}{sep}options=-c%20search_path%3D{schema}"),
                dir: None,
                schema: Some(schema),
            }
        }
    }
}

/// Starts `deployment` of the given services on a fresh `backend` store, with the test
/// configuration changed by `tweak`.
pub async fn spawn(
    registrations: &[Registration],
    deployment: Deployment,
    backend: Backend,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let db = fresh_database(backend).await;
    let mut cfg = Config::for_tests(&db.url);
    tweak(&mut cfg);
    let running = hospital_host::start(&cfg, registrations, deployment)
        .await
        .expect("system starts");
    let mut app = TestApp::external(
        &format!("http://{}", running.http_addr),
        running.store.clone(),
        db,
    );
    app.grpc = running
        .grpc_addrs
        .get(&ServiceName::Records)
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    app.running = Some(running);
    app
}

impl TestApp {
    /// A system already running elsewhere (separate processes behind a proxy) at `site`
    /// (`http://host:port`), over `db`, whose store `store` is opened on.
    pub fn external(site: &str, store: hospital_core::store::Store, db: Database) -> TestApp {
        let token = mint(
            hospital_core::auth::Role::Service,
            "test-suite",
            None,
            None,
            None,
        );
        TestApp {
            base: format!("{}/fhir", site.trim_end_matches('/')),
            http: client_with(&token),
            anonymous: reqwest::Client::new(),
            token,
            store,
            grpc: String::new(),
            running: None,
            _db: db,
        }
    }

    /// The database URL the system runs on.
    pub fn database_url(&self) -> &str {
        &self._db.url
    }
}

pub const FHIR: &str = "application/fhir+json";

/// A token signed with the test configuration's local secret.
pub fn mint(
    role: hospital_core::auth::Role,
    subject: &str,
    patient: Option<&str>,
    practitioner: Option<&str>,
    scope: Option<&str>,
) -> String {
    hospital_core::auth::Authenticator::local(
        hospital_core::auth::Secret(hospital_host::config::TEST_SECRET.as_bytes().to_vec()),
        "hospital-local",
        "hospital",
    )
    .mint(
        role,
        subject,
        patient,
        practitioner,
        scope,
        std::time::Duration::from_secs(3600),
    )
    .expect("mint")
}

/// An HTTP client that sends `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        if path.is_empty() {
            return self.base.clone();
        }
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .header("content-type", FHIR)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let s = r.status().as_u16();
        let h = r.headers().clone();
        (s, h, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    /// Creates a resource and returns its id, failing the test if it is refused.
    pub async fn create(&self, body: Value) -> String {
        let rt = body["resourceType"]
            .as_str()
            .expect("resourceType")
            .to_owned();
        let (s, _, b) = self.post(&rt, &body).await;
        assert_eq!(s, 201, "create {rt}: {b}");
        b["id"].as_str().expect("id").to_owned()
    }

    /// Ids of the matches of a search.
    pub async fn search_ids(&self, query: &str) -> Vec<String> {
        let (s, b) = self.get_json(query).await;
        assert_eq!(s, 200, "search {query}: {b}");
        b["entry"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["search"]["mode"] == "match")
                    .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every version the store holds: a write of any kind adds one.
    pub async fn versions(&self) -> i64 {
        self.store.count_versions().await.expect("count")
    }

    /// Sends `n` identical POSTs of `body` to `path` at once (with extra `headers`) and
    /// returns every status.
    pub async fn post_concurrently(
        &self,
        n: usize,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Vec<u16> {
        let mut handles = Vec::new();
        for _ in 0..n {
            let mut req = self
                .http
                .post(self.url(path))
                .header("content-type", FHIR)
                .body(body.to_string());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            handles.push(tokio::spawn(async move {
                req.send().await.expect("request").status().as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for h in handles {
            statuses.push(h.await.expect("task"));
        }
        statuses
    }

    /// A client carrying a token of `role`.
    pub fn client_for(
        &self,
        role: hospital_core::auth::Role,
        patient: Option<&str>,
        practitioner: Option<&str>,
    ) -> reqwest::Client {
        client_with(&mint(role, role.as_str(), patient, practitioner, None))
    }

    /// The audit trail as an admin reads it: the AuditEvents of `query` (e.g.
    /// `patient=x&agent=patient:y`), newest first.
    pub async fn audit_events(&self, query: &str) -> Vec<Value> {
        let admin = self.client_for(hospital_core::auth::Role::Admin, None, None);
        let trail: Value = admin
            .get(self.url(&format!("AuditEvent?{query}")))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("a Bundle");
        trail["entry"]
            .as_array()
            .map(|a| a.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default()
    }

    /// Stops this process and starts `deployment` on the same database, with the previous
    /// configuration changed by `tweak`: a restart, or another deployment taking over. What
    /// was stored stays; nothing held in the old process's memory (its watchers, its
    /// background's places) survives, as after a real restart. The new process listens on new
    /// ports: `base` and the clients' URLs follow.
    pub async fn restart(
        &mut self,
        registrations: &[Registration],
        deployment: Deployment,
        tweak: impl FnOnce(&mut Config),
    ) {
        let old = self.running.take().expect("a running process to restart");
        let mut cfg = (*old.context.config).clone();
        old.shutdown().await.expect("clean shutdown");
        tweak(&mut cfg);
        let running = hospital_host::start(&cfg, registrations, deployment)
            .await
            .expect("the system starts again on its database");
        self.base = format!("http://{}/fhir", running.http_addr);
        self.store = running.store.clone();
        self.grpc = running
            .grpc_addrs
            .get(&ServiceName::Records)
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        self.running = Some(running);
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
    }
}

pub const NATIONAL_ID: &str = "http://fhir.ehealth.gov.vn/core/sid/national_id";
pub const INSURANCE: &str = "http://fhir.ehealth.gov.vn/core/sid/insurance_number";
pub const MA_BN: &str = "http://fhir.ehealth.gov.vn/core/sid/patient-internal-id";

/// A Patient's facility code (its MA_BN identifier's value), if it has one.
pub fn facility_code(patient: &serde_json::Value) -> Option<String> {
    patient["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == MA_BN)?["value"]
        .as_str()
        .map(str::to_owned)
}

/// Nguyễn Văn An, born 1985 in Quảng Ngãi, with his personal ID.
pub fn patient_an(national_id: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": NATIONAL_ID, "value": national_id}],
        "name": [{"family": "Nguyễn", "given": ["Văn", "An"]}],
        "gender": "male",
        "birthDate": "1985-03-12",
        "telecom": [{"system": "phone", "value": "0905123456"}]
    })
}

/// Generates the same test against both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}
