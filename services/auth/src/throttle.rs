//! Repeated failed sign-ins from one client are slowed, then refused for a while.
//! Per process: each replica throttles what it sees (a defence in depth, not shared state).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed in a window before the client is refused.
const LIMIT: u32 = 10;
/// Failures after which each further attempt is delayed.
const SLOW_AFTER: u32 = 3;
const WINDOW: Duration = Duration::from_secs(300);

/// Too many failed sign-ins from this client recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut;

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// `Err(LockedOut)` when the client is refused for a while; otherwise the delay to apply
    /// before answering.
    pub fn check(&self, client: &str) -> Result<Duration, LockedOut> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(client) {
            Some((n, since)) if since.elapsed() < WINDOW => {
                if *n >= LIMIT {
                    Err(LockedOut)
                } else if *n >= SLOW_AFTER {
                    Ok(Duration::from_millis(200 * u64::from(*n - SLOW_AFTER + 1)))
                } else {
                    Ok(Duration::ZERO)
                }
            }
            _ => Ok(Duration::ZERO),
        }
    }

    pub fn failed(&self, client: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let e = map.entry(client.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    pub fn succeeded(&self, client: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(client);
    }
}
