//! The `hospital` system: composes the services over one record store. `main.rs` only parses
//! the command line; tests start the same system with [`start`].

pub mod config;
pub mod seed;

use anyhow::Context;
use axum::Router;
use hospital_fhir_http::{FhirApi, FhirConfig, Owners};

use hospital_store::{Store, StoreOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

pub use config::{Config, Service};

/// A started system: where it listens, and how to stop it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub records_grpc_addr: Option<SocketAddr>,
    pub store: Store,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Seals the audit trail in the background.
    sealer: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests, closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await??;
        }
        self.sealer.abort();
        // Seal what the last requests wrote before the store closes.
        let _ = self.store.audit_seal().await;
        self.store.close().await;
        Ok(())
    }

    /// Waits until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Opens the store with the options every service needs.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: cfg.db_max_connections,
        unique_identifiers: hospital_records::UNIQUE_IDENTIFIERS.to_vec(),
    };
    Store::open(&cfg.database_url, options)
        .await
        .context("cannot open the record store (check DATABASE_URL)")
}

/// The token verifier the configuration asks for: the OIDC provider's JWKS, or the local
/// secret (given, or generated once into the secret file).
pub fn authenticator(cfg: &Config) -> anyhow::Result<hospital_auth::Authenticator> {
    if let Some(url) = &cfg.oidc_jwks_url {
        return Ok(hospital_auth::Authenticator::oidc(
            url,
            &cfg.oidc_issuer,
            &cfg.oidc_audience,
        ));
    }
    let secret = match &cfg.jwt_secret {
        Some(s) if s.len() >= 32 => s.clone().into_bytes(),
        Some(_) => anyhow::bail!("HOSPITAL_JWT_SECRET must be at least 32 characters"),
        None => {
            let path = std::path::Path::new(&cfg.secret_file);
            match std::fs::read_to_string(path) {
                Ok(s) if s.trim().len() >= 32 => s.trim().as_bytes().to_vec(),
                _ => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let s = hex_secret();
                    std::fs::write(path, &s)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    s.into_bytes()
                }
            }
        }
    };
    Ok(hospital_auth::Authenticator::local(
        hospital_auth::Secret(secret),
        &cfg.oidc_issuer,
        &cfg.oidc_audience,
    ))
}

fn hex_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The FHIR edge over `store` with the owners `service` runs, and its security.
pub fn build_api(
    cfg: &Config,
    store: &Store,
    service: Service,
    base_url: &str,
) -> anyhow::Result<FhirApi> {
    let mut owners = Owners::default();
    if matches!(service, Service::All | Service::Records) {
        hospital_records::register(&mut owners);
    }
    Ok(FhirApi {
        store: store.clone(),
        owners,
        config: FhirConfig {
            max_body_bytes: cfg.max_body_bytes,
            base_url: format!("{}/fhir", base_url.trim_end_matches('/')),
        },
        security: std::sync::Arc::new(hospital_fhir_http::Security {
            auth: authenticator(cfg)?,
            throttle: hospital_auth::Throttle::default(),
            audit: hospital_store::audit::AuditSink::start(store.clone()),
            keys: std::sync::Arc::new(hospital_store::signing::LocalKeyStore),
        }),
    })
}

/// Starts `service` (or the whole system) as configured. Listens before it returns.
pub async fn start(cfg: &Config, service: Service) -> anyhow::Result<Running> {
    let store = open_store(cfg).await?;
    let http = TcpListener::bind(&cfg.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", cfg.http_addr))?;
    let http_addr = http.local_addr()?;
    let base_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let api = build_api(cfg, &store, service, &base_url)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    let sealer = store.spawn_audit_sealer(Duration::from_millis(500));

    let app = Router::new()
        .nest("/fhir", hospital_fhir_http::router(api.clone()))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(
            // Spans name the method and route, never the URI: queries carry personal data.
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "-".into());
                    tracing::info_span!("http", method = %req.method(), route = %route)
                },
            ),
        );
    let shutdown = wait(stopped.clone());
    tasks.push(tokio::spawn(async move {
        axum::serve(
            http,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server failed")
    }));

    let mut records_grpc_addr = None;
    if matches!(service, Service::All | Service::Records) {
        let listener = TcpListener::bind(&cfg.records_grpc_addr)
            .await
            .with_context(|| format!("cannot listen for gRPC on {}", cfg.records_grpc_addr))?;
        records_grpc_addr = Some(listener.local_addr()?);
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<hospital_proto::records::v1::records_server::RecordsServer<
                hospital_records::grpc::RecordsGrpc,
            >>()
            .await;
        let records = hospital_records::grpc::RecordsGrpc::new(api.clone()).into_server();
        let shutdown = wait(stopped.clone());
        tasks.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .timeout(Duration::from_secs(30))
                .add_service(health)
                .add_service(records)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    shutdown,
                )
                .await
                .context("gRPC server failed")
        }));
    }
    Ok(Running {
        http_addr,
        records_grpc_addr,
        store,
        tasks,
        stop,
        sealer,
    })
}
