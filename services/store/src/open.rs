//! Opening the store: the backend from the URL scheme, pools, migrations.

use crate::{Dialect, Inner, Result, Store, StoreError, StoreOptions, Tx, WriteKey};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Row};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

// A database migrated by a newer release still opens (`ignore_missing`): migrations only add,
// so rolling a release back is rolling the Deployments back (docs/operations.md).
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate::Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../../migrations/sqlite")
};
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate::Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../../migrations/postgres")
};

/// A pooled PostgreSQL connection idle this long is tested (pinged) before it is used again:
/// the server or the network may have dropped it meanwhile. sqlx tests every connection at
/// every acquire by default, a round trip per request — measured under 32 connections, reads
/// by id 6,980–7,590/s with it and 7,680–8,850/s without (creates moved within the noise).
/// A connection in steady use is not tested (HikariCP's practice, with its window).
const TEST_WHEN_IDLE: Duration = Duration::from_millis(500);

/// After a connection failed (a restarted server, a cut network: every pooled connection is
/// dead at once), every connection is tested before use for this long, so that one request
/// finds the failure and the others find replacements.
const TEST_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// When a connection last failed, in milliseconds since [`clock`]'s start (0: never).
static LAST_CONNECTION_FAILURE: AtomicU64 = AtomicU64::new(0);

fn clock() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Whether `e` says the connection to the database was lost: I/O, TLS, PostgreSQL's
/// connection exceptions (`08…`) and shutdowns (`57P0x`).
pub(crate) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

/// Notes `e` if the connection was lost, for [`needs_test`].
pub(crate) fn note_failure(e: &sqlx::Error) {
    if connection_lost(e) {
        LAST_CONNECTION_FAILURE.store(clock().as_millis() as u64 + 1, Ordering::Relaxed);
    }
}

/// Whether a pooled connection idle for `idle` must be tested before it is used.
fn needs_test(idle: Duration) -> bool {
    let failed = LAST_CONNECTION_FAILURE.load(Ordering::Relaxed);
    idle >= TEST_WHEN_IDLE
        || (failed != 0
            && clock().as_millis() as u64 <= failed + TEST_AFTER_FAILURE.as_millis() as u64)
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `url`: `sqlite://path` or
    /// `postgres://...`. Any other scheme is an error.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let scheme = url.split(':').next().unwrap_or_default();
        let listen_url = matches!(scheme, "postgres" | "postgresql").then(|| url.to_owned());
        let (dialect, reader, writer) = match scheme {
            "sqlite" => {
                let path = url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//")
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if path != ":memory:" {
                    private_database_file(std::path::Path::new(&path)).map_err(|e| {
                        StoreError::Database(sqlx::Error::Configuration(
                            format!("cannot create the database file: {e}").into(),
                        ))
                    })?;
                }
                let url = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                // A connection to a SQLite file has no far end that could hang up: sqlx's
                // test before every acquire (a ping) would only cost a hop to its thread.
                let writer = AnyPoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|c, _| {
                        Box::pin(async move {
                            sqlite_pragmas(c).await?;
                            writer_pragmas(c).await
                        })
                    })
                    .connect(&url)
                    .await?;
                SQLITE_MIGRATIONS.run(&writer).await?;
                // Readers beyond a few per core only add page caches (memory), not throughput.
                let reader = AnyPoolOptions::new()
                    .max_connections(options.max_connections.min(4))
                    .test_before_acquire(false)
                    .after_connect(|c, _| sqlite_pragmas(c))
                    .connect(&url)
                    .await?;
                (Dialect::Sqlite, reader, writer)
            }
            "postgres" | "postgresql" => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if needs_test(meta.idle_for) {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                (Dialect::Postgres, pool.clone(), pool)
            }
            other => return Err(StoreError::UnknownScheme(other.to_owned())),
        };
        let store = Store {
            inner: Arc::new(Inner {
                dialect,
                reader,
                unique_identifiers: options.unique_identifiers,
                bus: crate::signals::Bus::new(listen_url),
                analysed_rows: std::sync::atomic::AtomicI64::new(0),
                counter_blocks: Default::default(),
                lone_writes: Default::default(),
                group: (dialect == Dialect::Sqlite)
                    .then(|| Arc::new(crate::group::Group::new(writer.clone()))),
                writer,
            }),
        };
        store.rebuild_stale_indexes().await?;
        if dialect == Dialect::Sqlite {
            store.spawn_checkpointer();
        }
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// SQLite's group commit (only SQLite has one).
    pub(crate) fn group(&self) -> &Arc<crate::group::Group> {
        self.inner
            .group
            .as_ref()
            .expect("SQLite has a group commit")
    }

    /// The read pool, for plain SQL that belongs to the store's users (reports, benchmarks).
    pub fn pool(&self) -> &AnyPool {
        &self.inner.reader
    }

    /// SQLite: writes a consistent copy of the whole database to `path` (which must not
    /// exist) while writes continue: one read transaction's snapshot (`VACUUM INTO`).
    pub async fn copy_to(&self, path: &str) -> Result<()> {
        if self.inner.dialect != Dialect::Sqlite {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                "an online copy is for the embedded store; PostgreSQL is dumped with pg_dump"
                    .into(),
            )));
        }
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(&self.inner.reader)
            .await?;
        Ok(())
    }

    /// PostgreSQL: the schema the store's tables are in (`public`, or the URL's
    /// `search_path`).
    pub async fn schema(&self) -> Result<String> {
        let row = sqlx::query("SELECT current_schema()::text")
            .fetch_one(&self.inner.reader)
            .await?;
        Ok(row.try_get::<String, _>(0)?)
    }

    /// The connections of the store's pools: (open, idle, the most it opens). On PostgreSQL
    /// the reader and the writer are one pool, counted once.
    pub fn pool_connections(&self) -> (u32, u32, u32) {
        let mut pools = vec![&self.inner.reader];
        if self.inner.group.is_some() {
            pools.push(&self.inner.writer);
        }
        pools.iter().fold((0, 0, 0), |(open, idle, max), p| {
            (
                open + p.size(),
                idle + p.num_idle() as u32,
                max + p.options().get_max_connections(),
            )
        })
    }

    /// Starts a write transaction. Everything done through it commits or rolls back together.
    pub async fn begin(&self, _key: &WriteKey) -> Result<Tx> {
        let conn = match &self.inner.group {
            Some(_) => crate::tx::Conn::Sqlite(None),
            None => crate::tx::Conn::Postgres(None),
        };
        Ok(Tx {
            conn,
            store: self.clone(),
            author: None,
            pending_index: Vec::new(),
            known: std::collections::HashSet::new(),
            pending_audit: Vec::new(),
            locked: std::collections::HashMap::new(),
            one_write: false,
            deferred: None,
            deferred_scripts: Vec::new(),
            write_behind: false,
            failed_write: None,
        })
    }

    /// Closes the pools (graceful shutdown).
    pub async fn close(&self) {
        if let Ok(mut t) = self.inner.bus.task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
        self.inner.reader.close().await;
        self.inner.writer.close().await;
    }
}

