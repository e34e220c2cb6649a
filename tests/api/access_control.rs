//! Who may do what: the role table of `docs/access.md` walked through the API, patient
//! isolation through every door, token verification (local and OIDC), throttling.

use crate::common::*;
use hospital_core::auth::Role;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

hospital_test_kit::on_both_backends!(
    the_role_table_in_the_docs_is_what_the_api_enforces,
    a_patient_token_never_sees_another_patients_data,
    missing_expired_forged_or_foreign_tokens_get_401_with_a_challenge,
    smart_scopes_restrict_a_role_further,
    a_service_acting_for_a_patient_is_confined_and_audited_as_that_patient,
    a_misfiled_or_deleted_entry_follows_its_resource_through_vread_and_history,
    ordinary_oidc_and_smart_tokens_pass_and_dubious_ones_are_refused,
);

async fn a_service_acting_for_a_patient_is_confined_and_audited_as_that_patient(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000306")).await;
    let binh = app.create(patient_an("051085000307")).await;
    let service = mint(Role::Service, "telemedicine", None, None, None);
    let user = mint(Role::Patient, "an", Some(&an), None, None);
    let relay = |path: String, on_behalf: Option<String>| {
        let mut req = app.anonymous.get(app.url(&path)).bearer_auth(&service);
        if let Some(u) = on_behalf {
            req = req.header("x-on-behalf-of", u);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        relay(format!("Patient/{binh}"), None).await,
        200,
        "the service alone may"
    );
    assert_eq!(
        relay(format!("Patient/{binh}"), Some(user.clone())).await,
        404,
        "acting for An it may not"
    );
    assert_eq!(relay(format!("Patient/{an}"), Some(user)).await, 200);
    assert_eq!(
        relay(format!("Patient/{an}"), Some("forged".into())).await,
        401
    );
    let admin = app.client_for(Role::Admin, None, None);
    let trail: Value = admin
        .get(app.url(&format!("AuditEvent?patient={an}&agent=patient:an")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ev = &trail["entry"][0]["resource"];
    assert_eq!(
        ev["agent"][0]["who"]["identifier"]["value"], "patient:an",
        "{trail}"
    );
    assert_eq!(
        ev["agent"][1]["who"]["identifier"]["value"], "service:telemedicine",
        "{trail}"
    );
    app.stop().await;
}

/// A representative type per group of `docs/access.md`, with a valid body to create (the
/// `n`th of the walk: each price is of its own code, so none overlaps another).
fn representative(group: &str, patient: &str, encounter: &str, n: usize) -> (&'static str, Value) {
    match group {
        "Prices" => (
            "ChargeItemDefinition",
            hospital_billing::prices::definition(
                &format!("AC.{n}"),
                "Khám bệnh",
                hospital_billing::prices::Category::Service,
                50_600,
                Some(50_600),
                "2026-01-01",
            ),
        ),
        "Charges" => (
            "ChargeItem",
            json!({"resourceType": "ChargeItem", "status": "billable",
                "code": {"coding": [{"system": hospital_billing::prices::SERVICE_CODE, "code": "AC.0"}]},
                "subject": {"reference": format!("Patient/{patient}")},
                "context": {"reference": format!("Encounter/{encounter}")},
                "occurrenceDateTime": "2026-08-01"}),
        ),
        "Registration" => (
            "Coverage",
            json!({"resourceType": "Coverage", "status": "active",
            "beneficiary": {"reference": format!("Patient/{patient}")}, "payor": [{"display": "BHXH"}]}),
        ),
        "Clinical" => (
            "Observation",
            json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "Mạch"}, "subject": {"reference": format!("Patient/{patient}")}}),
        ),
        "Directory" => (
            "Organization",
            json!({"resourceType": "Organization", "name": "Trạm y tế"}),
        ),
        "Scheduling" => (
            "Appointment",
            json!({"resourceType": "Appointment", "status": "proposed",
            "participant": [{"actor": {"display": "Bác sĩ trực"}, "status": "needs-action"}]}),
        ),
        "Billing" => (
            "Invoice",
            json!({"resourceType": "Invoice", "status": "draft"}),
        ),
        "Audit" => ("AuditEvent", Value::Null),
        other => panic!("docs/access.md names an unknown group {other}"),
    }
}

