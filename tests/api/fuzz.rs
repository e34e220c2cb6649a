//! Property tests over hostile input, run in CI for a bounded time: the search parameter
//! parser, the Bundle parser and token parsing get mutated valid inputs (odd UTF-8, cut
//! characters, escapes, huge numbers, deep nesting, swapped JSON values) and must answer with
//! a clear refusal — never a panic, a 500 or a dropped connection, and never more access than
//! the unmutated input had.
//!
//! Each target runs `HOSPITAL_FUZZ_SECS` seconds (default 4). The cases come from a seeded
//! generator; a failure prints the seed and the input, and `HOSPITAL_FUZZ_SEED=<seed>`
//! replays the run.

use crate::common::*;
use hospital_core::auth::Role;
use hospital_core::store::{SearchQuery, StoreError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

hospital_test_kit::on_both_backends!(
    mutated_searches_never_fail_the_server,
    mutated_bundles_never_fail_the_server,
);

fn budget() -> Duration {
    let secs = std::env::var("HOSPITAL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    Duration::from_secs(secs)
}

fn rng(target: &str) -> (StdRng, u64) {
    let seed = std::env::var("HOSPITAL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzz {target}: seed {seed} (HOSPITAL_FUZZ_SEED={seed} replays it)");
    (StdRng::seed_from_u64(seed), seed)
}

/// Fragments that break parsers: separators of the search syntax, escapes, modifiers and
/// prefixes, percent signs, a cut multi-byte character, control and bidi characters, huge
/// and negative numbers, SQL and LIKE metacharacters.
const SPICE: &[&str] = &[
    ",",
    "|",
    "\\",
    "\\,",
    "$",
    ":",
    ":exact",
    ":missing",
    ":contains",
    ":not",
    ":above",
    ":below",
    ":text",
    ":identifier",
    ".",
    "%",
    "%25",
    "%C3",
    "%FF",
    "&",
    "=",
    "==",
    "ge",
    "le",
    "eq",
    "ap",
    "sa",
    "eb",
    "gt",
    "lt",
    "ne",
    "-",
    "+",
    "e",
    "E999",
    "1e309",
    "NaN",
    "99999999999999999999999999",
    "-0",
    "0.",
    ".5",
    "é",
    "ệ",
    "Đ",
    "\u{0}",
    "\u{202e}",
    "\u{fffd}",
    "\u{1F600}",
    "\u{10ffff}",
    "'",
    "\"",
    "--",
    ";",
    "_",
    "*",
    "?",
    "/",
    "T",
    "Z",
    "+07:00",
    "2024-02-30",
    "2024-13-01T25:61:61",
    "9999-12-31",
    "0000",
    "\n",
    " ",
    "\t",
    "Patient/",
    "urn:uuid:",
    "#",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
];

/// One mutation of `s`: insert, delete, duplicate or replace a piece, or cut it at any byte.
fn mutate(s: &str, rng: &mut StdRng) -> String {
    let mut bytes = s.as_bytes().to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        let at = if bytes.is_empty() {
            0
        } else {
            rng.random_range(0..=bytes.len())
        };
        match rng.random_range(0..6) {
            0 | 1 => {
                let spice = SPICE[rng.random_range(0..SPICE.len())].as_bytes();
                bytes.splice(at..at, spice.iter().copied());
            }
            2 if !bytes.is_empty() => {
                let end = (at + rng.random_range(1..8)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            3 if !bytes.is_empty() => {
                let end = (at + rng.random_range(1..16)).min(bytes.len());
                let piece: Vec<u8> = bytes[at.min(end)..end].to_vec();
                let times = rng.random_range(1..40);
                for _ in 0..times {
                    bytes.splice(end..end, piece.iter().copied());
                }
            }
            4 => bytes.truncate(at),
            _ => {
                if at < bytes.len() {
                    bytes[at] = rng.random();
                }
            }
        }
    }
    // A cut or random byte is not UTF-8; the doors receive what the network can carry.
    String::from_utf8_lossy(&bytes).into_owned()
}

const SEARCHES: &[(&str, &str)] = &[
    ("Patient", "name=nguyen van an&_count=5"),
    (
        "Patient",
        "identifier=http://fhir.ehealth.gov.vn/core/sid/national_id|051085000960",
    ),
    (
        "Patient",
        "birthdate=ge1980-01-01&birthdate=lt2000&gender=male,female",
    ),
    (
        "Patient",
        "phone=0905123456&_sort=-_lastUpdated&_total=accurate",
    ),
    (
        "Observation",
        "subject=Patient/p1&code=http://loinc.org|8480-6&value-quantity=gt100|http://unitsofmeasure.org|mm[Hg]",
    ),
    (
        "Observation",
        "date=ge2026-10-01T08:00:00+07:00&_include=Observation:subject&_revinclude=Provenance:target",
    ),
    (
        "Encounter",
        "patient=p1&status=finished&date=2026-10&_elements=id,status",
    ),
    (
        "Condition",
        "code:text=dai thao duong&subject:missing=false",
    ),
    (
        "AuditEvent",
        "date=ge2024-01-01&agent=clinician:bs-lan&patient=p1&action=R",
    ),
    (
        "Coverage",
        "identifier=DN4510123456789&beneficiary=Patient/p1",
    ),
];

/// A query string's parameters, decoded the way the HTTP edge decodes them.
fn params_of(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn mutated_searches_never_fail_the_server(b: Backend) {
    let app = spawn_app(b).await;
    let p1 = app.create(patient_an("051085000960")).await;
    let (mut rng, seed) = rng("search");
    let until = Instant::now() + budget();
    let mut cases = 0;
    while Instant::now() < until {
        let (rt, base) = SEARCHES[rng.random_range(0..SEARCHES.len())];
        let base = base.replace("p1", &p1);
        let query = mutate(&base, &mut rng);
        // In the store, below every door: a refusal of the search, never a database error.
        let mut q = SearchQuery::new(rt, params_of(&query));
        q.lenient = rng.random_bool(0.2);
        if rng.random_bool(0.3) {
            q.compartment = Some(p1.clone());
        }
        match app.store.search(&q).await {
            Ok(_)
            | Err(
                StoreError::BadSearch(_) | StoreError::TooCostly(_) | StoreError::Invalid { .. },
            ) => {}
            Err(e) => panic!("seed {seed}: search {rt}?{query:?} failed in the store: {e}"),
        }
        // Through the REST door, as bytes on the wire, every few cases.
        if cases % 4 == 0 {
            let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
            let url = format!(
                "{}?{}",
                app.url(rt),
                encoded.replace("%3D", "=").replace("%26", "&")
            );
            let r =
                app.http.get(&url).send().await.unwrap_or_else(|e| {
                    panic!("seed {seed}: GET {url}: the connection failed: {e}")
                });
            let status = r.status().as_u16();
            assert!(status < 500, "seed {seed}: GET {url} answered {status}");
            if status >= 400 {
                let oo: Value = r.json().await.unwrap_or_default();
                assert_eq!(
                    oo["resourceType"], "OperationOutcome",
                    "seed {seed}: GET {url} answered {status} without an OperationOutcome"
                );
            }
        }
        cases += 1;
    }
    eprintln!("fuzz search: {cases} cases");
    assert!(cases > 100, "only {cases} cases ran");
    app.stop().await;
}

/// Replaces one value somewhere in `v` with a hostile one: a wrong type, an odd string, a
/// huge number, deep nesting, a very long array.
fn twist(v: &mut Value, rng: &mut StdRng, depth: usize) {
    let pick_here = depth > 6 || rng.random_bool(0.25);
    match v {
        Value::Object(m) if !m.is_empty() && !pick_here => {
            let i = rng.random_range(0..m.len());
            let key = m.keys().nth(i).cloned().unwrap_or_default();
            if let Some(child) = m.get_mut(&key) {
                twist(child, rng, depth + 1);
            }
        }
        Value::Array(a) if !a.is_empty() && !pick_here => {
            let i = rng.random_range(0..a.len());
            twist(&mut a[i], rng, depth + 1);
        }
        _ => {
            *v = match rng.random_range(0..10) {
                0 => Value::Null,
                1 => json!(1e300),
                2 => json!(-1),
                3 => json!(SPICE[rng.random_range(0..SPICE.len())]),
                4 => json!(mutate(&v.to_string(), rng)),
                5 => json!([]),
                6 => json!({}),
                7 => {
                    let mut deep = json!("x");
                    for _ in 0..rng.random_range(10..120) {
                        deep = json!([deep]);
                    }
                    deep
                }
                8 => json!(vec![v.clone(); rng.random_range(2..50)]),
                _ => json!(true),
            }
        }
    }
}

fn seed_bundles(patient: &str) -> Vec<Value> {
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}});
    vec![
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b6a3a1e-4a8e-4b8e-9a54-1f3d2c4b5a60", "resource": patient_an("051085000962"),
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=051085000962"}},
            {"resource": {"resourceType": "Encounter", "status": "finished",
              "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
              "subject": {"reference": "urn:uuid:0b6a3a1e-4a8e-4b8e-9a54-1f3d2c4b5a60"}},
             "request": {"method": "POST", "url": "Encounter"}},
        ]}),
        json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("Patient/{patient}")}},
            {"request": {"method": "GET", "url": "Observation?code=8480-6&_count=2"}},
            {"resource": obs.clone(), "request": {"method": "POST", "url": "Observation"}},
        ]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": obs, "request": {"method": "PUT", "url": "Observation?identifier=urn:x|1"}},
            {"request": {"method": "DELETE", "url": "Observation?code=nothing"}},
            {"request": {"method": "GET", "url": "Patient?_id=x,y&_count=1"}},
        ]}),
    ]
}

