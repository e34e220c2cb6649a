//! The audit trail: who did what to which patient's data, when, from where, with what outcome.
//!
//! - Appending never waits on a shared lock: a record is a plain INSERT (in the same
//!   transaction as a write; for reads, in a group commit that completes before the response).
//! - Tamper evidence: a sealer (one at a time across replicas) takes unsealed rows in order and
//!   appends them to `audit_chain`, each with the SHA-256 of the previous chain entry and its own
//!   row. [`Store::audit_verify`] recomputes the chain and names the first row that no longer
//!   matches, or that has disappeared.
//! - Both tables refuse UPDATE and DELETE at the database level.

use crate::{Arg, Dialect, Result, Store, StoreError, Tx, bind_all};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// µs since the epoch.
    pub at: i64,
    /// `role:subject`, or `anonymous`.
    pub actor: String,
    pub role: String,
    /// The service that relayed the call on the actor's behalf, if any.
    pub on_behalf_of: String,
    /// The FHIR interaction (`read`, `search-type`, `create`, ...) or gRPC method.
    pub action: String,
    /// Its AuditEvent action code: C, R, U, D or E. Empty in records written before the code
    /// was kept (their code is derived from `action`).
    pub action_code: String,
    pub resource_type: String,
    /// `Type/id` of every resource touched (for a search: returned).
    pub entities: Vec<String>,
    /// Ids of the patients whose data was touched.
    pub patients: Vec<String>,
    pub client: String,
    pub user_agent: String,
    /// HTTP status of the outcome.
    pub outcome: i64,
}

/// A stored record, as read back.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub record: AuditRecord,
}

const COLUMNS: &str = "at, actor, role, on_behalf_of, action, resource_type, entities, patients, client, user_agent, outcome, action_code";
const WIDTH: usize = 12;

fn args_of(r: &AuditRecord) -> [Arg; WIDTH] {
    let cap = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    [
        Arg::I64(r.at),
        Arg::Text(cap(&r.actor, 200)),
        Arg::Text(r.role.clone()),
        Arg::Text(cap(&r.on_behalf_of, 200)),
        Arg::Text(r.action.clone()),
        Arg::Text(r.resource_type.clone()),
        Arg::Text(r.entities.join(" ")),
        Arg::Text(if r.patients.is_empty() {
            String::new()
        } else {
            format!(" {} ", r.patients.join(" "))
        }),
        Arg::Text(cap(&r.client, 100)),
        Arg::Text(cap(&r.user_agent, 300)),
        Arg::I64(r.outcome),
        Arg::Text(r.action_code.clone()),
    ]
}

/// `INSERT INTO audit_log (...) VALUES ` (rows follow).
pub(crate) fn insert_prefix() -> String {
    format!("INSERT INTO audit_log ({COLUMNS}) VALUES ")
}

/// SQLite: the insert of records given as one JSON argument ([`json_of`]): one text for any
/// number of records, compiled once per connection, that can also follow a transaction's
/// writes in one text (see `write_sqlite::render`).
pub(crate) fn insert_sql_json() -> String {
    format!(
        "{}SELECT {} FROM json_each(?) j",
        insert_prefix().trim_end_matches("VALUES "),
        crate::json_rows::row_columns(0, WIDTH)
    )
}

/// The argument of [`insert_sql_json`]: `records`, each the values of [`args_of`].
pub(crate) fn json_of<'a>(records: impl IntoIterator<Item = &'a [Arg]>) -> String {
    crate::json_rows::json_rows(records, |out, r| {
        for (i, a) in r.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::json_rows::push_json(out, a);
        }
    })
}

impl Tx {
    /// Records an audit entry in this (write) transaction: it commits with the write or not
    /// at all.
    pub async fn audit(&mut self, r: &AuditRecord) -> Result<()> {
        let args = args_of(r);
        // Inserted at commit: on PostgreSQL with the transaction's index rows, on SQLite in the
        // script that releases its savepoint (one hop fewer while it holds the writer).
        self.pending_audit.push(args.to_vec());
        Ok(())
    }
}

/// The most read-audit records one statement inserts.
const MAX_BATCH: usize = 256;

type Pending = (AuditRecord, oneshot::Sender<Result<(), String>>);

/// Group commit of audit records for reads: records that arrive together are written in one
/// statement and one commit, and each caller learns when its record is durable (or that it
/// failed, in which case the read must fail too).
///
/// One batch is written at a time, and it takes everything queued by the moment its
/// statement can run — on SQLite once it holds the single writer — so the records that
/// arrive while one batch commits all go in the next. Measured under 32 connections reading,
/// four batches in flight made 61 % of them a single record (each a turn of SQLite's writer
/// and a sync of its own); one in flight carries about 11 per commit and reads 13 % (SQLite)
/// to 42 % (PostgreSQL) more than four did, with a lower tail.
#[derive(Clone)]
pub struct AuditSink {
    queue: mpsc::Sender<Pending>,
}

