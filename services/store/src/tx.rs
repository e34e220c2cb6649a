//! The write transaction: what both backends share of a write (validation, versions, the
//! author stamp, unique identifiers); each backend's own way of storing it is in
//! `write_sqlite.rs` and `write_postgres.rs`.

use crate::read::read_current;
use crate::search::{self, SearchQuery, SearchResult};
use crate::{
    Dialect, Method, Result, Store, StoreError, Target, Version, WriteKey, WriteOutcome, dates,
    extract, is_valid_id,
};
use serde_json::Value;
use sqlx::{Any, AnyConnection, Row, Transaction};

/// A write transaction. Dropping it without [`Tx::commit`] rolls everything back.
pub struct Tx {
    /// The database transaction: PostgreSQL's own, or (SQLite) a member of the writer's
    /// group commit, joined at the first statement.
    pub(crate) conn: Conn,
    pub(crate) store: Store,
    /// Who writes: stamped on every version (`meta.extension` recorded-by).
    pub(crate) author: Option<String>,
    /// PostgreSQL: index rows of this transaction's writes, inserted together (one multi-row
    /// INSERT per table) before the next search in the transaction and before commit, so a
    /// Bundle of 200 resources costs a handful of index statements instead of a thousand.
    pub(crate) pending_index: Vec<(i64, String, extract::IndexRows)>,
    /// Resources this transaction has seen to exist ([`Tx::missing`]), so that two writes
    /// referring to one patient look it up once; forgotten on any delete.
    pub(crate) known: std::collections::HashSet<(String, String)>,
    /// PostgreSQL: the transaction's audit records, inserted with its index rows.
    pub(crate) pending_audit: Vec<Vec<crate::Arg>>,
    /// Rows this transaction holds locked (`FOR UPDATE`) and has read, as they are now: no
    /// other transaction can change them until this one ends, so a write of one needs no
    /// second look.
    pub(crate) locked: std::collections::HashMap<(String, String), (i64, i64, bool, String)>,
    /// The transaction is a request's one write ([`Tx::one_write`]).
    pub(crate) one_write: bool,
    /// PostgreSQL: a create not yet sent (see [`Tx::one_write`]); sent as it was at the next
    /// statement, or at commit as one statement with the index rows and the audit record.
    pub(crate) deferred: Option<DeferredCreate>,
    /// SQLite: the scripts of writes not yet sent (see [`Tx::one_write`] and
    /// [`Tx::write_behind`]); sent at the next statement, or at commit in one hop with the
    /// savepoint, the audit record and its release.
    pub(crate) deferred_scripts: Vec<crate::write_sqlite::SqliteScript>,
    /// SQLite: the transaction's writes wait for its next statement ([`Tx::write_behind`]).
    pub(crate) write_behind: bool,
    /// The write (`Type/id`) whose statements failed, when a failure sent several together.
    pub(crate) failed_write: Option<String>,
}

/// A create prepared and not yet sent (see [`Tx::one_write`]).
pub(crate) struct DeferredCreate {
    pub(crate) resource_type: String,
    pub(crate) id: String,
    pub(crate) version_id: i64,
    pub(crate) now: i64,
    pub(crate) text: String,
    pub(crate) method: String,
    pub(crate) claims: Vec<(String, String)>,
    pub(crate) rows: extract::IndexRows,
}

/// See [`Tx::conn`].
pub(crate) enum Conn {
    /// Begun at the first statement.
    Postgres(Option<Transaction<'static, Any>>),
    Sqlite(Option<crate::group::Member>),
    Ended,
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Conn::Sqlite(Some(member)) = std::mem::replace(&mut self.conn, Conn::Ended) {
            self.store.group().release_dropped(member);
        }
    }
}

/// How many values of a counter SQLite reserves at a time (see [`Store::counter_from_block`]):
/// a block lasting under [`BLOCK_TOO_SHORT`] makes the next twice as large, one lasting over
/// [`BLOCK_TOO_LONG`] half as large, between these bounds. Reserving takes a durable commit
/// of its own, and every transaction counting meanwhile waits for it: at 64 values a block,
/// a Bundle of 50 Patients waited for a reservation nearly every time, queued behind the other
/// Bundles' writes (its preparation took 103 ms, 12 ms with large blocks). Small blocks when
/// counting is slow keep the gap a stopped process leaves small.
const MIN_COUNTER_BLOCK: i64 = 64;
const MAX_COUNTER_BLOCK: i64 = 4096;
const BLOCK_TOO_SHORT: std::time::Duration = std::time::Duration::from_secs(2);
const BLOCK_TOO_LONG: std::time::Duration = std::time::Duration::from_secs(60);

