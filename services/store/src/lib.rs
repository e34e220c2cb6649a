//! The shared FHIR record store: every resource, whichever service owns it, as versioned FHIR
//! JSON with a search index, in one SQLite or PostgreSQL database.
//!
//! - Reads serve the stored JSON text as it is; nothing is parsed on the read path.
//! - A write validates once (fhir-sdk models), extracts index rows once, and commits once.
//! - Nothing is overwritten or erased: every create, update and delete appends a version to
//!   `resource_history`, which both backends refuse to update or delete.
//! - SQL that differs by backend is written through [`Dialect`] (placeholders, list binding);
//!   the rest of the differences are the two write paths (`write_sqlite_script`,
//!   `write_postgres`), the index clean-up, and the locks that serialise conditional writes
//!   and audit sealing (advisory locks on PostgreSQL, the single writer on SQLite).

pub mod audit;
pub mod dates;
pub mod extract;
pub mod params;
pub mod search;
pub mod sessions;
pub mod signing;
pub mod text;

use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};
use std::sync::Arc;
use std::time::Duration;

pub use search::{SearchQuery, SearchResult};

/// Errors of the record store. Messages never contain personal data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} is not known")]
    NotFound(String),
    #[error("{0} has been deleted")]
    Gone(String),
    #[error(
        "version conflict: the request expected version {expected}, the current version is {current}"
    )]
    VersionConflict { expected: i64, current: i64 },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{system} identifier is already used by {existing}")]
    DuplicateIdentifier { system: String, existing: String },
    #[error("{0}")]
    BadSearch(String),
    #[error("unsupported DATABASE_URL scheme `{0}`: use sqlite:// or postgres://")]
    UnknownScheme(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The SQL dialect of the connected backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The placeholder for the `n`th (1-based) bind parameter.
    pub fn ph(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// Static SQL is written with `$n` placeholders; SQLite spells them `?n`.
    pub fn sql(self, q: &str) -> String {
        match self {
            Dialect::Sqlite => q.replace('$', "?"),
            Dialect::Postgres => q.to_owned(),
        }
    }

    /// `column IN <list>` for a list bound as one parameter (no OR chains, no per-value
    /// placeholders): a JSON array in SQLite, a text array in PostgreSQL.
    pub fn in_list(self, column: &str, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(?{n}))"),
            Dialect::Postgres => format!("{column} = ANY(CAST(${n} AS text[]))"),
        }
    }

    /// `column IN <list>` for a list of integers bound as one parameter.
    pub fn in_int_list(self, column: &str, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(?{n}))"),
            Dialect::Postgres => format!("{column} = ANY(CAST(${n} AS bigint[]))"),
        }
    }

    /// Encodes a list of integers for [`Dialect::in_int_list`].
    pub fn int_list_arg(self, values: &[i64]) -> Arg {
        let joined = values
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        match self {
            Dialect::Sqlite => Arg::Text(format!("[{joined}]")),
            Dialect::Postgres => Arg::Text(format!("{{{joined}}}")),
        }
    }

    /// Encodes a list of strings for [`Dialect::in_list`].
    pub fn list_arg(self, values: &[String]) -> Arg {
        match self {
            Dialect::Sqlite => Arg::Text(serde_json::to_string(values).unwrap_or_default()),
            Dialect::Postgres => {
                let mut s = String::from("{");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push('"');
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            s.push('\\');
                        }
                        s.push(c);
                    }
                    s.push('"');
                }
                s.push('}');
                Arg::Text(s)
            }
        }
    }
}

/// A bind argument of dynamically built SQL.
#[derive(Debug, Clone)]
pub enum Arg {
    I64(i64),
    F64(f64),
    Text(String),
}

pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::I64(v) => q.bind(*v),
            Arg::F64(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
        };
    }
    q
}

/// The key to the store's write transactions. Only the platform crate (`hospital-core`)
/// depends on the store, so only it can name this key: every write goes through its
/// `Writer` and the owners' rules. A workspace test keeps the dependency that way.
#[derive(Debug)]
pub struct WriteKey(());

impl WriteKey {
    pub const PLATFORM: WriteKey = WriteKey(());
}

/// The HTTP method that wrote a version, as history entries report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Method {
        match s {
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            _ => Method::Put,
        }
    }
}

