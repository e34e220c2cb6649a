//! Reminders of a visit: when an appointment is booked, its reminders (24 hours and 1 hour
//! before the start) are written to the outbox in the booking's own transaction, whatever the
//! door. The sweep of every replica delivers what is due. A reminder whose appointment was
//! cancelled or moved since is settled unsent.
//!
//! **What "sent exactly once" means here.** No system can both send a message to a gateway
//! and record that it did in one atomic step; what this module guarantees is:
//!
//! - one sender at a time: a replica claims one reminder at a time under a lease
//!   ([`Delivery::lease`]; `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on
//!   SQLite), and a send that has not finished within [`Delivery::send_within`] (well inside
//!   the lease) is abandoned, so no two replicas ever hold one reminder, or send it, at once;
//! - marked once: only the claim's holder marks it sent, and a sent reminder is never claimed
//!   again — by any replica, before or after a restart;
//! - sent again only when it may not have gone: a send that failed or timed out, or a
//!   replica that died between sending and marking, leaves the reminder to be claimed again
//!   when the lease runs out, and it is sent again **with the same key**
//!   (`reminder:<appointment>:<start>:<24h|1h>`, one per reminder, never reused).
//!
//! So delivery to the sender is at least once, and at most once per lease while replicas
//! run; a gateway that deduplicates by the key it is given (the client message id of an SMS
//! or Zalo gateway) turns that into exactly once for the patient. The default log sender
//! cannot deduplicate: after a crash between its line and the mark, the line appears twice,
//! with the same key.
//!
//! The sender is pluggable ([`Sender`]); the default writes to the log the key, the
//! appointment id, the channel and the time — never a name, a phone number or a diagnosis.

use crate::calendar;
use hospital_core::store::Store;
use hospital_core::{Error, Tx};
use serde_json::{Value, json};

pub const TOPIC: &str = "visit-reminder";
/// How long before the start, and the name of each reminder.
pub const BEFORE: &[(i64, &str)] = &[(24 * 60, "24h"), (60, "1h")];
/// How a replica delivers reminders.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// How long a claim keeps a reminder from other replicas.
    pub lease: std::time::Duration,
    /// How long one send may take before it is abandoned (and the reminder sent again, with
    /// the same key, when the lease runs out); well inside the lease.
    pub send_within: std::time::Duration,
    /// Reminders one delivery sends at most (the rest wait for the next pass).
    pub at_most: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            lease: std::time::Duration::from_secs(60),
            send_within: std::time::Duration::from_secs(20),
            at_most: 100,
        }
    }
}

/// Sends one reminder. `key` is the reminder's own, the same on every attempt: a gateway
/// that deduplicates by it delivers the reminder once.
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    async fn send(
        &self,
        key: &str,
        appointment: &str,
        channel: &str,
        at: &str,
    ) -> Result<(), String>;
}

/// The default sender: the log, with no personal data.
pub struct LogSender;

#[async_trait::async_trait]
impl Sender for LogSender {
    async fn send(
        &self,
        key: &str,
        appointment: &str,
        channel: &str,
        at: &str,
    ) -> Result<(), String> {
        tracing::info!(key, appointment, channel, at, "visit reminder");
        Ok(())
    }
}

/// Queues the reminders of a booked appointment starting at `start`: those still ahead, or,
/// when all are past, the last one now (a visit booked an hour before it starts still gets
/// one). Queuing again (the same start) adds nothing; a new start adds its own.
pub async fn enqueue(tx: &mut Tx, appointment: &str, start: &str) -> Result<(), Error> {
    let Some(t) = calendar::parse_instant(start) else {
        return Ok(());
    };
    let now = calendar::now();
    if t <= now {
        return Ok(());
    }
    let start_micros = calendar::micros(t);
    let mut due: Vec<(i64, &str)> = BEFORE
        .iter()
        .map(|(m, name)| (start_micros - m * 60 * 1_000_000, *name))
        .filter(|(d, _)| *d > calendar::micros(now))
        .collect();
    if due.is_empty()
        && let Some((_, last)) = BEFORE.last()
    {
        due.push((calendar::micros(now), last));
    }
    let payload = json!({"appointment": appointment, "start": start, "channel": "sms"}).to_string();
    let messages: Vec<(String, i64)> = due
        .into_iter()
        .map(|(at, name)| (format!("reminder:{appointment}:{start_micros}:{name}"), at))
        .collect();
    tx.enqueue_all(&messages, TOPIC, &payload).await
}

/// Delivers the reminders due now, as `claimer` (this replica), as [`Delivery::default`]
/// says: how many were sent.
pub async fn deliver(store: &Store, sender: &dyn Sender, claimer: &str) -> Result<usize, Error> {
    deliver_with(store, sender, claimer, Delivery::default()).await
}

/// Delivers the reminders due now, one claim at a time, each sent within its lease.
pub async fn deliver_with(
    store: &Store,
    sender: &dyn Sender,
    claimer: &str,
    how: Delivery,
) -> Result<usize, Error> {
    let lease = i64::try_from(how.lease.as_micros()).unwrap_or(i64::MAX);
    let mut sent = 0;
    for _ in 0..how.at_most {
        let now = calendar::micros(calendar::now());
        let Some(m) = store
            .outbox_claim(TOPIC, claimer, now, lease, 1)
            .await?
            .into_iter()
            .next()
        else {
            break;
        };
        let p: Value = serde_json::from_str(&m.payload).unwrap_or(Value::Null);
        let id = p["appointment"].as_str().unwrap_or("");
        let start = p["start"].as_str().unwrap_or("");
        let channel = p["channel"].as_str().unwrap_or("sms");
        let still = match store.read("Appointment", id).await {
            Ok(v) if !v.deleted => {
                let a: Value = serde_json::from_str(&v.body).unwrap_or(Value::Null);
                a["status"] == "booked" && a["start"].as_str() == Some(start)
            }
            _ => false,
        };
        let outcome = if still {
            let attempt = sender.send(&m.key, id, channel, start);
            match tokio::time::timeout(how.send_within, attempt).await {
                Ok(Ok(())) => "sent",
                Ok(Err(e)) => {
                    // Left claimed: sent again, with its key, when the lease runs out.
                    tracing::warn!(appointment = id, error = %e, "a reminder was not sent");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(
                        appointment = id,
                        "a reminder's send took too long; it is sent again with its key"
                    );
                    continue;
                }
            }
        } else {
            "skipped: the appointment was cancelled or moved"
        };
        if store
            .outbox_done(m.id, claimer, calendar::micros(calendar::now()), outcome)
            .await?
            && outcome == "sent"
        {
            sent += 1;
        }
    }
    Ok(sent)
}