async fn mutated_bundles_never_fail_the_server(b: Backend) {
    let app = spawn_app(b).await;
    let p1 = app.create(patient_an("051085000961")).await;
    let seeds = seed_bundles(&p1);
    let (mut rng, seed) = rng("bundle");
    let until = Instant::now() + budget();
    let mut cases = 0;
    while Instant::now() < until {
        let mut bundle = seeds[rng.random_range(0..seeds.len())].clone();
        let body = if rng.random_bool(0.75) {
            for _ in 0..rng.random_range(1..4) {
                twist(&mut bundle, &mut rng, 0);
            }
            bundle.to_string()
        } else {
            mutate(&bundle.to_string(), &mut rng)
        };
        let before = app.store.count(None).await.unwrap();
        let r = app
            .http
            .post(app.url(""))
            .header("content-type", FHIR)
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: the connection failed on {body}: {e}"));
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap_or_default();
        assert!(
            status < 500,
            "seed {seed}: a Bundle answered {status}: {answer}\n{body}"
        );
        if status >= 400 {
            assert_eq!(
                answer["resourceType"], "OperationOutcome",
                "seed {seed}: {body}"
            );
            // A refused transaction leaves the store exactly as it was.
            if body.contains("\"transaction\"") {
                assert_eq!(
                    app.store.count(None).await.unwrap(),
                    before,
                    "seed {seed}: a refused Bundle changed the store: {body}"
                );
            }
        }
        cases += 1;
    }
    eprintln!("fuzz bundle: {cases} cases");
    assert!(cases > 20, "only {cases} cases ran");
    app.stop().await;
}

