//! The search parameters of the types the billing service owns: FHIR's own are generated from
//! HL7's definitions into `fhir_search_params.rs`; the hospital's own are declared here. Each
//! declaration drives index extraction, query parsing and the CapabilityStatement; every
//! process installs all of them, so every process indexes alike.

use hospital_core::store::params::ParamKind::*;
use hospital_core::store::params::SearchParam;

const PATIENT: &[&str] = &["Patient"];

/// FHIR's and the hospital's own, as the service declares them.
pub static ALL: &[&[SearchParam]] = &[SEARCH_PARAMS, crate::fhir_search_params::FHIR_SEARCH_PARAMS];

/// The hospital's own search parameters of the billing service's types.
pub static SEARCH_PARAMS: &[SearchParam] = &[
    // The patient a payment is for (what puts it in their compartment), how it was classed,
    // its channel.
    SearchParam::reference(
        "PaymentNotice",
        "patient",
        &["extension(url=urn:hospital:payment:patient).valueReference"],
        PATIENT,
    ),
    SearchParam::new(
        "PaymentNotice",
        "outcome",
        Token,
        &["extension(url=urn:hospital:payment:outcome).valueCode"],
    ),
    SearchParam::new(
        "PaymentNotice",
        "channel",
        Token,
        &["extension(url=urn:hospital:payment:channel).valueCode"],
    ),
];
