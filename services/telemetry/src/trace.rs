//! Trace context across hops, and spans exported over OTLP.
//!
//! Every `tracing` span gets a trace id and a span id ([`Context`]): from a field named
//! `traceparent` holding an incoming W3C `traceparent` header (a request from another process,
//! whose span becomes the parent), else from the enclosing span, else a new trace. Outgoing
//! calls carry [`traceparent`] of the current span. When `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! closed spans are sent in batches to `<endpoint>/v1/traces` as OTLP/HTTP JSON; a full queue
//! drops spans (counted in the log), never slows a request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, field};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

/// The target of the spans a trace is made of (the HTTP request, the gRPC call served, the
/// gRPC call made): enabled whatever the log filter.
pub const SPAN_TARGET: &str = "hospital::trace";

/// A span's place in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl Context {
    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); all-zero ids are invalid.
    pub fn parse(header: &str) -> Option<Context> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || flags.len() != 2 {
            return None;
        }
        let mut c = Context {
            trace_id: [0; 16],
            span_id: [0; 8],
        };
        unhex(trace, &mut c.trace_id)?;
        unhex(span, &mut c.span_id)?;
        if c.trace_id == [0; 16] || c.span_id == [0; 8] {
            return None;
        }
        Some(c)
    }

    /// As a `traceparent` header (sampled).
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }

    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_hex(&self) -> String {
        hex(&self.span_id)
    }
}

fn unhex(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the layer keeps on each span.
struct SpanData {
    context: Context,
    /// The parent's span id (local or remote).
    parent: Option<[u8; 8]>,
    name: &'static str,
    kind: u8,
    start: SystemTime,
    attributes: Vec<(&'static str, String)>,
}

/// OTLP span kinds.
const KIND_INTERNAL: u8 = 1;
const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;

/// The trace context of the current span, if any.
pub fn current() -> Option<Context> {
    let span = tracing::Span::current();
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        let ext = span.extensions();
        ext.get::<SpanData>().map(|d| d.context)
    })
    .flatten()
}

/// The `traceparent` header for a call made from the current span.
pub fn traceparent() -> Option<String> {
    current().map(|c| c.header())
}

/// Collects the fields of a new span: `traceparent` sets its parent, `otel.kind` (`server`,
/// `client`) its kind; the rest become attributes, kept only when spans are exported (a
/// request's span costs no formatting otherwise).
#[derive(Default)]
struct Fields {
    traceparent: Option<String>,
    kind: Option<u8>,
    keep_attributes: bool,
    attributes: Vec<(&'static str, String)>,
}

impl field::Visit for Fields {
    fn record_str(&mut self, f: &field::Field, value: &str) {
        match f.name() {
            "traceparent" => self.traceparent = Some(value.to_owned()),
            "otel.kind" => {
                self.kind = Some(match value {
                    "server" => KIND_SERVER,
                    "client" => KIND_CLIENT,
                    _ => KIND_INTERNAL,
                })
            }
            name if self.keep_attributes => self.attributes.push((name, value.to_owned())),
            _ => {}
        }
    }

    fn record_debug(&mut self, f: &field::Field, value: &dyn std::fmt::Debug) {
        if self.keep_attributes || matches!(f.name(), "traceparent" | "otel.kind") {
            self.record_str(f, &format!("{value:?}"));
        }
    }
}

/// Gives every span its trace context, and hands closed spans to the exporter.
pub struct TraceLayer {
    export: Option<tokio::sync::mpsc::Sender<String>>,
}

impl TraceLayer {
    /// A layer that exports to `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set (the exporter
    /// starts on the first span closed inside a Tokio runtime).
    pub fn from_env(service: &str) -> TraceLayer {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty());
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| service.to_owned());
        let export = endpoint.map(|e| exporter(e, service));
        TraceLayer { export }
    }

    fn span_json(&self, d: &SpanData, end: SystemTime) -> String {
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_string()
        };
        let attributes: Vec<serde_json::Value> = d
            .attributes
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
            .collect();
        serde_json::json!({
            "traceId": d.context.trace_hex(),
            "spanId": d.context.span_hex(),
            "parentSpanId": d.parent.map(|p| hex(&p)).unwrap_or_default(),
            "name": d.name,
            "kind": d.kind,
            "startTimeUnixNano": nanos(d.start),
            "endTimeUnixNano": nanos(end),
            "attributes": attributes,
            "status": {}
        })
        .to_string()
    }
}

