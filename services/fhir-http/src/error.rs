//! One API error type for the FHIR edge: rendered as an `OperationOutcome` with the right HTTP
//! status; internal details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hospital_store::StoreError;
use serde_json::{Value, json};

/// An error a FHIR client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or the resource is invalid; `path` names the element.
    #[error("{message}")]
    Invalid {
        path: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            path: Some(path.into()),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::Invalid {
            path: None,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OperationOutcome issue code (<https://hl7.org/fhir/R4B/valueset-issue-type.html>).
    fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid",
            ApiError::Unauthorized(_) => "login",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests(_) => "throttled",
            ApiError::NotFound(_) => "not-found",
            ApiError::Gone(_) => "deleted",
            ApiError::MethodNotAllowed(_) => "not-supported",
            ApiError::Conflict(_) => "duplicate",
            ApiError::PreconditionFailed(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "too-costly",
            ApiError::UnsupportedMediaType(_) | ApiError::NotAcceptable(_) => "not-supported",
            ApiError::Unprocessable(_) => "business-rule",
            ApiError::Internal(_) => "exception",
        }
    }

    pub fn outcome(&self) -> Value {
        let mut issue = json!({
            "severity": "error",
            "code": self.code(),
            "diagnostics": self.to_string(),
        });
        if let ApiError::Invalid { path: Some(p), .. } = self {
            issue["expression"] = json!([p]);
        }
        json!({"resourceType": "OperationOutcome", "issue": [issue]})
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} is not known")),
            StoreError::Gone(what) => ApiError::Gone(format!("{what} has been deleted")),
            StoreError::VersionConflict { expected: 0, .. } => {
                ApiError::Conflict("the resource was created concurrently; retry".into())
            }
            e @ StoreError::VersionConflict { .. } => ApiError::PreconditionFailed(e.to_string()),
            StoreError::PreconditionFailed(m) => ApiError::PreconditionFailed(m),
            StoreError::Invalid { path, message } => ApiError::Invalid {
                path: Some(path),
                message,
            },
            e @ StoreError::DuplicateIdentifier { .. } => ApiError::Conflict(e.to_string()),
            StoreError::BadSearch(m) => ApiError::bad_request(m),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let mut res = (status, self.outcome().to_string()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::FHIR_JSON),
        );
        match &self {
            ApiError::Unauthorized(why) => {
                let challenge = format!(
                    "Bearer realm=\"hospital\", error=\"invalid_token\", error_description=\"{}\"",
                    why.replace('"', "'")
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::TooManyRequests(_) => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
            }
            _ => {}
        }
        res
    }
}
