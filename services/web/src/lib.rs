//! Sign-in for the web pages (the cashier console, the visit pages, the patient's pages).
//!
//! - Production (an identity provider is configured): OpenID Connect authorization code flow
//!   with PKCE (RFC 7636, S256). `GET /signin` sends the browser to the provider; the
//!   provider sends it back to `GET /signin/callback` with a code, which is exchanged (with
//!   the verifier, which never left the server) for an access token. That token is verified
//!   exactly as a bearer token is, and its principal becomes the session's.
//! - Embedded mode: a local sign-in page for the demo users (`data/demo-users.json`,
//!   PBKDF2 passwords), with failed attempts throttled and audited as for tokens.
//!
//! Sessions live in the database (every replica shares them) behind a `Secure`, `HttpOnly`,
//! `SameSite=Lax` cookie; every form carries the session's CSRF token ([`check_csrf`]).
//! Sign-out ends the session. A page gets its [`Caller`] from [`signed_in`]: the same
//! principal, authorisation and audit as a bearer token.

pub mod password;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use hospital_core::auth::{Principal, Role};
use hospital_core::session::{Session, random_token, same_secret};
use hospital_core::{AuditAction, Caller, Credentials, Error, Interaction, Platform, Touched};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The session cookie.
pub const SESSION_COOKIE: &str = "hospital_session";
/// The sign-in form's CSRF cookie (before there is a session).
const SIGNIN_COOKIE: &str = "hospital_signin";
/// How long a session lasts: a working shift.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

const SIGN_IN: Interaction = Interaction::Call("signin", AuditAction::E);
const SIGN_OUT: Interaction = Interaction::Call("signout", AuditAction::E);

/// How this process signs browsers in.
#[derive(Clone, Debug)]
pub enum SignIn {
    /// Embedded mode: the local page for the demo users.
    Local,
    /// Production without an authorization endpoint configured: nobody signs in to pages
    /// (never the demo users).
    Disabled,
    /// Production: the identity provider's authorization code flow.
    Provider {
        authorization_url: String,
        token_url: String,
        client_id: String,
        client_secret: String,
        /// This server's callback, as registered at the provider.
        redirect_uri: String,
    },
}

#[derive(Clone)]
struct Web {
    platform: Platform,
    signin: SignIn,
    http: reqwest::Client,
}

/// The sign-in routes: `/signin`, `/signin/callback`, `/signout`, `/me`.
pub fn routes(platform: Platform, signin: SignIn) -> Router {
    let web = Web {
        platform,
        signin,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
    };
    Router::new()
        .route("/signin", get(signin_page).post(signin_local))
        .route("/signin/callback", get(callback))
        .route("/signout", axum::routing::post(signout))
        .route("/me", get(me))
        .with_state(web)
}

/// A demo user of embedded mode.
#[derive(Debug, Deserialize)]
struct LocalUser {
    username: String,
    role: String,
    name: String,
    patient: Option<String>,
    practitioner: Option<String>,
    password: String,
}

fn local_users() -> Vec<LocalUser> {
    serde_json::from_str(include_str!("../data/demo-users.json")).unwrap_or_default()
}

/// The value of a cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(
    res: &mut Response,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: &str,
) {
    let c = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite={same_site}"
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page's frame: Vietnamese first, English beside it; readable on a phone.
pub fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>*{{box-sizing:border-box}}body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}\
         label,input,button{{display:block;width:100%;margin:.4rem 0;font-size:1.05rem}}input,button{{padding:.6rem}}\
         .err{{color:#b00020}}</style></head><body>{body}</body></html>",
        escape(title)
    ))
}

/// Where to go after signing in: a path on this site only (never another host).
fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/me".to_owned(),
    }
}

/// A caller for a request with no one signed in yet (the record of a failed sign-in).
pub fn anonymous(
    platform: &Platform,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Caller {
    let text = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let client = hospital_core::authn::client_address(
        peer,
        text("x-forwarded-for"),
        &platform.security().trusted_proxies,
    );
    let mut c = Caller::system("anonymous");
    c.principal.subject = "anonymous".into();
    c.client = client;
    c.user_agent = text("user-agent").unwrap_or("").chars().take(300).collect();
    c
}

/// The signed-in caller of a page request and its session, or the answer to give instead:
/// a redirect to the sign-in page.
pub async fn signed_in(
    platform: &Platform,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
    return_to: &str,
) -> Result<(Caller, Session), Response> {
    let to_signin = || {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", return_to)
            .finish();
        Redirect::to(&format!("/signin?{q}")).into_response()
    };
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Err(to_signin());
    };
    let session = match platform.session(value).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(to_signin()),
        Err(e) => return Err(error_page(&e)),
    };
    let mut caller = anonymous(platform, headers, peer);
    caller.principal = session.principal.clone();
    Ok((caller, session))
}

