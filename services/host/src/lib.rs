//! Runs services in one process: opens the store, builds the [`Platform`] with every service's
//! rules (every process registers all of them, so all index and check the same way), serves
//! `/fhir` and each run service's gRPC server and routes, and shuts down gracefully.
//!
//! A service plugs in with one [`Registration`]: its definition (rules, unique identifiers),
//! its gRPC services, its HTTP routes outside `/fhir`, its FHIR operations and its background
//! tasks. `start` returns a [`Running`] handle
//! with the bound addresses; `run_until(signal)` takes its shutdown from the caller.

pub mod config;
pub mod telemetry;

use anyhow::Context as _;
use axum::Router;
use hospital_core::rules::Registry;
use hospital_core::store::{Store, StoreOptions};
use hospital_core::{Deployment, Platform, Security, ServiceDefinition, ServiceName};
use hospital_fhir_http::{FhirApi, FhirConfig};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

pub use config::Config;
pub use hospital_telemetry::metrics;

/// One gRPC service of a service crate, already behind authentication.
pub struct GrpcService {
    /// Its full name, e.g. `hospital.records.v1.Records`, as the health service reports it.
    pub name: &'static str,
    /// Adds the server to a process's routes (`|r| r.add_service(server)`).
    pub add: Box<dyn FnOnce(tonic::service::Routes) -> tonic::service::Routes + Send>,
}

/// Everything a service brings.
pub struct Registration {
    /// Rules, search parameters and unique identifiers: registered in every process.
    pub definition: fn() -> ServiceDefinition,
    /// Its gRPC services: served only where the service runs.
    pub grpc: fn(&Context) -> Vec<GrpcService>,
    /// Its HTTP routes outside `/fhir` (pages, webhooks): served only where it runs.
    pub routes: fn(&Context) -> Option<Router>,
    /// Its FHIR operations (`$payment-qr`): served under `/fhir` only where it runs.
    pub operations: fn(&Context) -> Vec<std::sync::Arc<dyn hospital_core::Operation>>,
    /// Its work in the background (sweeps, keeping slots generated): run only where the
    /// service runs, stopped at shutdown. Each must be safe with several replicas running it.
    pub background: fn(&Context) -> Vec<Background>,
}

/// A service's task in the background.
pub type Background = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a service's edges are built with: the platform, and clients of the other services.
#[derive(Clone)]
pub struct Context {
    pub platform: Platform,
    pub clients: Clients,
    /// The process's configuration (a service's own settings, the public base URL).
    pub config: std::sync::Arc<Config>,
    /// Where this process is reached from outside (links in pages and operations).
    pub public_url: String,
    /// When the process begins to shut down.
    pub stopping: Stopping,
}

/// Resolves once the process begins to shut down. Streams that outlive any request (a watched
/// invoice, a payment page's live status) end on it, so that shutting down (a deploy, a
/// restart) never waits for them; their clients reconnect, to a replica that runs.
#[derive(Clone)]
pub struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// How long shutting down waits for requests in flight before it stops them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Outbound gRPC clients of every service. Inside the all-in-one process too, services call
/// each other over gRPC on loopback, so the same code path is what the tests exercise.
#[derive(Clone)]
pub struct Clients {
    clients: BTreeMap<ServiceName, hospital_grpc::outbound::Outbound>,
}

impl Clients {
    pub fn of(&self, service: ServiceName) -> &hospital_grpc::outbound::Outbound {
        &self.clients[&service]
    }
}

/// The calling services' own token: minted locally, or by the client-credentials grant.
pub fn service_token(
    cfg: &Config,
    deployment: &Deployment,
) -> anyhow::Result<std::sync::Arc<hospital_grpc::outbound::ServiceToken>> {
    use hospital_grpc::outbound::{ServiceToken, TokenSource};
    let source = match (
        &cfg.oauth_token_url,
        &cfg.oauth_client_id,
        &cfg.oauth_client_secret,
    ) {
        (Some(url), Some(id), Some(secret)) => TokenSource::ClientCredentials {
            token_url: url.clone(),
            client_id: id.clone(),
            client_secret: secret.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        },
        (Some(_), _, _) => {
            anyhow::bail!("HOSPITAL_OAUTH_TOKEN_URL needs HOSPITAL_OAUTH_CLIENT_ID and _SECRET")
        }
        _ if cfg.oidc_jwks_url.is_some() => {
            tracing::warn!(
                "no service credentials (HOSPITAL_OAUTH_TOKEN_URL, _CLIENT_ID, _CLIENT_SECRET): calls to other services will fail"
            );
            TokenSource::Unconfigured
        }
        _ => TokenSource::Local {
            auth: authenticator(cfg)?,
            subject: deployment.name(),
        },
    };
    Ok(ServiceToken::new(source))
}

