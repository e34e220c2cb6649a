//! SQLite's write path: a version as rows, sent as a few multi-row statements together with
//! the other writes that go in the same hop.

use crate::index::{IndexTable, derived_tables};
use crate::json_rows::{json_rows, push_json, push_text, push_texts, row_columns};
use crate::{Arg, Result, Store, StoreError, Target, Tx, Version, bind_all, extract};
use serde_json::Value;
use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

/// SQLite: a version not yet sent ([`Tx::write_sqlite_script`]): its row, its history entry,
/// its index rows and its unique identifiers, rendered into statements when it is sent
/// ([`render`]).
pub(crate) struct SqliteScript {
    pub(crate) resource_type: String,
    pub(crate) id: String,
    /// The unique identifiers it claims (system, value), to name a duplicate's holder.
    pub(crate) claims: Vec<(String, String)>,
    /// The row id when the resource is stored already (an update).
    existing: Option<i64>,
    version_id: i64,
    last_updated: i64,
    body: String,
    method: &'static str,
    /// Index rows, by [`IndexTable::ALL`].
    rows: Vec<Vec<Vec<Arg>>>,
}

/// The most scripts sent in one hop: a Bundle's writes go in a few hops of bounded size.
const SCRIPTS_PER_HOP: usize = 250;

/// Each row's resource, found by the type and id its first two values hold; the rows are
/// taken in their order (`CROSS JOIN` keeps the list as the outer loop).
const BY_RESOURCE: &str = "FROM json_each(?) j CROSS JOIN resources r \
     ON r.resource_type = j.value->>0 AND r.resource_id = j.value->>1";

