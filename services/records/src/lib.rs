//! The records service: patients, practitioners, organisations, coverage (BHYT cards),
//! encounters and the clinical record. It owns those resource types in the shared store,
//! enforces their rules on every write, and serves `hospital.records.v1` over gRPC.

pub mod grpc;
pub mod identifiers;
pub mod rules;

use hospital_fhir_http::Owners;
use std::sync::Arc;

/// Identifier systems that name one Patient only.
pub const UNIQUE_IDENTIFIERS: &[(&str, &str)] = &[
    ("Patient", identifiers::NATIONAL_ID),
    ("Patient", identifiers::PATIENT_INTERNAL_ID),
];

/// Declares the records service as owner of its resource types.
pub fn register(owners: &mut Owners) {
    let rules = Arc::new(rules::RecordsRules);
    for t in rules::OWNED_TYPES {
        owners.own("records", t, rules.clone());
    }
}
