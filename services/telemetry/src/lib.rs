//! What a process tells its operators: metrics (`/metrics`, the Prometheus text format), traces
//! (W3C trace context carried across HTTP and gRPC hops, exported over OTLP/HTTP as JSON) and
//! logs (text, or one JSON object a line carrying the trace id).
//!
//! Written for this project rather than taken from the OpenTelemetry and Prometheus crates: the
//! few things it needs cost a fraction of their compile time on a two-core build machine, and
//! the wire formats (the Prometheus exposition format, OTLP JSON) are plain and stable.

pub mod logs;
pub mod metrics;
pub mod trace;
