//! Failed sign-ins are slowed, then refused for a while — failures only: a request with a
//! valid token is never throttled, so nobody can lock the hospital out by failing on purpose.
//! Keyed by client address (behind a proxy, the forwarded address from a trusted proxy), so
//! one client's failures never slow another. Per process: each replica throttles what it sees.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed in a window before the client's failures are refused outright.
const LIMIT: u32 = 10;
/// Failures after which each further failure is answered late.
const SLOW_AFTER: u32 = 3;
const WINDOW: Duration = Duration::from_secs(300);
/// Clients remembered at most; beyond it the oldest windows are forgotten.
const MAX_CLIENTS: usize = 100_000;

/// How to answer a failed sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer 401 after this delay.
    Slow(Duration),
    /// Too many failures recently: answer 429.
    LockedOut,
}

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// Counts a failed sign-in from `client` and says how to answer it.
    pub fn failed(&self, client: &str) -> Verdict {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CLIENTS {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let e = map.entry(client.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        let n = e.0;
        if n > LIMIT {
            Verdict::LockedOut
        } else if n > SLOW_AFTER {
            Verdict::Slow(Duration::from_millis(200 * u64::from(n - SLOW_AFTER)))
        } else {
            Verdict::Slow(Duration::ZERO)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_slowed_then_refused_per_client() {
        let t = Throttle::default();
        for _ in 0..3 {
            assert_eq!(t.failed("a"), Verdict::Slow(Duration::ZERO));
        }
        assert_eq!(t.failed("a"), Verdict::Slow(Duration::from_millis(200)));
        for _ in 4..10 {
            t.failed("a");
        }
        assert_eq!(t.failed("a"), Verdict::LockedOut);
        assert_eq!(t.failed("b"), Verdict::Slow(Duration::ZERO));
    }
}
