//! FHIR operations a service defines on its types (`GET /fhir/Invoice/{id}/$payment-qr`,
//! `POST /fhir/Invoice/$issue`):
//! the service implements the operation in its own terms; the FHIR edge only routes to it,
//! renders its result, and audits it like any other interaction.

use crate::caller::Caller;
use crate::error::Error;
use crate::interaction::AuditAction;
use crate::touched::Touched;
use async_trait::async_trait;
use serde_json::Value;

/// One operation: on an instance, `GET` or `POST [base]/{type}/{id}/${name}`, or on the type,
/// `GET` or `POST [base]/{type}/${name}`. A `GET` receives its query as `Parameters` (each
/// query parameter a `valueString`); a `POST` its body.
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
    /// Whether it is defined on the type (`[base]/{type}/${name}`) rather than an instance.
    fn on_type(&self) -> bool {
        false
    }
    /// Runs it for `caller` on the resource `id` (empty on the type): a FHIR resource (often `Parameters`) and
    /// what it touched. Authorisation and the compartment are the operation's to check,
    /// through the platform's functions.
    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error>;
}

/// A query string's parameters as FHIR `Parameters` (each a `valueString`): the input of an
/// operation invoked by `GET`.
pub fn query_parameters(pairs: &[(String, String)]) -> Value {
    let parameter: Vec<Value> = pairs
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "valueString": v}))
        .collect();
    serde_json::json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The parameter `name` of a `Parameters` resource.
pub fn parameter<'a>(input: &'a Value, name: &str) -> Option<&'a Value> {
    input
        .get("parameter")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
}

/// The `value[x]` of the parameter `name` as a string (`valueString`, `valueCode`,
/// `valueDate`, `valueUri`, a `valueReference`'s reference, ...).
pub fn parameter_text<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    let p = parameter(input, name)?.as_object()?;
    p.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("valueReference", r) => r.get("reference").and_then(Value::as_str),
        (k, Value::String(s)) if k.starts_with("value") => Some(s.as_str()),
        _ => None,
    })
}
