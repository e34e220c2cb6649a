//! The command line. Every flag has an environment variable (`hospital --help`); the flags
//! themselves are the host's [`Config`].

use clap::{Parser, Subcommand};

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
    /// Run the telemedicine service alone (schedules, slots, appointments, video visits).
    Telemedicine,
    /// Run the billing service alone (prices, invoices, VietQR payments).
    Billing,
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
        /// The token's subject (user or service name): the audit trail's actor. Defaults to
        /// --patient or --practitioner; required otherwise.
        #[arg(long)]
        subject: Option<String>,
        /// SMART scopes, space-separated, e.g. "user/Observation.read".
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime: 30m, 8h, 7d.
        #[arg(long, default_value = "8h")]
        ttl: String,
    },
    /// Pay a bill as a bank feed would: post a correctly signed Casso webhook for the bill
    /// with this payment code to the running system (e.g. `hospital simulate-payment VP1A2B3C4D`).
    SimulatePayment {
        /// The bill's payment code (`VP...`), as its page and `$payment-qr` show it.
        code: String,
        /// The amount in đồng (default: what the bill owes).
        #[arg(long)]
        amount: Option<i64>,
        /// The running system (default: http://HTTP_ADDR).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print where requests go when the services run as separate processes, from the
    /// ownership table: the Kubernetes Ingress (`k8s/base/ingress.yaml`) or nginx locations.
    Routes {
        /// The Ingress, as YAML.
        #[arg(long, conflicts_with = "nginx")]
        ingress: bool,
        /// nginx `location` blocks.
        #[arg(long)]
        nginx: bool,
    },
    /// Copy the embedded (SQLite) store to a file while it runs and writes continue (a
    /// consistent snapshot), or, on PostgreSQL, dump it with `pg_dump` (custom format).
    Backup {
        /// Where the copy goes (must not exist).
        file: std::path::PathBuf,
    },
    /// Replace the store with a backup (stop the services first): the SQLite file is checked
    /// and swapped in whole; on PostgreSQL `pg_restore` loads it into the (empty or
    /// previous) database in one transaction.
    Restore {
        /// A file `hospital backup` wrote.
        file: std::path::PathBuf,
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

pub use hospital_host::config::{Config, TEST_SECRET};
