//! Signing in to the web pages: the local page of embedded mode, and the OpenID Connect
//! authorization code flow with PKCE against an identity provider (a stand-in speaking the
//! provider's wire format: this machine cannot run Keycloak). Sessions in Secure, HttpOnly,
//! SameSite cookies; CSRF on every form; sign-out; the same caller and audit as a token.

use crate::common::*;
use hospital_core::auth::Role;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

hospital_test_kit::on_both_backends!(the_local_sign_in_gives_a_session_that_signs_out);

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn root(app: &TestApp) -> String {
    app.base.trim_end_matches("/fhir").to_owned()
}

/// The `name=value` of the cookie `name` set by a response, and its attributes.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<(String, String)> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| {
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            (kv.to_owned(), attrs.to_owned())
        })
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn the_local_sign_in_gives_a_session_that_signs_out(b: Backend) {
    let app = spawn_app(b).await;
    let web = browser();
    let base = root(&app);
    // Not signed in: the page sends the browser to sign in, and back afterwards.
    let r = web.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/signin?return_to=%2Fme");
    let form = web.get(format!("{base}/signin")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let (pre, attrs) = set_cookie(&form, "hospital_signin").expect("the form's CSRF cookie");
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("Secure"),
        "{attrs}"
    );
    let html = form.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    let post = |user: &str, password: &str, csrf: &str, cookie: &str| {
        web.post(format!("{base}/signin"))
            .header(COOKIE, cookie.to_owned())
            .form(&[
                ("username", user),
                ("password", password),
                ("csrf", csrf),
                ("return_to", "/me"),
            ])
            .send()
    };
    let wrong = post("bs.hung", "not-it", &csrf, &pre).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "hospital_session").is_none());
    let forged = post("bs.hung", "hung-demo", "another-token", &pre)
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a sign-in form without its CSRF token"
    );
    let ok = post("bs.hung", "hung-demo", &csrf, &pre).await.unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()[LOCATION], "/me");
    let (session, attrs) = set_cookie(&ok, "hospital_session").expect("a session cookie");
    for a in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(attrs.contains(a), "{a} in {attrs}");
    }
    let me = web
        .get(format!("{base}/me"))
        .header(COOKIE, session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let html = me.text().await.unwrap();
    assert!(
        html.contains("bs.hung (clinician) — Practitioner/bs-le-van-hung"),
        "{html}"
    );
    let session_csrf = hidden(&html, "csrf");
    // Sign-out is a form too: without the session's token it is refused.
    let out = |csrf: String| {
        web.post(format!("{base}/signout"))
            .header(COOKIE, session.clone())
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(out("forged".into()).await.unwrap().status(), 403);
    assert_eq!(out(session_csrf).await.unwrap().status(), 303);
    let after = web
        .get(format!("{base}/me"))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "the session is over");
    // The trail: the failures anonymous, the sign-in as the doctor.
    let admin = app.client_for(Role::Admin, None, None);
    let trail: Value = admin
        .get(app.url("AuditEvent?agent=clinician:bs.hung"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"signin") && names.contains(&"signout"),
        "{names:?}"
    );
    app.stop().await;
}

#[test]
fn every_demo_account_in_the_docs_signs_in_with_its_documented_password() {
    let doc = include_str!("../../docs/access.md");
    let users: Vec<Value> =
        serde_json::from_str(include_str!("../../services/web/data/demo-users.json")).unwrap();
    for u in &users {
        let name = u["username"].as_str().unwrap();
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/access.md lists no demo account {name}"));
        let password = row.split('`').nth(3).unwrap();
        assert!(
            hospital_web::password::verify(u["password"].as_str().unwrap(), password),
            "{name}'s documented password"
        );
    }
}

