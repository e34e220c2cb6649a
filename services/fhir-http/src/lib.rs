//! The FHIR REST edge (<https://hl7.org/fhir/R4B/http.html>), shared by every service:
//! routing by resource type, content negotiation, conditional requests, Bundles, search result
//! Bundles with keyset `next` links, and the CapabilityStatement. Only this crate knows the
//! JSON wire shapes of HTTP responses. The rules live below it, in `hospital-core` and the
//! services' rules: every write goes through [`hospital_core::Writer`].

mod audit_event;
mod bundle;
mod capability;
pub mod error;
mod request;
mod response;
mod rest;
pub mod security;
mod signing;
mod subset;
mod validate;

use hospital_core::Platform;

pub use bundle::process as process_bundle;
pub use rest::router;

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Configuration of the FHIR edge.
#[derive(Clone, Debug)]
pub struct FhirConfig {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// The public base URL of `/fhir` used in links (e.g. `http://127.0.0.1:8080/fhir`).
    pub base_url: String,
}

/// Shared state of the FHIR edge.
#[derive(Clone)]
pub struct FhirApi {
    pub platform: Platform,
    pub config: FhirConfig,
    /// The FHIR operations of the services this process runs.
    pub operations: std::sync::Arc<[std::sync::Arc<dyn hospital_core::Operation>]>,
}

/// Splits an `If-Match` value `W/"3"` (or `"3"`, or `3`) into the version number.
pub fn parse_etag(v: &str) -> Option<i64> {
    v.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}
