//! `bench`: load figures of the FHIR server on SQLite and PostgreSQL.
//!
//! Starts the release `hospital` binary (beside this one) as a child process on a fresh store,
//! loads synthetic Vietnamese patients with encounters and observations through transaction
//! Bundles, then measures single creates, reads by id and searches over HTTP from this process
//! (load generator and server share the machine), and the server's peak resident memory. On
//! PostgreSQL it also measures, with pgbench, how fast the same JSON rows go into a plain table:
//! the physical limit the create path is compared with. Every request carries a service
//! token (the child gets the bench's secret), so authentication and audit are measured too.
//!
//! `cargo build --release && target/release/bench [--backend sqlite|postgres|both] [--patients N]
//! [--observations PER_PATIENT] [--creates N] [--reads N] [--searches N] [--mixed SECS] ...`;
//! `HOSPITAL_BENCH_REUSE=1` measures the PostgreSQL store a previous run loaded, without
//! loading it again (BENCHMARKS.md, "At 1,000,000 patients").

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FAMILIES: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
    "Hồ", "Ngô", "Dương", "Lý",
];
const MIDDLE: &[&str] = &["Văn", "Thị", "Hữu", "Đức", "Minh", "Ngọc", "Thanh", "Quang"];
const GIVEN: &[&str] = &[
    "An", "Bình", "Châu", "Dũng", "Em", "Giang", "Hà", "Hải", "Hùng", "Lan", "Linh", "Mai", "Nam",
    "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Vy", "Yến",
];
const PROVINCES: &[&str] = &["001", "048", "049", "051", "052", "079", "092"];
const NATIONAL_ID: &str = "http://fhir.ehealth.gov.vn/core/sid/national_id";
const BENCH_SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

/// A service token for the load generator: every request is authenticated and audited.
fn token() -> String {
    token_of(hospital_core::auth::Role::Service, "bench", None, None)
}

fn token_of(
    role: hospital_core::auth::Role,
    subject: &str,
    patient: Option<&str>,
    practitioner: Option<&str>,
) -> String {
    hospital_core::auth::Authenticator::local(
        hospital_core::auth::Secret(BENCH_SECRET.as_bytes().to_vec()),
        "hospital-local",
        "hospital",
    )
    .mint(
        role,
        subject,
        patient,
        practitioner,
        None,
        Duration::from_secs(86_400),
    )
    .expect("mint")
}

fn client_of(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .default_headers(headers)
        .build()
        .unwrap()
}