fn sqlite_pragmas(
    conn: &mut AnyConnection,
) -> futures::future::BoxFuture<'_, std::result::Result<(), sqlx::Error>> {
    Box::pin(async move {
        for p in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA foreign_keys = ON",
            "PRAGMA cache_size = -4000",
            // The log is copied into the database by a checkpointer of its own
            // (`spawn_checkpointer`), not by whichever write commits when it grows past 1,000
            // pages: measured, that write then held every queued write and read audit for the
            // checkpoint's copy and sync.
            "PRAGMA wal_autocheckpoint = 0",
            "PRAGMA journal_size_limit = 67108864",
        ] {
            sqlx::query(p).execute(&mut *conn).await?;
        }
        Ok(())
    })
}

/// The single writer's own settings, measured on bundle ingest (2,110 → 5,323 resources/s
/// with both; BENCHMARKS.md): its page cache holds what a group of transactions touches
/// until their commit (at 4 MiB it spilled pages into the log mid-transaction and read them
/// back), and the journals of savepoints — every page a member changes, copied first so that
/// it alone can be undone — are kept in memory rather than in a temporary file.
async fn writer_pragmas(conn: &mut AnyConnection) -> std::result::Result<(), sqlx::Error> {
    for p in ["PRAGMA cache_size = -16384", "PRAGMA temp_store = MEMORY"] {
        sqlx::query(p).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Creates the database file (and its directory) private to this user before SQLite opens
/// it: the directory 0700, the file 0600 (SQLite gives its -wal and -shm files the same
/// permissions). An existing file is left as it is.
fn private_database_file(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)?;
    }
    if !path.exists() {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Store {
    /// Refreshes the planner's statistics of the resources and the search index, after a bulk
    /// of writes (a seeded data set, a month of slots): a planner that still believes a table
    /// empty joins a selective index with a 100,000-row one row by row (measured: 21 s for a
    /// practitioner's free slots of a day, 5.6 ms once analysed). PostgreSQL's autovacuum does
    /// this eventually, if it is on; this does not wait for it.
    pub async fn refresh_statistics(&self) -> Result<()> {
        let tables: Vec<&str> = std::iter::once("resources")
            .chain(crate::index::IndexTable::ALL.iter().map(|t| t.name()))
            .collect();
        match self.dialect() {
            Dialect::Postgres => {
                sqlx::query(&format!("ANALYZE {}", tables.join(", ")))
                    .execute(&self.inner.writer)
                    .await?;
            }
            Dialect::Sqlite => {
                // A sampled analysis (each index read at most this many rows): milliseconds,
                // where a full one of a large file holds the single writer for seconds.
                sqlx::query("PRAGMA analysis_limit = 1000; ANALYZE")
                    .execute(&self.inner.writer)
                    .await?;
                let rows: i64 = sqlx::query("SELECT COALESCE(MAX(rid), 0) FROM resources")
                    .fetch_one(&self.inner.writer)
                    .await?
                    .try_get(0)?;
                self.inner
                    .analysed_rows
                    .store(rows, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Refreshes the planner's statistics when the tables changed much since they were last
    /// analysed (PostgreSQL: a tenth of a table's rows and a thousand more modified, the
    /// threshold autovacuum's analysis uses by default; SQLite: the resources grew by as much).
    /// A planner working from statistics of an empty store turned a reverse chain over 100,000
    /// patients into a nested loop that ran past the 30 s limit; analysed, it takes 150 ms.
    /// Autovacuum does this where it is on; this does not rely on it. Returns whether it ran.
    pub async fn refresh_stale_statistics(&self) -> Result<bool> {
        match self.dialect() {
            Dialect::Postgres => {
                let ours: Vec<&str> = std::iter::once("resources")
                    .chain(crate::index::IndexTable::ALL.iter().map(|t| t.name()))
                    .collect();
                let stale: Vec<String> = sqlx::query(
                    "SELECT relname::text FROM pg_stat_user_tables WHERE schemaname = current_schema() \
                     AND n_mod_since_analyze > 1000 + n_live_tup / 10",
                )
                .fetch_all(&self.inner.reader)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<std::result::Result<_, _>>()?;
                let stale: Vec<&str> = ours
                    .into_iter()
                    .filter(|t| stale.iter().any(|s| s == t))
                    .collect();
                if stale.is_empty() {
                    return Ok(false);
                }
                sqlx::query(&format!("ANALYZE {}", stale.join(", ")))
                    .execute(&self.inner.writer)
                    .await?;
                Ok(true)
            }
            Dialect::Sqlite => {
                let rows: i64 = sqlx::query("SELECT COALESCE(MAX(rid), 0) FROM resources")
                    .fetch_one(&self.inner.reader)
                    .await?
                    .try_get(0)?;
                let last = self
                    .inner
                    .analysed_rows
                    .load(std::sync::atomic::Ordering::Relaxed);
                if rows < last + last / 10 + 1000 {
                    return Ok(false);
                }
                self.refresh_statistics().await?;
                Ok(true)
            }
        }
    }

    /// SQLite: copies the write-ahead log into the database in the background, from a reader
    /// connection, so that no write waits for it (a passive checkpoint runs beside the writer).
    /// If the log still grows past 64 MiB (readers holding old snapshots), a write waits once
    /// for a full checkpoint rather than letting it grow without bound.
    fn spawn_checkpointer(&self) {
        // Held weakly: a store dropped without `close` ends its checkpointer too.
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(inner) = weak.upgrade() else { break };
                let store = Store { inner };
                if store.inner.reader.is_closed() {
                    break;
                }
                let passive = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&store.inner.reader)
                    .await;
                match passive {
                    // (busy, frames in the log, frames copied)
                    Ok(row) => {
                        let log: i64 = row.try_get(1).unwrap_or(0);
                        if log > 16_384 {
                            let _ = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                                .execute(&store.inner.writer)
                                .await;
                        }
                    }
                    Err(e) if store.inner.reader.is_closed() => {
                        let _ = e;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpointing the log failed; will retry")
                    }
                }
            }
        });
    }

    /// Keeps the planner's statistics current in the background ([`Store::refresh_stale_statistics`]).
    pub fn spawn_statistics_keeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if store.inner.writer.is_closed() {
                    break;
                }
                match store.refresh_stale_statistics().await {
                    Ok(true) => tracing::info!("planner statistics refreshed"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing statistics failed; will retry")
                    }
                }
            }
        })
    }
}
