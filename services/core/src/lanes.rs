//! The per-caller lanes behind [`crate::Platform::bounded`]: how many requests of one caller
//! run at once and how many may wait (see `admission.rs` for the rule as a whole).

use crate::caller::Caller;
use crate::error::{Error, codes};
use hospital_auth::Role;
use std::collections::HashMap;
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
