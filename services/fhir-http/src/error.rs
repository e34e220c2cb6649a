//! The platform's [`Error`] as HTTP: an `OperationOutcome` with the status its kind gives, the
//! stable code in `issue.details`, and the element in `issue.expression`. The one place the
//! REST edge renders errors.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hospital_core::{Error, Kind};
use serde_json::{Value, json};

/// The HTTP status of an error.
pub fn status(e: &Error) -> StatusCode {
    StatusCode::from_u16(hospital_core::error::outcome_status(e.kind()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The OperationOutcome issue code (<https://hl7.org/fhir/R4B/valueset-issue-type.html>).
fn issue_type(e: &Error) -> &'static str {
    match e.kind() {
        Kind::Invalid => "invalid",
        Kind::Unauthenticated => "login",
        Kind::Forbidden => "forbidden",
        Kind::Throttled => "throttled",
        Kind::NotFound => "not-found",
        Kind::Gone => "deleted",
        Kind::NotAllowed | Kind::UnsupportedMediaType | Kind::NotAcceptable => "not-supported",
        Kind::Conflict => "duplicate",
        Kind::PreconditionFailed => "conflict",
        Kind::TooLarge | Kind::TooCostly => "too-costly",
        Kind::BusinessRule => "business-rule",
        Kind::Unavailable => "transient",
        Kind::Internal => "exception",
    }
}

/// The OperationOutcome of an error.
pub fn outcome(e: &Error) -> Value {
    let mut issue = json!({
        "severity": "error",
        "code": issue_type(e),
        "details": {"coding": [{"system": "urn:hospital:error-code", "code": e.code.id}]},
        "diagnostics": e.to_string(),
    });
    if let Some(p) = &e.path {
        issue["expression"] = json!([p]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

/// The whole HTTP answer to an error.
pub fn response(e: &Error) -> Response {
    let status = status(e);
    let mut res = (status, outcome(e).to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::FHIR_JSON),
    );
    match e.kind() {
        Kind::Unauthenticated => {
            let challenge = format!(
                "Bearer realm=\"hospital\", error=\"invalid_token\", error_description=\"{}\"",
                e.message.replace('"', "'")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        Kind::Throttled => {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
        }
        _ => {}
    }
    res
}
