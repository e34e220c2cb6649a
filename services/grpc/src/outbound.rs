//! Calling another service: every call carries a deadline and the calling service's own
//! token, the user it acts for (`x-on-behalf-of`) when there is one, and an idempotency key
//! when it changes something. Only calls that are safe to repeat are retried.
//!
//! The service token is minted locally in embedded mode, and in production obtained from the
//! identity provider with the OAuth2 client-credentials grant (RFC 6749 §4.4), cached until
//! shortly before it expires.

use hospital_core::auth::{Authenticator, Role};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tracing::Instrument as _;

/// Where a service's own token comes from.
pub enum TokenSource {
    /// Embedded mode: minted with the local secret, as `service:<subject>`.
    Local {
        auth: Authenticator,
        subject: String,
    },
    /// Production without client credentials configured: every call to another service
    /// fails with `UNAVAILABLE`, saying so.
    Unconfigured,
    /// Production: the OAuth2 client-credentials grant at the provider's token endpoint.
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        http: reqwest::Client,
    },
}

/// A service token and when to stop using it.
struct Cached {
    token: String,
    renew_at: Instant,
}

/// Hands out the calling service's token, fetching or minting a new one before it expires.
pub struct ServiceToken {
    source: TokenSource,
    cached: Mutex<Option<Cached>>,
}

impl ServiceToken {
    pub fn new(source: TokenSource) -> Arc<ServiceToken> {
        Arc::new(ServiceToken {
            source,
            cached: Mutex::new(None),
        })
    }

    /// The current token (one fetch at a time; others wait for its result).
    pub async fn get(&self) -> Result<String, Status> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = match &self.source {
            TokenSource::Unconfigured => {
                return Err(Status::unavailable(
                    "no service credentials: set HOSPITAL_OAUTH_TOKEN_URL, _CLIENT_ID and _CLIENT_SECRET",
                ));
            }
            TokenSource::Local { auth, subject } => {
                let ttl = Duration::from_secs(600);
                let t = auth
                    .mint(Role::Service, subject, None, None, None, ttl)
                    .map_err(|e| Status::internal(format!("cannot mint a service token: {e}")))?;
                (t, ttl)
            }
            TokenSource::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                http,
            } => {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .finish();
                let res = http
                    .post(token_url)
                    .basic_auth(client_id, Some(client_secret))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| {
                        tracing::warn!(error = %e, "the token endpoint refused the service");
                        Status::unavailable("the identity provider gave no service token")
                    })?;
                let v: serde_json::Value = res
                    .json()
                    .await
                    .map_err(|_| Status::unavailable("the token endpoint's answer is not JSON"))?;
                let token = v["access_token"]
                    .as_str()
                    .ok_or_else(|| Status::unavailable("the token endpoint gave no access_token"))?
                    .to_owned();
                let secs = v["expires_in"].as_u64().unwrap_or(300);
                (token, Duration::from_secs(secs))
            }
        };
        // Renew a little early: a token must not expire on the way.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }
}

/// Whether a call may be repeated without changing its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// A read: repeat freely.
    Safe,
    /// A write made repeatable by its key: retried, and the key travels with every attempt.
    Keyed(String),
    /// A write without a key: never retried.
    Unsafe,
}

/// A connection to another service, with the rules of calling it.
#[derive(Clone)]
pub struct Outbound {
    pub channel: Channel,
    token: Arc<ServiceToken>,
    deadline: Duration,
    attempts: u32,
}

/// The metadata key of an idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl Outbound {
    /// A lazy connection to `url` (`http://host:port`): it connects on first use and
    /// reconnects after a failure.
    pub fn new(
        url: &str,
        token: Arc<ServiceToken>,
        deadline: Duration,
    ) -> Result<Outbound, String> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("bad gRPC URL {url}: {e}"))?
            .connect_timeout(deadline)
            .timeout(deadline)
            .connect_lazy();
        Ok(Outbound {
            channel,
            token,
            deadline,
            attempts: 3,
        })
    }

    /// The request for one attempt: deadline, service token, the user acted for, the key.
    pub async fn request<T>(
        &self,
        message: T,
        on_behalf_of: Option<&str>,
        idempotency: &Idempotency,
    ) -> Result<Request<T>, Status> {
        let mut req = Request::new(message);
        req.set_timeout(self.deadline);
        let token = self.token.get().await?;
        let md = req.metadata_mut();
        md.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("the service token is not ASCII"))?,
        );
        if let Some(user) = on_behalf_of {
            md.insert(
                "x-on-behalf-of",
                user.parse()
                    .map_err(|_| Status::invalid_argument("the user's token is not ASCII"))?,
            );
        }
        // The trace this call belongs to (the caller's span).
        if let Some(parent) = hospital_telemetry::trace::traceparent()
            && let Ok(v) = parent.parse()
        {
            md.insert("traceparent", v);
        }
        if let Idempotency::Keyed(key) = idempotency {
            md.insert(
                IDEMPOTENCY_KEY,
                key.parse()
                    .map_err(|_| Status::invalid_argument("the idempotency key is not ASCII"))?,
            );
        }
        Ok(req)
    }

    /// Makes a call, retrying a safe or keyed one when the other side was unreachable or
    /// too slow (with a short, growing pause); an unsafe one is made once.
    pub async fn call<M, R, F, Fut>(
        &self,
        message: M,
        on_behalf_of: Option<&str>,
        idempotency: Idempotency,
        f: F,
    ) -> Result<R, Status>
    where
        M: Clone,
        F: FnMut(Channel, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let span = tracing::info_span!(
            target: hospital_telemetry::trace::SPAN_TARGET,
            "grpc.client",
            otel.kind = "client"
        );
        self.call_in_span(message, on_behalf_of, idempotency, f)
            .instrument(span)
            .await
    }

    async fn call_in_span<M, R, F, Fut>(
        &self,
        message: M,
        on_behalf_of: Option<&str>,
        idempotency: Idempotency,
        mut f: F,
    ) -> Result<R, Status>
    where
        M: Clone,
        F: FnMut(Channel, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let attempts = if idempotency == Idempotency::Unsafe {
            1
        } else {
            self.attempts
        };
        let mut pause = Duration::from_millis(50);
        let mut last = Status::unavailable("not attempted");
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
            let req = self
                .request(message.clone(), on_behalf_of, &idempotency)
                .await?;
            match f(self.channel.clone(), req).await {
                Ok(r) => return Ok(r.into_inner()),
                // Unreachable, too slow, or the connection dropped under the call (Unknown,
                // Cancelled): safe to try again for a call that may be repeated.
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable
                            | Code::DeadlineExceeded
                            | Code::Unknown
                            | Code::Cancelled
                    ) =>
                {
                    last = s;
                }
                Err(s) => return Err(s),
            }
        }
        Err(last)
    }
}
