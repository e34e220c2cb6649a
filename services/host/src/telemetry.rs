//! A process's telemetry edges: readiness (`/readyz`), the metrics port (`/metrics`), and the
//! layers that count and trace every HTTP request and gRPC call.

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hospital_core::store::Store;
use hospital_telemetry::metrics;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument as _;

/// Whether the process takes new requests: false until it has started, and again from the
/// moment it is told to stop (while it drains).
#[derive(Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new() -> Readiness {
        Readiness(Arc::new(AtomicBool::new(false)))
    }

    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
        metrics::READY.set(&[], i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `GET /readyz`: 200 while ready, 503 while starting or draining.
    pub fn routes(&self) -> Router {
        let ready = self.clone();
        Router::new().route(
            "/readyz",
            axum::routing::get(move || async move {
                if ready.is_ready() {
                    (axum::http::StatusCode::OK, "ready").into_response()
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
                }
            }),
        )
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

/// The metrics port's routes: `/metrics` in the Prometheus text format.
pub fn metrics_routes(store: Store) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let store = store.clone();
            async move {
                let (open, idle, max) = store.pool_connections();
                metrics::DB_POOL.set(&["idle"], i64::from(idle));
                metrics::DB_POOL.set(&["in_use"], i64::from(open.saturating_sub(idle)));
                metrics::DB_POOL_MAX.set(&[], i64::from(max));
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics::render(),
                )
            }
        }),
    )
}

/// Counts an HTTP request by method, route (the matched pattern, never the URI: queries and
/// ids can carry personal data) and status, and times it to its response's head.
pub async fn http_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "-".into());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::HTTP_REQUESTS.inc(&[method, &route, &status]);
    metrics::HTTP_DURATION.observe(&[method, &route], start.elapsed().as_secs_f64());
    response
}

/// A request's method as a label: the standard ones, else `other` (a client may send any
/// token as a method; labels must stay a bounded set, or every new one costs memory).
fn method_label(m: &http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Traces a gRPC call (a caller's `traceparent` makes it part of the caller's trace), counts
/// it by method and status code and times it to its response's head.
#[derive(Clone)]
pub struct GrpcTelemetry<S>(pub S);

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = req.uri().path().to_owned();
        let parent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let span = tracing::info_span!(
            target: hospital_telemetry::trace::SPAN_TARGET,
            "grpc",
            rpc.method = %method,
            traceparent = parent.as_str(),
            otel.kind = "server"
        );
        let call = {
            let _entered = span.enter();
            self.0.call(req)
        };
        Box::pin(
            async move {
                let result = call.await;
                // A refused call answers in its head (trailers-only); a stream's later
                // failure is in trailers the head does not show.
                let code = match &result {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(|c| format!("{:?}", tonic::Code::from_i32(c)))
                        .unwrap_or_else(|| "Ok".into()),
                    Err(_) => "Unavailable".into(),
                };
                // A path no service answers is whatever the caller sent: one label for all.
                let method = if code == "Unimplemented" {
                    "unknown"
                } else {
                    &method
                };
                metrics::GRPC_REQUESTS.inc(&[method, &code]);
                metrics::GRPC_DURATION.observe(&[method], start.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}