/// A counter's values reserved by this process: `next..=last`, reserved `at`, `size` values.
pub(crate) struct CounterBlock {
    next: i64,
    last: i64,
    size: i64,
    at: std::time::Instant,
}

/// The size of the block after `block`, by how long `block` lasted.
fn next_block_size(block: Option<&CounterBlock>) -> i64 {
    match block {
        None => MIN_COUNTER_BLOCK,
        Some(b) if b.at.elapsed() < BLOCK_TOO_SHORT => (b.size * 2).min(MAX_COUNTER_BLOCK),
        Some(b) if b.at.elapsed() > BLOCK_TOO_LONG => (b.size / 2).max(MIN_COUNTER_BLOCK),
        Some(b) => b.size,
    }
}

impl Store {
    /// SQLite: the next value of a counter for a transaction that does not hold the writer
    /// yet, from a block of values reserved durably beforehand (its own small transaction,
    /// once per block, see [`MIN_COUNTER_BLOCK`]), so that the transaction does not take the
    /// single writer for it — taking it there would hold the writer through the validation
    /// and the serialisation that follow. Values are unique and increase within a process; a
    /// block unused when the process stops leaves a gap, as PostgreSQL's sequences for the
    /// same counters do. A transaction that already holds the writer counts in its own
    /// transaction, past every reserved block.
    pub(crate) async fn counter_from_block(&self, name: &str) -> Result<i64> {
        let mut blocks = self.inner.counter_blocks.lock().await;
        if let Some(b) = blocks.get_mut(name)
            && b.next <= b.last
        {
            b.next += 1;
            return Ok(b.next - 1);
        }
        let size = next_block_size(blocks.get(name));
        let mut tx = self.begin(&WriteKey(())).await?;
        let row = sqlx::query(
            "INSERT INTO counters (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + ?2 RETURNING value",
        )
        .bind(name)
        .bind(size)
        .fetch_one(tx.single_statement().await?)
        .await?;
        let last: i64 = row.try_get(0)?;
        tx.commit().await?;
        let first = last - size + 1;
        blocks.insert(
            name.to_owned(),
            CounterBlock {
                next: first + 1,
                last,
                size,
                at: std::time::Instant::now(),
            },
        );
        Ok(first)
    }
}

