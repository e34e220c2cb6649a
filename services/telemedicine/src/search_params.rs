//! The search parameters of the types the telemedicine service owns, declared once: the same
//! declaration drives index extraction, query parsing and the CapabilityStatement. Every
//! process installs them (with every other service's), so every process indexes alike.

use hospital_core::store::params::SearchParam;

const PATIENT: &[&str] = &["Patient"];

/// The telemedicine service's search parameters, besides the common `_id` and `_lastUpdated`.
pub static SEARCH_PARAMS: &[SearchParam] = &[
    SearchParam::reference("Schedule", "actor", &["actor"], &[]),
    SearchParam::reference("Appointment", "actor", &["participant.actor"], &[]),
    SearchParam::reference("Appointment", "patient", &["participant.actor"], PATIENT),
];
