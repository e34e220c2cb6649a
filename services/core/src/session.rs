//! Browser sessions for the web pages: the same principal, authorisation and audit as a
//! bearer token, held server-side (every replica shares the table). The cookie carries a
//! random 256-bit value; the database keeps only its SHA-256. Each session has its own CSRF
//! token, which every form must send back.

use crate::error::{Error, codes};
use crate::platform::Platform;
use hospital_auth::{Principal, Role, Scope};
use sha2::Digest;
use std::time::Duration;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The token every form of this session must carry.
    pub csrf: String,
}

/// 32 random bytes, URL-safe base64 (a cookie value, a state, a PKCE verifier).
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn hash(cookie: &str) -> String {
    hex::encode(sha2::Sha256::digest(cookie.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn unavailable(e: hospital_store::StoreError) -> Error {
    tracing::error!(error = %e, "session store failure");
    Error::new(codes::DEPENDENCY_UNAVAILABLE, "sessions are unavailable")
}

impl Platform {
    /// Opens a session for `principal`; returns the cookie value and the session's CSRF token.
    pub async fn open_session(
        &self,
        principal: &Principal,
        ttl: Duration,
    ) -> Result<(String, String), Error> {
        let cookie = random_token();
        let csrf = random_token();
        let now = hospital_store::dates::now_micros();
        let row = hospital_store::sessions::SessionRow {
            role: principal.role.as_str().to_owned(),
            subject: principal.subject.clone(),
            patient: principal.patient.clone().unwrap_or_default(),
            practitioner: principal.practitioner.clone().unwrap_or_default(),
            scopes: principal
                .scopes
                .as_ref()
                .map(|s| s.iter().map(Scope::render).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            csrf: csrf.clone(),
            expires: now + ttl.as_micros() as i64,
        };
        self.store()
            .session_insert(&hash(&cookie), &row, now)
            .await
            .map_err(unavailable)?;
        Ok((cookie, csrf))
    }

    /// The live session of a cookie value, if any.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, Error> {
        let now = hospital_store::dates::now_micros();
        let Some(row) = self
            .store()
            .session_get(&hash(cookie), now)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let Some(role) = Role::parse(&row.role) else {
            return Ok(None);
        };
        let opt = |s: String| (!s.is_empty()).then_some(s);
        let scopes =
            opt(row.scopes).map(|s| s.split_whitespace().filter_map(Scope::parse).collect());
        Ok(Some(Session {
            principal: Principal {
                subject: row.subject,
                role,
                patient: opt(row.patient),
                practitioner: opt(row.practitioner),
                scopes,
            },
            csrf: row.csrf,
        }))
    }

    /// Ends a session (sign-out).
    pub async fn close_session(&self, cookie: &str) -> Result<(), Error> {
        self.store()
            .session_delete(&hash(cookie))
            .await
            .map_err(unavailable)
    }

    /// Starts a sign-in with the identity provider: returns the state and PKCE challenge to
    /// send; the verifier stays here.
    pub async fn begin_signin(&self, return_to: &str) -> Result<(String, String), Error> {
        let state = random_token();
        let verifier = random_token();
        self.store()
            .signin_insert(
                &state,
                &verifier,
                return_to,
                hospital_store::dates::now_micros(),
            )
            .await
            .map_err(unavailable)?;
        Ok((state, pkce_challenge(&verifier)))
    }

    /// The verifier and return path of a sign-in under way, used once.
    pub async fn take_signin(&self, state: &str) -> Result<Option<(String, String)>, Error> {
        self.store()
            .signin_take(state, hospital_store::dates::now_micros())
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
