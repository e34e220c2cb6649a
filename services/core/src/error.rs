//! One error type for every service and every door. Each error carries a stable,
//! machine-readable [`Code`] (listed in `docs/errors.md`, which a test keeps in step with
//! [`codes::ALL`]) and a [`Kind`] that the edges translate: the HTTP edge into an
//! `OperationOutcome` with its status, the gRPC edge into a `tonic::Status`. Messages never
//! carry personal data; internal details are logged, never sent.

use hospital_store::StoreError;

/// What went wrong, in the terms every transport can translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request or the resource is malformed or invalid (HTTP 400).
    Invalid,
    /// No valid credentials (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// Too many failed sign-ins from this client (429).
    Throttled,
    /// Nothing of that name the caller may see (404).
    NotFound,
    /// It existed and was deleted (410).
    Gone,
    /// This process does not do that, e.g. it does not run the owner of a type (405).
    NotAllowed,
    /// It clashes with what is stored (409).
    Conflict,
    /// A precondition of the request does not hold (412).
    PreconditionFailed,
    /// The request body is larger than allowed (413).
    TooLarge,
    /// The request would cost more work than one request may cause (400, `too-costly`).
    TooCostly,
    /// The request body's media type is not one we read (415).
    UnsupportedMediaType,
    /// The client asks for a representation we do not produce (406).
    NotAcceptable,
    /// Well-formed, but a business rule refuses it (422).
    BusinessRule,
    /// A dependency (database, audit, another service) is unavailable (503).
    Unavailable,
    /// A fault of ours (500).
    Internal,
}

/// A stable error code: the same condition always has the same code, across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub id: &'static str,
    pub kind: Kind,
    /// One line for the error catalogue (`docs/errors.md`).
    pub meaning: &'static str,
}

macro_rules! codes {
    ($($name:ident = $id:literal, $kind:ident, $meaning:literal;)*) => {
        $(
            #[doc = $meaning]
            pub const $name: Code = Code { id: $id, kind: Kind::$kind, meaning: $meaning };
        )*
        /// Every code the platform defines, for the catalogue and its test.
        pub const ALL: &[Code] = &[$($name),*];
    };
}