/// Where a version goes: a new row, or a new version of the row `rid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    New,
    Existing(i64),
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections for reads (and, on PostgreSQL, writes).
    pub max_connections: u32,
    /// Identifier systems that may name only one resource of a type, e.g. the personal ID of a
    /// Patient: `(resource type, identifier system)`.
    pub unique_identifiers: Vec<(&'static str, &'static str)>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            unique_identifiers: Vec::new(),
        }
    }
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    pub deleted: bool,
    /// The resource JSON as served (empty for a deletion).
    pub body: String,
    /// The HTTP method that wrote this version (history entries report it).
    pub method: Method,
}

impl Version {
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version_id)
    }
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub version: Version,
    /// True when the write created the resource (201), false for an update (200).
    pub created: bool,
}

/// The record store. Cheap to clone; all clones share the pools.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dialect: Dialect,
    /// Reads. On PostgreSQL also writes.
    reader: AnyPool,
    /// Writes. SQLite allows one writer at a time, so its writes queue here on one connection
    /// instead of failing with SQLITE_BUSY.
    writer: AnyPool,
    unique_identifiers: Vec<(&'static str, &'static str)>,
}

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

    /// The current version of `resource_type/id`; deleted resources give [`StoreError::Gone`].
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Version> {
        let mut conn = self.inner.reader.acquire().await?;
        read_current(self.dialect(), &mut conn, resource_type, id).await
    }

    /// One version of `resource_type/id`.
    pub async fn vread(&self, resource_type: &str, id: &str, version_id: i64) -> Result<Version> {
        let d = self.dialect();
        let row = sqlx::query(&d.sql(
            "SELECT h.version_id, h.last_updated, h.deleted, h.body, h.method \
             FROM resource_history h JOIN resources r ON r.rid = h.rid \
             WHERE r.resource_type = $1 AND r.resource_id = $2 AND h.version_id = $3",
        ))
        .bind(resource_type)
        .bind(id)
        .bind(version_id)
        .fetch_optional(&self.inner.reader)
        .await?;
        let row = row.ok_or_else(|| {
            StoreError::NotFound(format!("{resource_type}/{id}/_history/{version_id}"))
        })?;
        let v = history_version(resource_type, id, &row)?;
        if v.deleted {
            return Err(StoreError::Gone(format!(
                "{resource_type}/{id}/_history/{version_id}"
            )));
        }
        Ok(v)
    }

    /// History, newest first: of one resource (`id` given), or of a whole type.
    pub async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        let d = self.dialect();
        let mut sql = String::from(
            "SELECT h.seq, r.resource_type, r.resource_id, h.version_id, h.last_updated, \
             h.deleted, h.body, h.method FROM resource_history h JOIN resources r ON r.rid = h.rid \
             WHERE h.resource_type = $1",
        );
        let mut args = vec![Arg::Text(query.resource_type.clone())];
        if let Some(id) = &query.id {
            args.push(Arg::Text(id.clone()));
            sql.push_str(&format!(" AND r.resource_id = {}", d.ph(args.len())));
        }
        if let Some(since) = query.since {
            args.push(Arg::I64(since));
            sql.push_str(&format!(" AND h.last_updated >= {}", d.ph(args.len())));
        }
        if let Some(before) = query.before_seq {
            args.push(Arg::I64(before));
            sql.push_str(&format!(" AND h.seq < {}", d.ph(args.len())));
        }
        args.push(Arg::I64(query.count as i64 + 1));
        sql.push_str(&format!(" ORDER BY h.seq DESC LIMIT {}", d.ph(args.len())));
        let sql = d.sql(&sql);
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.inner.reader)
            .await?;
        if query.id.is_some() && rows.is_empty() {
            // Distinguish "no such resource" from "no versions in the window".
            let exists = sqlx::query(
                &d.sql("SELECT 1 FROM resources WHERE resource_type = $1 AND resource_id = $2"),
            )
            .bind(&query.resource_type)
            .bind(query.id.as_deref().unwrap_or_default())
            .fetch_optional(&self.inner.reader)
            .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!(
                    "{}/{}",
                    query.resource_type,
                    query.id.as_deref().unwrap_or_default()
                )));
            }
        }
        let mut versions = Vec::with_capacity(rows.len());
        let mut last_seq = None;
        for row in rows.iter().take(query.count) {
            let seq: i64 = row.try_get(0)?;
            let rt: String = row.try_get(1)?;
            let id: String = row.try_get(2)?;
            versions.push(Version {
                resource_type: rt,
                id,
                version_id: row.try_get(3)?,
                last_updated: row.try_get(4)?,
                deleted: row.try_get::<i64, _>(5)? != 0,
                body: row.try_get(6)?,
                method: Method::parse(&row.try_get::<String, _>(7)?),
            });
            last_seq = Some(seq);
        }
        let next_before_seq = if rows.len() > query.count {
            last_seq
        } else {
            None
        };
        Ok(HistoryPage {
            versions,
            next_before_seq,
        })
    }

    /// Runs a search on the read pool.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResult> {
        let mut conn = self.inner.reader.acquire().await?;
        search::run(self.dialect(), &mut conn, query).await
    }

    /// The patient compartment: the Patient and every current resource that references it.
    pub async fn patient_everything(&self, patient_id: &str) -> Result<Vec<Version>> {
        let d = self.dialect();
        let patient = self.read("Patient", patient_id).await?;
        // Only the compartment's parameters count (params::PATIENT_COMPARTMENT).
        let pairs: Vec<String> = params::PATIENT_COMPARTMENT
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| format!("{t}|{p}")))
            .collect();
        let list = d.in_list("i.resource_type || '|' || i.param", 2);
        let sql = format!(
            "SELECT r.resource_type, r.resource_id, r.version_id, r.last_updated, r.body FROM resources r \
             WHERE r.deleted = 0 AND r.rid IN (SELECT i.rid FROM idx_reference i \
             WHERE i.target_type = 'Patient' AND i.target_id = {} AND {list}) ORDER BY r.rid",
            d.ph(1)
        );
        let args = [Arg::Text(patient_id.to_owned()), d.list_arg(&pairs)];
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.inner.reader)
            .await?;
        let mut out = vec![patient];
        for row in rows {
            out.push(current_from_row(&row)?);
        }
        Ok(out)
    }

    /// How many current (not deleted) resources of a type exist; `None` counts all types.
    pub async fn count(&self, resource_type: Option<&str>) -> Result<i64> {
        let d = self.dialect();
        let row =
            match resource_type {
                Some(t) => {
                    sqlx::query(&d.sql(
                        "SELECT COUNT(*) FROM resources WHERE resource_type = $1 AND deleted = 0",
                    ))
                    .bind(t)
                    .fetch_one(&self.inner.reader)
                    .await?
                }
                None => {
                    sqlx::query("SELECT COUNT(*) FROM resources WHERE deleted = 0")
                        .fetch_one(&self.inner.reader)
                        .await?
                }
            };
        Ok(row.try_get(0)?)
    }

    /// How many versions the history holds in all.
    pub async fn count_versions(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM resource_history")
            .fetch_one(&self.inner.reader)
            .await?;
        Ok(row.try_get(0)?)
    }
}

