//! The search parameters of the types the telemedicine service owns, declared once: the same
//! declaration drives index extraction, query parsing and the CapabilityStatement. Every
//! process installs them (with every other service's), so every process indexes alike.

use hospital_core::store::params::ParamKind::*;
use hospital_core::store::params::{ComboIndex, SearchParam};

const PATIENT: &[&str] = &["Patient"];
const PRACTITIONER: &[&str] = &["Practitioner"];

/// The telemedicine service's search parameters, besides the common `_id` and `_lastUpdated`.
pub static SEARCH_PARAMS: &[SearchParam] = &[
    SearchParam::reference("Schedule", "actor", &["actor"], &[]),
    SearchParam::new("Schedule", "active", Token, &["active"]),
    SearchParam::new("Schedule", "date", Date, &["planningHorizon"]),
    SearchParam::new("Schedule", "identifier", Token, &["identifier"]),
    SearchParam::new("Schedule", "service-category", Token, &["serviceCategory"]),
    SearchParam::new("Schedule", "service-type", Token, &["serviceType"]),
    SearchParam::new("Schedule", "specialty", Token, &["specialty"]),
    SearchParam::reference("Slot", "schedule", &["schedule"], &["Schedule"]),
    SearchParam::new("Slot", "start", Date, &["start"]).instant(),
    SearchParam::new("Slot", "status", Token, &["status"]),
    SearchParam::new("Slot", "identifier", Token, &["identifier"]),
    SearchParam::new("Slot", "service-category", Token, &["serviceCategory"]),
    SearchParam::new("Slot", "service-type", Token, &["serviceType"]),
    SearchParam::new("Slot", "specialty", Token, &["specialty"]),
    SearchParam::new("Slot", "appointment-type", Token, &["appointmentType"]),
    // The hospital's own: whose schedule the slot is on, and whether it is a video visit.
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
    SearchParam::reference("Appointment", "actor", &["participant.actor"], &[]),
    SearchParam::reference("Appointment", "patient", &["participant.actor"], PATIENT),
    SearchParam::reference(
        "Appointment",
        "practitioner",
        &["participant.actor"],
        PRACTITIONER,
    ),
    SearchParam::new("Appointment", "date", Date, &["start"]).instant(),
    SearchParam::new("Appointment", "status", Token, &["status"]),
    SearchParam::new("Appointment", "identifier", Token, &["identifier"]),
    SearchParam::reference("Appointment", "slot", &["slot"], &["Slot"]),
    SearchParam::new("Appointment", "service-type", Token, &["serviceType"]),
    SearchParam::new("Appointment", "specialty", Token, &["specialty"]),
    SearchParam::new(
        "Appointment",
        "appointment-type",
        Token,
        &["appointmentType"],
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