/// The platform's error codes. Services define theirs the same way, with their own prefix.
pub mod codes {
    use super::{Code, Kind};
    codes! {
        INVALID_RESOURCE = "IR_01", Invalid, "The resource is not valid FHIR R4B or breaks a rule of its owner; `expression` names the element.";
        MALFORMED_REQUEST = "IR_02", Invalid, "The request is malformed: unreadable JSON, a missing or wrong parameter, a bad header.";
        INVALID_SEARCH = "IR_03", Invalid, "A search parameter is unknown, malformed or not supported.";
        INVALID_ID = "IR_04", Invalid, "An id is not 1 to 64 letters, digits, '-' or '.'.";
        REPEATED_IN_TRANSACTION = "IR_05", Invalid, "Two entries of a transaction write the same resource (or conditions that may match one); the message names both.";
        MALFORMED_PATCH = "IR_06", Invalid, "The JSON Patch document is malformed (RFC 6902): not an array of operations, an unknown `op`, a member missing, or a path that is not a JSON Pointer; `expression` names the operation's member.";
        NO_CREDENTIALS = "AU_01", Unauthenticated, "The request carries no bearer token.";
        INVALID_TOKEN = "AU_02", Unauthenticated, "The bearer token is malformed, badly signed, of the wrong issuer or audience, or names no known caller.";
        EXPIRED_TOKEN = "AU_03", Unauthenticated, "The bearer token has expired.";
        INVALID_ON_BEHALF_OF = "AU_04", Unauthenticated, "The x-on-behalf-of token of a service call is not valid.";
        THROTTLED = "AU_05", Throttled, "Too many failed sign-ins from this client; valid tokens are never refused.";
        ROLE_FORBIDS = "AZ_01", Forbidden, "The caller's role (or its SMART scopes) does not allow this on this type.";
        NOT_A_RELAY = "AZ_02", Forbidden, "Only a service token may act on behalf of a user (x-on-behalf-of).";
        NOT_THE_SIGNER = "AZ_03", Forbidden, "Only the entry's author, or a practitioner the entry names as performing, asserting, recording, requesting or authoring it, signs it.";
        NOT_KNOWN = "NF_01", NotFound, "No such resource, or none the caller may see.";
        DELETED = "NF_02", Gone, "The resource has been deleted.";
        NO_SUCH_ENDPOINT = "NF_03", NotFound, "No such endpoint, operation or resource type.";
        OWNED_ELSEWHERE = "OW_01", NotAllowed, "This process does not run the service that writes the type; the message names it.";
        NOT_SUPPORTED = "OW_02", NotAllowed, "The interaction is not supported.";
        DUPLICATE_IDENTIFIER = "CF_01", Conflict, "An identifier that names one resource only is already used; the message names the holder.";
        CREATED_CONCURRENTLY = "CF_02", Conflict, "The same resource was created concurrently; retry.";
        SIGNED_ENTRY = "CF_03", Conflict, "A signed entry is never edited or deleted; amend it with a reason.";
        CONTENTION = "CF_05", Conflict, "A concurrent request held what this one needed (a deadlock or a busy database); nothing was written; retry.";
        TIME_TAKEN = "CF_06", Conflict, "The time is taken: the practitioner or the patient already has an active appointment overlapping it (or the slot is no longer free); the message names whom.";
        STATE_CONFLICT = "CF_04", Conflict, "The request conflicts with the state of the stored data.";
        PATCH_DOES_NOT_APPLY = "CF_07", Conflict, "A JSON Patch does not apply to the resource as it stands: a `test` operation failed, or a path names nothing in it; nothing was written.";
        VERSION_MISMATCH = "PC_01", PreconditionFailed, "If-Match names a version that is not the current one.";
        AMBIGUOUS_CONDITION = "PC_02", PreconditionFailed, "A conditional request's condition matches more than one resource.";
        WRONG_STATE = "PC_03", PreconditionFailed, "The resource is not in a state that allows this (e.g. closing a cancelled encounter).";
        BODY_TOO_LARGE = "LM_01", TooLarge, "The request body exceeds the configured limit.";
        BOUND_EXCEEDED = "LM_02", TooCostly, "The request exceeds a bound on the work one request may cause; the message names the bound.";
        TOO_MANY_IN_FLIGHT = "LM_03", Throttled, "The caller has too many requests in flight (running and waiting); retry when one has finished.";
        TIME_LIMIT = "LM_04", TooCostly, "The request ran past the time limit of one request; nothing it was writing was kept.";
        UNSUPPORTED_MEDIA_TYPE = "MT_01", UnsupportedMediaType, "The body is not application/fhir+json (a PATCH: not application/json-patch+json).";
        NOT_ACCEPTABLE = "MT_02", NotAcceptable, "The client asks for a format other than FHIR JSON.";
        BUSINESS_RULE = "BR_01", BusinessRule, "A business rule of the owning service refuses the request.";
        NOT_SIGNABLE = "BR_02", BusinessRule, "Only clinical entries are signed; registration and directory data are never frozen by a signature.";
        AUDIT_UNAVAILABLE = "SV_02", Internal, "The audit record could not be written, so the request was refused.";
        DEPENDENCY_UNAVAILABLE = "SV_03", Unavailable, "A database or another service is unavailable.";
        INTERNAL = "SV_01", Internal, "A fault of the server; the details are in its log, never in the answer.";
    }
}

