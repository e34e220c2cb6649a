//! The process's metrics, rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! Every metric carries a `service` label: the services the process runs (`records`,
//! `billing`, `all`), set once at start with [`set_service`]. Metrics are statics, declared
//! here in one list, so the names a dashboard uses live in one place.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

static SERVICE: OnceLock<String> = OnceLock::new();

/// Names the services this process runs (the `service` label). The first call wins.
pub fn set_service(name: &str) {
    let _ = SERVICE.set(name.to_owned());
}

fn service() -> &'static str {
    SERVICE.get().map(String::as_str).unwrap_or("unknown")
}

/// Values by label values: what a counter and a gauge both are.
struct Series<T> {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, T>>,
}

impl<T: Copy + Default + std::ops::AddAssign + std::fmt::Display> Series<T> {
    const fn new(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &'static [&'static str],
    ) -> Series<T> {
        Series {
            name,
            help,
            kind,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, T>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, values: &[&str], d: T) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        *self.lock().entry(key(values)).or_default() += d;
    }

    fn set(&self, values: &[&str], v: T) {
        self.lock().insert(key(values), v);
    }

    fn get(&self, values: &[&str]) -> T {
        self.lock().get(&key(values)).copied().unwrap_or_default()
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, self.kind);
        let m = self.lock();
        if m.is_empty() && self.labels.is_empty() {
            sample(out, self.name, &[], &[], None, "0");
        }
        for (values, v) in m.iter() {
            sample(out, self.name, self.labels, values, None, &v.to_string());
        }
    }
}

/// A counter with labels.
pub struct Counter(Series<u64>);

impl Counter {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Counter {
        Counter(Series::new(name, help, "counter", labels))
    }

    /// Adds one for these label values (in the order of the declared labels).
    pub fn inc(&self, values: &[&str]) {
        self.0.add(values, 1);
    }

    pub fn add(&self, values: &[&str], n: u64) {
        self.0.add(values, n);
    }

    /// The current value for these label values.
    pub fn get(&self, values: &[&str]) -> u64 {
        self.0.get(values)
    }
}

/// A gauge with labels: set, or moved up and down.
pub struct Gauge(Series<i64>);

impl Gauge {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Gauge {
        Gauge(Series::new(name, help, "gauge", labels))
    }

    pub fn set(&self, values: &[&str], v: i64) {
        self.0.set(values, v);
    }

    pub fn add(&self, values: &[&str], d: i64) {
        self.0.add(values, d);
    }

    pub fn get(&self, values: &[&str]) -> i64 {
        self.0.get(values)
    }
}

/// A histogram with labels and fixed buckets.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    values: Mutex<BTreeMap<Vec<String>, Observed>>,
}

