//! Reminders of a visit: when an appointment is booked, its reminders (24 hours and 1 hour
//! before the start) are written to the outbox in the booking's own transaction, whatever the
//! door. The sweep of every replica delivers what is due: each message is claimed by one
//! replica at a time (a lease), sent, and marked sent, so a reminder goes once and survives a
//! restart. A reminder whose appointment was cancelled or moved since is settled unsent.
//!
//! The sender is pluggable ([`Sender`]); the default writes to the log the appointment id, the
//! channel and the time — never a name, a phone number or a diagnosis. A sender is given the
//! message's key, so a delivery retried after a crash between sending and marking is the same
//! message to a gateway that deduplicates by it.

use crate::calendar;
use hospital_core::store::Store;
use hospital_core::{Error, Tx};
use serde_json::{Value, json};

pub const TOPIC: &str = "visit-reminder";
/// How long before the start, and the name of each reminder.
pub const BEFORE: &[(i64, &str)] = &[(24 * 60, "24h"), (60, "1h")];
/// How long a claim holds (microseconds).
const LEASE: i64 = 60 * 1_000_000;

/// Sends one reminder.
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

/// Delivers the reminders due now, as `claimer` (this replica): how many were sent.
pub async fn deliver(store: &Store, sender: &dyn Sender, claimer: &str) -> Result<usize, Error> {
    let now = calendar::micros(calendar::now());
    let due = store.outbox_claim(TOPIC, claimer, now, LEASE, 100).await?;
    let mut sent = 0;
    for m in due {
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
            match sender.send(&m.key, id, channel, start).await {
                Ok(()) => "sent",
                Err(e) => {
                    // Left claimed: sent again when the lease runs out.
                    tracing::warn!(appointment = id, error = %e, "a reminder was not sent");
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
