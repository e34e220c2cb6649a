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
use crate::lanes::Admitted;
use crate::platform::Platform;
use crate::touched::Touched;
use std::future::Future;
use std::panic::AssertUnwindSafe;

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
        let status = crate::error::outcome_status(err.kind());
        if let Err(e) = self
            .audit(caller, Interaction::Request, "", &touched, status)
            .await
        {
            tracing::error!(error = %e, "audit record of a bounded request could not be written");
        }
    }
}