#[tokio::test]
async fn mutated_tokens_are_refused_and_never_grant_more() {
    let auth = hospital_core::auth::Authenticator::local(
        hospital_core::auth::Secret(hospital_host::config::TEST_SECRET.as_bytes().to_vec()),
        "hospital-local",
        "hospital",
    );
    let seeds = [
        mint(Role::Patient, "an", Some("p1"), None, None),
        mint(
            Role::Clinician,
            "bs-lan",
            None,
            Some("bs-lan"),
            Some("user/*.rs openid"),
        ),
        mint(Role::Cashier, "tn-mai", None, None, None),
    ];
    let (mut rng, seed) = rng("token");
    let until = Instant::now() + budget();
    let mut cases = 0;
    while Instant::now() < until {
        let original = &seeds[rng.random_range(0..seeds.len())];
        let granted = auth.verify(original).await.expect("the seed is valid");
        let token = if rng.random_bool(0.5) {
            mutate(original, &mut rng)
        } else {
            // Mutate inside one part of the JWT, keeping its shape.
            let mut parts: Vec<String> = original.split('.').map(str::to_owned).collect();
            let i = rng.random_range(0..parts.len());
            parts[i] = mutate(&parts[i], &mut rng);
            parts.join(".")
        };
        let bearer = format!("Bearer {token}");
        let parsed = hospital_core::authn::bearer_token(&bearer).map(str::to_owned);
        if let Some(t) = parsed
            && let Ok(p) = auth.verify(&t).await
        {
            assert_eq!(
                format!("{p:?}"),
                format!("{granted:?}"),
                "seed {seed}: the mutated token {token:?} grants something else"
            );
        }
        cases += 1;
    }
    eprintln!("fuzz token: {cases} cases");
    assert!(cases > 1000, "only {cases} cases ran");
}
