//! The signalling bus of video visits: messages between a visit's participants, stored (so a
//! participant who reconnects reads the room's state and chat again) and delivered to every
//! process serving the store — on PostgreSQL by `LISTEN`/`NOTIFY` on a channel of the store's
//! schema, so the two sides of a call may be connected to different replicas; on SQLite (one
//! process) in process. No room lives only in memory.

use crate::{Dialect, Result, Store, dates};
use sqlx::Row;
use tokio::sync::broadcast;

/// One message of a visit's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub id: i64,
    pub room: String,
    /// The connection that sent it (`server` for the server's own).
    pub sender: String,
    pub role: String,
    pub kind: String,
    /// JSON text.
    pub body: String,
    pub at: i64,
}

/// How long signals are kept.
const KEEP_MICROS: i64 = 24 * 3_600 * 1_000_000;

fn signal(row: &sqlx::any::AnyRow) -> Result<Signal> {
    Ok(Signal {
        id: row.try_get(0)?,
        room: row.try_get(1)?,
        sender: row.try_get(2)?,
        role: row.try_get(3)?,
        kind: row.try_get(4)?,
        body: row.try_get(5)?,
        at: row.try_get(6)?,
    })
}

/// What every process keeps of the bus: where new signals are delivered, and (PostgreSQL) the
/// listener's channel and database URL.
pub(crate) struct Bus {
    pub(crate) feed: broadcast::Sender<Signal>,
    pub(crate) listening: std::sync::OnceLock<()>,
    pub(crate) url: Option<String>,
    pub(crate) channel: std::sync::OnceLock<String>,
    /// The listener's task (PostgreSQL), stopped when the store closes.
    pub(crate) task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Bus {
    pub(crate) fn new(url: Option<String>) -> Bus {
        Bus {
            feed: broadcast::channel(4096).0,
            listening: std::sync::OnceLock::new(),
            url,
            channel: std::sync::OnceLock::new(),
            task: std::sync::Mutex::new(None),
        }
    }
}

const COLUMNS: &str = "id, room, sender, role, kind, body, at";

impl Store {
    /// The NOTIFY channel of this store's schema (two schemas of one database never hear each
    /// other's visits).
    async fn signal_channel(&self) -> Result<String> {
        if let Some(c) = self.inner.bus.channel.get() {
            return Ok(c.clone());
        }
        let schema: String = sqlx::query("SELECT CAST(current_schema() AS text)")
            .fetch_one(&self.inner.writer)
            .await?
            .try_get(0)?;
        let clean: String = schema
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(48)
            .collect();
        let channel = format!("visit_signals_{clean}");
        let _ = self.inner.bus.channel.set(channel.clone());
        Ok(channel)
    }

    /// Stores a signal and delivers it to every process's subscribers (this one's included).
    pub async fn signal_append(
        &self,
        room: &str,
        sender: &str,
        role: &str,
        kind: &str,
        body: &str,
    ) -> Result<Signal> {
        let d = self.dialect();
        let now = dates::now_micros();
        let s = if d == Dialect::Postgres {
            let channel = self.signal_channel().await?;
            // The row and its notification in one statement (delivered when it commits).
            let row = sqlx::query(&format!(
                "WITH ins AS (INSERT INTO visit_signals (room, sender, role, kind, body, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}) \
                 SELECT ins.id, ins.room, ins.sender, ins.role, ins.kind, ins.body, ins.at FROM ins \
                 CROSS JOIN LATERAL (SELECT pg_notify($7, CAST(ins.id AS text))) AS notified"
            ))
            .bind(room)
            .bind(sender)
            .bind(role)
            .bind(kind)
            .bind(body)
            .bind(now)
            .bind(&channel)
            .fetch_one(&self.inner.writer)
            .await?;
            signal(&row)?
        } else {
            let row = sqlx::query(&format!(
                "INSERT INTO visit_signals (room, sender, role, kind, body, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {COLUMNS}"
            ))
            .bind(room)
            .bind(sender)
            .bind(role)
            .bind(kind)
            .bind(body)
            .bind(now)
            .fetch_one(&self.inner.writer)
            .await?;
            let s = signal(&row)?;
            let _ = self.inner.bus.feed.send(s.clone());
            s
        };
        // Now and then, signals older than a day go.
        if s.id % 500 == 0 {
            sqlx::query(&d.sql("DELETE FROM visit_signals WHERE at < $1"))
                .bind(now - KEEP_MICROS)
                .execute(&self.inner.writer)
                .await?;
        }
        Ok(s)
    }

    /// The room's signals of `kinds`, oldest first, the last `limit` of them.
    pub async fn signals_of(&self, room: &str, kinds: &[&str], limit: i64) -> Result<Vec<Signal>> {
        let d = self.dialect();
        let kinds = serde_json::to_string(kinds).unwrap_or_else(|_| "[]".into());
        let list = match d {
            Dialect::Sqlite => "kind IN (SELECT value FROM json_each(?2))".to_owned(),
            Dialect::Postgres => {
                "kind IN (SELECT json_array_elements_text(CAST($2 AS json)))".to_owned()
            }
        };
        let rows = sqlx::query(&d.sql(&format!(
            "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM visit_signals WHERE room = $1 AND {list} \
             ORDER BY id DESC LIMIT $3) AS recent ORDER BY id"
        )))
        .bind(room)
        .bind(kinds)
        .bind(limit)
        .fetch_all(&self.inner.reader)
        .await?;
        rows.iter().map(signal).collect()
    }

    /// Every new signal of every room, as this process hears of them. On PostgreSQL the first
    /// call starts the listener (reconnecting after a lost connection).
    pub async fn signal_feed(&self) -> Result<broadcast::Receiver<Signal>> {
        let rx = self.inner.bus.feed.subscribe();
        if self.dialect() == Dialect::Postgres && self.inner.bus.listening.set(()).is_ok() {
            let channel = self.signal_channel().await?;
            let url = self.inner.bus.url.clone().unwrap_or_default();
            let store = self.clone();
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(&channel).await?;
            let task = tokio::spawn(async move {
                loop {
                    match listener.recv().await {
                        Ok(n) => {
                            let Ok(id) = n.payload().parse::<i64>() else {
                                continue;
                            };
                            match sqlx::query(&format!(
                                "SELECT {COLUMNS} FROM visit_signals WHERE id = $1"
                            ))
                            .bind(id)
                            .fetch_optional(&store.inner.reader)
                            .await
                            {
                                Ok(Some(row)) => {
                                    if let Ok(s) = signal(&row) {
                                        let _ = store.inner.bus.feed.send(s);
                                    }
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "a visit signal could not be read")
                                }
                            }
                        }
                        Err(e) => {
                            // PgListener reconnects on the next recv; pause so a database that
                            // is down is not hammered.
                            tracing::warn!(error = %e, "the visit signal listener lost its connection");
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                    }
                }
            });
            if let Ok(mut t) = self.inner.bus.task.lock() {
                *t = Some(task);
            }
        }
        Ok(rx)
    }
}
