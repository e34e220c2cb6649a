//! The process's logging: text for people at a terminal, or one JSON object a line for a log
//! pipeline (`HOSPITAL_LOG_FORMAT=json`), each line carrying the trace and span ids of where it
//! was said. Spans reach the trace layer whatever the log filter says.

use crate::trace::{self, TraceLayer};
use std::io::Write as _;
use tracing::field;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Installs the process's subscriber: the trace layer (every span), and the log lines that
/// `filter` lets through in `format`. Call once, first thing.
pub fn init(filter: &str, format: Format, service: &str) {
    // One global filter, with the traced spans (target `hospital::trace`) always on, whatever
    // the log level asked. Not per-layer filters: those lost spans when a library asked
    // `enabled!` without then emitting (seen: most requests' spans missing in a replica).
    let filter =
        tracing_subscriber::EnvFilter::new(format!("{filter},{}=info", trace::SPAN_TARGET));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(TraceLayer::from_env(service));
    match format {
        Format::Text => registry.with(tracing_subscriber::fmt::layer()).init(),
        Format::Json => registry.with(JsonLines).init(),
    }
}

/// One JSON object per event on standard output: time, level, target, message, the event's
/// fields, the innermost span's name, and the trace and span ids.
pub struct JsonLines;

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl field::Visit for Fields {
    fn record_str(&mut self, f: &field::Field, value: &str) {
        self.0.insert(f.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, f: &field::Field, value: i64) {
        self.0.insert(f.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, f: &field::Field, value: u64) {
        self.0.insert(f.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, f: &field::Field, value: bool) {
        self.0.insert(f.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, f: &field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(f.name().to_owned(), format!("{value:?}").into());
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        if let Some(m) = fields.0.remove("message") {
            line.insert("message".into(), m);
        }
        if let Some(span) = ctx.event_span(event) {
            line.insert("span".into(), span.name().into());
        }
        if let Some(c) = trace::current() {
            line.insert("trace_id".into(), c.trace_hex().into());
            line.insert("span_id".into(), c.span_hex().into());
        }
        if !fields.0.is_empty() {
            line.insert("fields".into(), serde_json::Value::Object(fields.0));
        }
        let mut text = serde_json::Value::Object(line).to_string();
        text.push('\n');
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}