struct Args {
    backends: Vec<String>,
    patients: usize,
    creates: usize,
    reads: usize,
    searches: usize,
    concurrency: usize,
    /// Seconds of the hostile-client phase (and of its baseline); 0 skips it.
    hostile: u64,
    /// Bills of the billing phase (invoice creation, webhook intake); 0 skips it.
    bills: usize,
    /// Practitioners of the telemedicine phase (30 days of slots each); 0 skips it.
    practitioners: usize,
    /// Signalling WebSockets held open per video visit (one visit per video practitioner).
    sockets_per_visit: usize,
    /// Seconds of the mixed clinic load (reads, searches, `_include`, `$everything`,
    /// writes at once); 0 skips it.
    mixed: u64,
    /// Observations loaded per patient (with the patient and one encounter).
    observations: usize,
    postgres_admin: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        backends: vec!["sqlite".into(), "postgres".into()],
        patients: 100_000,
        creates: 10_000,
        reads: 50_000,
        searches: 2_000,
        concurrency: 16,
        hostile: 10,
        bills: 2000,
        practitioners: 0,
        sockets_per_visit: 10,
        mixed: 20,
        observations: 2,
        postgres_admin: std::env::var("HOSPITAL_BENCH_POSTGRES_ADMIN")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().expect("flag value");
        match flag.as_str() {
            "--backend" => {
                let v = val();
                a.backends = if v == "both" {
                    vec!["sqlite".into(), "postgres".into()]
                } else {
                    vec![v]
                };
            }
            "--patients" => a.patients = val().parse().expect("number"),
            "--creates" => a.creates = val().parse().expect("number"),
            "--reads" => a.reads = val().parse().expect("number"),
            "--searches" => a.searches = val().parse().expect("number"),
            "--concurrency" => a.concurrency = val().parse().expect("number"),
            "--hostile" => a.hostile = val().parse().expect("seconds"),
            "--bills" => a.bills = val().parse().expect("number"),
            "--practitioners" => a.practitioners = val().parse().expect("number"),
            "--sockets-per-visit" => a.sockets_per_visit = val().parse().expect("number"),
            "--mixed" => a.mixed = val().parse().expect("seconds"),
            "--observations" => a.observations = val().parse().expect("number"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One synthetic patient, deterministic in `n`.
fn patient(n: usize, rng: &mut StdRng) -> (Value, String, String, String) {
    let female = rng.random_bool(0.5);
    let year = rng.random_range(1930..2024);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=28);
    let century = if year >= 2000 { 2 } else { 0 } + u32::from(female);
    let province = PROVINCES[rng.random_range(0..PROVINCES.len())];
    let nid = format!("{province}{century}{:02}{:06}", year % 100, n % 1_000_000);
    let family = FAMILIES[rng.random_range(0..FAMILIES.len())];
    let middle = if female {
        "Thị"
    } else {
        MIDDLE[rng.random_range(0..MIDDLE.len())]
    };
    let given = GIVEN[rng.random_range(0..GIVEN.len())];
    let birth = format!("{year}-{month:02}-{day:02}");
    let p = json!({
        "resourceType": "Patient",
        "identifier": [{"system": NATIONAL_ID, "value": nid}],
        "name": [{"family": family, "given": [middle, given], "text": format!("{family} {middle} {given}")}],
        "gender": if female { "female" } else { "male" },
        "birthDate": birth,
        "telecom": [{"system": "phone", "value": format!("09{:08}", n % 100_000_000)}],
        "address": [{"line": [format!("{} Lê Lợi", n % 500 + 1)], "city": "Quảng Ngãi", "country": "VN"}]
    });
    (p, nid, format!("{family} {middle} {given}"), birth)
}

/// Vital signs, LOINC: what a patient's observations are drawn from in turn.
const VITALS: &[(&str, std::ops::Range<i64>, &str)] = &[
    ("8480-6", 100..170, "mm[Hg]"),
    ("8867-4", 55..110, "/min"),
    ("8462-4", 60..100, "mm[Hg]"),
    ("8310-5", 36..40, "Cel"),
    ("29463-7", 40..90, "kg"),
];

fn bundle(start: usize, count: usize, observations: usize, rng: &mut StdRng) -> Value {
    let mut entries = Vec::with_capacity(count * (2 + observations));
    for n in start..start + count {
        let (p, ..) = patient(n, rng);
        let purl = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let eurl = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        entries.push(json!({"fullUrl": purl, "resource": p, "request": {"method": "POST", "url": "Patient"}}));
        entries.push(json!({"fullUrl": eurl, "resource": {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": purl}, "period": {"start": "2026-10-01T08:00:00+07:00", "end": "2026-10-01T08:20:00+07:00"}
        }, "request": {"method": "POST", "url": "Encounter"}}));
        for i in 0..observations {
            let (code, range, unit) = &VITALS[i % VITALS.len()];
            let value = rng.random_range(range.clone());
            entries.push(json!({"resource": {
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": purl}, "encounter": {"reference": eurl},
                "effectiveDateTime": "2026-10-01T08:10:00+07:00",
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
            }, "request": {"method": "POST", "url": "Observation"}}));
        }
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// `HOSPITAL_BENCH_REUSE=1`: measure the PostgreSQL store a previous run loaded (its database
/// `hospital_bench` kept, no load), e.g. again at 1,000,000 patients without the half hour
/// of loading.
fn reuse() -> bool {
    std::env::var("HOSPITAL_BENCH_REUSE").is_ok_and(|v| v == "1")
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(database_url: &str, port: u16) -> Server {
        // HOSPITAL_BENCH_SERVER: another build to measure (a before and after in one session).
        let hospital = std::env::var_os("HOSPITAL_BENCH_SERVER")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                let exe = std::env::current_exe().expect("exe");
                exe.with_file_name("hospital")
            });
        let child = Command::new(hospital)
            .env("DATABASE_URL", database_url)
            .env("HOSPITAL_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("HOSPITAL_RECORDS_GRPC_ADDR", "127.0.0.1:0")
            .env("HOSPITAL_METRICS_ADDR", "127.0.0.1:0")
            .env("HOSPITAL_LOG", "warn")
            .env("HOSPITAL_MAX_BODY_BYTES", (64 * 1024 * 1024).to_string())
            .env("HOSPITAL_JWT_SECRET", BENCH_SECRET)
            .env("HOSPITAL_SEPAY_API_KEY", "bench-sepay-key")
            .env("HOSPITAL_SWEEP_MS", "500")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the release hospital binary (cargo build --release)");
        let base = format!("http://127.0.0.1:{port}/fhir");
        Server { child, base }
    }

    fn rss_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/metadata")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server did not start");
}

fn psql(admin: &str, sql: &str) {
    let ok = Command::new("psql")
        .args([admin, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "psql failed: {sql}");
}

/// Rows per second pgbench inserts into a plain table, `clients` connections, 10 seconds.
fn raw_insert_rate(db_url: &str, sample: &Value, clients: usize) -> f64 {
    psql(
        db_url,
        "DROP TABLE IF EXISTS bench_raw; CREATE TABLE bench_raw (id text PRIMARY KEY, body text NOT NULL)",
    );
    let script = std::env::temp_dir().join("hospital-bench-raw.sql");
    let body = sample.to_string().replace('\'', "''");
    std::fs::write(
        &script,
        format!("INSERT INTO bench_raw (id, body) VALUES (gen_random_uuid()::text, '{body}');\n"),
    )
    .expect("write pgbench script");
    let out = Command::new("pgbench")
        .args(["-n", "-f"])
        .arg(&script)
        .args(["-c", &clients.to_string(), "-j", "2", "-T", "10", db_url])
        .output()
        .expect("pgbench (Debian package postgresql-contrib / postgresql-15)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[derive(Default)]
struct Figures {
    ingest_rps: f64,
    creates_ps: f64,
    reads_ps: f64,
    search: Vec<(&'static str, f64, f64)>,
    peak_mib: f64,
    raw_insert_ps: Option<f64>,
    /// Clinician reads (p50, p99, max ms): alone, then while a patient attacks.
    calm: (f64, f64, f64),
    attacked: (f64, f64, f64),
    attack_requests: usize,
    invoices_ps: f64,
    webhooks_ps: f64,
    /// Telemedicine: slots made, slot search p50/p99 (ms), bookings/s, signalling
    /// connections held and the memory they took (MiB).
    slots: usize,
    /// (practitioner's day p50, p99), (specialty over days p50, p99), ms.
    slot_search: (f64, f64),
    slot_search_wide: (f64, f64),
    slot_search_earliest: (f64, f64),
    bookings_ps: f64,
    sockets: usize,
    sockets_mib: f64,
    /// The mixed load: per kind, (requests, p50, p95, p99 ms).
    mixed: Vec<(&'static str, usize, f64, f64, f64)>,
    mixed_rps: f64,
}

/// Vietnam's clock.
fn vn_now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
}

fn vn_instant(t: chrono::DateTime<chrono::FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+07:00").to_string()
}

/// The telemedicine phase: `n` practitioners with a schedule each (every day 07:00–19:00 in
/// 30-minute slots, 30 days ahead: the service makes the slots); slot searches as patients
/// run them (a practitioner's free slots on a day; free video slots of a specialty over up to
/// four weeks, in row order and earliest first); `$book` of distinct slots for distinct patients, 16 in flight; then signalling
/// WebSockets held open (`--sockets-per-visit`, ten by default, one visit per video
/// practitioner), and the memory they take.
async fn telemedicine(
    http: &reqwest::Client,
    base: &str,
    patients: &[String],
    n: usize,
    sockets_per_visit: usize,
    server: &Server,
    f: &mut Figures,
) {
    let mut rng = StdRng::seed_from_u64(9);
    let days: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| json!({"url": "day", "valueCode": d}))
        .collect();
    let mut practitioners = Vec::new();
    for i in 0..n {
        let r: Value = http
            .post(format!("{base}/Practitioner"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Practitioner", "name": [{"family": format!("Bác sĩ {i}")}]}).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        practitioners.push(r["id"].as_str().unwrap().to_owned());
    }
    let specialties = ["394802001", "394579002", "394583002", "394537008"];
    let t = Instant::now();
    for (i, p) in practitioners.iter().enumerate() {
        let mut available = days.clone();
        available.push(json!({"url": "start", "valueTime": "07:00:00"}));
        available.push(json!({"url": "end", "valueTime": "19:00:00"}));
        let mode = if i % 2 == 0 { "video" } else { "in-person" };
        let body = json!({"resourceType": "Schedule", "active": true,
            "actor": [{"reference": format!("Practitioner/{p}")}],
            "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": specialties[i % 4]}]}],
            "extension": [{"url": "urn:hospital:schedule", "extension": [
                {"url": "mode", "valueCode": mode}, {"url": "slot-minutes", "valueInteger": 30},
                {"url": "horizon-days", "valueInteger": 30}, {"url": "available", "extension": available}]}]});
        let r = http
            .post(format!("{base}/Schedule"))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // The service makes the slots in the background: wait until their count settles.
    let count = || async {
        let r: Value = http
            .get(format!("{base}/Slot?_summary=count"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["total"].as_u64().unwrap_or(0) as usize
    };
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = count().await;
        if now > 0 && now == last {
            break;
        }
        last = now;
    }
    f.slots = last;
    eprintln!(
        "  {} slots made in {:.0} s ({:.0}/s)",
        last,
        t.elapsed().as_secs_f64(),
        last as f64 / t.elapsed().as_secs_f64()
    );
    // Slot search.
    // Kinds: 0 a practitioner's day; 1 a specialty's video slots (half the specialties have
    // none: proving there are none is the costly case); 2 the same, earliest first.
    let queries: Vec<(usize, String)> = (0..1500)
        .map(|i| {
            let day = (vn_now() + chrono::Duration::days(rng.random_range(1..29))).format("%Y-%m-%d");
            let kind = i % 3;
            if kind == 0 {
                let p = &practitioners[rng.random_range(0..n)];
                (kind, format!("Slot?practitioner=Practitioner/{p}&status=free&start={day}"))
            } else {
                let s = specialties[rng.random_range(0..4)];
                let sort = if kind == 2 { "&_sort=start" } else { "" };
                (kind, format!(
                    "Slot?specialty=http://snomed.info/sct|{s}&mode=video&status=free&start=ge{day}&start=le{}&_count=50{sort}",
                    (vn_now() + chrono::Duration::days(31)).format("%Y-%m-%d")
                ))
            }
        })
        .collect();
    let lat: Vec<(usize, Duration)> = futures::stream::iter(queries)
        .map(|(kind, q)| {
            let http = http.clone();
            let url = format!("{base}/{q}");
            async move {
                let t = Instant::now();
                let r = http.get(url).send().await.expect("search");
                let s = r.status();
                let body = r.bytes().await.expect("body");
                assert_eq!(s, 200, "{q}: {}", String::from_utf8_lossy(&body));
                (kind, t.elapsed())
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let pick = |kind: usize| {
        let mut l: Vec<Duration> = lat
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .collect();
        l.sort();
        (percentile(&l, 0.5), percentile(&l, 0.99))
    };
    f.slot_search = pick(0);
    f.slot_search_wide = pick(1);
    f.slot_search_earliest = pick(2);
    // Bookings: distinct slots (different practitioners, the same few days) for distinct
    // patients, so nobody is double booked and every call should succeed.
    let day = (vn_now() + chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    let mut slots = Vec::new();
    for p in &practitioners {
        let page: Value = http
            .get(format!(
                "{base}/Slot?practitioner=Practitioner/{p}&status=free&start={day}&_count=24"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["entry"].as_array().into_iter().flatten() {
            slots.push((
                e["resource"]["id"].as_str().unwrap().to_owned(),
                e["resource"]["start"].as_str().unwrap().to_owned(),
            ));
        }
    }
    // Each patient at most once per start time.
    let mut by_start: std::collections::HashMap<String, usize> = Default::default();
    let jobs: Vec<(String, String)> = slots
        .iter()
        .filter_map(|(s, start)| {
            let k = by_start.entry(start.clone()).or_default();
            *k += 1;
            patients.get(*k - 1).map(|p| (s.clone(), p.clone()))
        })
        .collect();
    let booked = jobs.len();
    let t = Instant::now();
    let ok: Vec<u16> = futures::stream::iter(jobs)
        .map(|(s, p)| {
            let http = http.clone();
            let url = format!("{base}/Appointment/$book");
            async move {
                let body = json!({"resourceType": "Parameters", "parameter": [
                    {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}},
                    {"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}]});
                http.post(url)
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    f.bookings_ps = booked as f64 / t.elapsed().as_secs_f64();
    let refused = ok.iter().filter(|s| **s != 200).count();
    assert_eq!(refused, 0, "every booking of a free slot succeeds");
    // Signalling: a visit now for each video practitioner, ten connections to each.
    let now = vn_now();
    let mut tokens = Vec::new();
    for (i, p) in practitioners.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let sched: Value = http
            .get(format!("{base}/Schedule?actor=Practitioner/{p}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sid = sched["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let slot: Value = http
            .post(format!("{base}/Slot"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Slot", "schedule": {"reference": format!("Schedule/{sid}")}, "status": "free",
                "start": vn_instant(now + chrono::Duration::seconds(60)), "end": vn_instant(now + chrono::Duration::minutes(40))}).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let patient = &patients[patients.len() - 1 - i];
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "slot", "valueReference": {"reference": format!("Slot/{}", slot["id"].as_str().unwrap())}},
            {"name": "patient", "valueReference": {"reference": format!("Patient/{patient}")}}]});
        let a: Value = http
            .post(format!("{base}/Appointment/$book"))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let Some(id) = a["id"].as_str() else {
            eprintln!("  a visit for signalling was refused: {a}");
            continue;
        };
        let me = client_of(&token_of(
            hospital_core::auth::Role::Patient,
            "bench-patient",
            Some(patient),
            None,
        ));
        let j: Value = me
            .post(format!("{base}/Appointment/{id}/$join"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Parameters", "parameter": [{"name": "consent", "valueBoolean": true}]}).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let param = |name: &str| {
            j["parameter"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == name))
                .cloned()
                .unwrap_or_default()
        };
        let ws = param("signalling")["valueUrl"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let token = param("token")["valueString"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        tokens.push(format!("{ws}?token={token}"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_mib("VmRSS:");
    let mut sockets = Vec::new();
    for url in &tokens {
        for _ in 0..sockets_per_visit {
            match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((s, _)) => sockets.push(s),
                Err(e) => {
                    eprintln!("  a signalling connection failed: {e}");
                    break;
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.sockets = sockets.len();
    f.sockets_mib = server.rss_mib("VmRSS:") - before;
    drop(sockets);
}

/// The billing phase: `n` issued invoices created one POST at a time, then one SePay
/// delivery for each (authenticated, deduplicated, matched by its memo, credited under the
/// bill's lock), 16 in flight each.
async fn billing(http: &reqwest::Client, base: &str, ids: &[String], n: usize, f: &mut Figures) {
    let site = base.trim_end_matches("/fhir").to_owned();
    let t = Instant::now();
    let codes: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let url = format!("{base}/Invoice");
            let patient = ids[i % ids.len()].clone();
            async move {
                let body = json!({"resourceType": "Invoice", "status": "issued",
                    "subject": {"reference": format!("Patient/{patient}")},
                    "totalNet": {"value": 150_000, "currency": "VND"}});
                let r = http
                    .post(url)
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=representation")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("invoice");
                assert_eq!(r.status(), 201, "an invoice is created");
                let v: Value = r.json().await.expect("the invoice");
                v["identifier"]
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .find(|i| i["system"] == "urn:hospital:payment-code")
                    })
                    .and_then(|i| i["value"].as_str())
                    .expect("a payment code")
                    .to_owned()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    f.invoices_ps = n as f64 / t.elapsed().as_secs_f64();
    let plain = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let t = Instant::now();
    futures::stream::iter(codes.into_iter().enumerate())
        .map(|(i, code)| {
            let plain = plain.clone();
            let url = format!("{site}/webhooks/sepay");
            async move {
                let body = json!({"id": 900_000 + i, "gateway": "VietinBank",
                    "transactionDate": "2026-12-01 14:02:37", "accountNumber": "113366668888",
                    "code": null, "content": format!("MBVCB.{i}.{code}.CT"), "transferType": "in",
                    "description": "", "transferAmount": 150_000, "referenceCode": format!("FT{i}"),
                    "accumulated": 0, "subAccount": null});
                let r = plain
                    .post(url)
                    .header("authorization", "Apikey bench-sepay-key")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("webhook");
                assert_eq!(r.status(), 200, "a delivery is credited");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    f.webhooks_ps = n as f64 / t.elapsed().as_secs_f64();
}

/// QR payloads and PNGs made per second, in this process, one thread.
fn qr_rates() -> (f64, f64) {
    let p = hospital_billing::vietqr::Payment {
        bin: "970415".into(),
        account: "113366668888".into(),
        amount: Some(250_000),
        bill_number: Some("HD2026000123".into()),
        purpose: Some("VPS8HMU8SE".into()),
        ..Default::default()
    };
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(hospital_billing::vietqr::encode(&p).unwrap());
    }
    let payloads = n as f64 / t.elapsed().as_secs_f64();
    let payload = hospital_billing::vietqr::encode(&p).unwrap();
    let m = 500;
    let t = Instant::now();
    for _ in 0..m {
        std::hint::black_box(hospital_billing::qr::png(&payload, 8).unwrap());
    }
    (payloads, m as f64 / t.elapsed().as_secs_f64())
}

/// The worst requests a patient token can send, from the security tests' list: transactions
/// of 1,000 include-laden searches, include bombs, 20,000 values, deep JSON, odd UTF-8, a
/// 1,000-entry transaction of forbidden creates.
fn attacks(victim: &str) -> Vec<(&'static str, String, &'static str, String)> {
    let includes = [
        "_include=Observation:subject",
        "_include=Observation:patient",
        "_include=Observation:encounter",
        "_include=Observation:performer",
        "_revinclude=Provenance:target",
        "_revinclude=DiagnosticReport:result",
        "_revinclude=Invoice:subject",
        "_revinclude=ChargeItem:subject",
        "_revinclude=Appointment:actor",
        "_revinclude=Schedule:actor",
    ]
    .join("&");
    let search =
        json!({"request": {"method": "GET", "url": format!("Observation?{includes}&_count=50")}});
    let searches =
        json!({"resourceType": "Bundle", "type": "transaction", "entry": vec![search; 1000]});
    let bomb = vec!["_include=Observation:subject"; 110].join("&");
    let many: Vec<String> = (0..20_000).map(|i| format!("n{i}")).collect();
    let creates: Vec<Value> = (0..1000)
        .map(|i| json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": format!("z{i}")},
            "subject": {"reference": format!("Patient/{victim}")}}, "request": {"method": "POST", "url": "Observation"}}))
        .collect();
    let depth = 100_000;
    vec![
        (
            "POST",
            String::new(),
            "application/fhir+json",
            searches.to_string(),
        ),
        ("GET", format!("Observation?{bomb}"), "", String::new()),
        (
            "POST",
            "Patient/_search".into(),
            "application/x-www-form-urlencoded",
            format!("name={}", many.join(",")),
        ),
        (
            "POST",
            "Patient".into(),
            "application/fhir+json",
            format!(
                "{{\"resourceType\":\"Patient\",\"extension\":{}{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ),
        (
            "GET",
            "Patient?name=%C3%28%FF%FE%ED%A0%80".into(),
            "",
            String::new(),
        ),
        (
            "GET",
            format!("Patient/{victim}/_history/1"),
            "",
            String::new(),
        ),
        (
            "POST",
            String::new(),
            "application/fhir+json",
            json!({"resourceType": "Bundle", "type": "transaction", "entry": creates}).to_string(),
        ),
    ]
}

/// Clinician reads of random patients for `secs`, 4 at a time: (p50, p99, max) in ms.
async fn clinician_reads(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    secs: u64,
) -> (f64, f64, f64) {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut lanes = Vec::new();
    for lane in 0..4 {
        let http = http.clone();
        let base = base.to_owned();
        let ids = ids.to_vec();
        lanes.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(lane);
            let mut lat = Vec::new();
            while Instant::now() < until {
                let id = &ids[rng.random_range(0..ids.len())];
                let t = Instant::now();
                let r = http
                    .get(format!("{base}/Patient/{id}"))
                    .send()
                    .await
                    .expect("read");
                assert_eq!(r.status(), 200, "a clinician's read");
                r.bytes().await.expect("body");
                lat.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for l in lanes {
        lat.extend(l.await.unwrap());
    }
    lat.sort();
    (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
    )
}

/// The hostile-client phase: a clinician reads alone, then while one patient token fires
/// [`attacks`] from 16 connections.
async fn hostile(base: &str, ids: &[String], secs: u64, f: &mut Figures, backend: &str) {
    use hospital_core::auth::Role;
    let clinician = client_of(&token_of(Role::Clinician, "bs-lan", None, Some("bs-lan")));
    let victim = ids[1].clone();
    let attacker = client_of(&token_of(Role::Patient, "attacker", Some(&ids[0]), None));
    f.calm = clinician_reads(&clinician, base, ids, secs).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..16 {
        let (attacker, stop, base) = (attacker.clone(), stop.clone(), base.to_owned());
        let list = attacks(&victim);
        workers.push(tokio::spawn(async move {
            let (mut n, mut i, mut errors) = (0usize, w, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (method, path, ct, body) = &list[i % list.len()];
                i += 1;
                let url = format!("{base}/{path}");
                let mut req = if *method == "GET" {
                    attacker.get(url)
                } else {
                    attacker.post(url).body(body.clone())
                };
                if !ct.is_empty() {
                    req = req.header("content-type", *ct);
                }
                match req.send().await {
                    Ok(r) if r.status().is_server_error() => errors += 1,
                    Ok(r) => drop(r.bytes().await),
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (n, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.attacked = clinician_reads(&clinician, base, ids, secs).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut n, mut errors) = (0, 0);
    for w in workers {
        let (a, e) = w.await.unwrap();
        n += a;
        errors += e;
    }
    f.attack_requests = n;
    assert_eq!(
        errors, 0,
        "the attack caused server errors or dropped connections"
    );
    eprintln!(
        "[{backend}] clinician reads p50/p99/max {:.1}/{:.1}/{:.1} ms alone, {:.1}/{:.1}/{:.1} ms under attack ({n} attack requests)",
        f.calm.0, f.calm.1, f.calm.2, f.attacked.0, f.attacked.1, f.attacked.2
    );
}

/// A clinic's mix at once, for `secs` seconds from `lanes` clients: 70 % reads of a patient,
/// 20 % searches (by personal ID, a patient's encounters with `_include` of the patient, a
/// patient's whole record by `$everything`), 10 % writes (a vital sign).
async fn mixed(
    http: &reqwest::Client,
    base: &str,
    rich: &[String],
    people: &[String],
    lanes: usize,
    secs: u64,
    f: &mut Figures,
) {
    const KINDS: [&str; 5] = [
        "read by id",
        "search by identifier",
        "encounters with _include",
        "$everything",
        "create Observation",
    ];
    let end = Instant::now() + Duration::from_secs(secs);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (http, base) = (http.clone(), base.to_owned());
        let (rich, people) = (rich.to_vec(), people.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(lane as u64);
            let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); KINDS.len()];
            while Instant::now() < end {
                let roll = rng.random_range(0..100);
                let who = &rich[rng.random_range(0..rich.len())];
                let kind = match roll {
                    0..70 => 0,
                    70..80 => 1,
                    80..85 => 2,
                    85..90 => 3,
                    _ => 4,
                };
                let req = match kind {
                    0 => http.get(format!("{base}/Patient/{who}")),
                    1 => {
                        let nid = &people[rng.random_range(0..people.len())];
                        http.get(format!("{base}/Patient?identifier={NATIONAL_ID}|{nid}"))
                    }
                    2 => http.get(format!(
                        "{base}/Encounter?subject=Patient/{who}&_include=Encounter:subject"
                    )),
                    3 => http.get(format!("{base}/Patient/{who}/$everything")),
                    _ => http
                        .post(format!("{base}/Observation"))
                        .header("content-type", "application/fhir+json")
                        .header("prefer", "return=minimal")
                        .body(
                            json!({
                                "resourceType": "Observation", "status": "final",
                                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                                "subject": {"reference": format!("Patient/{who}")},
                                "effectiveDateTime": "2026-12-01T08:10:00+07:00",
                                "valueQuantity": {"value": rng.random_range(55..110), "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
                            })
                            .to_string(),
                        ),
                };
                let t = Instant::now();
                let r = req.send().await.expect("mixed request");
                let status = r.status();
                r.bytes().await.expect("body");
                assert!(status.is_success(), "{} answered {status}", KINDS[kind]);
                lat[kind].push(t.elapsed());
            }
            lat
        }));
    }
    let mut all: Vec<Vec<Duration>> = vec![Vec::new(); KINDS.len()];
    for task in tasks {
        for (k, l) in task.await.unwrap().into_iter().enumerate() {
            all[k].extend(l);
        }
    }
    let total: usize = all.iter().map(Vec::len).sum();
    f.mixed_rps = total as f64 / t.elapsed().as_secs_f64();
    for (k, mut l) in all.into_iter().enumerate() {
        l.sort();
        f.mixed.push((
            KINDS[k],
            l.len(),
            percentile(&l, 0.5),
            percentile(&l, 0.95),
            percentile(&l, 0.99),
        ));
    }
}

async fn run_backend(backend: &str, a: &Args) -> Figures {
    let (url, port) = match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("hospital-bench-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            (format!("sqlite://{}/bench.db", dir.display()), 18_081)
        }
        "postgres" => {
            if !reuse() {
                psql(
                    &a.postgres_admin,
                    "DROP DATABASE IF EXISTS hospital_bench WITH (FORCE)",
                );
                psql(&a.postgres_admin, "CREATE DATABASE hospital_bench");
            }
            let base = a
                .postgres_admin
                .rsplit_once('/')
                .map(|(b, _)| b)
                .unwrap_or(&a.postgres_admin);
            (format!("{base}/hospital_bench"), 18_082)
        }
        other => panic!("unknown backend {other}"),
    };
    let server = Server::start(&url, port);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token()).parse().unwrap(),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .default_headers(headers)
        .build()
        .unwrap();
    wait_ready(&http, &server.base).await;
    let mut rng = StdRng::seed_from_u64(2026);
    let mut f = Figures::default();

    // 1. Transaction-bundle ingest up to `patients` patients (a patient, an encounter and
    // `observations` observations each), each bundle made as it is sent (a million patients'
    // bundles would not fit in memory at once).
    let per_bundle = 50;
    let observations = a.observations;
    let t = Instant::now();
    let base = server.base.clone();
    let bundles = if reuse() {
        0
    } else {
        a.patients.div_ceil(per_bundle)
    };
    let results: Vec<bool> = futures::stream::iter(0..bundles)
        .map(|b| {
            let http = http.clone();
            let base = base.clone();
            let mut rng = StdRng::seed_from_u64(2026 + b as u64);
            let b = bundle(b * per_bundle, per_bundle, observations, &mut rng).to_string();
            async move {
                let r = http
                    .post(&base)
                    .header("content-type", "application/fhir+json")
                    .body(b)
                    .send()
                    .await;
                matches!(r, Ok(r) if r.status().is_success())
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert!(results.iter().all(|ok| *ok), "every bundle must commit");
    let mut loaded = bundles * per_bundle * (2 + observations);
    f.ingest_rps = loaded as f64 / t.elapsed().as_secs_f64();
    eprintln!(
        "[{backend}] ingest {:.0} resources/s ({loaded} resources in {:.0} s)",
        f.ingest_rps,
        t.elapsed().as_secs_f64()
    );
    if backend == "postgres" {
        use sqlx::Connection as _;
        if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
            if reuse() {
                loaded = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM resources")
                    .fetch_one(&mut c)
                    .await
                    .unwrap_or(1) as usize;
            }
            let size: Result<i64, _> =
                sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut c)
                    .await;
            if let Ok(size) = size {
                eprintln!(
                    "[{backend}] database {:.0} MiB after the load: {:.0} bytes per resource (history, index rows and audit included)",
                    size as f64 / 1048576.0,
                    size as f64 / loaded as f64
                );
            }
        }
    }

    // 2. Single creates. Their personal IDs carry a province code the load never uses (002),
    // so none collides with a loaded patient's; a run on a reused store starts them at a
    // random number, past an earlier run's.
    let first = if reuse() {
        rand::random::<u32>() as usize % 400_000
    } else {
        0
    };
    let bodies: Vec<(String, String, String, String)> = (0..a.creates)
        .map(|i| {
            let (mut p, nid, name, birth) = patient(500_000 + first + i, &mut rng);
            let nid = format!("002{}", &nid[3..]);
            p["identifier"][0]["value"] = json!(nid);
            (p.to_string(), nid, name, birth)
        })
        .collect();
    let t = Instant::now();
    let ids: Vec<String> = futures::stream::iter(bodies.iter().map(|(b, ..)| b.clone()))
        .map(|b| {
            let http = http.clone();
            let url = format!("{base}/Patient");
            async move {
                let r = http
                    .post(url)
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(b)
                    .send()
                    .await
                    .expect("create");
                assert_eq!(r.status(), 201);
                let loc = r.headers()["location"].to_str().unwrap().to_owned();
                loc.rsplit("/_history")
                    .nth(1)
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    f.creates_ps = a.creates as f64 / t.elapsed().as_secs_f64();
    eprintln!("[{backend}] creates {:.0}/s", f.creates_ps);

    // 3. Reads by id.
    let picks: Vec<String> = (0..a.reads)
        .map(|_| ids[rng.random_range(0..ids.len())].clone())
        .collect();
    let t = Instant::now();
    futures::stream::iter(picks)
        .map(|id| {
            let http = http.clone();
            let url = format!("{base}/Patient/{id}");
            async move {
                let r = http.get(url).send().await.expect("read");
                assert_eq!(r.status(), 200);
                r.bytes().await.expect("body");
            }
        })
        .buffer_unordered(a.concurrency)
        .collect::<Vec<_>>()
        .await;
    f.reads_ps = a.reads as f64 / t.elapsed().as_secs_f64();
    eprintln!("[{backend}] reads {:.0}/s", f.reads_ps);

    // 4. Search latency.
    type Sample = (String, String, String, String);
    let by_identifier = |p: &Sample| format!("Patient?identifier={NATIONAL_ID}|{}", p.1);
    let by_name = |p: &Sample| format!("Patient?name={}&_count=20", p.2);
    let by_birthdate = |p: &Sample| {
        format!(
            "Patient?birthdate=ge{}&birthdate=le{}&_count=20",
            &p.3[..7],
            p.3
        )
    };
    // A chain (a patient's readings by their personal ID) and a reverse chain (patients with a
    // high reading, a page of them).
    let chained = |p: &Sample| {
        format!(
            "Observation?subject:Patient.identifier={NATIONAL_ID}|{}",
            p.1
        )
    };
    let reverse = |p: &Sample| {
        let floor = 150 + p.1.as_bytes()[11] as usize % 20;
        format!("Patient?_has:Observation:patient:value-quantity=ge{floor}&_count=20")
    };
    type Query<'a> = &'a dyn Fn(&Sample) -> String;
    let kinds: [(&str, Query); 5] = [
        ("identifier", &by_identifier),
        ("name", &by_name),
        ("birthdate range", &by_birthdate),
        ("chained (Observation?subject:Patient.identifier)", &chained),
        (
            "reverse chained (Patient?_has:Observation:patient:value-quantity)",
            &reverse,
        ),
    ];
    for (kind, make) in kinds.iter() {
        let queries: Vec<String> = (0..a.searches)
            .map(|_| make(&bodies[rng.random_range(0..bodies.len())]))
            .collect();
        let mut lat: Vec<Duration> = futures::stream::iter(queries)
            .map(|q| {
                let http = http.clone();
                let url = format!("{base}/{q}");
                async move {
                    let t = Instant::now();
                    let r = http.get(&url).send().await.expect("search");
                    let status = r.status();
                    let body = r.bytes().await.expect("body");
                    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
                    t.elapsed()
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        lat.sort();
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        eprintln!("[{backend}] search {kind}: p50 {p50:.1} ms, p99 {p99:.1} ms");
        f.search.push((kind, p50, p99));
    }
    // Billing: invoices, then a bank feed's deliveries for them.
    if a.bills > 0 {
        billing(&http, &base, &ids, a.bills, &mut f).await;
        eprintln!(
            "[{backend}] invoices {:.0}/s, webhooks {:.0}/s",
            f.invoices_ps, f.webhooks_ps
        );
    }
    // Telemedicine: schedules, slot search, bookings, signalling connections.
    if a.practitioners > 0 {
        telemedicine(
            &http,
            &base,
            &ids,
            a.practitioners,
            a.sockets_per_visit,
            &server,
            &mut f,
        )
        .await;
        eprintln!(
            "[{backend}] {} slots; slot search (day) p50 {:.1} ms, p99 {:.1} ms, (specialty) p99 {:.1} ms, (earliest) p99 {:.1} ms; bookings {:.0}/s; {} signalling connections in {:.1} MiB",
            f.slots,
            f.slot_search.0,
            f.slot_search.1,
            f.slot_search_wide.1,
            f.slot_search_earliest.1,
            f.bookings_ps,
            f.sockets,
            f.sockets_mib
        );
    }
    // The mixed clinic load, over patients with encounters and readings.
    if a.mixed > 0 {
        let r = http
            .get(format!("{base}/Patient?_count=200&_elements=identifier"))
            .send()
            .await
            .expect("patients");
        let page: Value = r.json().await.expect("a Bundle");
        let rich: Vec<String> = page["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
            .collect();
        let people: Vec<String> = bodies.iter().map(|(_, nid, ..)| nid.clone()).collect();
        mixed(&http, &base, &rich, &people, a.concurrency, a.mixed, &mut f).await;
        eprintln!("[{backend}] mixed load {:.0} requests/s", f.mixed_rps);
        for (kind, n, p50, p95, p99) in &f.mixed {
            eprintln!(
                "[{backend}]   {kind}: {n} requests, p50 {p50:.1} / p95 {p95:.1} / p99 {p99:.1} ms"
            );
        }
    }
    // 5. A hostile patient.
    if a.hostile > 0 {
        hostile(&base, &ids, a.hostile, &mut f, backend).await;
    }
    f.peak_mib = server.peak_rss_mib();
    // Let the sealer chain what the run wrote, then report the trail's size.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(server);
    if backend == "postgres" {
        let (sample, ..) = patient(9_999_999, &mut rng);
        f.raw_insert_ps = Some(raw_insert_rate(&url, &sample, a.concurrency));
    }
    f
}

#[tokio::main]
async fn main() {
    let a = parse_args();
    println!(
        "bench: {} patients (+{} encounters, {} observations) by transaction bundles; {} creates, {} reads, {} searches per kind; concurrency {}",
        a.patients,
        a.patients,
        a.patients * a.observations,
        a.creates,
        a.reads,
        a.searches,
        a.concurrency
    );
    let (payloads, pngs) = qr_rates();
    println!("VietQR payloads {payloads:.0}/s, QR PNGs {pngs:.0}/s (one thread, in process)");
    let mut all = Vec::new();
    for b in &a.backends {
        all.push((b.clone(), run_backend(b, &a).await));
    }
    println!();
    println!(
        "| figure | {} |",
        all.iter()
            .map(|(b, _)| b.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(all.len()));
    let row = |name: &str, get: &dyn Fn(&Figures) -> String| {
        println!(
            "| {name} | {} |",
            all.iter()
                .map(|(_, f)| get(f))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    };
    row("bundle ingest (resources/s)", &|f| {
        format!("{:.0}", f.ingest_rps)
    });
    row("creates (Patient/s)", &|f| format!("{:.0}", f.creates_ps));
    row("reads by id (/s)", &|f| format!("{:.0}", f.reads_ps));
    for i in 0..3 {
        let name = all[0].1.search[i].0;
        row(&format!("search by {name} p50 / p99 (ms)"), &|f| {
            format!("{:.1} / {:.1}", f.search[i].1, f.search[i].2)
        });
    }
    if a.mixed > 0 {
        row("mixed clinic load (requests/s)", &|f| {
            format!("{:.0}", f.mixed_rps)
        });
        for i in 0..all[0].1.mixed.len() {
            let name = all[0].1.mixed[i].0;
            row(&format!("  mixed: {name} p50 / p95 / p99 (ms)"), &|f| {
                let m = &f.mixed[i];
                format!("{:.1} / {:.1} / {:.1}", m.2, m.3, m.4)
            });
        }
    }
    if a.hostile > 0 {
        row("clinician read p50 / p99 / max, alone (ms)", &|f| {
            format!("{:.1} / {:.1} / {:.1}", f.calm.0, f.calm.1, f.calm.2)
        });
        row("the same while a patient attacks (ms)", &|f| {
            format!(
                "{:.1} / {:.1} / {:.1}",
                f.attacked.0, f.attacked.1, f.attacked.2
            )
        });
        row("attack requests answered (all 4xx or 2xx)", &|f| {
            format!("{}", f.attack_requests)
        });
    }
    if a.bills > 0 {
        row("invoices created (/s)", &|f| {
            format!("{:.0}", f.invoices_ps)
        });
        row(
            "bank-feed webhooks verified, deduplicated, matched and credited (/s)",
            &|f| format!("{:.0}", f.webhooks_ps),
        );
    }
    if a.practitioners > 0 {
        row(
            &format!("slots made ({} practitioners × 30 days)", a.practitioners),
            &|f| format!("{}", f.slots),
        );
        row(
            "slot search, a practitioner's free slots of a day, p50 / p99 (ms)",
            &|f| format!("{:.1} / {:.1}", f.slot_search.0, f.slot_search.1),
        );
        row(
            "slot search, a specialty's free video slots over up to 4 weeks, p50 / p99 (ms)",
            &|f| format!("{:.1} / {:.1}", f.slot_search_wide.0, f.slot_search_wide.1),
        );
        row(
            "slot search, the same earliest first (`_sort=start`), p50 / p99 (ms)",
            &|f| {
                format!(
                    "{:.1} / {:.1}",
                    f.slot_search_earliest.0, f.slot_search_earliest.1
                )
            },
        );
        row("bookings ($book, /s)", &|f| format!("{:.0}", f.bookings_ps));
        row("signalling connections held / their memory (MiB)", &|f| {
            format!("{} / {:.1}", f.sockets, f.sockets_mib)
        });
    }
    row("server peak RSS (MiB)", &|f| format!("{:.0}", f.peak_mib));
    row("raw INSERT of the same JSON (rows/s, pgbench)", &|f| {
        f.raw_insert_ps.map_or("—".into(), |r| format!("{r:.0}"))
    });
}