/// An identity provider's authorization and token endpoints (the code flow with PKCE) and
/// its JWKS, as a provider speaks them.
async fn provider() -> String {
    type Codes = Arc<Mutex<HashMap<String, (String, String)>>>;
    let codes: Codes = Arc::default();
    let (c1, c2) = (codes.clone(), codes.clone());
    let jwks: Value = serde_json::from_str(include_str!("../fixtures/oidc/jwks.json")).unwrap();
    let app = axum::Router::new()
        .route(
            "/authorize",
            axum::routing::get(
                move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| {
                    let codes = c1.clone();
                    async move {
                        assert_eq!(q["response_type"], "code");
                        assert_eq!(q["code_challenge_method"], "S256");
                        let code = format!("code-{}", codes.lock().unwrap().len());
                        codes.lock().unwrap().insert(
                            code.clone(),
                            (q["code_challenge"].clone(), q["redirect_uri"].clone()),
                        );
                        let to = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
                        axum::response::Redirect::to(&to)
                    }
                },
            ),
        )
        .route(
            "/token",
            axum::routing::post(move |body: String| {
                let codes = c2.clone();
                async move {
                    let form: HashMap<String, String> =
                        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    let Some((challenge, redirect)) = codes.lock().unwrap().remove(&form["code"])
                    else {
                        return (axum::http::StatusCode::BAD_REQUEST, "{\"error\":\"invalid_grant\"}".to_owned());
                    };
                    // PKCE: the verifier must hash to the challenge sent at /authorize.
                    let ok = hospital_core::session::pkce_challenge(&form["code_verifier"]) == challenge
                        && form["redirect_uri"] == redirect
                        && form["grant_type"] == "authorization_code";
                    if !ok {
                        return (axum::http::StatusCode::BAD_REQUEST, "{\"error\":\"invalid_grant\"}".to_owned());
                    }
                    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                    header.kid = Some("rsa-1".into());
                    let now = crate::access_control::now();
                    let claims = serde_json::json!({"sub": "nurse-7", "role": "clinician",
                        "iss": "https://sso.benhvien.test", "aud": "hospital", "exp": now + 600, "iat": now});
                    let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../fixtures/oidc/rsa-1.pem")).unwrap();
                    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
                    (
                        axum::http::StatusCode::OK,
                        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 600}).to_string(),
                    )
                }
            }),
        )
        .route("/jwks", axum::routing::get(move || { let j = jwks.clone(); async move { axum::Json(j) } }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_identity_providers_code_flow_with_pkce_signs_a_browser_in() {
    let idp = provider().await;
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.oidc_jwks_url = Some(format!("{idp}/jwks"));
        c.oidc_issuer = "https://sso.benhvien.test".into();
        c.oidc_authorization_url = Some(format!("{idp}/authorize"));
        c.oauth_token_url = Some(format!("{idp}/token"));
        c.oauth_client_id = Some("hospital".into());
        c.oauth_client_secret = Some("s3cret".into());
    })
    .await;
    let web = browser();
    let base = root(&app);
    let r = web
        .get(format!("{base}/signin?return_to=/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to_idp = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(to_idp.starts_with(&format!("{idp}/authorize?")), "{to_idp}");
    assert!(to_idp.contains("code_challenge_method=S256"));
    let r = web.get(&to_idp).send().await.unwrap();
    let back = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let back = back.replace("http://127.0.0.1:0", &base);
    let r = web.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(r.headers()[LOCATION], "/me");
    let (session, _) = set_cookie(&r, "hospital_session").expect("a session");
    let me = web
        .get(format!("{base}/me"))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(me.contains("nurse-7 (clinician)"), "{me}");
    // A sign-in's state is used once: replaying the callback signs nobody in.
    let again = web.get(&back).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(set_cookie(&again, "hospital_session").is_none());
    // The demo users do not exist in production.
    let local = web
        .post(format!("{base}/signin"))
        .form(&[
            ("username", "bs.hung"),
            ("password", "hung-demo"),
            ("csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_ne!(local.status(), 303);
    app.stop().await;
}
