//! The search parameters of the types the telemedicine service owns: FHIR's own are generated
//! from HL7's definitions into `fhir_search_params.rs`; the hospital's own, and the combined
//! indexes, are declared here. Each declaration drives index extraction, query parsing and the
//! CapabilityStatement; every process installs all of them, so every process indexes alike.

use hospital_core::store::params::ParamKind::*;
use hospital_core::store::params::{ComboIndex, SearchParam};

const PRACTITIONER: &[&str] = &["Practitioner"];

/// FHIR's and the hospital's own, as the service declares them.
pub static ALL: &[&[SearchParam]] = &[SEARCH_PARAMS, crate::fhir_search_params::FHIR_SEARCH_PARAMS];

/// The hospital's own search parameters of the telemedicine service's types (FHIR's are
/// generated into `fhir_search_params.rs`).
pub static SEARCH_PARAMS: &[SearchParam] = &[
    // Whose schedule the slot is on, and whether it is a video visit.
    SearchParam::reference(
        "Slot",
        "practitioner",
        &["extension(url=urn:hospital:slot:practitioner).valueReference"],
        PRACTITIONER,
    ),
    SearchParam::new(
        "Slot",
        "mode",
        Token,
        &["extension(url=urn:hospital:visit-mode).valueCode"],
    ),
    SearchParam::new(
        "Appointment",
        "mode",
        Token,
        &["extension(url=urn:hospital:visit-mode).valueCode"],
    ),
    // When a pending appointment lapses: what the sweep looks for.
    SearchParam::new(
        "Appointment",
        "expires",
        Date,
        &["extension(url=urn:hospital:appointment:expires).valueInstant"],
    ),
];

/// What patients and the booking desk search most: free slots of a specialty, or of a
/// service, by visit mode, over a range of days (`Slot?specialty=..&mode=video&status=free&
/// start=ge..&start=le..`), and a doctor's free slots of a day. Each condition alone is a
/// large share of every slot; combined, one range of one index (`BENCHMARKS.md`, slot search).
pub static COMBINED_INDEXES: &[ComboIndex] = &[
    ComboIndex {
        resource_type: "Slot",
        name: "practitioner-status-start",
        parts: &["practitioner", "status"],
        date: "start",
    },
    ComboIndex {
        resource_type: "Slot",
        name: "specialty-mode-status-start",
        parts: &["specialty", "mode", "status"],
        date: "start",
    },
    ComboIndex {
        resource_type: "Slot",
        name: "service-type-mode-status-start",
        parts: &["service-type", "mode", "status"],
        date: "start",
    },
];