/// The table of `docs/access.md`: role -> (group -> cell).
fn role_table() -> Vec<(Role, Vec<(String, String)>)> {
    let doc = include_str!("../../docs/access.md");
    // The first table of the document is the role table.
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let header: Vec<String> = lines
        .next()
        .expect("a table")
        .split('|')
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header[0], "role");
    lines.next(); // |---|
    lines
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().to_owned()).collect();
            let cells = &cells[1..cells.len() - 1];
            let role =
                Role::parse(&cells[0]).unwrap_or_else(|| panic!("unknown role {}", cells[0]));
            let grants = header[1..]
                .iter()
                .cloned()
                .zip(cells[1..].iter().cloned())
                .collect();
            (role, grants)
        })
        .collect()
}

async fn the_role_table_in_the_docs_is_what_the_api_enforces(b: Backend) {
    let app = spawn_app(b).await;
    let mine = app.create(patient_an("051085000301")).await;
    let other = app.create(patient_an("051085000302")).await;
    let doctor = app
        .create(
            json!({"resourceType": "Practitioner", "name": [{"family": "Lê", "given": ["Hùng"]}]}),
        )
        .await;
    // What a charge needs: a price of its code, and an encounter the clinician takes part in.
    app.create(hospital_billing::prices::definition(
        "AC.0",
        "Khám bệnh",
        hospital_billing::prices::Category::Service,
        50_600,
        Some(50_600),
        "2025-01-01",
    ))
    .await;
    let encounter = app
        .create(json!({"resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{mine}")},
            "participant": [{"individual": {"reference": format!("Practitioner/{doctor}")}}],
            "period": {"start": "2026-08-01T08:00:00+07:00"}}))
        .await;
    let table = role_table();
    assert_eq!(table.len(), 5, "every role has a row");
    let mut checked = 0;
    for (role, grants) in table {
        let client = app.client_for(role, Some(&mine), Some(&doctor));
        for (group, cell) in grants {
            let (rtype, body) = representative(&group, &mine, &encounter, checked + 1);
            let may_read = cell.contains("read");
            let may_write = cell.contains("write");
            let path = if rtype == "AuditEvent" {
                "AuditEvent?_count=1".to_owned()
            } else {
                format!("{rtype}?_count=1")
            };
            let status = client
                .get(app.url(&path))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status == 200, may_read, "{role:?} read {group}: {status}");
            if !may_read {
                assert_eq!(status, 403, "{role:?} read {group}");
            }
            if cell.contains("own") {
                // Own data yes, anyone else's: as if it did not exist.
                let own = client
                    .get(app.url(&format!("Patient/{mine}")))
                    .send()
                    .await
                    .unwrap()
                    .status();
                let theirs = client
                    .get(app.url(&format!("Patient/{other}")))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(
                    (own.as_u16(), theirs.as_u16()),
                    (200, 404),
                    "{role:?} {group}"
                );
            }
            if body.is_null() {
                continue;
            }
            // `$validate` tries the write: whoever may not write may not try it.
            let tried = client
                .post(app.url(&format!("{rtype}/$validate")))
                .header("content-type", FHIR)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let r = client
                .post(app.url(rtype))
                .header("content-type", FHIR)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let created: Value = r.json().await.unwrap_or(Value::Null);
            let id = created["id"].as_str().unwrap_or("none");
            // A PATCH is a write too (here one that changes nothing but the version).
            let patched = client
                .patch(app.url(&format!("{rtype}/{id}")))
                .header("content-type", "application/json-patch+json")
                .body(json!([{"op": "test", "path": "/resourceType", "value": rtype}]).to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if may_write {
                // Allowed by the role; 405 only where no service of this deployment owns it.
                assert!(
                    status == 201 || status == 405,
                    "{role:?} write {group}: {status}"
                );
                assert!(
                    tried == 200 || tried == 405,
                    "{role:?} validate {group}: {tried}"
                );
                assert!(
                    patched == 200 || (status == 405 && patched == 405),
                    "{role:?} patch {group}: {patched}"
                );
            } else {
                assert_eq!(status, 403, "{role:?} write {group}");
                assert_eq!(tried, 403, "{role:?} validate {group}");
                assert_eq!(patched, 403, "{role:?} patch {group}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 35);
    app.stop().await;
}

async fn a_patient_token_never_sees_another_patients_data(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000303")).await;
    let binh = app.create(patient_an("051085000304")).await;
    let mut obs = std::collections::HashMap::new();
    for pid in [&an, &binh] {
        let o = app
            .create(json!({"resourceType": "Observation", "status": "final", "code": {"text": "Huyết áp"},
                "subject": {"reference": format!("Patient/{pid}")}}))
            .await;
        app.create(json!({"resourceType": "Coverage", "status": "active",
            "beneficiary": {"reference": format!("Patient/{pid}")}, "payor": [{"display": "BHXH"}]}))
            .await;
        obs.insert(pid.clone(), o);
    }
    let theirs = &obs[&binh];
    let c = app.client_for(Role::Patient, Some(&an), None);
    let get = |path: String| {
        let c = c.clone();
        let url = app.url(&path);
        async move {
            let r = c.get(url).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Every resource in every answer must be An's own (or not patient data at all).
    let leaks = |v: &Value| -> Vec<String> {
        let mut out = Vec::new();
        // What was returned, not the echo of the query in the links.
        let text = v.get("entry").map(Value::to_string).unwrap_or_default();
        if text.contains(&format!("Patient/{binh}"))
            || text.contains(&format!("\"id\":\"{binh}\""))
            || text.contains(theirs.as_str())
        {
            out.push(text);
        }
        out
    };
    let doors = [
        format!("Patient/{binh}"),
        format!("Patient/{binh}?_summary=true"),
        format!("Observation/{theirs}?_elements=subject"),
        format!("Observation/{theirs}"),
        format!("Observation/{theirs}/_history/1"),
        format!("Observation/{theirs}/_history"),
        format!("Patient/{binh}/$everything"),
        format!("Patient/{binh}/_history"),
    ];
    for d in &doors {
        let (s, body) = get(d.clone()).await;
        assert_eq!(s, 404, "{d}: {body}");
    }
    for q in [
        "Patient".to_owned(),
        "Observation".to_owned(),
        "Coverage".to_owned(),
        format!("Observation?subject=Patient/{binh}"),
        format!("Observation?_id={theirs}"),
        format!("Patient?identifier={NATIONAL_ID}|051085000304"),
        "Observation?_include=Observation:patient".to_owned(),
        "Patient?_revinclude=Observation:patient".to_owned(),
        format!("Patient?_id={binh}&_revinclude=Observation:patient"),
        "Observation/_history".to_owned(),
        "Patient/_history".to_owned(),
        format!("Patient/{an}/$everything"),
        "?_type=Patient,Observation,Coverage".to_owned(),
        "?_count=100".to_owned(),
        format!("?_type=Observation&subject=Patient/{binh}"),
        "_history".to_owned(),
        "Patient?_summary=true".to_owned(),
        "Observation?_elements=subject".to_owned(),
        "Coverage?_summary=data&_include=Coverage:beneficiary".to_owned(),
    ] {
        let (s, body) = get(q.clone()).await;
        assert_eq!(s, 200, "{q}: {body}");
        assert!(leaks(&body).is_empty(), "{q} leaked: {body}");
    }
    // Their own data is all there.
    let (_, own) = get("Observation".into()).await;
    assert_eq!(own["entry"].as_array().map_or(0, Vec::len), 1);
    let (_, every) = get(format!("Patient/{an}/$everything")).await;
    assert_eq!(every["entry"].as_array().map_or(0, Vec::len), 3);
    // Bundles: reads of someone else's data fail per entry; writes are not a patient's.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{binh}")}},
        {"request": {"method": "GET", "url": format!("Observation?subject={binh}")}},
        {"request": {"method": "GET", "url": format!("Patient/{an}")}}
    ]});
    let r = c
        .post(app.url(""))
        .header("content-type", FHIR)
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    let resp: Value = r.json().await.unwrap();
    assert_eq!(resp["entry"][0]["response"]["status"], "404");
    assert!(
        resp["entry"][1]["resource"].get("entry").is_none(),
        "{resp}"
    );
    assert_eq!(resp["entry"][2]["response"]["status"], "200 OK");
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{binh}")}}
    ]});
    let r = c
        .post(app.url(""))
        .header("content-type", FHIR)
        .body(tx.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let write = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": format!("Patient/{an}")}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let r = c
        .post(app.url(""))
        .header("content-type", FHIR)
        .body(write.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn hs256(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn missing_expired_forged_or_foreign_tokens_get_401_with_a_challenge(b: Backend) {
    let app = spawn_app(b).await;
    let secret = hospital::config::TEST_SECRET;
    let good = |exp: u64, aud: &str| json!({"sub": "u1", "role": "clinician", "iss": "hospital-local", "aud": aud, "exp": exp, "iat": now()});
    let cases = [
        ("no token", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        (
            "expired",
            Some(hs256(secret, good(now() - 3600, "hospital"))),
        ),
        (
            "wrong audience",
            Some(hs256(secret, good(now() + 3600, "another-app"))),
        ),
        (
            "badly signed",
            Some(hs256(
                "some-other-secret-0123456789abcdef0123",
                good(now() + 3600, "hospital"),
            )),
        ),
        (
            "unknown role",
            Some(hs256(
                secret,
                json!({"sub": "u1", "role": "janitor", "iss": "hospital-local", "aud": "hospital", "exp": now() + 3600}),
            )),
        ),
        (
            "patient without Patient",
            Some(hs256(
                secret,
                json!({"sub": "u1", "role": "patient", "iss": "hospital-local", "aud": "hospital", "exp": now() + 3600}),
            )),
        ),
    ];
    for (why, token) in cases {
        let mut req = app.anonymous.get(app.url("Patient"));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{why}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer "), "{why}: {challenge}");
        let oo: Value = r.json().await.unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome", "{why}");
    }
    // The capability statement is public; the valid token works.
    assert_eq!(
        app.anonymous
            .get(app.url("metadata"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("Patient"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

async fn smart_scopes_restrict_a_role_further(b: Backend) {
    let app = spawn_app(b).await;
    let p = app.create(patient_an("051085000305")).await;
    let token = mint(
        Role::Clinician,
        "bs-mai",
        None,
        Some("x"),
        Some("openid user/Observation.read"),
    );
    let c = client_with(&token);
    assert_eq!(
        c.get(app.url("Observation")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(app.url(&format!("Patient/{p}")))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{p}")}});
    let r = c
        .post(app.url("Observation"))
        .header("content-type", FHIR)
        .body(obs.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_failed_sign_ins_are_slowed_then_refused_but_valid_tokens_never_are() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = app
            .anonymous
            .get(app.url("Patient"))
            .bearer_auth("forged")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        took.push(t.elapsed());
    }
    assert!(
        took[0] < Duration::from_millis(150),
        "the first failures are not slowed: {took:?}"
    );
    assert!(
        took[6] >= Duration::from_millis(200),
        "later failures are slowed: {took:?}"
    );
    // Now this client's failures are refused outright for a while...
    let r = app
        .anonymous
        .get(app.url("Patient"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // ...but a valid token is never refused by the throttle: failing on purpose cannot lock
    // the hospital out (behind an ingress every user shares one address).
    let r = app.http.get(app.url("Patient")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// A pretend OpenID Connect provider: its JWKS, with `rsa-2` published only after rotation.
async fn identity_provider() -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let rotated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = rotated.clone();
    let jwks: Value = serde_json::from_str(include_str!("../fixtures/oidc/jwks.json")).unwrap();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let mut set = jwks.clone();
            if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                set["keys"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|k| k["kid"] != "rsa-2");
            }
            async move { axum::Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/jwks"), rotated)
}

fn oidc_token(kid: &str, alg: jsonwebtoken::Algorithm, pem: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(pem).unwrap(),
        _ => jsonwebtoken::EncodingKey::from_ec_pem(pem).unwrap(),
    };
    let claims = json!({"sub": "nurse-7", "role": "clinician", "iss": "https://sso.benhvien.test",
        "aud": "hospital", "exp": now() + 600, "iat": now()});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oidc_tokens_verify_against_the_jwks_and_rotated_keys_are_fetched() {
    let (jwks_url, rotated) = identity_provider().await;
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.oidc_jwks_url = Some(jwks_url.clone());
        c.oidc_issuer = "https://sso.benhvien.test".into();
    })
    .await;
    let get = |token: String| {
        let url = app.url("Patient");
        let c = app.anonymous.clone();
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let rs = oidc_token(
        "rsa-1",
        jsonwebtoken::Algorithm::RS256,
        include_bytes!("../fixtures/oidc/rsa-1.pem"),
    );
    let es = oidc_token(
        "ec-1",
        jsonwebtoken::Algorithm::ES256,
        include_bytes!("../fixtures/oidc/ec-1.pem"),
    );
    let next = oidc_token(
        "rsa-2",
        jsonwebtoken::Algorithm::RS256,
        include_bytes!("../fixtures/oidc/rsa-2.pem"),
    );
    assert_eq!(get(rs).await, 200, "RS256");
    assert_eq!(get(es).await, 200, "ES256");
    assert_eq!(
        get(next.clone()).await,
        401,
        "a key the provider has not published"
    );
    // A local token means nothing to a server that trusts the provider.
    assert_eq!(get(app.token.clone()).await, 401);
    rotated.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(get(next).await, 200, "the rotated key is fetched");
    app.stop().await;
}

async fn a_misfiled_or_deleted_entry_follows_its_resource_through_vread_and_history(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000311")).await;
    let binh = app.create(patient_an("051085000312")).await;
    let obs = |pid: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Đường huyết"},
            "subject": {"reference": format!("Patient/{pid}")}})
    };
    // Recorded for An, then corrected to Bình.
    let moved = app.create(obs(&an)).await;
    let mut corrected = obs(&binh);
    corrected["id"] = json!(moved);
    let (s, _, _) = app.put(&format!("Observation/{moved}"), &corrected).await;
    assert_eq!(s, 200);
    // Recorded for An, then deleted: still An's, as of its last version.
    let deleted = app.create(obs(&an)).await;
    let r = app
        .http
        .delete(app.url(&format!("Observation/{deleted}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let as_an = client_with(&mint(Role::Patient, &an, Some(&an), None, None));
    let as_binh = client_with(&mint(Role::Patient, &binh, Some(&binh), None, None));
    let status = |c: &reqwest::Client, path: String| {
        let url = app.url(&path);
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status(&as_an, format!("Observation/{moved}/_history/1")).await,
        404
    );
    assert_eq!(
        status(&as_binh, format!("Observation/{moved}/_history/1")).await,
        200
    );
    assert_eq!(
        status(&as_an, format!("Observation/{deleted}/_history/1")).await,
        200
    );
    assert_eq!(
        status(&as_binh, format!("Observation/{deleted}/_history/1")).await,
        404
    );
    let history: Value = as_an
        .get(app.url("Observation/_history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = history["entry"].to_string();
    assert!(
        !listed.contains(&moved),
        "An's type history lists what is Bình's now: {listed}"
    );
    // The refused vread is in the trail under both patients it concerns.
    let trail = app
        .audit_events(&format!("patient={binh}&agent=patient:{an}"))
        .await;
    let refused = trail
        .iter()
        .find(|r| r["subtype"][0]["code"] == "vread" && r["outcome"] == "4")
        .unwrap_or_else(|| panic!("An's refused vread is on Bình's trail: {trail:?}"));
    let entities = refused["entity"].to_string();
    assert!(
        entities.contains(&format!("Observation/{moved}")),
        "{entities}"
    );
    assert!(entities.contains(&format!("Patient/{an}")), "{entities}");
    app.stop().await;
}

async fn ordinary_oidc_and_smart_tokens_pass_and_dubious_ones_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let p = app.create(patient_an("051085000321")).await;
    let secret = hospital::config::TEST_SECRET;
    let base = || {
        json!({"sub": "bs-lan", "role": "clinician", "iss": "hospital-local", "aud": "hospital",
            "exp": now() + 600, "iat": now()})
    };
    let with = |k: &str, v: Value| {
        let mut c = base();
        c[k] = v;
        hs256(secret, c)
    };
    let status = |token: String| {
        let url = app.url(&format!("Patient/{p}"));
        let c = app.anonymous.clone();
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for (why, token, want) in [
        (
            "aud as an array",
            with("aud", json!(["hospital", "account"])),
            200,
        ),
        (
            "OIDC scopes only",
            with("scope", json!("openid profile")),
            200,
        ),
        (
            "a SMART launch scope",
            with("scope", json!("openid launch/patient user/Patient.read")),
            200,
        ),
        ("SMART v2 .rs", with("scope", json!("user/Patient.rs")), 200),
        (
            "SMART v2 without read",
            with("scope", json!("user/Patient.cud")),
            403,
        ),
        ("nbf in the future", with("nbf", json!(now() + 3600)), 401),
        (
            "iat a year ahead",
            with("iat", json!(now() + 365 * 86_400)),
            401,
        ),
        (
            "exp a century ahead",
            with("exp", json!(now() + 100 * 365 * 86_400)),
            401,
        ),
        ("an empty sub", with("sub", json!("")), 401),
        ("aud array without us", with("aud", json!(["account"])), 401),
    ] {
        assert_eq!(status(token).await, want, "{why}");
    }
    app.stop().await;
}

/// Every type this server accepts is in exactly one group of `docs/access.md`, the group the
/// policy puts it in, and the document names no type the server does not know.
#[test]
fn every_supported_type_is_in_the_group_the_docs_name() {
    let doc = include_str!("../../docs/access.md");
    let mut listed: Vec<(String, String)> = Vec::new();
    let mut lines = doc.lines().skip_while(|l| !l.starts_with("The groups"));
    let mut entry = String::new();
    let mut entries = Vec::new();
    for line in lines.by_ref().skip(1) {
        if line.starts_with("Further rules") {
            break;
        }
        if line.starts_with("- **") {
            if !entry.is_empty() {
                entries.push(std::mem::take(&mut entry));
            }
            entry.push_str(line);
        } else if !entry.is_empty() && !line.trim().is_empty() {
            entry.push(' ');
            entry.push_str(line.trim());
        }
    }
    entries.push(entry);
    for e in entries {
        let (group, rest) = e
            .trim_start_matches("- **")
            .split_once("** — ")
            .unwrap_or_else(|| panic!("a group line: {e}"));
        let types = rest.split(':').next().unwrap_or_default();
        for t in types.split(',').map(str::trim) {
            listed.push((t.to_owned(), group.to_owned()));
        }
    }
    for t in hospital_fhir_model::SUPPORTED_TYPES {
        let groups: Vec<&str> = listed
            .iter()
            .filter(|(l, _)| l == t)
            .map(|(_, g)| g.as_str())
            .collect();
        let category = hospital_core::auth::category(t)
            .unwrap_or_else(|| panic!("{t} is in no group of the policy"));
        assert_eq!(
            groups,
            vec![format!("{category:?}").as_str()],
            "{t}: the docs and the policy"
        );
    }
    for (t, _) in &listed {
        assert!(
            hospital_fhir_model::is_supported(t) || t == "AuditEvent",
            "docs/access.md lists {t}, which the server does not accept"
        );
    }
}
