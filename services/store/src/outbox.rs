//! The outbox: messages a write decides to send later, stored in the write's own transaction
//! ([`crate::Tx::enqueue`]), claimed by one sender at a time ([`Store::outbox_claim`]: a lease,
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL so replicas never claim one row together), then
//! marked sent ([`Store::outbox_done`]). A claimer that dies leaves its rows to be claimed
//! again when the lease runs out; each message keeps its `key`, which a sender passes on so
//! that a retried delivery is recognised as the same message.

use crate::{Dialect, Result, Store, Tx};
use sqlx::Row;

/// One message due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub key: String,
    pub topic: String,
    pub due: i64,
    pub payload: String,
}

impl Tx {
    /// Queues a message (once per `key`: queuing it again changes nothing) in this
    /// transaction: it exists if and only if the transaction commits.
    pub async fn enqueue(&mut self, key: &str, topic: &str, due: i64, payload: &str) -> Result<()> {
        let d = self.dialect();
        sqlx::query(&d.sql(
            "INSERT INTO outbox (key, topic, due, payload) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO NOTHING",
        ))
        .bind(key)
        .bind(topic)
        .bind(due)
        .bind(payload)
        .execute(self.conn().await?)
        .await?;
        Ok(())
    }
}

impl Tx {
    /// [`Tx::enqueue`] of several messages of one topic and payload (`(key, due)` each), in
    /// one statement.
    pub async fn enqueue_all(
        &mut self,
        messages: &[(String, i64)],
        topic: &str,
        payload: &str,
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let d = self.dialect();
        let values: Vec<String> = (0..messages.len())
            .map(|i| format!("(${}, $1, ${}, $2)", 3 + i * 2, 4 + i * 2))
            .collect();
        let sql = d.sql(&format!(
            "INSERT INTO outbox (key, topic, due, payload) VALUES {} ON CONFLICT (key) DO NOTHING",
            values.join(", ")
        ));
        let mut q = sqlx::query(&sql).bind(topic).bind(payload);
        for (key, due) in messages {
            q = q.bind(key).bind(due);
        }
        q.execute(self.conn().await?).await?;
        Ok(())
    }
}

impl Store {
    /// Claims up to `limit` messages of `topic` due by `now` for `claimer`, for `lease`
    /// microseconds: no other claimer gets them meanwhile.
    pub async fn outbox_claim(
        &self,
        topic: &str,
        claimer: &str,
        now: i64,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let d = self.dialect();
        let lock = if d == Dialect::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let rows = sqlx::query(&d.sql(&format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2 WHERE id IN (\
             SELECT id FROM outbox WHERE sent_at IS NULL AND topic = $3 AND due <= $4 \
             AND (claimed_until IS NULL OR claimed_until < $4) ORDER BY due LIMIT $5{lock}) \
             RETURNING id, key, topic, due, payload"
        )))
        .bind(claimer)
        .bind(now + lease)
        .bind(topic)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.inner.writer)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Message {
                    id: r.try_get(0)?,
                    key: r.try_get(1)?,
                    topic: r.try_get(2)?,
                    due: r.try_get(3)?,
                    payload: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Marks a claimed message sent (or settled otherwise: `outcome`), if `claimer` still
    /// holds it. Returns whether it did.
    pub async fn outbox_done(
        &self,
        id: i64,
        claimer: &str,
        now: i64,
        outcome: &str,
    ) -> Result<bool> {
        let d = self.dialect();
        let r = sqlx::query(&d.sql(
            "UPDATE outbox SET sent_at = $1, outcome = $2 WHERE id = $3 AND claimed_by = $4 AND sent_at IS NULL",
        ))
        .bind(now)
        .bind(outcome)
        .bind(id)
        .bind(claimer)
        .execute(&self.inner.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Messages of `topic` and what became of them (`key`, `outcome`; no outcome: not yet
    /// settled), for reports and tests.
    pub async fn outbox_of(&self, topic: &str) -> Result<Vec<(String, Option<String>)>> {
        let d = self.dialect();
        let rows =
            sqlx::query(&d.sql("SELECT key, outcome FROM outbox WHERE topic = $1 ORDER BY id"))
                .bind(topic)
                .fetch_all(&self.inner.reader)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
