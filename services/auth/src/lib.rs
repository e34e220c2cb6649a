//! Who is calling: JWT bearer tokens verified against a local secret (embedded mode, tokens
//! minted by `hospital token`) or the hospital's OpenID Connect provider (JWKS; RS256 and
//! ES256; keys refetched when an unknown key id appears), and what each role may do.
//! Transports (HTTP middleware, gRPC interceptor) only translate; the decisions are here.

mod policy;
mod throttle;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use policy::{Action, Category, POLICY, PolicyRow, allows, category, is_patient_data};
pub use throttle::{Throttle, Verdict};

/// The roles of the hospital (design brief, "Security").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Patient,
    Clinician,
    Cashier,
    Admin,
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::Cashier => "cashier",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "patient" => Some(Role::Patient),
            "clinician" => Some(Role::Clinician),
            "cashier" => Some(Role::Cashier),
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            _ => None,
        }
    }
}

/// A SMART-style scope, `patient/*.read`, `user/Observation.write`, `system/*.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub resource_type: String,
    pub read: bool,
    pub write: bool,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        let (context, rest) = s.split_once('/')?;
        if !matches!(context, "patient" | "user" | "system") {
            return None;
        }
        let (rt, access) = rest.split_once('.')?;
        let (read, write) = match access {
            "read" => (true, false),
            "write" => (false, true),
            "*" => (true, true),
            // SMART v2: any of c, r, u, d, s in that order.
            v2 if !v2.is_empty()
                && v2.chars().all(|c| "cruds".contains(c))
                && v2
                    .chars()
                    .zip(v2.chars().skip(1))
                    .all(|(a, b)| "cruds".find(a) < "cruds".find(b)) =>
            {
                (
                    v2.contains('r') || v2.contains('s'),
                    v2.contains('c') || v2.contains('u') || v2.contains('d'),
                )
            }
            _ => return None,
        };
        Some(Scope {
            resource_type: rt.to_owned(),
            read,
            write,
        })
    }

    /// The scope as written: `user/Observation.read`.
    pub fn render(&self) -> String {
        let access = match (self.read, self.write) {
            (true, true) => "*",
            (true, false) => "read",
            _ => "write",
        };
        format!("user/{}.{access}", self.resource_type)
    }

    pub fn allows(&self, action: Action, resource_type: &str) -> bool {
        (self.resource_type == "*" || self.resource_type == resource_type)
            && match action {
                Action::Read => self.read,
                Action::Write => self.write,
            }
    }
}

/// The verified caller. Its `Debug` shows ids and role, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: a user account or a service name.
    pub subject: String,
    pub role: Role,
    /// For the patient role: the Patient whose compartment the token reaches.
    pub patient: Option<String>,
    /// For clinicians: the Practitioner they are.
    pub practitioner: Option<String>,
    /// SMART scopes, when the token carries them: a further restriction.
    pub scopes: Option<Vec<Scope>>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({} as {}", self.subject, self.role.as_str())?;
        if let Some(p) = &self.patient {
            write!(f, ", Patient/{p}")?;
        }
        if let Some(p) = &self.practitioner {
            write!(f, ", Practitioner/{p}")?;
        }
        write!(f, ")")
    }
}

impl Principal {
    /// Whether the role (and the scopes, if any) allow `action` on `resource_type`.
    pub fn may(&self, action: Action, resource_type: &str) -> bool {
        policy::allows(self.role, action, resource_type)
            && self
                .scopes
                .as_ref()
                .is_none_or(|s| s.iter().any(|s| s.allows(action, resource_type)))
    }

    /// The Patient compartment this caller is confined to, if any.
    pub fn compartment(&self) -> Option<&str> {
        match self.role {
            Role::Patient => Some(self.patient.as_deref().unwrap_or("")),
            _ => None,
        }
    }

    /// A display for audit records: `role:subject`.
    pub fn audit_name(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.subject)
    }
}

/// The claims we read and write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub iss: String,
    /// One audience, or several (OIDC allows both forms).
    pub aud: Audience,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// The `aud` claim: a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The longest a token may live from now: beyond it a token is refused, however well
/// signed (a leaked long-lived token is a standing key to the records).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Why a token was refused. Never contains the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("too many failed sign-ins from this client; try again later")]
    Throttled,
}