impl AuditSink {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> AuditSink {
        let (queue, mut rx) = mpsc::channel::<Pending>(8192);
        tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                let result = store
                    .audit_insert_gathered(&mut rx, &mut batch)
                    .await
                    .map_err(|e| e.to_string());
                hospital_telemetry::metrics::AUDIT_GROUP_SIZE.observe(&[], batch.len() as f64);
                for (_, done) in batch.drain(..) {
                    let _ = done.send(result.clone());
                }
            }
        });
        AuditSink { queue }
    }

    /// Writes `r` and returns once it is committed.
    pub async fn record(&self, r: AuditRecord) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send((r, done))
            .await
            .map_err(|_| StoreError::PreconditionFailed("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::PreconditionFailed(format!(
                "audit write failed: {e}"
            ))),
            Err(_) => Err(StoreError::PreconditionFailed(
                "the audit writer has stopped".into(),
            )),
        }
    }
}

/// Adds to `batch` what is queued now, up to [`MAX_BATCH`].
fn gather(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

/// What [`Store::audit_verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Chain entries checked.
    pub checked: i64,
    /// The first problem, naming the audit row (`seq`), if any.
    pub first_break: Option<String>,
}

fn row_digest(prev: &str, seq: i64, r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update([0x1e]);
    let fields = [
        seq.to_string(),
        r.at.to_string(),
        r.actor.clone(),
        r.role.clone(),
        r.on_behalf_of.clone(),
        r.action.clone(),
        r.resource_type.clone(),
        r.entities.join(" "),
        r.patients.join(" "),
        r.client.clone(),
        r.user_agent.clone(),
        r.outcome.to_string(),
    ];
    for f in fields {
        h.update(f.as_bytes());
        h.update([0x1f]);
    }
    // Records from before the action code was kept were chained without it.
    if !r.action_code.is_empty() {
        h.update(r.action_code.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(h.finalize())
}

fn record_from(row: &sqlx::any::AnyRow, offset: usize) -> Result<AuditRecord> {
    let text = |i: usize| -> Result<String> { Ok(row.try_get::<String, _>(offset + i)?) };
    let split = |s: String| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
    Ok(AuditRecord {
        at: row.try_get(offset)?,
        actor: text(1)?,
        role: text(2)?,
        on_behalf_of: text(3)?,
        action: text(4)?,
        resource_type: text(5)?,
        entities: split(text(6)?),
        patients: split(text(7)?),
        client: text(8)?,
        user_agent: text(9)?,
        outcome: row.try_get(offset + 10)?,
        action_code: text(11)?,
    })
}

const GENESIS: &str = "genesis";

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Search of the trail (FHIR AuditEvent search).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub patient: Option<String>,
    pub agent: Option<String>,
    /// The AuditEvent action code to match (C, R, U, D, E), with the interaction names that
    /// had it before codes were recorded.
    pub action: Option<(String, Vec<String>)>,
    /// Inclusive bounds, µs since the epoch.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub count: usize,
    /// Keyset: only rows with a smaller seq (newest first).
    pub before_seq: Option<i64>,
}

impl Store {
    /// Writes `batch` (grown by what is queued by the time it can be written) in one
    /// statement, durably.
    async fn audit_insert_gathered(
        &self,
        rx: &mut mpsc::Receiver<Pending>,
        batch: &mut Vec<Pending>,
    ) -> Result<()> {
        if self.dialect() == Dialect::Postgres {
            gather(rx, batch);
            let rows: Vec<Vec<Arg>> = batch.iter().map(|(r, _)| args_of(r).into()).collect();
            let mut args = Vec::with_capacity(WIDTH);
            let sql = format!(
                "INSERT INTO audit_log ({COLUMNS}) SELECT * FROM {}",
                crate::unnest(&rows, &mut args)
            );
            // A statement on its own commits by itself: one round trip.
            bind_all(sqlx::query(&sql), &args)
                .execute(&self.inner.writer)
                .await?;
            return Ok(());
        }
        // On SQLite the records join the writer's group commit (sharing the sync of the
        // writes committing with them); what queued while this waited for the writer goes too.
        let mut tx = self.begin(&crate::WriteKey(())).await?;
        let conn = tx.single_statement().await?;
        gather(rx, batch);
        let records: Vec<&AuditRecord> = batch.iter().map(|(r, _)| r).collect();
        let rows: Vec<[Arg; WIDTH]> = records.iter().map(|r| args_of(r)).collect();
        let sql = insert_sql_json();
        sqlx::query(&sql)
            .bind(json_of(rows.iter().map(|r| r.as_slice())))
            .execute(conn)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Seals pending audit rows into the chain, all of them, in rounds; returns how many.
    /// Safe to call from every replica: on PostgreSQL only one sealer runs at a time
    /// (advisory lock; the others return 0).
    pub async fn audit_seal(&self) -> Result<usize> {
        let mut sealed = 0;
        loop {
            let (n, full) = self.audit_seal_round().await?;
            sealed += n;
            if !full {
                return Ok(sealed);
            }
        }
    }

    /// One round of sealing: at most [`SEAL_ROUND_SQLITE`] rows on SQLite, where the round
    /// holds the single writer (it joins the group commit like any write, so reads' audit
    /// records wait for one short round, not for the whole backlog: measured, rounds of 2,000
    /// held the writer long enough to put 90 ms at the 99th percentile of reads), and 2,000 on
    /// PostgreSQL. Returns how many, and whether the round was full.
    async fn audit_seal_round(&self) -> Result<(usize, bool)> {
        let d = self.dialect();
        let limit = if d == Dialect::Sqlite {
            SEAL_ROUND_SQLITE
        } else {
            2000
        };
        if d == Dialect::Sqlite {
            let mut tx = self.begin(&crate::WriteKey(())).await?;
            let n = seal_into(d, tx.conn().await?, limit).await?;
            tx.commit().await?;
            return Ok((n, n == limit));
        }
        let mut tx = self.inner.writer.begin().await?;
        let row = sqlx::query("SELECT pg_try_advisory_xact_lock(7243911)")
            .fetch_one(&mut *tx)
            .await?;
        if !row.try_get::<bool, _>(0)? {
            return Ok((0, false));
        }
        let n = seal_into(d, &mut tx, limit).await?;
        tx.commit().await?;
        Ok((n, n == limit))
    }
}

/// Rows sealed per round on SQLite.
const SEAL_ROUND_SQLITE: usize = 250;

/// Appends up to `limit` pending audit rows to the chain, inside the caller's transaction
/// (which holds the writer, or the sealer's advisory lock).
async fn seal_into(d: Dialect, conn: &mut sqlx::AnyConnection, limit: usize) -> Result<usize> {
    if d == Dialect::Sqlite {
        // Take the write lock before reading the chain's tail: another process (the CLI,
        // a second server) sealing at the same moment then waits instead of clashing.
        sqlx::query(
            "INSERT INTO counters (name, value) VALUES ('audit-seal', 1) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
        )
        .execute(&mut *conn)
        .await?;
    }
    let last = sqlx::query("SELECT pos, hash FROM audit_chain ORDER BY pos DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (mut pos, mut prev) = match last {
        Some(r) => (r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?),
        None => (0, GENESIS.to_owned()),
    };
    let rows = sqlx::query(&format!(
            "SELECT a.seq, {} FROM audit_pending p JOIN audit_log a ON a.seq = p.seq ORDER BY p.seq LIMIT {limit}",
            COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut chain_args = Vec::with_capacity(rows.len() * 4);
    let mut seqs = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        let rec = record_from(row, 1)?;
        let hash = row_digest(&prev, seq, &rec);
        pos += 1;
        chain_args.extend([
            Arg::I64(pos),
            Arg::I64(seq),
            Arg::Text(prev.clone()),
            Arg::Text(hash.clone()),
        ]);
        prev = hash;
        seqs.push(seq);
    }
    for chunk in chain_args.chunks(4 * 200) {
        let mut sql = String::from("INSERT INTO audit_chain (pos, seq, prev_hash, hash) VALUES ");
        for r in 0..chunk.len() / 4 {
            if r > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "({},{},{},{})",
                d.ph(r * 4 + 1),
                d.ph(r * 4 + 2),
                d.ph(r * 4 + 3),
                d.ph(r * 4 + 4)
            ));
        }
        bind_all(sqlx::query(&sql), chunk)
            .execute(&mut *conn)
            .await?;
    }
    let list = d.int_list_arg(&seqs);
    let sql = format!(
        "DELETE FROM audit_pending WHERE {}",
        d.in_int_list("seq", 1)
    );
    bind_all(sqlx::query(&sql), std::slice::from_ref(&list))
        .execute(&mut *conn)
        .await?;
    Ok(seqs.len())
}

impl Store {
    /// Seals in the background every `every` until the store closes.
    pub fn spawn_audit_sealer(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if store.inner.writer.is_closed() {
                    break;
                }
                if let Err(e) = store.audit_seal().await {
                    tracing::warn!(error = %e, "audit sealing failed; will retry");
                }
            }
        })
    }

    /// Recomputes the whole chain. Names the first audit row that was changed or removed, and
    /// any row that was never sealed although no longer pending.
    pub async fn audit_verify(&self) -> Result<AuditVerification> {
        let mut prev = GENESIS.to_owned();
        let mut expected_pos = 1;
        let mut checked = 0;
        let mut after = 0i64;
        let cols = COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let d = self.dialect();
        loop {
            let rows = sqlx::query(&d.sql(&format!(
                "SELECT c.pos, c.seq, c.prev_hash, c.hash, a.seq, {cols} FROM audit_chain c \
                 LEFT JOIN audit_log a ON a.seq = c.seq WHERE c.pos > $1 ORDER BY c.pos LIMIT 5000"
            )))
            .bind(after)
            .fetch_all(&self.inner.reader)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let pos: i64 = row.try_get(0)?;
                let seq: i64 = row.try_get(1)?;
                let prev_hash: String = row.try_get(2)?;
                let hash: String = row.try_get(3)?;
                let broken = |why: &str| {
                    Ok(AuditVerification {
                        checked,
                        first_break: Some(format!(
                            "audit row seq {seq} (chain position {pos}): {why}"
                        )),
                    })
                };
                if pos != expected_pos {
                    return broken("a chain entry before it is missing");
                }
                if prev_hash != prev {
                    return broken("its link to the previous entry was altered");
                }
                if row.try_get::<Option<i64>, _>(4)?.is_none() {
                    return broken("the row was deleted");
                }
                let rec = record_from(row, 5)?;
                if row_digest(&prev, seq, &rec) != hash {
                    return broken("the row was altered after it was sealed");
                }
                prev = hash;
                expected_pos += 1;
                checked += 1;
                after = pos;
            }
        }
        // A row deleted before the sealer reached it leaves its pending entry behind.
        let vanished = sqlx::query(
            "SELECT p.seq FROM audit_pending p WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.seq = p.seq) \
             ORDER BY p.seq LIMIT 1",
        )
        .fetch_optional(&self.inner.reader)
        .await?;
        if let Some(v) = vanished {
            let seq: i64 = v.try_get(0)?;
            return Ok(AuditVerification {
                checked,
                first_break: Some(format!(
                    "audit row seq {seq} was deleted before it was sealed"
                )),
            });
        }
        let orphan = sqlx::query(
            "SELECT a.seq FROM audit_log a WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.seq = a.seq) \
             AND NOT EXISTS (SELECT 1 FROM audit_pending p WHERE p.seq = a.seq) ORDER BY a.seq LIMIT 1",
        )
        .fetch_optional(&self.inner.reader)
        .await?;
        if let Some(o) = orphan {
            let seq: i64 = o.try_get(0)?;
            return Ok(AuditVerification {
                checked,
                first_break: Some(format!(
                    "audit row seq {seq} was removed from sealing and never chained"
                )),
            });
        }
        Ok(AuditVerification {
            checked,
            first_break: None,
        })
    }

    /// Searches the trail, newest first.
    pub async fn audit_search(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let d = self.dialect();
        let mut conds = vec!["1 = 1".to_owned()];
        let mut args: Vec<Arg> = Vec::new();
        let ph = |a: Arg, args: &mut Vec<Arg>| {
            args.push(a);
            d.ph(args.len())
        };
        if let Some(p) = &q.patient {
            let x = ph(Arg::Text(format!("% {} %", like_escape(p))), &mut args);
            conds.push(format!("patients LIKE {x} ESCAPE '\\'"));
        }
        if let Some(a) = &q.agent {
            // An agent is named as `role:subject` or by subject alone.
            let exact = ph(Arg::Text(a.clone()), &mut args);
            let suffix = ph(Arg::Text(format!("%:{}", like_escape(a))), &mut args);
            conds.push(format!(
                "(actor = {exact} OR on_behalf_of = {exact} OR actor LIKE {suffix} ESCAPE '\\')"
            ));
        }
        if let Some((code, legacy)) = &q.action {
            let c = ph(Arg::Text(code.clone()), &mut args);
            args.push(d.list_arg(legacy));
            let l = d.in_list("action", args.len());
            conds.push(format!("(action_code = {c} OR (action_code = '' AND {l}))"));
        }
        if let Some(f) = q.from {
            let x = ph(Arg::I64(f), &mut args);
            conds.push(format!("at >= {x}"));
        }
        if let Some(t) = q.to {
            let x = ph(Arg::I64(t), &mut args);
            conds.push(format!("at <= {x}"));
        }
        if let Some(b) = q.before_seq {
            let x = ph(Arg::I64(b), &mut args);
            conds.push(format!("seq < {x}"));
        }
        args.push(Arg::I64(q.count as i64));
        let sql = format!(
            "SELECT seq, {COLUMNS} FROM audit_log WHERE {} ORDER BY seq DESC LIMIT {}",
            conds.join(" AND "),
            d.ph(args.len())
        );
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.inner.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    seq: row.try_get(0)?,
                    record: record_from(row, 1)?,
                })
            })
            .collect()
    }

    /// Rows in the trail.
    pub async fn audit_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.inner.reader)
            .await?;
        Ok(row.try_get(0)?)
    }
}