/// Joins SQLite's writer (see [`crate::group::Group::join`]) in a task of its own: a request
/// cancelled while the group's transaction or a savepoint was being opened would otherwise
/// leave the writer's connection inside a transaction nobody holds ("begin at non-zero
/// transaction depth" for every write after it). Cancelled, the member it makes is dropped
/// and its empty savepoint rolled back by the next.
async fn join(store: &Store, savepoint: bool) -> Result<crate::group::Member> {
    let store = store.clone();
    tokio::spawn(async move { store.group().join(savepoint).await })
        .await
        .map_err(|e| crate::group::failed(e.to_string()))?
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        self.store.dialect()
    }

    /// Declares that this transaction is a request's one write (a REST create, a batch
    /// entry), whose failure is the request's. Its write is then sent as late as possible:
    /// on PostgreSQL a create that is the transaction's only statement goes as one
    /// autocommitted statement — the row, its history, its identifier claims, its index rows
    /// and the request's audit record — instead of five round trips (BEGIN, the row, the
    /// index rows, the audit record, COMMIT); on SQLite the version goes at commit with the
    /// audit record, as a lone write sent to the writer together with the others queued
    /// (`write_sqlite::LoneWrites`). Anything else the
    /// transaction does first sends the write as it would have been sent, so what it sees and
    /// what commits are the same; only an error of the write may surface at that later
    /// statement (so a transaction of several writes, a Bundle's, must not declare this: its
    /// errors name their entry).
    pub fn one_write(&mut self) {
        self.one_write = true;
    }

    /// Declares that this transaction's writes may wait for its next statement (SQLite; a
    /// no-op on PostgreSQL, which batches a transaction's index rows already): a transaction
    /// Bundle then validates, extracts and serialises all its entries before it takes the
    /// single writer, and sends their scripts together in a few hops, instead of holding the
    /// writer through every entry's preparation. A write's own failure (a duplicate
    /// identifier) then surfaces at that later statement; [`Tx::failed_write`] names the
    /// write it belongs to.
    pub fn write_behind(&mut self) {
        self.write_behind = true;
    }

    /// After a failure: the write (`Type/id`) it belongs to, when the failed statements were
    /// several writes sent together (see [`Tx::write_behind`]).
    pub fn failed_write(&self) -> Option<&str> {
        self.failed_write.as_deref()
    }

    /// Sends the writes that are waiting ([`Tx::write_behind`]), so that their failure is
    /// known before commit.
    pub async fn flush_writes(&mut self) -> Result<()> {
        if !self.deferred_scripts.is_empty() {
            self.flush_scripts().await?;
        }
        Ok(())
    }

    /// Stamps the versions this transaction writes with their author (`role:subject`).
    pub fn set_author(&mut self, author: &str) {
        self.author = Some(author.to_owned());
    }

    /// Commits; returns once the writes are durable.
    ///
    /// On SQLite the commit, once begun, runs to its end in a task of its own even if the
    /// request is cancelled (its client hung up): a savepoint half released, or a group
    /// commit half done, would leave the writer unsure what is open, and the next write
    /// failing for it ("no such savepoint").
    pub async fn commit(mut self) -> Result<()> {
        if matches!(self.conn, Conn::Postgres(None))
            && self.pending_index.is_empty()
            && let Some(create) = self.deferred.take()
        {
            let audit = std::mem::take(&mut self.pending_audit);
            return self.create_alone(create, audit).await;
        }
        if self.deferred.is_some() {
            self.conn().await?;
        }
        self.flush_index().await?;
        match std::mem::replace(&mut self.conn, Conn::Ended) {
            Conn::Postgres(Some(tx)) => tx.commit().await?,
            Conn::Postgres(None) => {}
            Conn::Sqlite(None)
                if !self.deferred_scripts.is_empty() || !self.pending_audit.is_empty() =>
            {
                // Never took the writer: committed with the other lone writes.
                let rows = std::mem::take(&mut self.pending_audit);
                let scripts = std::mem::take(&mut self.deferred_scripts);
                self.store.commit_lone(scripts, rows).await?;
            }
            Conn::Sqlite(member) => {
                let rows = std::mem::take(&mut self.pending_audit);
                let scripts = std::mem::take(&mut self.deferred_scripts);
                let store = self.store.clone();
                tokio::spawn(crate::write_sqlite::commit_member(
                    store, member, rows, scripts,
                ))
                .await
                .map_err(|e| crate::group::failed(e.to_string()))??;
            }
            Conn::Ended => {}
        }
        Ok(())
    }

    /// Ends the transaction keeping nothing of it (as dropping it does, but now: SQLite's
    /// single writer is free when this returns; the rollback runs to its end even if the
    /// request is cancelled).
    pub async fn rollback(mut self) -> Result<()> {
        match std::mem::replace(&mut self.conn, Conn::Ended) {
            Conn::Postgres(Some(tx)) => tx.rollback().await?,
            Conn::Postgres(None) => {}
            Conn::Sqlite(Some(member)) => {
                let store = self.store.clone();
                tokio::spawn(async move { store.group().rollback(member).await })
                    .await
                    .map_err(|e| crate::group::failed(e.to_string()))??;
            }
            Conn::Sqlite(None) | Conn::Ended => {}
        }
        Ok(())
    }

    /// SQLite: the writer (joined if need be) and what must go in front of the next
    /// statement (the member's savepoint, if not opened yet), so that both take one hop.
    pub(crate) async fn sqlite_prefixed(&mut self) -> Result<(&mut AnyConnection, &'static str)> {
        if !self.deferred_scripts.is_empty() {
            Box::pin(self.flush_scripts()).await?;
        }
        self.writer_prefixed().await
    }

    /// [`Tx::sqlite_prefixed`] without sending the scripts that wait.
    pub(crate) async fn writer_prefixed(&mut self) -> Result<(&mut AnyConnection, &'static str)> {
        match &mut self.conn {
            Conn::Sqlite(member) => {
                if member.is_none() {
                    *member = Some(join(&self.store, true).await?);
                }
                let member = member.as_mut().expect("joined");
                let prefix = member.savepoint_prefix();
                Ok((member.conn(), prefix))
            }
            _ => Err(StoreError::PreconditionFailed(
                "not a SQLite transaction".into(),
            )),
        }
    }

    /// A transaction of exactly one statement (on SQLite it needs no savepoint: a failed
    /// statement undoes itself).
    pub(crate) async fn single_statement(&mut self) -> Result<&mut AnyConnection> {
        if let Conn::Sqlite(member @ None) = &mut self.conn {
            *member = Some(join(&self.store, false).await?);
        }
        self.conn().await
    }

    /// The transaction's connection; on SQLite the writer is joined here, at the first
    /// statement, so that the work before it (validation, extraction) holds nothing.
    pub(crate) async fn conn(&mut self) -> Result<&mut AnyConnection> {
        if let Some(create) = self.deferred.take() {
            Box::pin(self.create_now(create)).await?;
        }
        if !self.deferred_scripts.is_empty() {
            Box::pin(self.flush_scripts()).await?;
        }
        match &mut self.conn {
            Conn::Postgres(tx) => {
                if tx.is_none() {
                    *tx = Some(self.store.inner.writer.begin().await?);
                }
                Ok(&mut **tx.as_mut().expect("begun"))
            }
            Conn::Sqlite(member) => {
                if member.is_none() {
                    *member = Some(join(&self.store, true).await?);
                }
                let member = member.as_mut().expect("joined");
                member.open_savepoint().await?;
                Ok(member.conn())
            }
            Conn::Ended => Err(StoreError::PreconditionFailed(
                "the transaction has ended".into(),
            )),
        }
    }

    /// Reads the current version inside the transaction (sees its own writes).
    pub async fn read(&mut self, resource_type: &str, id: &str) -> Result<Version> {
        let d = self.dialect();
        read_current(d, self.conn().await?, resource_type, id).await
    }

    /// The current version, its row locked until the transaction ends (PostgreSQL): a
    /// following update of it reads nothing more.
    pub async fn read_for_update(&mut self, resource_type: &str, id: &str) -> Result<Version> {
        if self.dialect() != Dialect::Postgres {
            return self.read(resource_type, id).await;
        }
        let (_, version_id, deleted, body) = self
            .current_with_body(resource_type, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{resource_type}/{id}")))?;
        if deleted {
            return Err(StoreError::Gone(format!("{resource_type}/{id}")));
        }
        // The row's last_updated is not needed by callers of a locked read.
        Ok(Version {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version_id,
            last_updated: 0,
            deleted: false,
            body,
            method: Method::Put,
        })
    }

    /// Whether `resource_type/id` exists and is not deleted.
    pub async fn exists(&mut self, resource_type: &str, id: &str) -> Result<bool> {
        match self.read(resource_type, id).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_) | StoreError::Gone(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Which of `targets` (type, id) are not stored (or deleted): one query for them all.
    pub async fn missing(&mut self, targets: &[(&str, &str)]) -> Result<Vec<(String, String)>> {
        let d = self.dialect();
        let mut found: Vec<(String, String)> = Vec::new();
        let unknown: Vec<(&str, &str)> = targets
            .iter()
            .filter(|(t, id)| !self.known.contains(&((*t).to_owned(), (*id).to_owned())))
            .copied()
            .collect();
        // In chunks far below both backends' bind-parameter limits.
        for chunk in unknown.chunks(500) {
            let tuples: Vec<String> = (0..chunk.len())
                .map(|i| format!("({}, {})", d.ph(2 * i + 1), d.ph(2 * i + 2)))
                .collect();
            let sql = format!(
                "SELECT resource_type, resource_id FROM resources WHERE deleted = 0 AND (resource_type, resource_id) IN ({})",
                tuples.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (t, id) in chunk {
                q = q.bind(*t).bind(*id);
            }
            for r in q.fetch_all(self.conn().await?).await? {
                found.push((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?));
            }
        }
        self.known.extend(found);
        Ok(unknown
            .iter()
            .filter(|(t, id)| !self.known.contains(&((*t).to_owned(), (*id).to_owned())))
            .map(|(t, id)| ((*t).to_owned(), (*id).to_owned()))
            .collect())
    }

    /// Searches inside the transaction (seeing its own writes).
    pub async fn search(&mut self, query: &SearchQuery) -> Result<SearchResult> {
        self.flush_index().await?;
        let d = self.dialect();
        search::run(d, self.conn().await?, query).await
    }

    /// Serialises writers that race on the same condition (conditional create, uniqueness
    /// checks). PostgreSQL: a transaction-scoped advisory lock; SQLite writes are already
    /// serialised by its single writer connection.
    pub async fn lock(&mut self, key: &str) -> Result<()> {
        if self.dialect() == Dialect::Postgres {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(key.as_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&digest[..8]);
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(i64::from_be_bytes(b))
                .execute(self.conn().await?)
                .await?;
        }
        Ok(())
    }

    /// [`Tx::lock`] on `key`, then the next value of the counter `name`: one round trip on
    /// PostgreSQL where the counter is a sequence.
    pub async fn lock_and_count(&mut self, key: &str, name: &str) -> Result<i64> {
        if self.dialect() == Dialect::Postgres {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(key.as_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&digest[..8]);
            let row = sqlx::query(
                "SELECT CASE WHEN to_regclass($2) IS NOT NULL THEN nextval(CAST(to_regclass($2) AS regclass)) END \
                 FROM (SELECT pg_advisory_xact_lock($1)) AS locked",
            )
            .bind(i64::from_be_bytes(b))
            .bind(sequence_of(name))
            .fetch_one(self.conn().await?)
            .await?;
            if let Some(n) = row.try_get::<Option<i64>, _>(0)? {
                return Ok(n);
            }
        } else {
            self.lock(key).await?;
        }
        self.next_counter(name).await
    }

    /// Next value of a named counter (1, 2, 3, ...), e.g. for facility patient codes.
    pub async fn next_counter(&mut self, name: &str) -> Result<i64> {
        let d = self.dialect();
        if d == Dialect::Postgres {
            // A sequence, where the migrations declare one (no lock held until commit).
            let seq = sequence_of(name);
            let q = sqlx::query("SELECT nextval(CAST(to_regclass($1) AS regclass)) WHERE to_regclass($1) IS NOT NULL")
                .bind(&seq);
            // A sequence does not roll back: taken outside a transaction not yet begun, the
            // number is the same, and the transaction can still be one statement.
            let row = if matches!(self.conn, Conn::Postgres(None)) && self.deferred.is_none() {
                q.fetch_optional(&self.store.inner.writer).await?
            } else {
                q.fetch_optional(self.conn().await?).await?
            };
            if let Some(row) = row {
                return Ok(row.try_get(0)?);
            }
        }
        const COUNT: &str = "INSERT INTO counters (name, value) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value";
        if matches!(self.conn, Conn::Sqlite(None)) {
            return self.store.counter_from_block(name).await;
        }
        let row = if d == Dialect::Sqlite {
            // With the member's savepoint in front, if it is not open yet: one hop.
            // (`fetch_one` would stop at the savepoint's end, before the counter's row.)
            let (conn, prefix) = self.sqlite_prefixed().await?;
            sqlx::query(&format!("{prefix}{}", d.sql(COUNT)))
                .bind(name)
                .fetch_all(conn)
                .await?
                .pop()
                .ok_or_else(|| StoreError::PreconditionFailed("the counter gave no value".into()))?
        } else {
            sqlx::query(COUNT)
                .bind(name)
                .fetch_one(self.conn().await?)
                .await?
        };
        Ok(row.try_get(0)?)
    }

    /// Creates a resource at an id chosen by the platform (server-assigned, or a Bundle's
    /// `urn:uuid` resolved).
    pub async fn create_with_id(
        &mut self,
        _key: &WriteKey,
        resource_type: &str,
        id: &str,
        body: Value,
    ) -> Result<WriteOutcome> {
        self.write(resource_type, id, body, None, Method::Post)
            .await
    }

    /// Updates `resource_type/id`, creating it when it does not exist (update-as-create).
    /// `if_match` is the version the client last saw.
    pub async fn update(
        &mut self,
        _key: &WriteKey,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome> {
        self.write(resource_type, id, body, if_match, Method::Put)
            .await
    }

    /// Deletes (tombstones) `resource_type/id`. Returns the deletion version, or `None` when
    /// there was nothing to delete.
    pub async fn delete(
        &mut self,
        _key: &WriteKey,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Version>> {
        let d = self.dialect();
        self.known.clear();
        let Some((rid, version, deleted)) = self.current_for_update(resource_type, id).await?
        else {
            return Ok(None);
        };
        self.locked
            .remove(&(resource_type.to_owned(), id.to_owned()));
        if deleted {
            return Ok(None);
        }
        let version_id = version + 1;
        let now = dates::now_micros();
        sqlx::query(&d.sql(
            "UPDATE resources SET version_id = $1, last_updated = $2, deleted = 1, body = '' WHERE rid = $3",
        ))
        .bind(version_id)
        .bind(now)
        .bind(rid)
        .execute(self.conn().await?)
        .await?;
        sqlx::query(&d.sql(
            "INSERT INTO resource_history (rid, resource_type, version_id, last_updated, method, deleted, body) \
             VALUES ($1, $2, $3, $4, 'DELETE', 1, '')",
        ))
        .bind(rid)
        .bind(resource_type)
        .bind(version_id)
        .bind(now)
        .execute(self.conn().await?)
        .await?;
        self.clear_index(rid).await?;
        // A deleted resource holds no time.
        sqlx::query(
            &d.sql("DELETE FROM time_claims WHERE resource_type = $1 AND resource_id = $2"),
        )
        .bind(resource_type)
        .bind(id)
        .execute(self.conn().await?)
        .await?;
        Ok(Some(Version {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version_id,
            last_updated: now,
            deleted: true,
            body: String::new(),
            method: Method::Delete,
        }))
    }

    /// Replaces the time claims of `resource_type/id` with `claims` (`(holder, lo, hi)`: the
    /// holder is taken over `[lo, hi)`, microseconds). A holder already taken over an
    /// overlapping window by another resource is refused with [`StoreError::TimeTaken`], and
    /// nothing of this call is kept. PostgreSQL enforces it with an exclusion constraint (a
    /// concurrent claim waits for the first transaction, then finds the conflict); SQLite's
    /// single writer serialises the look and the insert.
    pub async fn claim_times(
        &mut self,
        resource_type: &str,
        id: &str,
        claims: &[(String, i64, i64)],
    ) -> Result<()> {
        let d = self.dialect();
        sqlx::query(
            &d.sql("DELETE FROM time_claims WHERE resource_type = $1 AND resource_id = $2"),
        )
        .bind(resource_type)
        .bind(id)
        .execute(self.conn().await?)
        .await?;
        if claims.iter().any(|(_, lo, hi)| hi <= lo) {
            return Err(StoreError::Invalid {
                path: "end".into(),
                message: "the end is not after the start".into(),
            });
        }
        // PostgreSQL: every claim in one statement; the ones the constraint refused are
        // looked at below.
        let mut inserted = std::collections::HashSet::new();
        if d == Dialect::Postgres && !claims.is_empty() {
            let values: Vec<String> = (0..claims.len())
                .map(|i| format!("($1, $2, ${}, ${}, ${})", 3 + i * 3, 4 + i * 3, 5 + i * 3))
                .collect();
            let sql = format!(
                "INSERT INTO time_claims (resource_type, resource_id, holder, lo, hi) \
                 VALUES {} ON CONFLICT DO NOTHING RETURNING holder",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(resource_type).bind(id);
            for (holder, lo, hi) in claims {
                q = q.bind(holder).bind(lo).bind(hi);
            }
            for row in q.fetch_all(self.conn().await?).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        for (holder, lo, hi) in claims {
            if inserted.contains(holder) {
                continue;
            }
            let taken = sqlx::query(&d.sql(
                "SELECT resource_type, resource_id FROM time_claims \
                 WHERE holder = $1 AND lo < $3 AND hi > $2 \
                 AND NOT (resource_type = $4 AND resource_id = $5) LIMIT 1",
            ))
            .bind(holder)
            .bind(lo)
            .bind(hi)
            .bind(resource_type)
            .bind(id)
            .fetch_optional(self.conn().await?)
            .await?;
            if let Some(row) = taken {
                let (t, other): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                return Err(StoreError::TimeTaken {
                    holder: holder.clone(),
                    by: format!("{t}/{other}"),
                });
            }
            if d == Dialect::Postgres {
                // Refused by the constraint, yet no overlapping claim is visible: one committed
                // and was released between the two statements. Give way; a retry decides.
                return Err(StoreError::TimeTaken {
                    holder: holder.clone(),
                    by: "a concurrent write".into(),
                });
            }
            sqlx::query(
                "INSERT INTO time_claims (resource_type, resource_id, holder, lo, hi) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(resource_type)
            .bind(id)
            .bind(holder)
            .bind(lo)
            .bind(hi)
            .execute(self.conn().await?)
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn current_for_update(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(i64, i64, bool)>> {
        Ok(self
            .current_with_body(resource_type, id)
            .await?
            .map(|(rid, v, deleted, _)| (rid, v, deleted)))
    }

    /// The row of `resource_type/id`, locked for the rest of the transaction (PostgreSQL;
    /// SQLite's writer is alone anyway), with the body it has now (empty when deleted).
    pub(crate) async fn current_with_body(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(i64, i64, bool, String)>> {
        let d = self.dialect();
        let key = (resource_type.to_owned(), id.to_owned());
        if let Some(row) = self.locked.get(&key) {
            return Ok(Some(row.clone()));
        }
        let (lock, body) = if d == Dialect::Postgres {
            (" FOR UPDATE", "body")
        } else {
            ("", "''")
        };
        let row = sqlx::query(&d.sql(&format!(
            "SELECT rid, version_id, deleted, {body} FROM resources WHERE resource_type = $1 AND resource_id = $2{lock}"
        )))
        .bind(resource_type)
        .bind(id)
        .fetch_optional(self.conn().await?)
        .await?;
        let row: Option<(i64, i64, bool, String)> = row
            .map(|r| -> Result<_> {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get::<i64, _>(2)? != 0,
                    r.try_get::<String, _>(3)?,
                ))
            })
            .transpose()?;
        if let (Dialect::Postgres, Some(r)) = (d, &row) {
            self.locked.insert(key, r.clone());
        }
        Ok(row)
    }

    async fn write(
        &mut self,
        resource_type: &str,
        id: &str,
        mut body: Value,
        if_match: Option<i64>,
        method: Method,
    ) -> Result<WriteOutcome> {
        if !is_valid_id(id) {
            return Err(StoreError::invalid(
                format!("{resource_type}.id"),
                "an id is 1 to 64 letters, digits, '-' or '.'",
            ));
        }
        match body.get("resourceType").and_then(Value::as_str) {
            Some(t) if t == resource_type => {}
            Some(t) => {
                return Err(StoreError::invalid(
                    "resourceType",
                    format!("the body is a {t}, the request addresses {resource_type}"),
                ));
            }
            None => {
                return Err(StoreError::invalid(
                    "resourceType",
                    "resourceType is missing",
                ));
            }
        }
        hospital_fhir_model::validate(resource_type, &body).map_err(|e| StoreError::Invalid {
            path: e.path,
            message: e.message,
        })?;
        let d = self.dialect();
        let now = dates::now_micros();
        // A POST writes a new id: nothing to look up (a clash fails on the unique key).
        let existing = if method == Method::Post {
            None
        } else {
            self.current_with_body(resource_type, id).await?
        };
        let mut previous = String::new();
        let (rid, version_id, created) = match existing {
            Some((rid, current, deleted, before)) => {
                if !deleted {
                    previous = before;
                }
                if method == Method::Post {
                    return Err(StoreError::PreconditionFailed(format!(
                        "{resource_type}/{id} already exists"
                    )));
                }
                if let Some(expected) = if_match
                    && expected != current
                {
                    return Err(StoreError::VersionConflict { expected, current });
                }
                (Target::Existing(rid), current + 1, deleted)
            }
            None => {
                if let Some(expected) = if_match {
                    return Err(StoreError::VersionConflict {
                        expected,
                        current: 0,
                    });
                }
                (Target::New, 1, true)
            }
        };
        set_meta(&mut body, id, version_id, now, self.author.as_deref());
        let text = serde_json::to_string(&body)
            .map_err(|e| StoreError::invalid(resource_type, e.to_string()))?;
        let version = Version {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version_id,
            last_updated: now,
            deleted: false,
            body: text,
            method,
        };
        match d {
            Dialect::Sqlite => self.write_sqlite_script(rid, &version, &body).await?,
            Dialect::Postgres => {
                self.write_postgres(rid, &version, &body, &previous).await?;
                // The row is locked by this transaction now: as written.
                if let Target::Existing(r) = rid {
                    self.locked.insert(
                        (resource_type.to_owned(), id.to_owned()),
                        (r, version_id, false, version.body.clone()),
                    );
                }
            }
        }
        // It exists now, as this transaction sees it: a reference to it needs no look-up.
        self.known.insert((resource_type.to_owned(), id.to_owned()));
        Ok(WriteOutcome { version, created })
    }

    /// The identifiers of `body` that must be unique (declared systems, not ended).
    pub(crate) fn unique_claims(
        &self,
        resource_type: &str,
        body: &Value,
        now: i64,
    ) -> Vec<(String, String)> {
        let systems: Vec<&'static str> = self
            .store
            .inner
            .unique_identifiers
            .iter()
            .filter(|(t, _)| *t == resource_type)
            .map(|(_, s)| *s)
            .collect();
        let mut out = Vec::new();
        if systems.is_empty() {
            return out;
        }
        for ident in body
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(system), Some(value)) = (
                ident.get("system").and_then(Value::as_str),
                ident.get("value").and_then(Value::as_str),
            ) else {
                continue;
            };
            let ended = ident
                .pointer("/period/end")
                .and_then(Value::as_str)
                .and_then(dates::parse_range)
                .is_some_and(|r| r.hi < now);
            if systems.contains(&system)
                && !ended
                && !out.iter().any(|(s, v)| s == system && v == value)
            {
                out.push((system.to_owned(), value.to_owned()));
            }
        }
        out
    }
}

/// Extension URL of the author stamp in `meta`: every entry shows who wrote it.
pub const RECORDED_BY: &str = "urn:hospital:recorded-by";

pub(crate) fn set_meta(
    body: &mut Value,
    id: &str,
    version_id: i64,
    now: i64,
    author: Option<&str>,
) {
    if let Value::Object(map) = body {
        map.insert("id".into(), Value::String(id.to_owned()));
        let meta = map
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            *meta = Value::Object(Default::default());
        }
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), Value::String(version_id.to_string()));
            meta.insert(
                "lastUpdated".into(),
                Value::String(dates::format_instant(now)),
            );
            if let Some(author) = author {
                let mut exts: Vec<Value> = meta
                    .get("extension")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                exts.retain(|e| e.get("url").and_then(Value::as_str) != Some(RECORDED_BY));
                exts.push(serde_json::json!({"url": RECORDED_BY, "valueString": author}));
                meta.insert("extension".into(), Value::Array(exts));
            }
        }
    }
}

/// The PostgreSQL sequence a migration declares for the counter `name`, if any.
fn sequence_of(name: &str) -> String {
    format!(
        "counter_{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn block(size: i64, age: Duration) -> CounterBlock {
        CounterBlock {
            next: 1,
            last: 0,
            size,
            at: Instant::now().checked_sub(age).expect("a clock that old"),
        }
    }

    #[test]
    fn counter_blocks_grow_while_used_fast_and_shrink_when_slow() {
        assert_eq!(next_block_size(None), MIN_COUNTER_BLOCK);
        let fast = Duration::from_millis(50);
        assert_eq!(next_block_size(Some(&block(64, fast))), 128);
        assert_eq!(next_block_size(Some(&block(4096, fast))), MAX_COUNTER_BLOCK);
        let steady = Duration::from_secs(10);
        assert_eq!(next_block_size(Some(&block(512, steady))), 512);
        let slow = Duration::from_secs(120);
        assert_eq!(next_block_size(Some(&block(512, slow))), 256);
        assert_eq!(next_block_size(Some(&block(64, slow))), MIN_COUNTER_BLOCK);
    }
}