/// Secrets whose `Debug` does not print them.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(***)")
    }
}

/// How long fetched keys are trusted before they are fetched again: a key the provider
/// removed stops being trusted within this time.
pub const JWKS_TTL: Duration = Duration::from_secs(300);
/// While the provider cannot be reached, keys it published are still trusted this long past
/// their time, so a broken provider does not stop the hospital.
const JWKS_GRACE: Duration = Duration::from_secs(3600);
/// The least time between fetches asked for by unknown key ids (rotation), and the first
/// pause after a failed fetch (doubling up to [`JWKS_MAX_BACKOFF`]).
const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(10);
const JWKS_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The provider's keys as last fetched, and when the next fetch may happen.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
    /// No fetch before this (the minimum interval, or the backoff after failures).
    next_fetch: Option<Instant>,
    failures: u32,
}

struct Jwks {
    url: String,
    ttl: Duration,
    /// Never held across an await: a slow provider cannot make requests wait for the lock.
    state: std::sync::Mutex<KeySet>,
    /// One fetch at a time; a request that finds a fetch under way does not wait for it.
    fetching: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

/// Verifies tokens (and, in embedded mode, mints them).
#[derive(Clone)]
pub struct Authenticator {
    issuer: String,
    audience: String,
    local: Option<Secret>,
    jwks: Option<Arc<Jwks>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("local", &self.local.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| j.url.clone()))
            .finish()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authenticator {
    /// Embedded mode: HS256 tokens signed with a local secret.
    pub fn local(secret: Secret, issuer: &str, audience: &str) -> Authenticator {
        Authenticator {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            local: Some(secret),
            jwks: None,
        }
    }

    /// Production: tokens of an OpenID Connect provider, verified against its JWKS.
    pub fn oidc(jwks_url: &str, issuer: &str, audience: &str) -> Authenticator {
        Authenticator::oidc_with_ttl(jwks_url, issuer, audience, JWKS_TTL)
    }

    /// [`Authenticator::oidc`] with fetched keys trusted for `ttl`.
    pub fn oidc_with_ttl(
        jwks_url: &str,
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> Authenticator {
        Authenticator {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            local: None,
            jwks: Some(Arc::new(Jwks {
                url: jwks_url.to_owned(),
                ttl,
                state: std::sync::Mutex::new(KeySet::default()),
                fetching: tokio::sync::Mutex::new(()),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
            })),
        }
    }

    /// Mints a local token (embedded mode only).
    pub fn mint(
        &self,
        role: Role,
        subject: &str,
        patient: Option<&str>,
        practitioner: Option<&str>,
        scope: Option<&str>,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let secret = self
            .local
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("this server does not mint tokens".into()))?;
        let iat = now();
        let claims = Claims {
            sub: subject.to_owned(),
            role: role.as_str().to_owned(),
            patient: patient.map(str::to_owned),
            practitioner: practitioner.map(str::to_owned),
            scope: scope.map(str::to_owned),
            iss: self.issuer.clone(),
            aud: Audience::One(self.audience.clone()),
            exp: iat + ttl.as_secs(),
            iat,
            nbf: None,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&secret.0),
        )
        .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 30;
        v
    }

