//! Authentication, once for every transport. The HTTP middleware and the gRPC layer only
//! gather the [`Credentials`] of a request and translate the verdict; the header parsing, the
//! token check, the failed-sign-in throttle, the on-behalf-of rule and the audit record of a
//! refusal are all here.

use crate::caller::Caller;
use crate::error::{Error, codes, outcome_status};
use crate::interaction::Interaction;
use crate::ipnet::IpNet;
use crate::platform::Platform;
use crate::touched::Touched;
use hospital_auth::{AuthError, Role};
use hospital_store::audit::AuditRecord;
use std::net::IpAddr;

/// What a request presents, as read off its transport.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header (HTTP) or metadata (gRPC).
    pub authorization: Option<&'a str>,
    /// A service's `x-on-behalf-of`: the token of the user it acts for.
    pub on_behalf_of: Option<&'a str>,
    /// The address of the connection's peer.
    pub peer: Option<IpAddr>,
    /// `X-Forwarded-For`, honoured only when the peer is a trusted proxy.
    pub forwarded_for: Option<&'a str>,
    pub user_agent: &'a str,
    /// What the request addresses (`Patient/123`, `/hospital.records.v1.Records/GetPatient`),
    /// named in the record of a refusal.
    pub target: &'a str,
}

/// The bearer token of an `Authorization` value; the scheme is case-insensitive (RFC 7235).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> String {
    let Some(peer) = peer else {
        return "unknown".into();
    };
    let trusted_ip = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !trusted_ip(&peer) {
        return peer.to_string();
    }
    let hops: Vec<IpAddr> = forwarded_for
        .unwrap_or("")
        .split(',')
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|h| !trusted_ip(h))
        .copied()
        .unwrap_or(peer)
        .to_string()
}

fn refused_token(e: AuthError) -> Error {
    match e {
        AuthError::Missing => Error::new(codes::NO_CREDENTIALS, e.to_string()),
        AuthError::Expired => Error::new(codes::EXPIRED_TOKEN, e.to_string()),
        AuthError::Throttled => Error::new(codes::THROTTLED, e.to_string()),
        AuthError::Invalid(_) => Error::new(codes::INVALID_TOKEN, e.to_string()),
    }
}

impl Platform {
    /// Authenticates a request. A valid token is never refused by the throttle: only failures
    /// are counted and slowed. Every refusal is audited, naming the request's target.
    pub async fn authenticate(&self, c: &Credentials<'_>) -> Result<Caller, Error> {
        let sec = self.security();
        let client = client_address(c.peer, c.forwarded_for, &sec.trusted_proxies);
        let user_agent: String = c.user_agent.chars().take(300).collect();
        let verified = match c.authorization {
            None => Err(AuthError::Missing),
            Some(h) => match bearer_token(h) {
                None => Err(AuthError::Invalid("not a bearer token".into())),
                Some(t) => sec.auth.verify(t).await,
            },
        };
        let principal = match verified {
            Ok(p) => p,
            Err(e) => {
                let verdict = sec.throttle.failed(&client);
                let err = match verdict {
                    hospital_auth::Verdict::LockedOut { record, unrecorded } => {
                        if record && unrecorded > 0 {
                            tracing::warn!(
                                client = %client,
                                unrecorded,
                                "a locked-out client's refusals since its last audit record"
                            );
                        }
                        refused_token(AuthError::Throttled)
                    }
                    hospital_auth::Verdict::Slow(delay) => {
                        tokio::time::sleep(delay).await;
                        refused_token(e)
                    }
                };
                if verdict.recorded() {
                    self.audit_refusal(None, &client, &user_agent, c.target, &err)
                        .await;
                }
                return Err(err);
            }
        };
        let mut caller = Caller {
            principal,
            via: None,
            client,
            user_agent,
        };
        if let Some(user) = c.on_behalf_of {
            if caller.principal.role != Role::Service {
                let err = Error::new(
                    codes::NOT_A_RELAY,
                    "only a service token may act on behalf of a user",
                );
                self.audit_refusal(Some(&caller), "", "", c.target, &err)
                    .await;
                return Err(err);
            }
            let token = bearer_token(user).unwrap_or(user);
            match sec.auth.verify(token).await {
                Ok(u) => {
                    caller.via = Some(caller.principal.audit_name());
                    caller.principal = u;
                }
                Err(e) => {
                    let err = Error::new(
                        codes::INVALID_ON_BEHALF_OF,
                        format!("on-behalf-of token: {e}"),
                    );
                    self.audit_refusal(Some(&caller), "", "", c.target, &err)
                        .await;
                    return Err(err);
                }
            }
        }
        if let Some(pid) = caller.principal.compartment() {
            let known =
                hospital_store::is_valid_id(pid) && self.store().read("Patient", pid).await.is_ok();
            if !known {
                let err = Error::new(
                    codes::INVALID_TOKEN,
                    "the token is not valid: it names no known Patient",
                );
                self.audit_refusal(Some(&caller), "", "", c.target, &err)
                    .await;
                return Err(err);
            }
        }
        Ok(caller)
    }