/// The statements that send `scripts`, after `prefix`, and their arguments.
///
/// Writes sent together share their statements: one per table for all of them, whose rows
/// are one JSON argument that SQLite unpacks (`json_each`). The statements' text depends only
/// on which tables have rows, so SQLite compiles each once per connection, not per write —
/// rows written into the SQL text instead made compiling it a third of the writer's time.
/// Every INSERT is `OR FAIL`: a failure stops the statement where it is instead of undoing
/// it, which would make SQLite copy each page it touches into a statement journal first;
/// the transaction's savepoint undoes the rest. Rows keep the scripts' order, so the first
/// claim refused belongs to the first script that failed ([`named_duplicate`]).
pub(crate) fn render(prefix: &str, scripts: &[&SqliteScript]) -> (String, Vec<Arg>) {
    let mut sql = prefix.to_owned();
    let mut args = Vec::new();
    let mut statement = |sql_text: &str, rows: String| {
        sql.push_str(sql_text);
        sql.push(';');
        args.push(Arg::Text(rows));
    };
    let updated: Vec<&SqliteScript> = scripts
        .iter()
        .copied()
        .filter(|s| s.existing.is_some())
        .collect();
    if !updated.is_empty() {
        statement(
            "UPDATE resources SET version_id = j.value->>1, last_updated = j.value->>2, \
             deleted = 0, body = j.value->>3 FROM json_each(?) j WHERE resources.rid = j.value->>0",
            json_rows(&updated, |out, s| {
                for a in [
                    Arg::I64(s.existing.unwrap_or_default()),
                    Arg::I64(s.version_id),
                    Arg::I64(s.last_updated),
                ] {
                    push_json(out, &a);
                    out.push(',');
                }
                push_text(out, &s.body);
            }),
        );
        let rids = format!(
            "[{}]",
            updated
                .iter()
                .map(|s| s.existing.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        for table in derived_tables() {
            statement(
                &format!("DELETE FROM {table} WHERE rid IN (SELECT value FROM json_each(?))"),
                rids.clone(),
            );
        }
    }
    if scripts.iter().any(|s| s.existing.is_none()) {
        statement(
            "INSERT OR FAIL INTO resources (resource_type, resource_id, version_id, last_updated, deleted, body) \
             SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, 0, j.value->>4 FROM json_each(?) j",
            json_rows(scripts.iter().filter(|s| s.existing.is_none()), |out, s| {
                push_texts(out, &[&s.resource_type, &s.id]);
                for a in [Arg::I64(s.version_id), Arg::I64(s.last_updated)] {
                    out.push(',');
                    push_json(out, &a);
                }
                out.push(',');
                push_text(out, &s.body);
            }),
        );
    }
    if !scripts.is_empty() {
        // The version as the resource's row now holds it.
        statement(
            &format!(
                "INSERT OR FAIL INTO resource_history (rid, resource_type, version_id, last_updated, method, deleted, body) \
                 SELECT r.rid, r.resource_type, r.version_id, r.last_updated, j.value->>2, 0, r.body {BY_RESOURCE}"
            ),
            json_rows(scripts, |out, s| {
                push_texts(out, &[&s.resource_type, &s.id, s.method]);
            }),
        );
    }
    for (t, index) in IndexTable::ALL.into_iter().enumerate() {
        if scripts.iter().all(|s| s.rows[t].is_empty()) {
            continue;
        }
        let columns = index.columns();
        let width = columns.split(',').count();
        statement(
            &format!(
                "INSERT OR FAIL INTO {} (rid, resource_type, {columns}) SELECT r.rid, r.resource_type, {} {BY_RESOURCE}",
                index.name(),
                row_columns(2, width)
            ),
            json_rows(
                scripts
                    .iter()
                    .flat_map(|s| s.rows[t].iter().map(move |row| (s, row))),
                |out, (s, row)| {
                    push_texts(out, &[&s.resource_type, &s.id]);
                    for a in row {
                        out.push(',');
                        push_json(out, a);
                    }
                },
            ),
        );
    }
    if scripts.iter().any(|s| !s.claims.is_empty()) {
        statement(
            &format!(
                "INSERT OR FAIL INTO unique_identifier (resource_type, system, value, rid) \
                 SELECT r.resource_type, j.value->>2, j.value->>3, r.rid {BY_RESOURCE}"
            ),
            json_rows(
                scripts
                    .iter()
                    .flat_map(|s| s.claims.iter().map(move |c| (s, c))),
                |out, (s, (system, value))| {
                    push_texts(out, &[&s.resource_type, &s.id, system, value])
                },
            ),
        );
    }
    (sql, args)
}

impl Tx {
    /// SQLite: the whole version (row, history, index rows, unique identifiers) as a script.
    /// Every hop to SQLite's worker thread is a turn of the single writer spent waiting, and
    /// those hops, not SQLite, bound the write rate, so scripts are sent as late and as many
    /// together as the transaction allows: in a transaction of one write ([`Tx::one_write`])
    /// at commit, with its audit record and the savepoint's release; in one that writes
    /// behind ([`Tx::write_behind`]) all together at its next statement; otherwise at once,
    /// with the member's savepoint in front if it is not open yet.
    pub(crate) async fn write_sqlite_script(
        &mut self,
        target: Target,
        v: &Version,
        body: &Value,
    ) -> Result<()> {
        let rows = extract::for_write(&v.resource_type, body)?;
        let script = SqliteScript {
            resource_type: v.resource_type.clone(),
            id: v.id.clone(),
            claims: self.unique_claims(&v.resource_type, body, v.last_updated),
            existing: match target {
                Target::Existing(rid) => Some(rid),
                Target::New => None,
            },
            version_id: v.version_id,
            last_updated: v.last_updated,
            body: v.body.clone(),
            method: v.method.as_str(),
            rows: IndexTable::ALL.iter().map(|t| t.rows(&rows)).collect(),
        };
        let first = self.deferred_scripts.is_empty();
        self.deferred_scripts.push(script);
        if self.write_behind || (self.one_write && first) {
            return Ok(());
        }
        self.flush_scripts().await
    }

    /// Sends the scripts not yet sent, in as few hops as [`SCRIPTS_PER_HOP`] allows (the
    /// member's savepoint in front of the first, if not opened yet). A failure names the
    /// write that failed ([`Tx::failed_write`]).
    pub(crate) async fn flush_scripts(&mut self) -> Result<()> {
        let scripts = std::mem::take(&mut self.deferred_scripts);
        for chunk in scripts.chunks(SCRIPTS_PER_HOP) {
            let (conn, prefix) = self.writer_prefixed().await?;
            let chunk: Vec<&SqliteScript> = chunk.iter().collect();
            let (sql, args) = render(prefix, &chunk);
            if let Err(e) = bind_all(sqlx::query(&sql), &args).execute(&mut *conn).await {
                let (err, failed) = named_duplicate(conn, &chunk, e).await;
                self.failed_write = failed.or_else(|| {
                    (chunk.len() == 1)
                        .then(|| format!("{}/{}", chunk[0].resource_type, chunk[0].id))
                });
                return Err(err);
            }
        }
        Ok(())
    }
}

/// The error of failed scripts sent together, and the write it belongs to when known: a
/// unique identifier another resource holds is named, with its holder (the first script, in
/// order, with a claim held by another resource is the one that failed: the claims before
/// it were inserted, each held by its own resource); anything else is the database's error.
pub(crate) async fn named_duplicate(
    conn: &mut AnyConnection,
    scripts: &[&SqliteScript],
    e: sqlx::Error,
) -> (StoreError, Option<String>) {
    let sqlx::Error::Database(db) = &e else {
        return (e.into(), None);
    };
    if !db.message().contains("unique_identifier") {
        return (e.into(), None);
    }
    for script in scripts {
        for (system, value) in &script.claims {
            let row = sqlx::query(
                "SELECT r.resource_id FROM unique_identifier u JOIN resources r ON r.rid = u.rid \
                 WHERE u.resource_type = ?1 AND u.system = ?2 AND u.value = ?3 AND r.resource_id <> ?4",
            )
            .bind(script.resource_type.as_str())
            .bind(system.as_str())
            .bind(value.as_str())
            .bind(script.id.as_str())
            .fetch_optional(&mut *conn)
            .await;
            match row {
                Ok(Some(row)) => match row.try_get::<String, _>(0) {
                    Ok(existing) => {
                        return (
                            StoreError::DuplicateIdentifier {
                                system: system.clone(),
                                existing: format!("{}/{existing}", script.resource_type),
                            },
                            Some(format!("{}/{}", script.resource_type, script.id)),
                        );
                    }
                    Err(e) => return (e.into(), None),
                },
                Ok(None) => {}
                Err(e) => return (e.into(), None),
            }
        }
    }
    (e.into(), None)
}

/// A SQLite member's commit: its deferred script, its audit records and the savepoint's
/// release in one hop (the savepoint itself too, if nothing opened it yet), then the group's
/// commit.
pub(crate) async fn commit_member(
    store: Store,
    member: Option<crate::group::Member>,
    audit: Vec<Vec<crate::Arg>>,
    scripts: Vec<SqliteScript>,
) -> Result<()> {
    let group = store.group();
    let mut member = match member {
        Some(m) => m,
        None if audit.is_empty() && scripts.is_empty() => return Ok(()),
        // Already in a task of its own (see `Tx::commit`): joined here directly, the writer
        // is not held while another task wakes this one.
        None => group.join(true).await?,
    };
    let mut released = false;
    if !audit.is_empty() || !scripts.is_empty() {
        let refs: Vec<&SqliteScript> = scripts.iter().collect();
        let (mut sql, mut args) = render(member.savepoint_prefix(), &refs);
        if !audit.is_empty() {
            sql.push_str(&crate::audit::insert_sql_json());
            sql.push(';');
            args.push(crate::Arg::Text(crate::audit::json_of(
                audit.iter().map(Vec::as_slice),
            )));
        }
        if member.has_savepoint() {
            sql.push_str("RELEASE member");
            released = true;
        }
        if let Err(e) = crate::bind_all(sqlx::query(&sql), &args)
            .execute(member.conn())
            .await
        {
            let (err, _) = named_duplicate(member.conn(), &refs, e).await;
            group.rollback(member).await?;
            return Err(err);
        }
    }
    group.commit(member, released).await
}

/// A transaction that never took the writer: its versions and its audit records, all it has
/// to send, and who waits for the outcome.
type Lone = (
    Vec<SqliteScript>,
    Vec<Vec<Arg>>,
    oneshot::Sender<Result<()>>,
);

/// The most lone writes sent in one hop.
const MAX_LONE: usize = 128;

/// SQLite: lone writes — transactions that reach their commit without having taken the
/// writer, such as a REST create or a batch entry — committed together: one task takes what
/// is queued once it holds the writer and sends it all in one hop, one statement per table,
/// then commits it with the group. Each write taking its own turn instead made the writer wait,
/// between turns, for the next request's task to be scheduled (the writer thread was busy
/// half the time at 32 connections creating). If the hop fails, each write is sent again on
/// its own, so that the one at fault gets its own error and the others commit.
pub(crate) struct LoneWrites {
    queue: mpsc::Sender<Lone>,
}

impl LoneWrites {
    fn start(store: &Store) -> LoneWrites {
        let (queue, mut rx) = mpsc::channel::<Lone>(4096);
        // The store holds the queue, so the task holds the store weakly: both end when the
        // last user drops it.
        let inner = std::sync::Arc::downgrade(&store.inner);
        tokio::spawn(async move {
            let mut batch: Vec<Lone> = Vec::with_capacity(MAX_LONE);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                match inner.upgrade() {
                    Some(inner) => Store { inner }.send_lone(&mut rx, &mut batch).await,
                    None => return,
                }
                batch.clear();
            }
        });
        LoneWrites { queue }
    }
}

impl Store {
    /// Commits `scripts` and `audit` of a transaction that never took the writer, with the
    /// other lone writes queued ([`LoneWrites`]); returns once durable.
    pub(crate) async fn commit_lone(
        &self,
        scripts: Vec<SqliteScript>,
        audit: Vec<Vec<Arg>>,
    ) -> Result<()> {
        let lone = self
            .inner
            .lone_writes
            .get_or_init(|| LoneWrites::start(self));
        let (done, wait) = oneshot::channel();
        let stopped = || crate::group::failed("the writer stopped".into());
        lone.queue
            .send((scripts, audit, done))
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }

    /// Sends `batch` (grown by what is queued once the writer is ours) in one hop and
    /// commits it; tells each write its outcome.
    async fn send_lone(&self, rx: &mut mpsc::Receiver<Lone>, batch: &mut Vec<Lone>) {
        let group = self.group();
        let mut member = match group.join(true).await {
            Ok(m) => m,
            Err(e) => {
                for (.., done) in batch.drain(..) {
                    let _ = done.send(Err(crate::group::failed(e.to_string())));
                }
                return;
            }
        };
        while batch.len() < MAX_LONE {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let scripts: Vec<&SqliteScript> = batch.iter().flat_map(|(s, ..)| s).collect();
        let (mut sql, mut args) = render(member.savepoint_prefix(), &scripts);
        let audit: Vec<&[Arg]> = batch
            .iter()
            .flat_map(|(_, a, _)| a.iter().map(Vec::as_slice))
            .collect();
        if !audit.is_empty() {
            sql.push_str(&crate::audit::insert_sql_json());
            sql.push(';');
            args.push(Arg::Text(crate::audit::json_of(audit)));
        }
        sql.push_str("RELEASE member");
        hospital_telemetry::metrics::WRITE_GROUP_SIZE.observe(&[], batch.len() as f64);
        let sent = bind_all(sqlx::query(&sql), &args)
            .execute(member.conn())
            .await;
        if sent.is_ok() {
            let result = group.commit(member, true).await.map_err(|e| e.to_string());
            for (.., done) in batch.drain(..) {
                let _ = done.send(result.clone().map_err(crate::group::failed));
            }
            return;
        }
        // One of them failed: the hop is undone, and each is sent on its own (together in one
        // group commit), so that only the one at fault fails, with its own error.
        if let Err(e) = group.rollback(member).await {
            for (.., done) in batch.drain(..) {
                let _ = done.send(Err(crate::group::failed(e.to_string())));
            }
            return;
        }
        let alone = batch.drain(..).map(|(scripts, audit, done)| {
            let store = self.clone();
            async move {
                let _ = done.send(commit_member(store, None, audit, scripts).await);
            }
        });
        futures::future::join_all(alone).await;
    }
}
