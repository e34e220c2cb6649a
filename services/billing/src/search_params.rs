//! The search parameters of the types the billing service owns, declared once: the same
//! declaration drives index extraction, query parsing and the CapabilityStatement. Every
//! process installs them (with every other service's), so every process indexes alike.

use hospital_core::store::params::ParamKind::*;
use hospital_core::store::params::SearchParam;

const SUBJECT: &[&str] = &["subject"];
const PATIENT: &[&str] = &["Patient"];

/// The billing service's search parameters, besides the common `_id` and `_lastUpdated`.
pub static SEARCH_PARAMS: &[SearchParam] = &[
    SearchParam::new("ChargeItemDefinition", "url", Token, &["url"]),
    SearchParam::new("ChargeItemDefinition", "status", Token, &["status"]),
    SearchParam::new("ChargeItemDefinition", "title", String, &["title"]),
    SearchParam::new("ChargeItemDefinition", "version", Token, &["version"]),
    SearchParam::new(
        "ChargeItemDefinition",
        "effective",
        Date,
        &["effectivePeriod"],
    ),
    SearchParam::reference("ChargeItem", "subject", SUBJECT, &[]),
    SearchParam::new("ChargeItem", "code", Token, &["code"]),
    SearchParam::reference(
        "ChargeItem",
        "context",
        &["context"],
        &["Encounter", "EpisodeOfCare"],
    ),
    SearchParam::new(
        "ChargeItem",
        "occurrence",
        Date,
        &["occurrenceDateTime", "occurrencePeriod"],
    ),
    SearchParam::new("ChargeItem", "identifier", Token, &["identifier"]),
    SearchParam::reference("ChargeItem", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Invoice", "subject", SUBJECT, &[]),
    SearchParam::reference("Invoice", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Invoice", "recipient", &["recipient"], &[]),
    SearchParam::new("Invoice", "identifier", Token, &["identifier"]),
    SearchParam::new("Invoice", "status", Token, &["status"]),
    SearchParam::new("Invoice", "date", Date, &["date"]),
    SearchParam::new("Invoice", "type", Token, &["type"]),
    SearchParam::reference("PaymentNotice", "request", &["request"], &[]),
    SearchParam::new("PaymentNotice", "created", Date, &["created"]),
    SearchParam::new("PaymentNotice", "status", Token, &["status"]),
    // The hospital's own: the patient a payment is for (what puts it in their compartment),
    // how it was classed, its channel, and the credit it settles.
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
    SearchParam::new("PaymentReconciliation", "created", Date, &["created"]),
    SearchParam::new(
        "PaymentReconciliation",
        "identifier",
        Token,
        &["identifier"],
    ),
    SearchParam::new("PaymentNotice", "identifier", Token, &["identifier"]),
    SearchParam::reference("Account", "subject", SUBJECT, &[]),
    SearchParam::reference("Account", "patient", SUBJECT, PATIENT),
];