    /// Verifies a bearer token and returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed".into()))?;
        let (key, alg) = match (&self.local, &self.jwks, header.alg) {
            (Some(secret), _, Algorithm::HS256) => {
                (DecodingKey::from_secret(&secret.0), Algorithm::HS256)
            }
            (_, Some(jwks), Algorithm::RS256 | Algorithm::ES256) => {
                let kid = header
                    .kid
                    .ok_or_else(|| AuthError::Invalid("the token names no key (kid)".into()))?;
                jwks.key(&kid, header.alg).await?
            }
            (_, _, alg) => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {alg:?} is not accepted"
                )));
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation(alg)).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    AuthError::Invalid("wrong audience".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    AuthError::Invalid("wrong issuer".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    AuthError::Invalid("bad signature".into())
                }
                _ => AuthError::Invalid("rejected".into()),
            },
        )?;
        let c = data.claims;
        let now = now();
        if c.sub.trim().is_empty() {
            return Err(AuthError::Invalid("the token names no subject".into()));
        }
        if c.iat > now + 30 {
            return Err(AuthError::Invalid(
                "the token was issued in the future".into(),
            ));
        }
        if c.exp > now + MAX_TOKEN_LIFETIME.as_secs() {
            return Err(AuthError::Invalid(
                "the token lives longer than this server allows".into(),
            ));
        }
        let role = Role::parse(&c.role).ok_or_else(|| AuthError::Invalid("unknown role".into()))?;
        if role == Role::Patient && c.patient.as_deref().is_none_or(str::is_empty) {
            return Err(AuthError::Invalid(
                "a patient token must name its Patient".into(),
            ));
        }
        // Only resource scopes restrict (`patient/*.read`, SMART v2 `user/Observation.rs`);
        // `openid`, `profile`, `launch/patient` and the like say nothing about resources.
        let scopes: Option<Vec<Scope>> = c.scope.as_deref().and_then(|s| {
            let resource: Vec<Scope> = s.split_whitespace().filter_map(Scope::parse).collect();
            (!resource.is_empty()).then_some(resource)
        });
        Ok(Principal {
            subject: c.sub,
            role,
            patient: c.patient,
            practitioner: c.practitioner,
            scopes,
        })
    }
}

impl Jwks {
    /// The key `kid` for `alg`. A known key is answered at once — if it is due for refresh,
    /// the refresh runs in the background. An unknown key id fetches the set (rotation), at
    /// most one fetch at a time and not more often than the interval or the backoff allow.
    async fn key(
        self: &Arc<Self>,
        kid: &str,
        alg: Algorithm,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        let now = Instant::now();
        let (known, fresh, may_fetch) = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let age = st.fetched_at.map(|t| now.duration_since(t));
            let known = st.keys.get(kid).filter(|(_, a)| *a == alg).cloned();
            let fresh = age.is_some_and(|a| a < self.ttl);
            let usable = age.is_some_and(|a| a < self.ttl + JWKS_GRACE);
            let may_fetch = st.next_fetch.is_none_or(|t| now >= t);
            (known.filter(|_| usable), fresh, may_fetch)
        };
        if let Some(k) = known {
            if !fresh && may_fetch {
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me.refresh().await;
                });
            }
            return Ok(k);
        }
        if !may_fetch {
            return Err(AuthError::Invalid("unknown signing key".into()));
        }
        self.refresh().await?;
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.keys.get(kid) {
            Some((k, a)) if *a == alg => Ok((k.clone(), *a)),
            _ => Err(AuthError::Invalid("unknown signing key".into())),
        }
    }

    /// Fetches the set, unless a fetch is already under way (then returns at once).
    async fn refresh(&self) -> Result<(), AuthError> {
        let Ok(_one) = self.fetching.try_lock() else {
            return Err(AuthError::Invalid("unknown signing key".into()));
        };
        {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.next_fetch.is_some_and(|t| Instant::now() < t) {
                return Ok(());
            }
        }
        let fetched = self.fetch().await;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match fetched {
            Ok(keys) => {
                st.keys = keys;
                st.fetched_at = Some(now);
                st.failures = 0;
                st.next_fetch = Some(now + JWKS_MIN_INTERVAL);
                Ok(())
            }
            Err(e) => {
                st.failures += 1;
                let pause = JWKS_MIN_INTERVAL
                    .saturating_mul(1 << st.failures.min(6))
                    .min(JWKS_MAX_BACKOFF);
                st.next_fetch = Some(now + pause);
                Err(e)
            }
        }
    }

    /// The provider's keys. Keys of a type or algorithm we do not know are ignored, as
    /// RFC 7517 §5 asks; a set with none we know is a failed fetch.
    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, AuthError> {
        let unavailable =
            || AuthError::Invalid("the identity provider's keys are unavailable".into());
        let body: serde_json::Value = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot fetch the JWKS");
                unavailable()
            })?
            .json()
            .await
            .map_err(|_| AuthError::Invalid("the identity provider's keys are malformed".into()))?;
        let mut map = HashMap::new();
        for raw in body["keys"].as_array().into_iter().flatten() {
            let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(raw.clone()) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                map.insert(kid, (key, alg));
            }
        }
        if map.is_empty() {
            tracing::warn!("the JWKS holds no key this server can use");
            return Err(unavailable());
        }
        Ok(map)
    }
}
