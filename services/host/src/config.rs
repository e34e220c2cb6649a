//! Configuration of a process, from flags and the environment: every flag has an environment
//! variable. Each service has its own gRPC listen address.

use clap::Args;

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
    /// gRPC listen address of the telemedicine service.
    #[arg(
        long,
        env = "HOSPITAL_TELEMEDICINE_GRPC_ADDR",
        default_value = "127.0.0.1:50052",
        global = true
    )]
    pub telemedicine_grpc_addr: String,
    /// gRPC listen address of the billing service.
    #[arg(
        long,
        env = "HOSPITAL_BILLING_GRPC_ADDR",
        default_value = "127.0.0.1:50053",
        global = true
    )]
    pub billing_grpc_addr: String,
    /// Where other services reach the records service's gRPC (default: its listen address).
    #[arg(long, env = "HOSPITAL_RECORDS_GRPC_URL", global = true)]
    pub records_grpc_url: Option<String>,
    /// Where other services reach the telemedicine service's gRPC.
    #[arg(long, env = "HOSPITAL_TELEMEDICINE_GRPC_URL", global = true)]
    pub telemedicine_grpc_url: Option<String>,
    /// Where other services reach the billing service's gRPC.
    #[arg(long, env = "HOSPITAL_BILLING_GRPC_URL", global = true)]
    pub billing_grpc_url: Option<String>,
    /// Deadline of every call to another service, in milliseconds.
    #[arg(
        long,
        env = "HOSPITAL_GRPC_DEADLINE_MS",
        default_value_t = 5000,
        global = true
    )]
    pub grpc_deadline_ms: u64,
    /// Production: the identity provider's token endpoint, for the services' own tokens
    /// (OAuth2 client-credentials grant). Embedded mode mints them locally.
    #[arg(long, env = "HOSPITAL_OAUTH_TOKEN_URL", global = true)]
    pub oauth_token_url: Option<String>,
    /// Production: the identity provider's authorization endpoint, for signing browsers in
    /// to the web pages (authorization code with PKCE; the code is redeemed at
    /// HOSPITAL_OAUTH_TOKEN_URL). Without it, embedded mode's local sign-in page is used.
    #[arg(long, env = "HOSPITAL_OIDC_AUTHORIZATION_URL", global = true)]
    pub oidc_authorization_url: Option<String>,
    /// This service's client id at the identity provider.
    #[arg(long, env = "HOSPITAL_OAUTH_CLIENT_ID", global = true)]
    pub oauth_client_id: Option<String>,
    /// This service's client secret at the identity provider.
    #[arg(
        long,
        env = "HOSPITAL_OAUTH_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub oauth_client_secret: Option<String>,
    /// Proxies (the ingress) whose X-Forwarded-For names the client: comma-separated
    /// addresses or networks (`10.244.0.0/16`, the ingress controller pods' network).
    #[arg(
        long,
        env = "HOSPITAL_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<hospital_core::ipnet::IpNet>,
    /// Public base URL used in links and Location headers (default: http://HTTP_ADDR).
    #[arg(long, env = "HOSPITAL_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// How long producing one response may take, in milliseconds (streams are exempt once
    /// their head is sent).
    #[arg(
        long,
        env = "HOSPITAL_REQUEST_TIME_LIMIT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub request_time_limit_ms: u64,
    /// Requests of one person (by identity, not address) that run at once; more wait.
    #[arg(
        long,
        env = "HOSPITAL_CALLER_RUNNING",
        default_value_t = 4,
        global = true
    )]
    pub caller_running: usize,
    /// Requests of one person that may wait for a place; past it they get 429.
    #[arg(
        long,
        env = "HOSPITAL_CALLER_QUEUED",
        default_value_t = 64,
        global = true
    )]
    pub caller_queued: usize,
    /// Requests of one service token that run at once (a service relays many users' work).
    #[arg(
        long,
        env = "HOSPITAL_SERVICE_RUNNING",
        default_value_t = 256,
        global = true
    )]
    pub service_running: usize,
    /// The hospital's name, as the payment page and receipts show it.
    #[arg(
        long,
        env = "HOSPITAL_NAME",
        default_value = "Bệnh viện Đa khoa tỉnh Quảng Ngãi",
        global = true
    )]
    pub hospital_name: String,
    /// The hospital's level for BHYT referral ratios: `specialised` (provincial and central
    /// hospitals) or `basic` (district hospitals and below).
    #[arg(
        long,
        env = "HOSPITAL_FACILITY_LEVEL",
        default_value = "specialised",
        value_parser = ["specialised", "basic"],
        global = true
    )]
    pub facility_level: String,
    /// The acquirer BIN of the bank that receives patients' payments (see billing's banks.csv).
    #[arg(
        long,
        env = "HOSPITAL_BANK_BIN",
        default_value = "970415",
        global = true
    )]
    pub bank_bin: String,
    /// The hospital's receiving account at that bank.
    #[arg(
        long,
        env = "HOSPITAL_BANK_ACCOUNT",
        default_value = "113366668888",
        global = true
    )]
    pub bank_account: String,
    /// The account holder's name, as the bank shows it (for paying by hand).
    #[arg(
        long,
        env = "HOSPITAL_BANK_ACCOUNT_NAME",
        default_value = "BENH VIEN DA KHOA TINH QUANG NGAI",
        global = true
    )]
    pub bank_account_name: String,
    /// SePay webhooks authenticated by `Authorization: Apikey <key>`.
    #[arg(
        long,
        env = "HOSPITAL_SEPAY_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub sepay_api_key: Option<String>,
    /// SePay webhooks signed with HMAC-SHA256 (`X-SePay-Signature`); wins over the API key.
    #[arg(
        long,
        env = "HOSPITAL_SEPAY_HMAC_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub sepay_hmac_secret: Option<String>,
    /// Casso webhook v2 secure token (`X-Casso-Signature`).
    #[arg(
        long,
        env = "HOSPITAL_CASSO_KEY",
        hide_env_values = true,
        global = true
    )]
    pub casso_key: Option<String>,
    /// payOS checksum key (the `signature` of its webhooks).
    #[arg(
        long,
        env = "HOSPITAL_PAYOS_CHECKSUM_KEY",
        hide_env_values = true,
        global = true
    )]
    pub payos_checksum_key: Option<String>,
    /// VNPay hash secret (`vnp_SecureHash` of its IPN).
    #[arg(
        long,
        env = "HOSPITAL_VNPAY_HASH_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub vnpay_hash_secret: Option<String>,
    /// Telemedicine: seconds a `$hold` keeps a slot for the patient.
    #[arg(long, env = "HOSPITAL_HOLD_SECS", default_value_t = 300, global = true)]
    pub hold_secs: u32,
    /// Telemedicine: seconds a prepaid visit waits for its payment before it is released and
    /// its invoice cancelled (15 minutes).
    #[arg(
        long,
        env = "HOSPITAL_PAYMENT_WINDOW_SECS",
        default_value_t = 900,
        global = true
    )]
    pub payment_window_secs: u32,
    /// Telemedicine: whether in-person visits are prepaid too (video visits booked by a
    /// patient always are: direct-to-patient telemedicine is self-pay).
    #[arg(
        long,
        env = "HOSPITAL_PREPAY_IN_PERSON",
        default_value_t = false,
        global = true
    )]
    pub prepay_in_person: bool,
    /// Telemedicine: whether visits booked by staff are prepaid too.
    #[arg(
        long,
        env = "HOSPITAL_PREPAY_STAFF_BOOKINGS",
        default_value_t = false,
        global = true
    )]
    pub prepay_staff_bookings: bool,
    /// Telemedicine: the price-list code of a video consultation, what a prepaid video visit
    /// is invoiced (the in-person visit's is the slot's service type).
    #[arg(
        long,
        env = "HOSPITAL_VIDEO_VISIT_CODE",
        default_value = "KB.TX",
        global = true
    )]
    pub video_visit_code: String,
    /// Telemedicine: how often holds, unpaid visits and no-shows are swept, and slots kept
    /// generated, in milliseconds.
    #[arg(
        long,
        env = "HOSPITAL_SWEEP_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub sweep_ms: u64,
    /// Telemedicine: minutes before a visit's start its participants may join (until its end).
    #[arg(
        long,
        env = "HOSPITAL_JOIN_EARLY_MINUTES",
        default_value_t = 15,
        global = true
    )]
    pub join_early_minutes: u32,
    /// Telemedicine: STUN servers given to the browsers (comma-separated `stun:` URLs).
    #[arg(long, env = "HOSPITAL_STUN_URLS", value_delimiter = ',', global = true)]
    pub stun_urls: Vec<String>,
    /// Telemedicine: TURN servers (comma-separated `turn:`/`turns:` URLs) for patients behind
    /// strict NAT, with coturn's shared secret (`static-auth-secret`).
    #[arg(long, env = "HOSPITAL_TURN_URLS", value_delimiter = ',', global = true)]
    pub turn_urls: Vec<String>,
    #[arg(
        long,
        env = "HOSPITAL_TURN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub turn_secret: Option<String>,
    /// Telemedicine: the key of visit join tokens, the same on every replica (default: derived
    /// from the local token secret).
    #[arg(
        long,
        env = "HOSPITAL_VISIT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub visit_secret: Option<String>,
    /// Telemedicine: signalling connections one process holds at most (then 503).
    #[arg(
        long,
        env = "HOSPITAL_MAX_SIGNALLING",
        default_value_t = 5_000,
        global = true
    )]
    pub max_signalling: usize,
    /// Live payment-page status streams one process keeps open at most (then 429).
    #[arg(
        long,
        env = "HOSPITAL_MAX_PAGE_STREAMS",
        default_value_t = 512,
        global = true
    )]
    pub max_page_streams: usize,
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
    /// How long keys fetched from the JWKS are trusted before they are fetched again, in
    /// seconds: a key the provider removed stops being trusted within this time.
    #[arg(
        long,
        env = "HOSPITAL_OIDC_JWKS_TTL_SECS",
        default_value_t = 300,
        global = true
    )]
    pub oidc_jwks_ttl_secs: u64,
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
    /// Log lines as `text`, or `json` (one object a line, with the trace id) for a log
    /// pipeline.
    #[arg(
        long,
        env = "HOSPITAL_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
    /// Where Prometheus scrapes `/metrics` (its own port, no authentication: keep it off the
    /// public network). Empty: not served.
    #[arg(
        long,
        env = "HOSPITAL_METRICS_ADDR",
        default_value = "127.0.0.1:9090",
        global = true
    )]
    pub metrics_addr: String,
    /// On SIGTERM, how long the process keeps serving with `/readyz` answering 503 (so the
    /// load balancer stops sending it requests) before it stops accepting, in seconds.
    #[arg(long, env = "HOSPITAL_DRAIN_SECS", default_value_t = 5, global = true)]
    pub drain_secs: u64,
    /// A directory of secrets mounted as files (Kubernetes): each file named like one of
    /// these environment variables (`DATABASE_URL`, `HOSPITAL_CASSO_KEY`, ...) sets it,
    /// unless the variable or its flag is given.
    #[arg(long, env = "HOSPITAL_SECRETS_DIR", global = true)]
    pub secrets_dir: Option<String>,
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
            telemedicine_grpc_addr: "127.0.0.1:0".into(),
            billing_grpc_addr: "127.0.0.1:0".into(),
            trusted_proxies: Vec::new(),
            records_grpc_url: None,
            telemedicine_grpc_url: None,
            billing_grpc_url: None,
            grpc_deadline_ms: 5000,
            oauth_token_url: None,
            oidc_authorization_url: None,
            oauth_client_id: None,
            oauth_client_secret: None,
            public_url: None,
            max_body_bytes: 10 * 1024 * 1024,
            hospital_name: "Bệnh viện Đa khoa tỉnh Quảng Ngãi".into(),
            facility_level: "specialised".into(),
            bank_bin: "970415".into(),
            bank_account: "113366668888".into(),
            bank_account_name: "BENH VIEN DA KHOA TINH QUANG NGAI".into(),
            sepay_api_key: Some("test-sepay-key".into()),
            sepay_hmac_secret: None,
            casso_key: Some("test-casso-key".into()),
            payos_checksum_key: Some("test_checksum_key".into()),
            vnpay_hash_secret: Some("test_secret".into()),
            max_page_streams: 512,
            hold_secs: 300,
            payment_window_secs: 900,
            prepay_in_person: false,
            prepay_staff_bookings: false,
            video_visit_code: "KB.TX".into(),
            sweep_ms: 200,
            join_early_minutes: 15,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            visit_secret: None,
            max_signalling: 5_000,
            request_time_limit_ms: 30_000,
            caller_running: 4,
            caller_queued: 64,
            service_running: 256,
            log: "warn".into(),
            log_format: "text".into(),
            metrics_addr: "127.0.0.1:0".into(),
            drain_secs: 0,
            secrets_dir: None,
            jwt_secret: Some(TEST_SECRET.into()),
            secret_file: String::new(),
            oidc_jwks_url: None,
            oidc_jwks_ttl_secs: 300,
            oidc_issuer: "hospital-local".into(),
            oidc_audience: "hospital".into(),
        }
    }
}

impl Config {
    /// The bounds on one caller's requests.
    pub fn limits(&self) -> hospital_core::Limits {
        hospital_core::Limits {
            running: self.caller_running.max(1),
            queued: self.caller_queued,
            service_running: self.service_running.max(1),
            time: std::time::Duration::from_millis(self.request_time_limit_ms.max(1)),
        }
    }

    /// Where other services reach `service`, if configured.
    pub fn grpc_url(&self, service: hospital_core::ServiceName) -> Option<&str> {
        match service {
            hospital_core::ServiceName::Records => self.records_grpc_url.as_deref(),
            hospital_core::ServiceName::Telemedicine => self.telemedicine_grpc_url.as_deref(),
            hospital_core::ServiceName::Billing => self.billing_grpc_url.as_deref(),
        }
    }

    /// The gRPC listen address of `service`.
    pub fn grpc_addr(&self, service: hospital_core::ServiceName) -> &str {
        match service {
            hospital_core::ServiceName::Records => &self.records_grpc_addr,
            hospital_core::ServiceName::Telemedicine => &self.telemedicine_grpc_addr,
            hospital_core::ServiceName::Billing => &self.billing_grpc_addr,
        }
    }
}