impl<S> tracing_subscriber::Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields {
            keep_attributes: self.export.is_some(),
            ..Fields::default()
        };
        attrs.record(&mut fields);
        let remote = fields.traceparent.as_deref().and_then(Context::parse);
        let local = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanData>().map(|d| d.context));
        let (trace_id, parent) = match (remote, local) {
            (Some(r), _) => (r.trace_id, Some(r.span_id)),
            (None, Some(l)) => (l.trace_id, Some(l.span_id)),
            (None, None) => (rand::random(), None),
        };
        let kind = fields.kind.unwrap_or(if remote.is_some() {
            KIND_SERVER
        } else {
            KIND_INTERNAL
        });
        let mut span_id: [u8; 8] = rand::random();
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        span.extensions_mut().insert(SpanData {
            context: Context { trace_id, span_id },
            parent,
            name: attrs.metadata().name(),
            kind,
            start: SystemTime::now(),
            attributes: fields.attributes,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if self.export.is_none() {
            return;
        }
        let mut fields = Fields {
            keep_attributes: true,
            ..Fields::default()
        };
        values.record(&mut fields);
        if let Some(d) = span.extensions_mut().get_mut::<SpanData>() {
            d.attributes.extend(fields.attributes);
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(export) = &self.export else {
            return;
        };
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let ext = span.extensions();
        if let Some(d) = ext.get::<SpanData>() {
            // A full queue drops the span: tracing never slows a request.
            let _ = export.try_send(self.span_json(d, SystemTime::now()));
        }
    }
}

/// Starts the exporter: a task that posts batches of spans (up to 512, at least every
/// second) to the collector. Needs a Tokio runtime; spans closed before one runs wait in the
/// queue.
fn exporter(endpoint: String, service: String) -> tokio::sync::mpsc::Sender<String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(8192);
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default();
                let resource = serde_json::json!({"attributes": [
                    {"key": "service.name", "value": {"stringValue": service}},
                ]});
                let scope = serde_json::json!({"name": "hospital", "version": env!("CARGO_PKG_VERSION")});
                let mut batch: Vec<String> = Vec::new();
                let mut failures = 0u32;
                loop {
                    let first = rx.recv().await;
                    let Some(first) = first else { break };
                    batch.push(first);
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    while batch.len() < 512 {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(s)) => batch.push(s),
                            _ => break,
                        }
                    }
                    let spans = format!("[{}]", batch.join(","));
                    batch.clear();
                    let body = format!(
                        r#"{{"resourceSpans":[{{"resource":{resource},"scopeSpans":[{{"scope":{scope},"spans":{spans}}}]}}]}}"#
                    );
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => failures = 0,
                        other => {
                            failures += 1;
                            // Say so once in a while, not for every batch lost.
                            if failures == 1 || failures.is_multiple_of(100) {
                                let why = match other {
                                    Ok(r) => format!("status {}", r.status()),
                                    Err(e) => e.to_string(),
                                };
                                eprintln!(
                                    "{{\"level\":\"WARN\",\"message\":\"traces not exported to {url}: {why} ({failures} batches lost)\"}}"
                                );
                            }
                        }
                    }
                }
            });
        })
        .expect("the exporter thread starts");
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_bad_headers() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = Context::parse(h).unwrap();
        assert_eq!(c.header(), h);
        assert_eq!(c.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(Context::parse(bad), None, "{bad}");
        }
    }
}
