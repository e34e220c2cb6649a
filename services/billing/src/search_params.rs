//! The search parameters of the types the billing service owns, declared once: the same
//! declaration drives index extraction, query parsing and the CapabilityStatement. Every
//! process installs them (with every other service's), so every process indexes alike.

use hospital_core::store::params::ParamKind::*;
use hospital_core::store::params::SearchParam;

const SUBJECT: &[&str] = &["subject"];
const PATIENT: &[&str] = &["Patient"];

/// The billing service's search parameters, besides the common `_id` and `_lastUpdated`.
pub static SEARCH_PARAMS: &[SearchParam] = &[
    SearchParam::reference("ChargeItem", "subject", SUBJECT, &[]),
    SearchParam::reference("ChargeItem", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Invoice", "subject", SUBJECT, &[]),
    SearchParam::reference("Invoice", "patient", SUBJECT, PATIENT),
    SearchParam::reference("Invoice", "recipient", &["recipient"], &[]),
    SearchParam::new("Invoice", "identifier", Token, &["identifier"]),
    SearchParam::new("Invoice", "status", Token, &["status"]),
    SearchParam::reference("PaymentNotice", "request", &["request"], &[]),
    SearchParam::new("PaymentNotice", "identifier", Token, &["identifier"]),
    SearchParam::reference("Account", "subject", SUBJECT, &[]),
    SearchParam::reference("Account", "patient", SUBJECT, PATIENT),
];
