//! Bounds on the work a caller may cause, for every door: how many of their requests run at
//! once, how many wait, and how long one may run. A request that panics becomes a 500 like any
//! other failure. The edges wrap each authenticated request in [`Platform::bounded`]; the rule
//! lives here once.
//!
//! - **In flight per caller** (keyed by the caller's identity, not their address, so that
//!   users behind one proxy never share a bound): a person runs [`Limits::running`] requests at
//!   once and queues [`Limits::queued`] more; a service token, which carries many users'
//!   work, gets [`Limits::service_running`]. Past the queue a request gets 429 (`LM_03`).
//! - **Time**: producing a response may take [`Limits::time`]; past it the request is dropped
//!   (its transaction rolls back) and the caller gets `LM_04`. A response body that streams
//!   (server-sent events, a gRPC server stream, a signalling socket) is exempt from the time
//!   limit once its head is sent, but it keeps its in-flight place until it ends: long-lived
//!   streams are counted.
//! - **Panics** are caught, logged and audited; the caller gets a 500 with no detail.

use crate::caller::Caller;
use crate::error::{Error, codes};
use crate::interaction::Interaction;
use crate::platform::Platform;
use crate::touched::Touched;
use hospital_auth::Role;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests of one person (patient, clinician, cashier, admin) that run at once.
    pub running: usize,
    /// Requests of one person that may wait for a place; past it, 429.
    pub queued: usize,
    /// Requests of one service token that run at once (a service relays many users).
    pub service_running: usize,
    /// How long producing one response may take.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            running: 4,
            queued: 64,
            service_running: 256,
            time: Duration::from_secs(30),
        }
    }
}

/// Callers remembered at most; idle ones are forgotten past it.
const MAX_CALLERS: usize = 50_000;

struct Lane {
    running: Arc<Semaphore>,
    capacity: usize,
    waiting: AtomicUsize,
}

/// The per-caller lanes.
#[derive(Default)]
pub struct Admission {
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
}

/// A request's place in its caller's lane; the place is freed when this is dropped (for a
/// streamed response: when the stream ends).
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl Admitted {
    /// `body`, keeping this place until the body has been sent (or dropped): a streamed
    /// response counts against its caller for as long as it streams.
    pub fn hold<B>(self, body: B) -> Held<B> {
        Held { body, _place: self }
    }
}

/// A response body with its caller's place; see [`Admitted::hold`].
pub struct Held<B> {
    body: B,
    _place: Admitted,
}

impl<B: http_body::Body + Unpin> http_body::Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Admission {
    fn lane(&self, key: &str, capacity: usize) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if lanes.len() >= MAX_CALLERS {
            lanes.retain(|_, l| {
                Arc::strong_count(l) > 1 || l.running.available_permits() < l.capacity
            });
        }
        lanes
            .entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Lane {
                    running: Arc::new(Semaphore::new(capacity)),
                    capacity,
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Waits for a place in `caller`'s lane, or refuses when too many already wait.
    pub async fn admit(&self, caller: &Caller, limits: &Limits) -> Result<Admitted, Error> {
        let service = caller.principal.role == Role::Service && caller.via.is_none();
        let capacity = if service {
            limits.service_running
        } else {
            limits.running
        };
        // A relayed call counts against the user it is made for, as their own would.
        let lane = self.lane(&caller.principal.audit_name(), capacity.max(1));
        if let Ok(p) = lane.running.clone().try_acquire_owned() {
            return Ok(Admitted { _permit: p });
        }
        if lane.waiting.fetch_add(1, Ordering::AcqRel) >= limits.queued {
            lane.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::new(
                codes::TOO_MANY_IN_FLIGHT,
                format!(
                    "too many requests in flight for this caller: {} run at once and {} may wait",
                    capacity, limits.queued
                ),
            ));
        }
        let permit = lane.running.clone().acquire_owned().await;
        lane.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| Error::internal("admission closed"))?;
        Ok(Admitted { _permit: permit })
    }
}

impl Platform {
    /// Runs one authenticated request's work within the caller's bounds: a place in their lane,
    /// the time limit, and a panic turned into an error. A refusal, a timeout or a panic is
    /// audited here, naming `target` (the request's own record is never written in those
    /// cases: its work did not finish). On success the caller keeps the [`Admitted`] place for
    /// as long as the response streams.
    pub async fn bounded<T, F>(
        &self,
        caller: &Caller,
        target: &str,
        work: F,
    ) -> Result<(T, Admitted), Error>
    where
        F: Future<Output = T>,
    {
        let limits = self.limits();
        let admitted = match self.admission().admit(caller, &limits).await {
            Ok(a) => a,
            Err(e) => {
                self.audit_bounded(caller, target, &e).await;
                return Err(e);
            }
        };
        let guarded = futures_util::FutureExt::catch_unwind(AssertUnwindSafe(work));
        let err = match tokio::time::timeout(limits.time, guarded).await {
            Ok(Ok(out)) => return Ok((out, admitted)),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(target = %target, panic = %what, "a request handler panicked");
                Error::internal("a request handler failed")
            }
            Err(_) => Error::new(
                codes::TIME_LIMIT,
                format!(
                    "the request ran past the time limit of {} ms; nothing it was writing was kept",
                    limits.time.as_millis()
                ),
            ),
        };
        self.audit_bounded(caller, target, &err).await;
        Err(err)
    }

    async fn audit_bounded(&self, caller: &Caller, target: &str, err: &Error) {
        let mut touched = Touched::default();
        if !target.is_empty() {
            touched.entity(target);
        }
        let status = crate::authn::outcome_status(err.kind());
        if let Err(e) = self
            .audit(caller, Interaction::Request, "", &touched, status)
            .await
        {
            tracing::error!(error = %e, "audit record of a bounded request could not be written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hospital_auth::Principal;

    fn person(role: Role, sub: &str) -> Caller {
        Caller {
            principal: Principal {
                subject: sub.into(),
                role,
                patient: None,
                practitioner: None,
                scopes: None,
            },
            via: None,
            client: "198.51.100.1".into(),
            user_agent: String::new(),
        }
    }

    #[tokio::test]
    async fn a_caller_runs_a_few_queues_some_and_is_refused_past_that() {
        let a = Admission::default();
        let limits = Limits {
            running: 2,
            queued: 1,
            ..Limits::default()
        };
        let patient = person(Role::Patient, "an");
        let p1 = a.admit(&patient, &limits).await.unwrap();
        let _p2 = a.admit(&patient, &limits).await.unwrap();
        // The third waits; the fourth finds the queue full.
        let waiting = {
            let a = &a;
            let patient = patient.clone();
            async move { a.admit(&patient, &limits).await }
        };
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "the third request waits for a place"
        );
        let refused = a.admit(&patient, &limits).await.unwrap_err();
        assert_eq!(refused.code, codes::TOO_MANY_IN_FLIGHT);
        // Another caller is not held up by the first one's lane.
        let clinician = person(Role::Clinician, "bs-lan");
        let _c = a.admit(&clinician, &limits).await.unwrap();
        drop(p1);
        assert!(
            waiting.await.is_ok(),
            "a freed place goes to the waiting request"
        );
    }
}