/// Clients of every service: the configured URL, or the address this process bound.
pub fn clients(
    cfg: &Config,
    deployment: &Deployment,
    bound: &BTreeMap<ServiceName, SocketAddr>,
) -> anyhow::Result<Clients> {
    let token = service_token(cfg, deployment)?;
    let deadline = Duration::from_millis(cfg.grpc_deadline_ms);
    let mut clients = BTreeMap::new();
    for s in ServiceName::ALL {
        let url = match (cfg.grpc_url(s), bound.get(&s)) {
            (Some(u), _) => u.to_owned(),
            (None, Some(a)) => format!("http://{a}"),
            (None, None) => format!("http://{}", cfg.grpc_addr(s)),
        };
        let client = hospital_grpc::outbound::Outbound::new(&url, token.clone(), deadline)
            .map_err(|e| anyhow::anyhow!(e))?;
        clients.insert(s, client);
    }
    Ok(Clients { clients })
}

/// A started process: where it listens, and how to stop it.
pub struct Running {
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served, if it is.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound gRPC address of each service this process runs.
    pub grpc_addrs: BTreeMap<ServiceName, SocketAddr>,
    pub store: Store,
    pub platform: Platform,
    pub context: Context,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Seals the audit trail in the background.
    sealer: tokio::task::JoinHandle<()>,
    /// Keeps the planner's statistics current.
    statistics: tokio::task::JoinHandle<()>,
    /// The services' background tasks.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Whether `/readyz` says the process takes requests.
    ready: telemetry::Readiness,
}

impl Running {
    /// Stops accepting, finishes in-flight requests (for [`SHUTDOWN_GRACE`] at most: then
    /// they are stopped), closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for mut t in self.tasks {
            match tokio::time::timeout_at(deadline, &mut t).await {
                Ok(done) => done??,
                Err(_) => {
                    tracing::warn!("requests still in flight after the grace period: stopped");
                    t.abort();
                }
            }
        }
        for b in &self.background {
            b.abort();
        }
        self.sealer.abort();
        self.statistics.abort();
        // Seal what the last requests wrote before the store closes.
        let _ = self.store.audit_seal().await;
        self.store.close().await;
        Ok(())
    }

    /// Waits until `signal` resolves, then drains (`/readyz` answers 503 while requests are
    /// still served, for the configured drain time, so that load balancers stop sending new
    /// ones) and shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        signal.await;
        let drain = Duration::from_secs(self.context.config.drain_secs);
        tracing::info!(
            drain_secs = drain.as_secs(),
            "draining: /readyz answers 503"
        );
        self.ready.set(false);
        tokio::time::sleep(drain).await;
        tracing::info!("shutting down");
        self.shutdown().await
    }

    /// Stops saying ready (what a SIGTERM does first); the process keeps serving.
    pub fn drain(&self) {
        self.ready.set(false);
    }
}

/// Every service's rules, from their registrations.
pub fn registry(registrations: &[Registration]) -> anyhow::Result<Registry> {
    let mut registry = Registry::default();
    for r in registrations {
        registry
            .register((r.definition)())
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    registry
        .install_search_params()
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(registry)
}

/// Opens the store with the options every service needs.
pub async fn open_store(cfg: &Config, registry: &Registry) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: cfg.db_max_connections,
        unique_identifiers: registry.unique_identifiers().to_vec(),
    };
    Store::open(&cfg.database_url, options)
        .await
        .context("cannot open the record store (check DATABASE_URL)")
}

/// The token verifier the configuration asks for: the OIDC provider's JWKS, or the local
/// secret (given, or generated once into the secret file).
pub fn authenticator(cfg: &Config) -> anyhow::Result<hospital_core::auth::Authenticator> {
    if let Some(url) = &cfg.oidc_jwks_url {
        return Ok(hospital_core::auth::Authenticator::oidc_with_ttl(
            url,
            &cfg.oidc_issuer,
            &cfg.oidc_audience,
            Duration::from_secs(cfg.oidc_jwks_ttl_secs),
        ));
    }
    Ok(hospital_core::auth::Authenticator::local(
        hospital_core::auth::Secret(local_secret(cfg)?),
        &cfg.oidc_issuer,
        &cfg.oidc_audience,
    ))
}