    /// A failure at a door that takes no token (a payment link that names no bill, a bank
    /// feed's delivery whose signature fails): counted and slowed by the same throttle as a
    /// failed sign-in from that client, and audited within the same bound (one record a
    /// minute once the client is locked out). Returns whether the client is locked out: the
    /// door then answers 429.
    pub async fn anonymous_failure(
        &self,
        caller: &Caller,
        interaction: Interaction,
        resource_type: &str,
        target: &str,
        status: u16,
    ) -> bool {
        let verdict = self.security().throttle.failed(&caller.client);
        let locked = match verdict {
            hospital_auth::Verdict::Slow(delay) => {
                tokio::time::sleep(delay).await;
                false
            }
            hospital_auth::Verdict::LockedOut { .. } => true,
        };
        if verdict.recorded() {
            let status = if locked { 429 } else { status };
            let _ = self
                .audit(
                    caller,
                    interaction,
                    resource_type,
                    &Touched::target(target),
                    status,
                )
                .await;
        }
        locked
    }

    /// The record of a refused request: by its actor when one is known, else `anonymous`.
    async fn audit_refusal(
        &self,
        caller: Option<&Caller>,
        client: &str,
        user_agent: &str,
        target: &str,
        err: &Error,
    ) {
        let status = outcome_status(err.kind());
        let mut touched = Touched::default();
        if !target.is_empty() {
            touched.entity(target);
        }
        let record = match caller {
            Some(c) => touched.record(c, Interaction::Authenticate, "", status),
            None => AuditRecord {
                at: hospital_store::dates::now_micros(),
                actor: "anonymous".into(),
                action: Interaction::Authenticate.name().into(),
                action_code: Interaction::Authenticate.code().into(),
                entities: touched.entities,
                client: client.to_owned(),
                user_agent: user_agent.to_owned(),
                outcome: i64::from(status),
                ..Default::default()
            },
        };
        if let Err(e) = self.security().audit.record(record).await {
            tracing::error!(error = %e, "audit record of a refused request could not be written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: IpNet = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let at: IpAddr = "10.0.0.1".parse().unwrap();
        let fwd = Some("203.0.113.7, 10.0.0.1");
        assert_eq!(client_address(Some(other), fwd, &[proxy]), "10.0.0.9");
        assert_eq!(client_address(Some(at), fwd, &[proxy]), "203.0.113.7");
        assert_eq!(client_address(Some(at), None, &[proxy]), "10.0.0.1");
    }

    #[test]
    fn trusted_proxies_may_be_networks() {
        let pods: IpNet = "10.244.0.0/16".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(pods.contains(&ip("10.244.3.7")));
        assert!(!pods.contains(&ip("10.245.0.1")));
        assert!(!pods.contains(&ip("::1")));
        let fwd = Some("203.0.113.7, 10.244.9.9");
        assert_eq!(
            client_address(Some(ip("10.244.1.2")), fwd, &[pods]),
            "203.0.113.7"
        );
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&ip("192.0.2.1")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(&ip("fd12::1")) && !v6.contains(&ip("fe80::1")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
