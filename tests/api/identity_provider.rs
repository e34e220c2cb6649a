//! The identity provider's path (production mode, `--oidc-jwks-url`) against a JWKS server
//! started by the test: slow, failing, rotating, with a key of a type we do not know. A slow
//! or broken provider never delays requests whose keys are known; it is not hammered.

use crate::access_control::now;
use crate::common::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Slow,
    Failing,
    Garbage,
    Empty,
}

/// A JWKS endpoint whose behaviour and keys the test changes; it counts the fetches.
struct Provider {
    url: String,
    mode: Arc<Mutex<Mode>>,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn provider(mode: Mode) -> Provider {
    let mut set: Value = serde_json::from_str(include_str!("../fixtures/oidc/jwks.json")).unwrap();
    // A key type this server does not know (RFC 7517 §5: ignore it, keep the others).
    set["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "AKP", "kid": "pq-1", "alg": "ML-DSA-44", "pub": "AAAA"}));
    let p = Provider {
        url: String::new(),
        mode: Arc::new(Mutex::new(mode)),
        keys: Arc::new(Mutex::new(set)),
        fetches: Arc::new(AtomicUsize::new(0)),
    };
    let (m, k, f) = (p.mode.clone(), p.keys.clone(), p.fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (m, k, f) = (m.clone(), k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let mode = *m.lock().unwrap();
                let set = k.lock().unwrap().clone();
                use axum::response::IntoResponse;
                match mode {
                    Mode::Normal => axum::Json(set).into_response(),
                    Mode::Slow => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        axum::Json(set).into_response()
                    }
                    Mode::Failing => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    Mode::Garbage => "not a key set".into_response(),
                    Mode::Empty => axum::Json(json!({"keys": []})).into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Provider {
        url: format!("http://{addr}/jwks"),
        ..p
    }
}

fn token(kid: &str, alg: jsonwebtoken::Algorithm, pem: &[u8]) -> String {
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

fn rs1() -> String {
    token(
        "rsa-1",
        jsonwebtoken::Algorithm::RS256,
        include_bytes!("../fixtures/oidc/rsa-1.pem"),
    )
}

fn unknown_kid(n: usize) -> String {
    token(
        &format!("nobody-{n}"),
        jsonwebtoken::Algorithm::RS256,
        include_bytes!("../fixtures/oidc/rsa-2.pem"),
    )
}

async fn app_for(p: &Provider, ttl: u64) -> TestApp {
    let url = p.url.clone();
    spawn_app_with(Backend::Sqlite, move |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.oidc_jwks_url = Some(url);
        c.oidc_issuer = "https://sso.benhvien.test".into();
        c.oidc_jwks_ttl_secs = ttl;
    })
    .await
}

async fn status(app: &TestApp, token: String) -> u16 {
    app.anonymous
        .get(app.url("Patient?_count=1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_identity_provider_never_delays_requests_whose_keys_are_known() {
    let p = provider(Mode::Normal).await;
    let app = app_for(&p, 300).await;
    assert_eq!(status(&app, rs1()).await, 200);
    // Past the interval between fetches, tokens naming unknown keys make the server ask the
    // provider again, which now takes 10 s to answer.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    *p.mode.lock().unwrap() = Mode::Slow;
    let before = p.fetches.load(Ordering::SeqCst);
    let mut probes = Vec::new();
    for n in 0..4 {
        let url = app.url("Patient?_count=1");
        let c = app.anonymous.clone();
        let t = unknown_kid(n);
        probes.push(tokio::spawn(async move {
            c.get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    assert_eq!(status(&app, rs1()).await, 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a known key waited {:?} for the slow provider",
        t.elapsed()
    );
    for probe in probes {
        assert_eq!(probe.await.unwrap(), 401);
    }
    assert_eq!(
        p.fetches.load(Ordering::SeqCst) - before,
        1,
        "four unknown keys, one fetch"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_identity_provider_is_asked_once_then_left_alone() {
    for mode in [Mode::Failing, Mode::Garbage, Mode::Empty] {
        let p = provider(mode).await;
        let app = app_for(&p, 300).await;
        // Each from its own client (through the trusted proxy), so the sign-in throttle
        // does not answer instead.
        for n in 0..20 {
            let r = app
                .anonymous
                .get(app.url("Patient?_count=1"))
                .bearer_auth(unknown_kid(n))
                .header("x-forwarded-for", format!("198.51.100.{}", n + 1))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        assert_eq!(
            p.fetches.load(Ordering::SeqCst),
            1,
            "one fetch, then a backoff"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_of_an_unknown_type_does_not_reject_the_set() {
    let p = provider(Mode::Normal).await;
    let app = app_for(&p, 300).await;
    assert_eq!(status(&app, rs1()).await, 200, "RS256");
    let es = token(
        "ec-1",
        jsonwebtoken::Algorithm::ES256,
        include_bytes!("../fixtures/oidc/ec-1.pem"),
    );
    assert_eq!(status(&app, es).await, 200, "ES256");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_removed_from_the_provider_stops_being_trusted() {
    let p = provider(Mode::Normal).await;
    let app = app_for(&p, 1).await;
    assert_eq!(status(&app, rs1()).await, 200);
    p.keys.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "rsa-1");
    // Once the keys are due again (their time, and the interval between fetches), the set
    // is fetched again — in the background, the request in hand still served — and the
    // removed key is gone.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let _ = status(&app, rs1()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status(&app, rs1()).await,
        401,
        "the removed key is no longer trusted"
    );
    app.stop().await;
}
