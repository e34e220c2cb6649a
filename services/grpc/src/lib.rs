//! The gRPC edge every service shares. It only translates:
//!
//! - [`Authenticated`] wraps a generated server: each call's metadata goes through
//!   [`Platform::authenticate`] — the same function as HTTP — and the [`Caller`] travels in the
//!   request's extensions (tonic's interceptors are synchronous; verifying a token against an
//!   identity provider is not, so this is the asynchronous form of an interceptor). The call
//!   then runs within the caller's bounds ([`Platform::bounded`]); a server stream keeps its
//!   place while it streams.
//! - [`status`] maps the platform's [`Error`] to a `tonic::Status`, in one place, with the
//!   stable error code in the `hospital-error-code` metadata.
//! - [`Call`] audits a call before its answer leaves.

pub mod outbound;

use hospital_core::{Caller, Credentials, Error, Interaction, Kind, Platform, Touched};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Request, Status};

/// The metadata key carrying an error's stable code.
pub const ERROR_CODE: &str = "hospital-error-code";

/// The `tonic::Status` of a platform error.
pub fn status(e: Error) -> Status {
    let code = match e.kind() {
        Kind::Invalid | Kind::UnsupportedMediaType | Kind::NotAcceptable => Code::InvalidArgument,
        Kind::Unauthenticated => Code::Unauthenticated,
        Kind::Forbidden => Code::PermissionDenied,
        Kind::Throttled | Kind::TooCostly | Kind::TooLarge => Code::ResourceExhausted,
        Kind::NotFound | Kind::Gone => Code::NotFound,
        Kind::NotAllowed => Code::Unimplemented,
        // A busy database is a retryable abort.
        Kind::Conflict if e.code == hospital_core::codes::CONTENTION => Code::Aborted,
        Kind::Conflict => Code::AlreadyExists,
        Kind::PreconditionFailed | Kind::BusinessRule => Code::FailedPrecondition,
        Kind::Unavailable => Code::Unavailable,
        Kind::Internal => Code::Internal,
    };
    let message = match e.kind() {
        Kind::Internal => "internal error".to_owned(),
        _ => e.message.clone(),
    };
    let mut s = Status::new(code, message);
    if let Ok(v) = e.code.id.parse() {
        s.metadata_mut().insert(ERROR_CODE, v);
    }
    s
}

/// The HTTP status an audit record gives a gRPC outcome.
pub fn outcome_of(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::Unimplemented => 405,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::FailedPrecondition => 412,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        _ => 500,
    }
}

/// The caller of a call wrapped in [`Authenticated`].
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("the call was not authenticated"))
}

/// A generated gRPC server behind authentication.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    platform: Platform,
}

impl<S> Authenticated<S> {
    pub fn new(platform: Platform, inner: S) -> Self {
        Authenticated { inner, platform }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Authenticated<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The ready service handles this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let platform = self.platform.clone();
        Box::pin(async move {
            let headers = req.headers();
            let text = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
            let peer = req
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|i| i.remote_addr)
                .map(|a| a.ip());
            let target = req.uri().path().to_owned();
            let credentials = Credentials {
                authorization: text("authorization"),
                on_behalf_of: text("x-on-behalf-of"),
                peer,
                forwarded_for: text("x-forwarded-for"),
                user_agent: text("user-agent").unwrap_or(""),
                target: &target,
            };
            match platform.authenticate(&credentials).await {
                Ok(caller) => {
                    req.extensions_mut().insert(caller.clone());
                    match platform.bounded(&caller, &target, inner.call(req)).await {
                        Ok((Ok(response), place)) => {
                            Ok(response.map(|body| Body::new(place.hold(body))))
                        }
                        Ok((Err(never), _)) => match never {},
                        Err(e) => Ok(status(e).into_http()),
                    }
                }
                Err(e) => Ok(status(e).into_http()),
            }
        })
    }
}

/// One gRPC call's audit: what it is, on which type, as whom.
pub struct Call<'a> {
    pub platform: &'a Platform,
    pub caller: &'a Caller,
    pub interaction: Interaction,
    pub resource_type: &'a str,
}

impl Call<'_> {
    /// Audits a read-only call (or a write that failed before its transaction committed)
    /// before its answer leaves; a call whose record cannot be written fails.
    pub async fn audited<T>(&self, result: Result<(T, Touched), Error>) -> Result<T, Status> {
        let (touched, code) = match &result {
            Ok((_, t)) => (t.clone(), 200),
            Err(e) => (
                Touched::default(),
                hospital_core::error::outcome_status(e.kind()),
            ),
        };
        if touched.audited {
            return result.map(|(t, _)| t).map_err(status);
        }
        self.platform
            .audit(
                self.caller,
                self.interaction,
                self.resource_type,
                &touched,
                code,
            )
            .await
            .map_err(status)?;
        result.map(|(t, _)| t).map_err(status)
    }
}
