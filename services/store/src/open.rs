//! Opening the store: the backend from the URL scheme, pools, migrations.

use crate::{Dialect, Inner, Result, Store, StoreError, StoreOptions, Tx, WriteKey};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Store {
    /// Opens (creating and migrating if needed) the store at `url`: `sqlite://path` or
    /// `postgres://...`. Any other scheme is an error.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let scheme = url.split(':').next().unwrap_or_default();
        let (dialect, reader, writer) = match scheme {
            "sqlite" => {
                let path = url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//")
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if path != ":memory:"
                    && let Some(dir) = std::path::Path::new(&path).parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Database(sqlx::Error::Configuration(
                            format!("cannot create the data directory: {e}").into(),
                        ))
                    })?;
                }
                let url = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                let writer = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|c, _| sqlite_pragmas(c))
                    .connect(&url)
                    .await?;
                SQLITE_MIGRATIONS.run(&writer).await?;
                // Readers beyond a few per core only add page caches (memory), not throughput.
                let reader = AnyPoolOptions::new()
                    .max_connections(options.max_connections.min(4))
                    .after_connect(|c, _| sqlite_pragmas(c))
                    .connect(&url)
                    .await?;
                (Dialect::Sqlite, reader, writer)
            }
            "postgres" | "postgresql" => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                (Dialect::Postgres, pool.clone(), pool)
            }
            other => return Err(StoreError::UnknownScheme(other.to_owned())),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                dialect,
                reader,
                writer,
                unique_identifiers: options.unique_identifiers,
            }),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The read pool, for plain SQL that belongs to the store's users (reports, benchmarks).
    pub fn pool(&self) -> &AnyPool {
        &self.inner.reader
    }

    /// Starts a write transaction. Everything done through it commits or rolls back together.
    pub async fn begin(&self, _key: &WriteKey) -> Result<Tx> {
        let tx = self.inner.writer.begin().await?;
        Ok(Tx {
            tx,
            store: self.clone(),
            author: None,
            pending_index: Vec::new(),
        })
    }

    /// Closes the pools (graceful shutdown).
    pub async fn close(&self) {
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
            "PRAGMA synchronous = NORMAL",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA foreign_keys = ON",
            "PRAGMA cache_size = -4000",
        ] {
            sqlx::query(p).execute(&mut *conn).await?;
        }
        Ok(())
    })
}