/// Refuses a form whose CSRF token is not its session's.
pub fn check_csrf(session: &Session, sent: &str) -> Result<(), Error> {
    if same_secret(&session.csrf, sent) {
        Ok(())
    } else {
        Err(Error::forbidden(
            "the form's CSRF token does not match the session",
        ))
    }
}

fn error_page(e: &Error) -> Response {
    let status = StatusCode::from_u16(hospital_core::error::outcome_status(e.kind()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        page(
            "Lỗi / Error",
            &format!(
                "<p class=\"err\">{}</p><p><a href=\"/signin\">Đăng nhập / Sign in</a></p>",
                escape(&e.message)
            ),
        ),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SigninQuery {
    return_to: Option<String>,
}

async fn signin_page(State(web): State<Web>, Query(q): Query<SigninQuery>) -> Response {
    let return_to = safe_return(q.return_to.as_deref());
    match &web.signin {
        SignIn::Provider {
            authorization_url,
            client_id,
            redirect_uri,
            ..
        } => {
            let (state, challenge) = match web.platform.begin_signin(&return_to).await {
                Ok(x) => x,
                Err(e) => return error_page(&e),
            };
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", "openid")
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .finish();
            let sep = if authorization_url.contains('?') {
                '&'
            } else {
                '?'
            };
            Redirect::to(&format!("{authorization_url}{sep}{q}")).into_response()
        }
        SignIn::Local => local_form(&return_to, None),
        SignIn::Disabled => error_page(&Error::not_supported(
            "no identity provider is configured for the web pages",
        )),
    }
}

fn local_form(return_to: &str, error: Option<&str>) -> Response {
    let csrf = random_token();
    let err = error
        .map(|e| format!("<p class=\"err\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Đăng nhập <small>/ Sign in</small></h1>{err}\
         <form method=\"post\" action=\"/signin\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"return_to\" value=\"{}\">\
         <label>Tên đăng nhập / User name<input name=\"username\" autocomplete=\"username\" required></label>\
         <label>Mật khẩu / Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Đăng nhập / Sign in</button></form>\
         <p><small>Chế độ nhúng: tài khoản thử nghiệm / Embedded mode: demo accounts in docs/access.md.</small></p>",
        escape(return_to)
    );
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut res = (status, page("Đăng nhập / Sign in", &body)).into_response();
    set_cookie(&mut res, SIGNIN_COOKIE, &csrf, "/signin", 600, "Strict");
    res
}

#[derive(Deserialize)]
struct LocalSignin {
    username: String,
    password: String,
    csrf: String,
    return_to: Option<String>,
}

async fn signin_local(
    State(web): State<Web>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LocalSignin>,
) -> Response {
    let return_to = safe_return(f.return_to.as_deref());
    if !matches!(web.signin, SignIn::Local) {
        return error_page(&Error::not_supported(
            "sign in with the hospital's identity provider",
        ));
    }
    let caller = anonymous(&web.platform, &headers, Some(addr.ip()));
    let csrf_ok = cookie(&headers, SIGNIN_COOKIE).is_some_and(|c| same_secret(c, &f.csrf));
    if !csrf_ok {
        let e = Error::forbidden("the sign-in form's CSRF token does not match");
        let _ = web
            .platform
            .audit(&caller, SIGN_IN, "", &Touched::target("signin"), 403)
            .await;
        return error_page(&e);
    }
    let user = local_users()
        .into_iter()
        .find(|u| u.username == f.username && password::verify(&u.password, &f.password));
    let Some(user) = user else {
        let verdict = web.platform.security().throttle.failed(&caller.client);
        let status = match verdict {
            hospital_core::auth::Verdict::LockedOut { .. } => 429,
            hospital_core::auth::Verdict::Slow(d) => {
                tokio_sleep(d).await;
                401
            }
        };
        if verdict.recorded() {
            let _ = web
                .platform
                .audit(&caller, SIGN_IN, "", &Touched::target("signin"), status)
                .await;
        }
        if status == 429 {
            return error_page(&Error::new(
                hospital_core::codes::THROTTLED,
                "too many failed sign-ins from this client; try again later",
            ));
        }
        return local_form(
            &return_to,
            Some("Sai tên đăng nhập hoặc mật khẩu / Wrong user name or password"),
        );
    };
    let Some(role) = Role::parse(&user.role) else {
        return error_page(&Error::internal("a demo user has an unknown role"));
    };
    let principal = Principal {
        subject: user.username.clone(),
        role,
        patient: user.patient,
        practitioner: user.practitioner,
        scopes: None,
    };
    let _ = &user.name;
    start_session(&web, caller, principal, &return_to).await
}

async fn tokio_sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

async fn start_session(
    web: &Web,
    mut caller: Caller,
    principal: Principal,
    return_to: &str,
) -> Response {
    let (value, _csrf) = match web.platform.open_session(&principal, SESSION_TTL).await {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    caller.principal = principal;
    if let Err(e) = web
        .platform
        .audit(&caller, SIGN_IN, "", &Touched::target("signin"), 303)
        .await
    {
        return error_page(&e);
    }
    let mut res = Redirect::to(return_to).into_response();
    set_cookie(
        &mut res,
        SESSION_COOKIE,
        &value,
        "/",
        SESSION_TTL.as_secs(),
        "Lax",
    );
    set_cookie(&mut res, SIGNIN_COOKIE, "", "/signin", 0, "Strict");
    res
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(web): State<Web>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let SignIn::Provider {
        token_url,
        client_id,
        client_secret,
        redirect_uri,
        ..
    } = &web.signin
    else {
        return error_page(&Error::not_supported("no identity provider is configured"));
    };
    let caller = anonymous(&web.platform, &headers, Some(addr.ip()));
    let refuse = |why: &str| Error::new(hospital_core::codes::INVALID_TOKEN, why.to_owned());
    let result: Result<(Principal, String), Error> = async {
        if let Some(e) = q.error {
            return Err(refuse(&format!("the identity provider refused: {e}")));
        }
        let (Some(code), Some(state)) = (q.code, q.state) else {
            return Err(Error::bad_request("the callback lacks code and state"));
        };
        let (verifier, return_to) = web
            .platform
            .take_signin(&state)
            .await?
            .ok_or_else(|| refuse("this sign-in is unknown, expired or already used"))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", &verifier)
            .finish();
        let res = web
            .http
            .post(token_url)
            .basic_auth(client_id, Some(client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|_| {
                Error::new(
                    hospital_core::codes::DEPENDENCY_UNAVAILABLE,
                    "the identity provider cannot be reached",
                )
            })?;
        if !res.status().is_success() {
            return Err(refuse("the identity provider did not accept the code"));
        }
        let v: serde_json::Value = res
            .json()
            .await
            .map_err(|_| refuse("the identity provider's answer is not JSON"))?;
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| refuse("the identity provider gave no access token"))?;
        // Exactly what a bearer token goes through: signature, issuer, audience, role.
        let who = web
            .platform
            .authenticate(&Credentials {
                authorization: Some(&format!("Bearer {token}")),
                peer: Some(addr.ip()),
                user_agent: &caller.user_agent,
                target: "signin",
                ..Default::default()
            })
            .await?;
        Ok((who.principal, return_to))
    }
    .await;
    match result {
        Ok((principal, return_to)) => start_session(&web, caller, principal, &return_to).await,
        Err(e) => {
            let status = hospital_core::error::outcome_status(e.kind());
            let _ = web
                .platform
                .audit(&caller, SIGN_IN, "", &Touched::target("signin"), status)
                .await;
            error_page(&e)
        }
    }
}

#[derive(Deserialize)]
struct SignoutForm {
    csrf: String,
}

async fn signout(
    State(web): State<Web>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SignoutForm>,
) -> Response {
    let (caller, session) = match signed_in(&web.platform, &headers, Some(addr.ip()), "/me").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = check_csrf(&session, &f.csrf) {
        let _ = web
            .platform
            .audit(&caller, SIGN_OUT, "", &Touched::target("signout"), 403)
            .await;
        return error_page(&e);
    }
    if let Some(v) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = web.platform.close_session(v).await
    {
        return error_page(&e);
    }
    let _ = web
        .platform
        .audit(&caller, SIGN_OUT, "", &Touched::target("signout"), 303)
        .await;
    let mut res = Redirect::to("/signin").into_response();
    set_cookie(&mut res, SESSION_COOKIE, "", "/", 0, "Lax");
    res
}

/// Who is signed in: the smallest page behind sign-in.
async fn me(
    State(web): State<Web>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (caller, session) = match signed_in(&web.platform, &headers, Some(addr.ip()), "/me").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = &caller.principal;
    let mut who = format!("{} ({})", escape(&p.subject), p.role.as_str());
    if let Some(pid) = &p.patient {
        who.push_str(&format!(" — Patient/{}", escape(pid)));
    }
    if let Some(pr) = &p.practitioner {
        who.push_str(&format!(" — Practitioner/{}", escape(pr)));
    }
    let body = format!(
        "<h1>Xin chào <small>/ Hello</small></h1><p id=\"who\">{who}</p>\
         <form method=\"post\" action=\"/signout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Đăng xuất / Sign out</button></form>",
        escape(&session.csrf)
    );
    page("Tài khoản / Account", &body).into_response()
}
