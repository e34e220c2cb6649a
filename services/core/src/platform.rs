//! The platform one process runs on: the record store, every service's rules, which services
//! this process runs, and who may call.

use crate::caller::Caller;
use crate::error::{Error, codes};
use crate::interaction::Interaction;
use crate::lanes::{Admission, Limits};
use crate::ownership::{Deployment, owner_of};
use crate::rules::Registry;
use crate::touched::Touched;
use crate::tx::Tx;
use crate::writer::Writer;
use hospital_store::Store;
use hospital_store::audit::AuditSink;
use hospital_store::signing::KeyStore;
use std::sync::Arc;

/// Bounds on the work one request may cause (searches bound theirs in the store's search).
pub mod limits {
    /// Entries of one batch or transaction Bundle.
    pub const MAX_BUNDLE_ENTRIES: usize = 1000;
}

/// Who may call, how failed sign-ins are slowed, where actions are recorded, who signs.
pub struct Security {
    pub auth: hospital_auth::Authenticator,
    pub throttle: hospital_auth::Throttle,
    pub audit: AuditSink,
    pub keys: Arc<dyn KeyStore>,
    /// Proxies (e.g. the ingress) whose `X-Forwarded-For` names the real client.
    pub trusted_proxies: Vec<crate::ipnet::IpNet>,
    /// How much one caller may run at once, and for how long.
    pub limits: Limits,
}

/// Cheap to clone; every clone shares the same store and registry.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    deployment: Deployment,
    security: Security,
    admission: Admission,
}

impl Platform {
    pub fn new(
        store: Store,
        registry: Registry,
        deployment: Deployment,
        security: Security,
    ) -> Platform {
        Platform {
            inner: Arc::new(Inner {
                store,
                registry,
                deployment,
                security,
                admission: Admission::default(),
            }),
        }
    }

    /// The store, for reads. Writes go through [`Platform::writer`] in a [`crate::Tx`].
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn deployment(&self) -> &Deployment {
        &self.inner.deployment
    }

    pub fn security(&self) -> &Security {
        &self.inner.security
    }

    pub fn limits(&self) -> Limits {
        self.inner.security.limits
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// Begins a write transaction on behalf of `caller`.
    pub async fn begin(&self, caller: &Caller) -> Result<Tx, Error> {
        let mut inner = self.store().begin(&crate::WRITE_KEY).await?;
        inner.set_author(&caller.principal.audit_name());
        Ok(Tx::new(inner, caller.clone(), self.clone()))
    }

    /// The one write door.
    pub fn writer(&self) -> Writer<'_> {
        Writer {
            registry: &self.inner.registry,
        }
    }

    /// Refuses a plain REST write of a type this process does not write, naming the owner
    /// (405). Bundles may carry any type: each entry runs its owner's rules wherever it lands.
    pub fn check_written_here(&self, resource_type: &str) -> Result<(), Error> {
        if !hospital_fhir_model::is_supported(resource_type) {
            return Err(Error::new(
                codes::NO_SUCH_ENDPOINT,
                format!("resource type `{resource_type}` is not supported"),
            ));
        }
        match owner_of(resource_type) {
            Some(s) if self.inner.deployment.runs(s) => Ok(()),
            Some(s) => Err(Error::new(
                codes::OWNED_ELSEWHERE,
                format!("{resource_type} is written by the {s} service, not by this process"),
            )),
            None => Err(Error::new(
                codes::NOT_SUPPORTED,
                format!("{resource_type} is read-only: no service writes it"),
            )),
        }
    }

    /// Records what a request did (reads; a refused request) and returns once the record is
    /// durable. If it cannot be written, the request must fail.
    pub async fn audit(
        &self,
        caller: &Caller,
        interaction: Interaction,
        resource_type: &str,
        touched: &Touched,
        status: u16,
    ) -> Result<(), Error> {
        let record = touched.record(caller, interaction, resource_type, status);
        self.inner.security.audit.record(record).await.map_err(|e| {
            tracing::error!(error = %e, "audit record could not be written");
            Error::new(codes::AUDIT_UNAVAILABLE, "audit unavailable")
        })
    }
}