struct Observed {
    /// Per bucket, not cumulative (the rendering adds them up).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Request latencies, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Sizes of groups (records in one durable commit).
pub const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

impl Histogram {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Histogram {
        Histogram {
            name,
            help,
            labels,
            buckets,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, values: &[&str], x: f64) {
        let slot = self
            .buckets
            .iter()
            .position(|b| x <= *b)
            .unwrap_or(self.buckets.len());
        let mut m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let o = m.entry(key(values)).or_insert_with(|| Observed {
            counts: vec![0; self.buckets.len() + 1],
            sum: 0.0,
            count: 0,
        });
        o.counts[slot] += 1;
        o.sum += x;
        o.count += 1;
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = format!("{}_bucket", self.name);
        for (values, o) in m.iter() {
            let mut cumulative = 0;
            for (i, c) in o.counts.iter().enumerate() {
                cumulative += c;
                let le = match self.buckets.get(i) {
                    Some(b) => b.to_string(),
                    None => "+Inf".to_owned(),
                };
                sample(
                    out,
                    &bucket,
                    self.labels,
                    values,
                    Some(&le),
                    &cumulative.to_string(),
                );
            }
            sample(
                out,
                &format!("{}_sum", self.name),
                self.labels,
                values,
                None,
                &o.sum.to_string(),
            );
            sample(
                out,
                &format!("{}_count", self.name),
                self.labels,
                values,
                None,
                &o.count.to_string(),
            );
        }
    }
}

fn key(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(
    out: &mut String,
    name: &str,
    labels: &[&str],
    values: &[String],
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    out.push_str("{service=\"");
    escape(out, service());
    out.push('"');
    for (l, v) in labels.iter().zip(values) {
        let _ = write!(out, ",{l}=\"");
        escape(out, v);
        out.push('"');
    }
    if let Some(le) = le {
        let _ = write!(out, ",le=\"{le}\"");
    }
    out.push_str("} ");
    out.push_str(value);
    out.push('\n');
}

fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

// ---- The metrics: one list, the names dashboards and alerts use. ----

pub static HTTP_REQUESTS: Counter = Counter::new(
    "hospital_http_requests_total",
    "HTTP requests answered, by method, route (the matched pattern, never the URI) and status.",
    &["method", "route", "status"],
);
pub static HTTP_DURATION: Histogram = Histogram::new(
    "hospital_http_request_duration_seconds",
    "Time to answer an HTTP request (to its response's head), by method and route.",
    &["method", "route"],
    LATENCY_BUCKETS,
);
pub static GRPC_REQUESTS: Counter = Counter::new(
    "hospital_grpc_requests_total",
    "gRPC calls served, by method (/package.Service/Method) and status code.",
    &["method", "code"],
);
pub static GRPC_DURATION: Histogram = Histogram::new(
    "hospital_grpc_request_duration_seconds",
    "Time to answer a gRPC call (to its response's head), by method.",
    &["method"],
    LATENCY_BUCKETS,
);
pub static AUDIT_GROUP_SIZE: Histogram = Histogram::new(
    "hospital_audit_group_size",
    "Audit records made durable by one commit (reads' records share commits).",
    &[],
    SIZE_BUCKETS,
);
pub static WRITE_GROUP_SIZE: Histogram = Histogram::new(
    "hospital_write_group_size",
    "SQLite: lone writes (a create, a batch entry) sent to the writer in one hop.",
    &[],
    SIZE_BUCKETS,
);
pub static BOOKINGS: Counter = Counter::new(
    "hospital_bookings_total",
    "Appointments booked (a slot taken).",
    &[],
);
pub static INVOICES_ISSUED: Counter =
    Counter::new("hospital_invoices_issued_total", "Invoices issued.", &[]);
pub static PAYMENTS: Counter = Counter::new(
    "hospital_payments_total",
    "Bank-feed payments taken in, by outcome: matched to an invoice, or left unmatched for a cashier.",
    &["outcome"],
);
pub static WEBHOOK_SIGNATURE_FAILURES: Counter = Counter::new(
    "hospital_webhook_signature_failures_total",
    "Bank webhooks refused because their signature or key did not verify, by provider.",
    &["provider"],
);
pub static SIGNALLING_SESSIONS: Gauge = Gauge::new(
    "hospital_signalling_sessions",
    "Video-visit signalling connections open now.",
    &[],
);
pub static SIGNALLING_SESSIONS_TOTAL: Counter = Counter::new(
    "hospital_signalling_sessions_total",
    "Video-visit signalling connections opened.",
    &[],
);
pub static READY: Gauge = Gauge::new(
    "hospital_ready",
    "1 while the process takes new requests, 0 while it drains before stopping.",
    &[],
);
pub static DB_POOL: Gauge = Gauge::new(
    "hospital_db_pool_connections",
    "Database connections of the pool, by state (idle, in_use).",
    &["state"],
);
pub static DB_POOL_MAX: Gauge = Gauge::new(
    "hospital_db_pool_max_connections",
    "The most connections the pool opens.",
    &[],
);

/// Every metric, in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::with_capacity(16 * 1024);
    HTTP_REQUESTS.0.render(&mut out);
    HTTP_DURATION.render(&mut out);
    GRPC_REQUESTS.0.render(&mut out);
    GRPC_DURATION.render(&mut out);
    AUDIT_GROUP_SIZE.render(&mut out);
    WRITE_GROUP_SIZE.render(&mut out);
    BOOKINGS.0.render(&mut out);
    INVOICES_ISSUED.0.render(&mut out);
    PAYMENTS.0.render(&mut out);
    WEBHOOK_SIGNATURE_FAILURES.0.render(&mut out);
    SIGNALLING_SESSIONS.0.render(&mut out);
    SIGNALLING_SESSIONS_TOTAL.0.render(&mut out);
    READY.0.render(&mut out);
    DB_POOL.0.render(&mut out);
    DB_POOL_MAX.0.render(&mut out);
    process(&mut out);
    out
}

/// The process's own figures (Linux): resident memory, CPU time, open files, start time.
fn process(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces, inside parentheses).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // After ')': state is field 0, utime 11, stime 12, rss 21 (pages).
    let ticks = 100.0;
    let page = 4096.0;
    let cpu = (num(11) + num(12)) / ticks;
    let rss = num(21) * page;
    let _ = writeln!(
        out,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."
    );
    let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
    let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    let _ = writeln!(
        out,
        "# HELP process_resident_memory_bytes Resident memory size in bytes."
    );
    let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
    let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Number of open file descriptors."
        );
        let _ = writeln!(out, "# TYPE process_open_fds gauge");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_escaped_and_cumulative_buckets() {
        static C: Counter = Counter::new("t_total", "help", &["route"]);
        static H: Histogram = Histogram::new("t_seconds", "help", &[], &[0.1, 1.0]);
        C.inc(&["/a\"b"]);
        C.inc(&["/a\"b"]);
        H.observe(&[], 0.05);
        H.observe(&[], 0.5);
        H.observe(&[], 5.0);
        let mut out = String::new();
        C.0.render(&mut out);
        H.render(&mut out);
        assert!(
            out.contains("t_total{service=\"unknown\",route=\"/a\\\"b\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_bucket{service=\"unknown\",le=\"0.1\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_bucket{service=\"unknown\",le=\"1\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_bucket{service=\"unknown\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_count{service=\"unknown\"} 3\n"),
            "{out}"
        );
        assert_eq!(C.get(&["/a\"b"]), 2);
    }
}