/// Which history to read.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub resource_type: String,
    pub id: Option<String>,
    /// Only versions written at or after this instant (µs since the epoch).
    pub since: Option<i64>,
    pub count: usize,
    /// Keyset cursor from a previous page.
    pub before_seq: Option<i64>,
}

/// One page of history.
#[derive(Debug)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    pub next_before_seq: Option<i64>,
}

fn history_version(resource_type: &str, id: &str, row: &AnyRow) -> Result<Version> {
    Ok(Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version_id: row.try_get(0)?,
        last_updated: row.try_get(1)?,
        deleted: row.try_get::<i64, _>(2)? != 0,
        body: row.try_get(3)?,
        method: Method::parse(&row.try_get::<String, _>(4)?),
    })
}

/// Decodes `resource_type, resource_id, version_id, last_updated, body` of a current row.
pub(crate) fn current_from_row(row: &AnyRow) -> Result<Version> {
    Ok(Version {
        resource_type: row.try_get(0)?,
        id: row.try_get(1)?,
        version_id: row.try_get(2)?,
        last_updated: row.try_get(3)?,
        deleted: false,
        body: row.try_get(4)?,
        method: Method::Put,
    })
}

async fn read_current(
    d: Dialect,
    conn: &mut AnyConnection,
    resource_type: &str,
    id: &str,
) -> Result<Version> {
    let row = sqlx::query(&d.sql(
        "SELECT version_id, last_updated, deleted, body FROM resources \
         WHERE resource_type = $1 AND resource_id = $2",
    ))
    .bind(resource_type)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("{resource_type}/{id}")))?;
    let v = Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version_id: row.try_get(0)?,
        last_updated: row.try_get(1)?,
        deleted: row.try_get::<i64, _>(2)? != 0,
        body: row.try_get(3)?,
        method: Method::Put,
    };
    if v.deleted {
        return Err(StoreError::Gone(format!("{resource_type}/{id}")));
    }
    Ok(v)
}

