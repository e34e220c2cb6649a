//! Failed sign-ins are slowed, then refused for a while — failures only: a request with a
//! valid token is never throttled, so nobody can lock the hospital out by failing on purpose.
//! Keyed by client address (behind a proxy, the forwarded address from a trusted proxy), so
//! one client's failures never slow another (an IPv6 client by its /64, which one subscriber
//! holds whole). Per process: each replica throttles what it sees.
//!
//! The throttle also bounds the audit rows failures cause: every failure up to the lock-out is
//! recorded; while a client is locked out, one of its refusals a minute is (the record says
//! it stands for the ones before it), so an attacker cannot fill the audit trail or hold the
//! single writer.

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
/// While locked out, how often a refusal is recorded.
const RECORD_EVERY: Duration = Duration::from_secs(60);

/// How to answer a failed sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer 401 after this delay.
    Slow(Duration),
    /// Too many failures recently: answer 429. `record`: whether to audit this refusal;
    /// `unrecorded` refusals of this client were not audited since the last one that was.
    LockedOut { record: bool, unrecorded: u32 },
}

impl Verdict {
    /// Whether the refusal this verdict answers is to be audited.
    pub fn recorded(self) -> bool {
        match self {
            Verdict::Slow(_) => true,
            Verdict::LockedOut { record, .. } => record,
        }
    }
}

struct Window {
    failures: u32,
    since: Instant,
    last_recorded: Instant,
    unrecorded: u32,
}

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Window>>,
}

/// The key a client is throttled by: its address, an IPv6 address by its /64.
fn key_of(client: &str) -> String {
    match client.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
            .to_string(),
        _ => client.to_owned(),
    }
}

impl Throttle {
    /// Counts a failed sign-in from `client` and says how to answer it.
    pub fn failed(&self, client: &str) -> Verdict {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CLIENTS {
            map.retain(|_, w| w.since.elapsed() < WINDOW);
        }
        let now = Instant::now();
        let w = map.entry(key_of(client)).or_insert(Window {
            failures: 0,
            since: now,
            last_recorded: now,
            unrecorded: 0,
        });
        if w.since.elapsed() >= WINDOW {
            w.failures = 0;
            w.since = now;
        }
        w.failures += 1;
        let n = w.failures;
        if n > LIMIT {
            // The first refusal of a lock-out is recorded, then one a minute.
            let record = n == LIMIT + 1 || w.last_recorded.elapsed() >= RECORD_EVERY;
            let unrecorded = w.unrecorded;
            if record {
                w.last_recorded = now;
                w.unrecorded = 0;
            } else {
                w.unrecorded += 1;
            }
            Verdict::LockedOut { record, unrecorded }
        } else {
            w.last_recorded = now;
            if n > SLOW_AFTER {
                Verdict::Slow(Duration::from_millis(200 * u64::from(n - SLOW_AFTER)))
            } else {
                Verdict::Slow(Duration::ZERO)
            }
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
        assert_eq!(
            t.failed("a"),
            Verdict::LockedOut {
                record: true,
                unrecorded: 0
            }
        );
        assert_eq!(t.failed("b"), Verdict::Slow(Duration::ZERO));
    }

    #[test]
    fn a_locked_out_client_leaves_one_record_a_minute_not_one_per_refusal() {
        let t = Throttle::default();
        let recorded = (0..1000).filter(|_| t.failed("a").recorded()).count();
        assert_eq!(recorded, 11, "ten failures and the lock-out itself");
        match t.failed("a") {
            Verdict::LockedOut { record, unrecorded } => {
                assert!(!record);
                assert_eq!(unrecorded, 989);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn an_ipv6_client_is_throttled_by_its_64() {
        let t = Throttle::default();
        for i in 0..10 {
            t.failed(&format!("2001:db8:1:2::{i:x}"));
        }
        assert!(matches!(
            t.failed("2001:db8:1:2:ffff::1"),
            Verdict::LockedOut { .. }
        ));
        assert_eq!(t.failed("2001:db8:1:3::1"), Verdict::Slow(Duration::ZERO));
        assert_eq!(key_of("::ffff:192.0.2.1"), "192.0.2.1");
    }
}