/// The embedded mode's local secret: given, or generated once into the secret file.
pub fn local_secret(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    Ok(match &cfg.jwt_secret {
        Some(s) if s.len() >= 32 => s.clone().into_bytes(),
        Some(_) => anyhow::bail!("HOSPITAL_JWT_SECRET must be at least 32 characters"),
        None => {
            let path = std::path::Path::new(&cfg.secret_file);
            match std::fs::read_to_string(path) {
                Ok(s) if s.trim().len() >= 32 => {
                    refuse_shared_secret(path)?;
                    s.trim().as_bytes().to_vec()
                }
                _ => {
                    let s = hex_secret();
                    write_private(path, &s)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    s.into_bytes()
                }
            }
        }
    })
}

/// The Casso webhook key of the embedded mode when none is configured: derived from the local
/// secret, so that `hospital simulate-payment` signs deliveries the running system accepts.
/// In production (an identity provider's JWKS) there is none: configure the provider's key.
pub fn embedded_casso_key(cfg: &Config) -> Option<String> {
    use sha2::Digest;
    if cfg.oidc_jwks_url.is_some() {
        return None;
    }
    let secret = local_secret(cfg).ok()?;
    let mut h = sha2::Sha256::new();
    h.update(b"embedded casso webhook key:");
    h.update(&secret);
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Refuses a secret file that other users may read: anyone who can read it can mint an
/// admin's token. (A Kubernetes secret volume mounted with `defaultMode: 0400` passes.)
fn refuse_shared_secret(path: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the secret file {} is readable by other users (mode {mode:o}): anyone who can \
                 read it can mint tokens. Run `chmod 600 {}` (or mount it with defaultMode 0400)",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Writes a new secret readable by this user only, in a directory only it may enter.
fn write_private(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(secret.as_bytes())
}

fn hex_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The platform over `store`: every service's rules, this process's deployment, security.
pub fn platform(
    cfg: &Config,
    store: &Store,
    registry: Registry,
    deployment: Deployment,
) -> anyhow::Result<Platform> {
    Ok(Platform::new(
        store.clone(),
        registry,
        deployment,
        Security {
            auth: authenticator(cfg)?,
            throttle: hospital_core::auth::Throttle::default(),
            audit: hospital_core::store::AuditSink::start(store.clone()),
            keys: std::sync::Arc::new(hospital_core::store::LocalKeyStore),
            trusted_proxies: cfg.trusted_proxies.clone(),
            limits: cfg.limits(),
        },
    ))
}

/// How browsers sign in to the pages: the provider's code flow, or the local page.
pub fn signin(cfg: &Config, base_url: &str) -> anyhow::Result<hospital_web::SignIn> {
    let Some(authorization_url) = &cfg.oidc_authorization_url else {
        if cfg.oidc_jwks_url.is_some() {
            tracing::warn!(
                "no HOSPITAL_OIDC_AUTHORIZATION_URL: the web pages cannot sign anyone in"
            );
            return Ok(hospital_web::SignIn::Disabled);
        }
        return Ok(hospital_web::SignIn::Local);
    };
    let (Some(token_url), Some(id), Some(secret)) = (
        &cfg.oauth_token_url,
        &cfg.oauth_client_id,
        &cfg.oauth_client_secret,
    ) else {
        anyhow::bail!(
            "HOSPITAL_OIDC_AUTHORIZATION_URL needs HOSPITAL_OAUTH_TOKEN_URL, _CLIENT_ID and _CLIENT_SECRET"
        );
    };
    Ok(hospital_web::SignIn::Provider {
        authorization_url: authorization_url.clone(),
        token_url: token_url.clone(),
        client_id: id.clone(),
        client_secret: secret.clone(),
        redirect_uri: format!("{}/signin/callback", base_url.trim_end_matches('/')),
    })
}

/// Starts the services of `deployment` as configured. Listens before it returns.
pub async fn start(
    cfg: &Config,
    registrations: &[Registration],
    deployment: Deployment,
) -> anyhow::Result<Running> {
    let registry = registry(registrations)?;
    hospital_telemetry::metrics::set_service(&deployment.name());
    let store = open_store(cfg, &registry).await?;
    let http = TcpListener::bind(&cfg.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", cfg.http_addr))?;
    let http_addr = http.local_addr()?;
    let base_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let platform = platform(cfg, &store, registry, deployment.clone())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    let sealer = store.spawn_audit_sealer(Duration::from_millis(500));
    // The check is one cheap query; after a bulk load the planner should not work from an
    // empty store's statistics for long (measured: a reverse chain over 20,000 patients took
    // 20 s in the half minute before a 30 s keeper ran, 28 ms after).
    let statistics = store.spawn_statistics_keeper(Duration::from_secs(5));

    // Bind first: the clients of services this process runs dial the bound addresses.
    let mut listeners = BTreeMap::new();
    for name in ServiceName::ALL {
        if deployment.runs(name) {
            let addr = cfg.grpc_addr(name);
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for {name} gRPC on {addr}"))?;
            listeners.insert(name, listener);
        }
    }
    let bound = listeners
        .iter()
        .map(|(n, l)| Ok((*n, l.local_addr()?)))
        .collect::<std::io::Result<BTreeMap<_, _>>>()?;
    let context = Context {
        platform: platform.clone(),
        clients: clients(cfg, &deployment, &bound)?,
        config: std::sync::Arc::new(cfg.clone()),
        public_url: base_url.trim_end_matches('/').to_owned(),
        stopping: Stopping(stopped.clone()),
    };
    let operations: Vec<_> = registrations
        .iter()
        .filter(|r| deployment.runs((r.definition)().name))
        .flat_map(|r| (r.operations)(&context))
        .collect();
    let api = FhirApi {
        platform: platform.clone(),
        config: FhirConfig {
            max_body_bytes: cfg.max_body_bytes,
            base_url: format!("{}/fhir", base_url.trim_end_matches('/')),
        },
        operations: operations.into(),
    };
    let mut app = Router::new()
        .nest("/fhir", hospital_fhir_http::router(api.clone()))
        .merge(hospital_web::routes(
            platform.clone(),
            signin(cfg, &base_url)?,
        ))
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let ready = telemetry::Readiness::new();
    app = app.merge(ready.routes());
    let mut grpc_addrs = BTreeMap::new();
    let mut background = Vec::new();
    for reg in registrations {
        let name = &(reg.definition)().name;
        let Some(listener) = listeners.remove(name) else {
            continue;
        };
        if let Some(routes) = (reg.routes)(&context) {
            app = app.merge(routes);
        }
        background.extend((reg.background)(&context).into_iter().map(tokio::spawn));
        let services = (reg.grpc)(&context);
        if services.is_empty() {
            continue;
        }
        grpc_addrs.insert(*name, bound[name]);
        let (reporter, health) = tonic_health::server::health_reporter();
        let mut routes = tonic::service::Routes::new(health);
        for s in services {
            reporter
                .set_service_status(s.name, tonic_health::ServingStatus::Serving)
                .await;
            routes = (s.add)(routes);
        }
        let shutdown = wait(stopped.clone());
        tasks.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .timeout(Duration::from_secs(30))
                .layer(tower::layer::layer_fn(telemetry::GrpcTelemetry))
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    shutdown,
                )
                .await
                .context("gRPC server failed")
        }));
    }
    let app = app
        .layer(axum::middleware::from_fn(telemetry::http_metrics))
        .layer(
            // Spans name the method and route, never the URI: queries carry personal data.
            // A caller's `traceparent` makes this request part of its trace.
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "-".into());
                    let parent = req
                        .headers()
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!(
                        target: hospital_telemetry::trace::SPAN_TARGET,
                        "http",
                        method = %req.method(),
                        route = %route,
                        traceparent = parent,
                        otel.kind = "server"
                    )
                },
            ),
        );
    // `POST /fhir/` and `/fhir/Patient/`: clients that join paths onto a base URL send a
    // trailing slash; every route answers with and without one.
    let app = tower::Layer::layer(
        &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
        app,
    );
    let shutdown = wait(stopped.clone());
    tasks.push(tokio::spawn(async move {
        axum::serve(
            http,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(app),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server failed")
    }));
    let metrics_addr = match cfg.metrics_addr.trim() {
        "" => None,
        addr => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            let bound = listener.local_addr()?;
            let shutdown = wait(stopped.clone());
            let routes = telemetry::metrics_routes(store.clone());
            tasks.push(tokio::spawn(async move {
                axum::serve(listener, routes)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .context("metrics server failed")
            }));
            Some(bound)
        }
    };
    ready.set(true);
    Ok(Running {
        http_addr,
        metrics_addr,
        ready,
        grpc_addrs,
        store,
        platform,
        context,
        tasks,
        stop,
        sealer,
        statistics,
        background,
    })
}
