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
pub mod deliveries;
pub mod extract;
pub mod outbox;
pub mod params;
pub mod search;
pub mod sessions;
pub mod signals;
pub mod signing;
pub mod text;

mod group;
mod index;
mod json_rows;
mod open;
mod read;
mod reindex;
mod tx;
mod write_postgres;
mod write_sqlite;

use sqlx::{Any, AnyPool};
use std::sync::Arc;

pub use read::{HistoryPage, HistoryQuery, HistoryScope};
pub use tx::{RECORDED_BY, Tx};

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
    /// A holder (a practitioner, a patient) is already taken over an overlapping window.
    #[error("{holder} is already taken at that time, by {by}")]
    TimeTaken { holder: String, by: String },
    #[error("{0}")]
    BadSearch(String),
    /// The request exceeds a bound on the work one request may cause; names the bound.
    #[error("{0}")]
    TooCostly(String),
    #[error("unsupported DATABASE_URL scheme `{0}`: use sqlite:// or postgres://")]
    UnknownScheme(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        // A failed connection makes the pool test the others before use (open.rs).
        open::note_failure(&e);
        StoreError::Database(e)
    }
}

impl StoreError {
    /// Whether the database could not be reached (a dropped connection, a restarting
    /// server): nothing about the request was wrong, the database was unavailable.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, StoreError::Database(e) if open::connection_lost(e))
    }

    /// Whether the database gave up on this transaction because a concurrent one held what it
    /// needed: a PostgreSQL deadlock (`40P01`) or serialization failure (`40001`), SQLite busy
    /// or locked past its timeout. The transaction was rolled back; a retry may succeed.
    pub fn is_contention(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => matches!(
                db.code().as_deref(),
                Some("40P01" | "40001" | "5" | "6" | "261" | "262" | "517")
            ),
            _ => false,
        }
    }

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

pub(crate) struct Inner {
    dialect: Dialect,
    /// Reads. On PostgreSQL also writes.
    reader: AnyPool,
    /// Writes. SQLite allows one writer at a time, so its writes queue here on one connection
    /// instead of failing with SQLITE_BUSY.
    writer: AnyPool,
    unique_identifiers: Vec<(&'static str, &'static str)>,
    /// The video visits' signalling bus.
    bus: signals::Bus,
    /// SQLite: the resources' row count when the planner's statistics were last refreshed.
    analysed_rows: std::sync::atomic::AtomicI64,
    /// SQLite: the writer's group commit ([`group`]).
    group: Option<Arc<group::Group>>,
    /// SQLite: counter values reserved durably and not handed out yet, by counter (see
    /// [`Tx::next_counter`]).
    counter_blocks: tokio::sync::Mutex<std::collections::HashMap<String, tx::CounterBlock>>,
    /// SQLite: the queue of lone writes committed together ([`write_sqlite::LoneWrites`]),
    /// started at the first.
    lone_writes: std::sync::OnceLock<write_sqlite::LoneWrites>,
}

/// An id is `[A-Za-z0-9\-\.]{1,64}` (<https://hl7.org/fhir/R4B/datatypes.html#id>).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// PostgreSQL: `unnest(CAST($n AS type[]), ...)` of `rows` (one array per column, appended to
/// `args`): one statement shape whatever the number of rows, so PostgreSQL prepares it once
/// per connection rather than once per count (of a batch's audit records, of the names,
/// identifiers or codes a resource has).
pub(crate) fn unnest(rows: &[Vec<Arg>], args: &mut Vec<Arg>) -> String {
    let width = rows.first().map_or(0, Vec::len);
    let mut casts = Vec::with_capacity(width);
    for c in 0..width {
        let column = rows.iter().map(|r| &r[c]);
        let kind = if column.clone().any(|a| matches!(a, Arg::F64(_))) {
            "float8"
        } else if column.clone().any(|a| matches!(a, Arg::I64(_))) {
            "bigint"
        } else {
            "text"
        };
        let values: Vec<String> = column
            .map(|a| match a {
                Arg::I64(v) => v.to_string(),
                Arg::F64(v) => v.to_string(),
                Arg::Text(v) => v.clone(),
            })
            .collect();
        args.push(Dialect::Postgres.list_arg(&values));
        casts.push(format!("CAST(${} AS {kind}[])", args.len()));
    }
    format!("unnest({})", casts.join(", "))
}
