//! The platform every service stands on, below both edges (FHIR REST and gRPC):
//!
//! - [`Writer`] — the single write door; it runs the owner's [`ResourceRules`] on every
//!   write, whatever the door.
//! - [`Caller`] and [`compartment`] — who is calling, and the one rule of what belongs to a
//!   patient.
//! - [`Tx`] — the audited transaction.
//! - [`Platform::authenticate`] — authentication, once for every transport.
//! - [`ownership`] — which service writes each type, fixed and known to every process.
//! - [`Error`] — one error type with stable codes, translated by the edges.
//!
//! Raw store writes are not reachable outside this crate: a store write transaction needs
//! the store's write key, which only this crate holds (no other crate depends on the store).

pub mod admission;
pub mod authn;
pub mod caller;
pub mod compartment;
pub mod conditional;
pub mod error;
pub mod interaction;
pub mod ipnet;
pub mod lanes;
pub mod operation;
pub mod ownership;
pub mod patch;
pub mod platform;
pub mod read;
pub mod rules;
pub mod session;
pub mod signing;
pub mod touched;
pub mod tx;
pub mod validation;
pub mod visibility;
pub mod writer;

pub use authn::Credentials;
pub use caller::Caller;
pub use error::{Code, Error, Kind, codes};
pub use interaction::{AuditAction, Interaction};
pub use lanes::{Admitted, Limits};
pub use operation::Operation;
pub use ownership::{Deployment, ServiceName};
pub use patch::JsonPatch;
pub use platform::{Platform, Security};
pub use rules::{Checks, Origin, ResourceRules, ServiceDefinition, Write, WriteKind};
pub use touched::Touched;
pub use tx::Tx;
pub use visibility::{reveal, reveal_version, visible};
pub use writer::Writer;

/// What services read of the store, re-exported: reads, search, history and their types. The
/// store's write transaction is not among them.
pub mod store {
    pub use hospital_store::audit::{AuditQuery, AuditRecord, AuditRow, AuditSink};
    pub use hospital_store::signing::{KeyStore, LocalKeyStore, sorted_json};
    pub use hospital_store::{
        Dialect, HistoryPage, HistoryQuery, HistoryScope, Method, SearchQuery, SearchResult, Store,
        StoreError, StoreOptions, Version, WriteOutcome, dates, deliveries, extract, is_valid_id,
        outbox, params, signals, text,
    };
}

pub use hospital_auth as auth;

/// The store's write key, held by this crate alone.
pub(crate) static WRITE_KEY: hospital_store::WriteKey = hospital_store::WriteKey::PLATFORM;

/// Refuses `action` on `resource_type` unless the caller's role and scopes allow it.
pub fn authorize(
    caller: &Caller,
    action: hospital_auth::Action,
    resource_type: &str,
) -> Result<(), Error> {
    if caller.principal.may(action, resource_type) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "the {} role may not {} {resource_type}",
            caller.principal.role.as_str(),
            match action {
                hospital_auth::Action::Read => "read",
                hospital_auth::Action::Write => "write",
            }
        )))
    }
}
