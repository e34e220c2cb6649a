//! Command line and environment configuration. Every flag has an environment variable.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hospital",
    version,
    about = "Hospital platform for Vietnam: FHIR records, telemedicine, VietQR billing"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system (the default).
    All,
    /// Run the records service alone (patients, coverage, encounters, clinical record).
    Records,
    /// Load data into the store.
    Seed {
        /// A small believable Vietnamese data set: a hospital in Quảng Ngãi, practitioners,
        /// patients with personal IDs and BHYT cards, encounters and observations.
        #[arg(long)]
        demo: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print a bearer token signed with the local secret (embedded mode).
    Token {
        /// patient, clinician, cashier, admin or service.
        #[arg(long)]
        role: String,
        /// The Patient a patient token reaches (required for --role patient).
        #[arg(long)]
        patient: Option<String>,
        /// The Practitioner a clinician is (needed to sign entries).
        #[arg(long)]
        practitioner: Option<String>,
        /// The token's subject (user name); defaults to the role.
        #[arg(long)]
        subject: Option<String>,
        /// SMART scopes, space-separated, e.g. "user/Observation.read".
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime: 30m, 8h, 7d.
        #[arg(long, default_value = "8h")]
        ttl: String,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Seal what is pending, then walk the whole chain; exits non-zero and names the first
    /// altered or missing row if the trail was tampered with.
    Verify,
}

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    All,
    Records,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Record store: sqlite://PATH (embedded, the default) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/hospital.db",
        global = true
    )]
    pub database_url: String,
    /// Database connections per process.
    #[arg(
        long,
        env = "HOSPITAL_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,
    /// HTTP listen address (FHIR at /fhir).
    #[arg(
        long,
        env = "HOSPITAL_HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: String,
    /// gRPC listen address of the records service.
    #[arg(
        long,
        env = "HOSPITAL_RECORDS_GRPC_ADDR",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub records_grpc_addr: String,
    /// Public base URL used in links and Location headers (default: http://HTTP_ADDR).
    #[arg(long, env = "HOSPITAL_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HOSPITAL_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Secret for local (embedded-mode) tokens. Default: generated once into --secret-file.
    #[arg(
        long,
        env = "HOSPITAL_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,
    /// Where the generated local token secret is kept.
    #[arg(
        long,
        env = "HOSPITAL_SECRET_FILE",
        default_value = "data/jwt-secret",
        global = true
    )]
    pub secret_file: String,
    /// Production: the hospital's OpenID Connect JWKS URL. Local tokens are then refused.
    #[arg(long, env = "HOSPITAL_OIDC_JWKS_URL", global = true)]
    pub oidc_jwks_url: Option<String>,
    /// Expected token issuer (`iss`).
    #[arg(
        long,
        env = "HOSPITAL_OIDC_ISSUER",
        default_value = "hospital-local",
        global = true
    )]
    pub oidc_issuer: String,
    /// Expected token audience (`aud`).
    #[arg(
        long,
        env = "HOSPITAL_OIDC_AUDIENCE",
        default_value = "hospital",
        global = true
    )]
    pub oidc_audience: String,
    /// Log filter, e.g. info or hospital=debug,tower_http=info.
    #[arg(long, env = "HOSPITAL_LOG", default_value = "info", global = true)]
    pub log: String,
}

/// The local token secret of test configurations.
pub const TEST_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

impl Config {
    /// A configuration for tests: the given database, ephemeral ports on loopback.
    pub fn for_tests(database_url: &str) -> Config {
        Config {
            database_url: database_url.to_owned(),
            db_max_connections: 8,
            http_addr: "127.0.0.1:0".into(),
            records_grpc_addr: "127.0.0.1:0".into(),
            public_url: None,
            max_body_bytes: 10 * 1024 * 1024,
            log: "warn".into(),
            jwt_secret: Some(TEST_SECRET.into()),
            secret_file: String::new(),
            oidc_jwks_url: None,
            oidc_issuer: "hospital-local".into(),
            oidc_audience: "hospital".into(),
        }
    }
}