/// An error a caller sees, whatever the door.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: Code,
    pub message: String,
    /// The element the error is about (FHIRPath-like), when there is one.
    pub path: Option<String>,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            path: None,
        }
    }

    pub fn at(mut self, path: impl Into<String>) -> Error {
        self.path = Some(path.into());
        self
    }

    pub fn kind(&self) -> Kind {
        self.code.kind
    }

    /// An invalid element of a resource or request.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::new(codes::INVALID_RESOURCE, message).at(path)
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(codes::MALFORMED_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(codes::NOT_KNOWN, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(codes::ROLE_FORBIDS, message)
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(codes::STATE_CONFLICT, message)
    }

    pub fn not_supported(message: impl Into<String>) -> Error {
        Error::new(codes::NOT_SUPPORTED, message)
    }

    pub fn business_rule(message: impl Into<String>) -> Error {
        Error::new(codes::BUSINESS_RULE, message)
    }

    pub fn internal(detail: impl Into<String>) -> Error {
        let detail = detail.into();
        tracing::error!(%detail, "internal error");
        Error::new(codes::INTERNAL, "internal error")
    }

    /// Prefixes the message (e.g. with the Bundle entry it concerns), keeping code and path.
    pub fn prefixed(mut self, prefix: &str) -> Error {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Error::not_found(format!("{what} is not known")),
            StoreError::Gone(what) => {
                Error::new(codes::DELETED, format!("{what} has been deleted"))
            }
            StoreError::VersionConflict { expected: 0, .. } => Error::new(
                codes::CREATED_CONCURRENTLY,
                "the resource was created concurrently; retry",
            ),
            e @ StoreError::VersionConflict { .. } => {
                Error::new(codes::VERSION_MISMATCH, e.to_string())
            }
            StoreError::PreconditionFailed(m) => Error::new(codes::AMBIGUOUS_CONDITION, m),
            StoreError::Invalid { path, message } => Error::invalid(path, message),
            e @ StoreError::DuplicateIdentifier { .. } => {
                Error::new(codes::DUPLICATE_IDENTIFIER, e.to_string())
            }
            // The holder is named, not the appointment holding it (another patient's).
            StoreError::TimeTaken { holder, .. } => Error::new(
                codes::TIME_TAKEN,
                format!("{holder} already has an active appointment overlapping that time"),
            ),
            StoreError::BadSearch(m) => Error::new(codes::INVALID_SEARCH, m),
            StoreError::TooCostly(m) => Error::new(codes::BOUND_EXCEEDED, m),
            e if e.is_connection_lost() => {
                tracing::error!(error = %e, "the database connection was lost");
                Error::new(
                    codes::DEPENDENCY_UNAVAILABLE,
                    "the database is unavailable; retry",
                )
            }
            e if e.is_contention() => {
                tracing::warn!(error = %e, "a transaction gave way to a concurrent one");
                Error::new(
                    codes::CONTENTION,
                    "a concurrent request held what this one needed; nothing was written; retry",
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Error::new(codes::INTERNAL, "internal error")
            }
        }
    }
}

/// The HTTP status an error of `kind` gives; audit records keep outcomes as HTTP statuses
/// whatever the transport.
pub fn outcome_status(kind: Kind) -> u16 {
    match kind {
        Kind::Invalid | Kind::TooCostly => 400,
        Kind::Unauthenticated => 401,
        Kind::Forbidden => 403,
        Kind::NotFound => 404,
        Kind::NotAllowed => 405,
        Kind::NotAcceptable => 406,
        Kind::Conflict => 409,
        Kind::Gone => 410,
        Kind::PreconditionFailed => 412,
        Kind::TooLarge => 413,
        Kind::UnsupportedMediaType => 415,
        Kind::BusinessRule => 422,
        Kind::Throttled => 429,
        Kind::Internal => 500,
        Kind::Unavailable => 503,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_database_connection_is_a_503_not_a_fault_of_the_server() {
        let lost = StoreError::Database(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        let e = Error::from(lost);
        assert_eq!(e.code, codes::DEPENDENCY_UNAVAILABLE);
        assert_eq!(outcome_status(e.kind()), 503);
        // Any other database failure stays an internal error.
        let other = StoreError::Database(sqlx::Error::RowNotFound);
        assert_eq!(outcome_status(Error::from(other).kind()), 500);
    }
}
