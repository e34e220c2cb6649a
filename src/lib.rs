//! The `hospital` system: the three services composed over one record store. `main.rs` only
//! parses the command line; tests start the same system with [`start`].

pub mod backup;
pub mod config;
pub mod routes;
pub mod seed;
pub mod simulate;

use hospital_core::{Deployment, ServiceName};
use hospital_host::Registration;

pub use config::Config;
pub use hospital_host::Running;

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    All,
    Records,
    Telemedicine,
    Billing,
}

impl Service {
    pub fn deployment(self) -> Deployment {
        match self {
            Service::All => Deployment::all(),
            Service::Records => Deployment::only(ServiceName::Records),
            Service::Telemedicine => Deployment::only(ServiceName::Telemedicine),
            Service::Billing => Deployment::only(ServiceName::Billing),
        }
    }
}

/// Every service's registration. Every process links and registers them all; the
/// deployment decides which ones it serves.
pub fn registrations() -> Vec<Registration> {
    vec![
        hospital_records::registration(),
        hospital_telemedicine::registration(),
        hospital_billing::registration(),
    ]
}

/// Starts `service` (or the whole system) as configured. Listens before it returns.
pub async fn start(cfg: &Config, service: Service) -> anyhow::Result<Running> {
    hospital_host::start(cfg, &registrations(), service.deployment()).await
}

/// Opens the store as every process does.
pub async fn open_store(cfg: &Config) -> anyhow::Result<hospital_core::store::Store> {
    let registry = hospital_host::registry(&registrations())?;
    hospital_host::open_store(cfg, &registry).await
}

/// The token verifier the configuration asks for.
pub fn authenticator(cfg: &Config) -> anyhow::Result<hospital_core::auth::Authenticator> {
    hospital_host::authenticator(cfg)
}