/// A write transaction. Dropping it without [`Tx::commit`] rolls everything back.
pub struct Tx {
    tx: Transaction<'static, Any>,
    store: Store,
    /// Who writes: stamped on every version (`meta.extension` recorded-by).
    author: Option<String>,
    /// PostgreSQL: index rows of this transaction's writes, inserted together (one multi-row
    /// INSERT per table) before the next search in the transaction and before commit, so a
    /// Bundle of 200 resources costs a handful of index statements instead of a thousand.
    pending_index: Vec<(i64, String, extract::IndexRows)>,
}

/// An id is `[A-Za-z0-9\-\.]{1,64}` (<https://hl7.org/fhir/R4B/datatypes.html#id>).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        self.store.dialect()
    }

    /// Stamps the versions this transaction writes with their author (`role:subject`).
    pub fn set_author(&mut self, author: &str) {
        self.author = Some(author.to_owned());
    }

    pub async fn commit(mut self) -> Result<()> {
        self.flush_index().await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Reads the current version inside the transaction (sees its own writes).
    pub async fn read(&mut self, resource_type: &str, id: &str) -> Result<Version> {
        let d = self.dialect();
        read_current(d, &mut self.tx, resource_type, id).await
    }

    /// Whether `resource_type/id` exists and is not deleted.
    pub async fn exists(&mut self, resource_type: &str, id: &str) -> Result<bool> {
        match self.read(resource_type, id).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_) | StoreError::Gone(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Searches inside the transaction (seeing its own writes).
    pub async fn search(&mut self, query: &SearchQuery) -> Result<SearchResult> {
        self.flush_index().await?;
        let d = self.dialect();
        search::run(d, &mut self.tx, query).await
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
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Next value of a named counter (1, 2, 3, ...), e.g. for facility patient codes.
    pub async fn next_counter(&mut self, name: &str) -> Result<i64> {
        let d = self.dialect();
        if d == Dialect::Postgres {
            // A sequence, where the migrations declare one (no lock held until commit).
            let seq = format!(
                "counter_{}",
                name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            let row = sqlx::query("SELECT nextval(CAST(to_regclass($1) AS regclass)) WHERE to_regclass($1) IS NOT NULL")
                .bind(&seq)
                .fetch_optional(&mut *self.tx)
                .await?;
            if let Some(row) = row {
                return Ok(row.try_get(0)?);
            }
        }
        let row = sqlx::query(&d.sql(
            "INSERT INTO counters (name, value) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        ))
        .bind(name)
        .fetch_one(&mut *self.tx)
        .await?;
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
        let Some((rid, version, deleted)) = self.current_for_update(resource_type, id).await?
        else {
            return Ok(None);
        };
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
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(&d.sql(
            "INSERT INTO resource_history (rid, resource_type, version_id, last_updated, method, deleted, body) \
             VALUES ($1, $2, $3, $4, 'DELETE', 1, '')",
        ))
        .bind(rid)
        .bind(resource_type)
        .bind(version_id)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        self.clear_index(rid).await?;
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

    async fn current_for_update(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(i64, i64, bool)>> {
        let d = self.dialect();
        let lock = if d == Dialect::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let row = sqlx::query(&d.sql(&format!(
            "SELECT rid, version_id, deleted FROM resources WHERE resource_type = $1 AND resource_id = $2{lock}"
        )))
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<i64, _>(2)? != 0)))
            .transpose()
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
            self.current_for_update(resource_type, id).await?
        };
        let (rid, version_id, created) = match existing {
            Some((rid, current, deleted)) => {
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
            Dialect::Postgres => self.write_postgres(rid, &version, &body).await?,
        }
        Ok(WriteOutcome { version, created })
    }

    /// PostgreSQL: the row, its history and unique identifiers now; index rows with the
    /// transaction's others ([`Tx::flush_index`]).
    async fn write_postgres(&mut self, target: Target, v: &Version, body: &Value) -> Result<()> {
        let (resource_type, id, version_id, now, method, text) = (
            v.resource_type.as_str(),
            v.id.as_str(),
            v.version_id,
            v.last_updated,
            v.method.as_str(),
            v.body.as_str(),
        );
        let d = self.dialect();
        let rid = if let Target::Existing(rid) = target {
            sqlx::query(&d.sql(
                "UPDATE resources SET version_id = $1, last_updated = $2, deleted = 0, body = $3 WHERE rid = $4",
            ))
            .bind(version_id)
            .bind(now)
            .bind(text)
            .bind(rid)
            .execute(&mut *self.tx)
            .await?;
            self.clear_index(rid).await?;
            rid
        } else {
            let row = sqlx::query(&d.sql(
                "INSERT INTO resources (resource_type, resource_id, version_id, last_updated, deleted, body) \
                 VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (resource_type, resource_id) DO NOTHING RETURNING rid",
            ))
            .bind(resource_type)
            .bind(id)
            .bind(version_id)
            .bind(now)
            .bind(text)
            .fetch_optional(&mut *self.tx)
            .await?;
            match row {
                Some(row) => row.try_get::<i64, _>(0)?,
                None => {
                    // Another transaction created the same id a moment ago.
                    return Err(StoreError::VersionConflict {
                        expected: 0,
                        current: 1,
                    });
                }
            }
        };
        sqlx::query(&d.sql(
            "INSERT INTO resource_history (rid, resource_type, version_id, last_updated, method, deleted, body) \
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        ))
        .bind(rid)
        .bind(resource_type)
        .bind(version_id)
        .bind(now)
        .bind(method)
        .bind(text)
        .execute(&mut *self.tx)
        .await?;
        self.pending_index.push((
            rid,
            resource_type.to_owned(),
            extract::extract(resource_type, body),
        ));
        self.claim_unique_identifiers(rid, resource_type, body, now)
            .await?;
        Ok(())
    }

    /// SQLite: the whole version (row, history, index rows, unique identifiers) as one script
    /// of statements sharing numbered parameters. Every statement costs a hop to SQLite's
    /// worker thread, and those hops, not SQLite, bound the write rate.
    async fn write_sqlite_script(
        &mut self,
        target: Target,
        v: &Version,
        body: &Value,
    ) -> Result<()> {
        let (resource_type, id, version_id, now, method, text) = (
            v.resource_type.as_str(),
            v.id.as_str(),
            v.version_id,
            v.last_updated,
            v.method.as_str(),
            v.body.as_str(),
        );
        let mut args = vec![
            Arg::Text(resource_type.to_owned()),
            Arg::Text(id.to_owned()),
            Arg::I64(version_id),
            Arg::I64(now),
            Arg::Text(text.to_owned()),
            Arg::Text(method.to_owned()),
        ];
        let mut sql = String::with_capacity(2048);
        if let Target::Existing(rid) = target {
            sql.push_str(
                "UPDATE resources SET version_id = ?3, last_updated = ?4, deleted = 0, body = ?5 \
                 WHERE resource_type = ?1 AND resource_id = ?2;",
            );
            for table in INDEX_TABLES {
                sql.push_str(&format!("DELETE FROM {table} WHERE rid = {rid};"));
            }
        } else {
            sql.push_str(
                "INSERT INTO resources (resource_type, resource_id, version_id, last_updated, deleted, body) \
                 VALUES (?1, ?2, ?3, ?4, 0, ?5);",
            );
        }
        const RID: &str =
            "(SELECT rid FROM resources WHERE resource_type = ?1 AND resource_id = ?2)";
        sql.push_str(&format!(
            "INSERT INTO resource_history (rid, resource_type, version_id, last_updated, method, deleted, body) \
             VALUES ({RID}, ?1, ?3, ?4, ?6, 0, ?5);"
        ));
        let rows = extract::extract(resource_type, body);
        for (table, columns, rows) in index_tables(&rows) {
            if rows.is_empty() {
                continue;
            }
            sql.push_str(&format!(
                "INSERT INTO {table} (rid, resource_type, {columns}) SELECT r.rid, ?1, v.* FROM (VALUES "
            ));
            for (i, row) in rows.into_iter().enumerate() {
                sql.push_str(if i > 0 { ",(" } else { "(" });
                for (j, a) in row.into_iter().enumerate() {
                    if j > 0 {
                        sql.push(',');
                    }
                    args.push(a);
                    sql.push_str(&format!("?{}", args.len()));
                }
                sql.push(')');
            }
            sql.push_str(") AS v, resources r WHERE r.resource_type = ?1 AND r.resource_id = ?2;");
        }
        let claims = self.unique_claims(resource_type, body, now);
        for (system, value) in &claims {
            args.push(Arg::Text(system.clone()));
            let s = args.len();
            args.push(Arg::Text(value.clone()));
            let v = args.len();
            sql.push_str(&format!(
                "INSERT INTO unique_identifier (resource_type, system, value, rid) VALUES (?1, ?{s}, ?{v}, {RID});"
            ));
        }
        // sqlx binds a multi-statement script statement by statement; each gap in a statement's
        // `?NNN` numbering consumes one positional argument, and binding stops (leaving NULLs)
        // once those run past the end. Padding with as many spare arguments as there are gaps
        // keeps every numbered parameter bound.
        let gaps: usize = sql
            .split(';')
            .map(|stmt| {
                let mut used: Vec<usize> = stmt
                    .split('?')
                    .skip(1)
                    .filter_map(|p| {
                        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().ok()
                    })
                    .collect();
                used.sort_unstable();
                used.dedup();
                used.last().map_or(0, |max| max - used.len())
            })
            .sum();
        args.extend(std::iter::repeat_n(Arg::I64(0), gaps));
        let result = bind_all(sqlx::query(&sql), &args)
            .execute(&mut *self.tx)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.message().contains("unique_identifier") => {
                // Name the resource that already holds the identifier.
                for (system, value) in &claims {
                    let row = sqlx::query(
                        "SELECT r.resource_id FROM unique_identifier u JOIN resources r ON r.rid = u.rid \
                         WHERE u.resource_type = ?1 AND u.system = ?2 AND u.value = ?3 AND r.resource_id <> ?4",
                    )
                    .bind(resource_type)
                    .bind(system.as_str())
                    .bind(value.as_str())
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                    if let Some(row) = row {
                        let existing: String = row.try_get(0)?;
                        return Err(StoreError::DuplicateIdentifier {
                            system: system.clone(),
                            existing: format!("{resource_type}/{existing}"),
                        });
                    }
                }
                Err(StoreError::Database(sqlx::Error::Database(e)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The identifiers of `body` that must be unique (declared systems, not ended).
    fn unique_claims(&self, resource_type: &str, body: &Value, now: i64) -> Vec<(String, String)> {
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

    async fn clear_index(&mut self, rid: i64) -> Result<()> {
        self.pending_index.retain(|(r, ..)| *r != rid);
        const TABLES: [&str; 6] = INDEX_TABLES;
        match self.dialect() {
            // One round trip: data-modifying CTEs.
            Dialect::Postgres => {
                let mut sql = String::from("WITH ");
                for (i, table) in TABLES[..5].iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("d{i} AS (DELETE FROM {table} WHERE rid = $1)"));
                }
                sql.push_str(&format!(" DELETE FROM {} WHERE rid = $1", TABLES[5]));
                sqlx::query(&sql).bind(rid).execute(&mut *self.tx).await?;
            }
            Dialect::Sqlite => {
                let sql: String = TABLES
                    .iter()
                    .map(|t| format!("DELETE FROM {t} WHERE rid = {rid};"))
                    .collect();
                sqlx::query(&sql).execute(&mut *self.tx).await?;
            }
        }
        Ok(())
    }

    /// Inserts the pending index rows: one multi-row INSERT per table (in chunks that stay
    /// far below both backends' bind-parameter limits).
    async fn flush_index(&mut self) -> Result<()> {
        if self.pending_index.is_empty() {
            return Ok(());
        }
        let d = self.dialect();
        let pending = std::mem::take(&mut self.pending_index);
        let mut tables: Vec<(&'static str, &'static str, Vec<Vec<Arg>>)> = Vec::new();
        for (rid, rt, rows) in &pending {
            for (i, (table, columns, rows)) in index_tables(rows).into_iter().enumerate() {
                if tables.len() <= i {
                    tables.push((table, columns, Vec::new()));
                }
                for row in rows {
                    let mut full = Vec::with_capacity(row.len() + 2);
                    full.push(Arg::I64(*rid));
                    full.push(Arg::Text(rt.clone()));
                    full.extend(row);
                    tables[i].2.push(full);
                }
            }
        }
        for (table, columns, rows) in tables {
            let Some(width) = rows.first().map(Vec::len) else {
                continue;
            };
            for chunk in rows.chunks(200) {
                let mut sql =
                    format!("INSERT INTO {table} (rid, resource_type, {columns}) VALUES ");
                for i in 0..chunk.len() {
                    sql.push_str(if i > 0 { ",(" } else { "(" });
                    for col in 0..width {
                        if col > 0 {
                            sql.push(',');
                        }
                        sql.push_str(&d.ph(i * width + col + 1));
                    }
                    sql.push(')');
                }
                let args: Vec<Arg> = chunk.iter().flatten().cloned().collect();
                bind_all(sqlx::query(&sql), &args)
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Enforces the declared unique identifiers. An identifier whose period has ended (a
    /// cancelled, re-issued number) stays searchable but no longer claims uniqueness.
    async fn claim_unique_identifiers(
        &mut self,
        rid: i64,
        resource_type: &str,
        body: &Value,
        now: i64,
    ) -> Result<()> {
        let d = self.dialect();
        for (system, value) in self.unique_claims(resource_type, body, now) {
            let inserted = sqlx::query(&d.sql(
                "INSERT INTO unique_identifier (resource_type, system, value, rid) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (resource_type, system, value) DO NOTHING RETURNING rid",
            ))
            .bind(resource_type)
            .bind(system.as_str())
            .bind(value.as_str())
            .bind(rid)
            .fetch_optional(&mut *self.tx)
            .await?;
            if inserted.is_some() {
                continue;
            }
            let row = sqlx::query(&d.sql(
                "SELECT r.rid, r.resource_id FROM unique_identifier u JOIN resources r ON r.rid = u.rid \
                 WHERE u.resource_type = $1 AND u.system = $2 AND u.value = $3",
            ))
            .bind(resource_type)
            .bind(system.as_str())
            .bind(value.as_str())
            .fetch_one(&mut *self.tx)
            .await?;
            if row.try_get::<i64, _>(0)? != rid {
                let existing: String = row.try_get(1)?;
                return Err(StoreError::DuplicateIdentifier {
                    system,
                    existing: format!("{resource_type}/{existing}"),
                });
            }
        }
        Ok(())
    }
}

/// Every table that holds rows derived from a resource's current version (its search index
/// and its unique identifiers): cleared when a new version replaces it.
const INDEX_TABLES: [&str; 6] = [
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_reference",
    "idx_number",
    "unique_identifier",
];

/// The rows of each index table for one version, without `rid` and `resource_type` (which
/// the two backends supply in their own ways): `(table, columns, rows)`.
fn index_tables(rows: &extract::IndexRows) -> [(&'static str, &'static str, Vec<Vec<Arg>>); 5] {
    let t = |s: &str| Arg::Text(s.to_owned());
    [
        (
            "idx_token",
            "param, system, code, sc",
            rows.tokens
                .iter()
                .map(|(p, sys, code)| {
                    vec![t(p), t(sys), t(code), Arg::Text(format!("{sys}|{code}"))]
                })
                .collect(),
        ),
        (
            "idx_string",
            "param, value, raw",
            rows.strings
                .iter()
                .map(|(p, v, raw)| vec![t(p), t(v), t(raw)])
                .collect(),
        ),
        (
            "idx_date",
            "param, lo, hi",
            rows.dates
                .iter()
                .map(|(p, r)| vec![t(p), Arg::I64(r.lo), Arg::I64(r.hi)])
                .collect(),
        ),
        (
            "idx_reference",
            "param, target_type, target_id",
            rows.references
                .iter()
                .map(|(p, tt, ti)| vec![t(p), t(tt), t(ti)])
                .collect(),
        ),
        (
            "idx_number",
            "param, value, system, code",
            rows.numbers
                .iter()
                .map(|(p, v, sys, c)| vec![t(p), Arg::F64(*v), t(sys), t(c)])
                .collect(),
        ),
    ]
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

/// Extension URL of the author stamp in `meta`: every entry shows who wrote it.
pub const RECORDED_BY: &str = "urn:hospital:recorded-by";

fn set_meta(body: &mut Value, id: &str, version_id: i64, now: i64, author: Option<&str>) {
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
