//! FHIR operations a service defines on its types (`GET /fhir/Invoice/{id}/$payment-qr`):
//! the service implements the operation in its own terms; the FHIR edge only routes to it,
//! renders its result, and audits it like any other interaction.

use crate::caller::Caller;
use crate::error::Error;
use crate::interaction::AuditAction;
use crate::touched::Touched;
use async_trait::async_trait;
use serde_json::Value;

/// One instance-level operation, `GET` or `POST [base]/{type}/{id}/${name}`.
#[async_trait]
pub trait Operation: Send + Sync {
    /// The type it is defined on (one the service owns).
    fn resource_type(&self) -> &'static str;
    /// Its name with the `$` (`$payment-qr`).
    fn name(&self) -> &'static str;
    /// How its audit record classes it.
    fn action(&self) -> AuditAction;
    /// Whether it is invoked by `POST` with a body (`Parameters`), rather than by `GET`.
    fn posted(&self) -> bool {
        false
    }
    /// Runs it for `caller` on the resource `id`: a FHIR resource (often `Parameters`) and
    /// what it touched. Authorisation and the compartment are the operation's to check,
    /// through the platform's functions.
    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error>;
}
