//! The FHIR REST edge (<https://hl7.org/fhir/R4B/http.html>), shared by every service:
//! routing by resource type, content negotiation, conditional requests, Bundles, search result
//! Bundles with keyset `next` links, and the CapabilityStatement. Only this crate knows the
//! JSON wire shapes of HTTP responses.
//!
//! Services plug their rules in per resource type with [`ResourceRules`]; every write door
//! (plain REST, transaction/batch Bundles, gRPC through [`Writer`]) runs the same rules.

mod audit_event;
mod bundle;
mod capability;
mod error;
mod rest;
pub mod security;
mod signing;

use async_trait::async_trait;
use hospital_store::{Store, Tx};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub use bundle::process as process_bundle;
pub use error::ApiError;
pub use rest::{begin_as, commit_audited, router};

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The rules of the service that owns a resource type. Called inside the write transaction.
#[async_trait]
pub trait ResourceRules: Send + Sync {
    /// Checks and completes a resource before it is stored (identifier rules, assigned codes).
    /// `id` is the id it will be stored under; `creating` is true for a POST (a new id).
    async fn prepare(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        creating: bool,
        body: &mut Value,
    ) -> Result<(), ApiError>;

    /// Checks a stored resource against the rest of the store once every write of the
    /// transaction is done (e.g. that its references resolve).
    async fn check(&self, tx: &mut Tx, resource_type: &str, body: &Value) -> Result<(), ApiError>;
}

/// Which service owns (writes) which resource types, with their rules.
#[derive(Clone, Default)]
pub struct Owners {
    rules: HashMap<&'static str, (&'static str, Arc<dyn ResourceRules>)>,
}

impl Owners {
    /// Declares that `service` owns `resource_type` and enforces `rules` on it.
    pub fn own(
        &mut self,
        service: &'static str,
        resource_type: &'static str,
        rules: Arc<dyn ResourceRules>,
    ) {
        self.rules.insert(resource_type, (service, rules));
    }

    pub fn rules(&self, resource_type: &str) -> Option<&Arc<dyn ResourceRules>> {
        self.rules.get(resource_type).map(|(_, r)| r)
    }

    pub fn owned_types(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.rules.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// Configuration of the FHIR edge.
#[derive(Clone, Debug)]
pub struct FhirConfig {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// The public base URL of `/fhir` used in links (e.g. `http://127.0.0.1:8080/fhir`).
    pub base_url: String,
}

/// Who may call, how they are throttled, where their actions are recorded, who signs.
pub struct Security {
    pub auth: hospital_auth::Authenticator,
    pub throttle: hospital_auth::Throttle,
    pub audit: hospital_store::audit::AuditSink,
    pub keys: Arc<dyn hospital_store::signing::KeyStore>,
}

/// Shared state of the FHIR edge.
#[derive(Clone)]
pub struct FhirApi {
    pub store: Store,
    pub owners: Owners,
    pub config: FhirConfig,
    pub security: Arc<Security>,
}

/// Writes through the owners' rules; the one door every transport uses.
pub struct Writer<'a> {
    api: &'a FhirApi,
}

impl FhirApi {
    pub fn writer(&self) -> Writer<'_> {
        Writer { api: self }
    }
}

/// Splits an `If-Match` value `W/"3"` (or `"3"`, or `3`) into the version number.
pub fn parse_etag(v: &str) -> Option<i64> {
    v.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

impl Writer<'_> {
    fn rules(&self, resource_type: &str) -> Result<&Arc<dyn ResourceRules>, ApiError> {
        if !hospital_fhir_model::is_supported(resource_type) {
            return Err(ApiError::NotFound(format!(
                "resource type `{resource_type}` is not supported"
            )));
        }
        self.api.owners.rules(resource_type).ok_or_else(|| {
            ApiError::MethodNotAllowed(format!(
                "no service of this deployment writes {resource_type}"
            ))
        })
    }

    /// Creates `body` (server-assigned id unless `id` is given) and checks it.
    pub async fn create(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: Option<&str>,
        mut body: Value,
        check_now: bool,
    ) -> Result<hospital_store::WriteOutcome, ApiError> {
        let rules = self.rules(resource_type)?.clone();
        let id = id
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Value::Object(m) = &mut body {
            m.remove("id");
        }
        rules
            .prepare(tx, resource_type, &id, true, &mut body)
            .await?;
        let out = tx.create_with_id(resource_type, &id, body).await?;
        if check_now {
            self.check(tx, &out.version).await?;
        }
        Ok(out)
    }

    /// Updates (or creates at a client-chosen id) `resource_type/id`. A signed entry is
    /// refused: it can only be amended ([`Writer::amend`]).
    pub async fn update(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
        check_now: bool,
    ) -> Result<hospital_store::WriteOutcome, ApiError> {
        if tx.is_signed(resource_type, id).await? {
            return Err(ApiError::Conflict(format!(
                "{resource_type}/{id} is signed; correct it with $amend and a reason"
            )));
        }
        self.update_any(tx, resource_type, id, body, if_match, check_now)
            .await
    }

    /// The amendment of a (signed) entry: a new version; the caller signs it in the same
    /// transaction.
    pub async fn amend(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        body: Value,
    ) -> Result<hospital_store::WriteOutcome, ApiError> {
        tx.read(resource_type, id).await?;
        self.update_any(tx, resource_type, id, body, None, true)
            .await
    }

    async fn update_any(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        mut body: Value,
        if_match: Option<i64>,
        check_now: bool,
    ) -> Result<hospital_store::WriteOutcome, ApiError> {
        let rules = self.rules(resource_type)?.clone();
        match body.get("id").and_then(Value::as_str) {
            Some(b) if b == id => {}
            Some(b) => {
                return Err(ApiError::invalid(
                    format!("{resource_type}.id"),
                    format!("the body's id `{b}` differs from the id `{id}` in the URL"),
                ));
            }
            None => {
                return Err(ApiError::invalid(
                    format!("{resource_type}.id"),
                    "an update must carry the resource id in the body",
                ));
            }
        }
        rules
            .prepare(tx, resource_type, id, false, &mut body)
            .await?;
        let out = tx.update(resource_type, id, body, if_match).await?;
        if check_now {
            self.check(tx, &out.version).await?;
        }
        Ok(out)
    }

    /// Deletes `resource_type/id`.
    pub async fn delete(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<hospital_store::Version>, ApiError> {
        self.rules(resource_type)?;
        if tx.is_signed(resource_type, id).await? {
            return Err(ApiError::Conflict(format!(
                "{resource_type}/{id} is signed and cannot be deleted; amend it with a reason"
            )));
        }
        Ok(tx.delete(resource_type, id).await?)
    }

    /// Runs the owner's post-write checks on a written version.
    pub async fn check(&self, tx: &mut Tx, v: &hospital_store::Version) -> Result<(), ApiError> {
        let rules = self.rules(&v.resource_type)?.clone();
        let body: Value = serde_json::from_str(&v.body)
            .map_err(|e| ApiError::Internal(format!("stored body unreadable: {e}")))?;
        rules.check(tx, &v.resource_type, &body).await
    }
}
