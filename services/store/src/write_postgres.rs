//! PostgreSQL's write path: the row and its history at once, index rows queued and inserted
//! together (one multi-row INSERT per table) before the transaction's next search and before
//! commit, unique identifiers claimed by a primary key.

use crate::index::{IndexTable, derived_tables};
use crate::tx::DeferredCreate;
use crate::{Arg, Dialect, Result, StoreError, Target, Tx, Version, bind_all, extract};
use serde_json::Value;
use sqlx::Row;

/// A create's row and its history (parameters: type, id, version, time, body, method), as
/// the first data-modifying CTEs of its statement; `r` has no row when another transaction
/// created the same id a moment ago.
const CREATE_ROW: &str = "WITH r AS (INSERT INTO resources (resource_type, resource_id, version_id, last_updated, deleted, body) \
     VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (resource_type, resource_id) DO NOTHING RETURNING rid), \
     h AS (INSERT INTO resource_history (rid, resource_type, version_id, last_updated, method, deleted, body) \
     SELECT rid, $1, $3, $4, $6, 0, $5 FROM r)";

impl Tx {
    /// PostgreSQL: the row, its history and unique identifiers now; index rows with the
    /// transaction's others ([`Tx::flush_index`]).
    pub(crate) async fn write_postgres(
        &mut self,
        target: Target,
        v: &Version,
        body: &Value,
        previous: &str,
    ) -> Result<()> {
        let (resource_type, id, version_id, now, method, text) = (
            v.resource_type.as_str(),
            v.id.as_str(),
            v.version_id,
            v.last_updated,
            v.method.as_str(),
            v.body.as_str(),
        );
        let mut rows = extract::for_write(resource_type, body)?;
        let mut claims = self.unique_claims(resource_type, body, now);
        let rid = if let Target::Existing(rid) = target {
            // The row, the index rows and claims it no longer has, and its history: one
            // statement. Only what changed is deleted: marking a bill paid swaps its status
            // token, not every index row and identifier claim it has.
            let mut args = vec![
                Arg::I64(rid),
                Arg::I64(version_id),
                Arg::I64(now),
                Arg::Text(text.to_owned()),
                Arg::Text(resource_type.to_owned()),
                Arg::Text(method.to_owned()),
            ];
            let mut ctes = vec![
                "u AS (UPDATE resources SET version_id = $2, last_updated = $3, deleted = 0, body = $4 WHERE rid = $1)"
                    .to_owned(),
            ];
            let before = serde_json::from_str::<Value>(previous).ok();
            match before {
                Some(old) if !self.pending_index.iter().any(|(r, ..)| *r == rid) => {
                    let old_rows = extract::extract(resource_type, &old);
                    let removed = keep_added(&mut rows, &old_rows);
                    // Claimed at the last write: what the old version claims now (a period
                    // only ends, never restarts). Any old identifier no longer claimed is let go.
                    let held = self.unique_claims(resource_type, &old, now);
                    let gone: Vec<(String, String)> = self
                        .unique_claims(resource_type, &old, i64::MIN)
                        .into_iter()
                        .filter(|c| !claims.contains(c))
                        .collect();
                    claims.retain(|c| !held.contains(c));
                    ctes.extend(removal_ctes(&removed, &gone, &mut args));
                }
                _ => {
                    self.pending_index.retain(|(r, ..)| *r != rid);
                    ctes.extend(
                        derived_tables().map(|t| format!("DELETE FROM {t} WHERE rid = $1")),
                    );
                }
            }
            let ctes: Vec<String> = ctes
                .into_iter()
                .enumerate()
                .map(|(i, c)| if i == 0 { c } else { format!("d{i} AS ({c})") })
                .collect();
            let sql = format!(
                "WITH {} INSERT INTO resource_history (rid, resource_type, version_id, last_updated, method, deleted, body) \
                 VALUES ($1, $5, $2, $3, $6, 0, $4)",
                ctes.join(", ")
            );
            bind_all(sqlx::query(&sql), &args)
                .execute(self.conn().await?)
                .await?;
            rid
        } else {
            let create = DeferredCreate {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                version_id,
                now,
                text: text.to_owned(),
                method: method.to_owned(),
                claims,
                rows,
            };
            if self.one_write
                && self.deferred.is_none()
                && self.pending_index.is_empty()
                && matches!(self.conn, crate::tx::Conn::Postgres(None))
            {
                self.deferred = Some(create);
                return Ok(());
            }
            return self.create_now(create).await;
        };
        self.pending_index
            .push((rid, resource_type.to_owned(), rows));
        self.claim_unique_identifiers(rid, resource_type, claims)
            .await?;
        Ok(())
    }

    /// Sends a create: the row, its history and its identifier claims in one statement; its
    /// index rows go with the transaction's others.
    pub(crate) async fn create_now(&mut self, create: DeferredCreate) -> Result<()> {
        let DeferredCreate {
            resource_type,
            id,
            version_id,
            now,
            text,
            method,
            claims,
            rows,
        } = create;
        let mut sql = String::from(CREATE_ROW);
        if claims.is_empty() {
            sql.push_str(" SELECT rid, NULL, NULL FROM r");
        } else {
            let values: Vec<String> = (0..claims.len())
                .map(|i| format!("(${}, ${})", 7 + 2 * i, 8 + 2 * i))
                .collect();
            sql.push_str(&format!(
                ", c AS (INSERT INTO unique_identifier (resource_type, system, value, rid) \
                 SELECT $1, v.system, v.value, r.rid FROM r, (VALUES {}) AS v(system, value) \
                 ON CONFLICT (resource_type, system, value) DO NOTHING RETURNING system, value) \
                 SELECT r.rid, c.system, c.value FROM r LEFT JOIN c ON true",
                values.join(", ")
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(resource_type.as_str())
            .bind(id.as_str())
            .bind(version_id)
            .bind(now)
            .bind(text.as_str())
            .bind(method.as_str());
        for (system, value) in &claims {
            q = q.bind(system.as_str()).bind(value.as_str());
        }
        let rows_back = q.fetch_all(self.conn().await?).await?;
        let Some(first) = rows_back.first() else {
            return Err(StoreError::VersionConflict {
                expected: 0,
                current: 1,
            });
        };
        let rid = first.try_get::<i64, _>(0)?;
        let mut inserted = Vec::new();
        for r in &rows_back {
            if let (Some(s), Some(v)) = (
                r.try_get::<Option<String>, _>(1)?,
                r.try_get::<Option<String>, _>(2)?,
            ) {
                inserted.push((s, v));
            }
        }
        self.pending_index.push((rid, resource_type.clone(), rows));
        self.check_claims(rid, &resource_type, claims, &inserted)
            .await
    }

    /// A transaction that is one create and its audit records: one autocommitted statement
    /// (data-modifying CTEs run together, all or nothing). An identifier another resource
    /// holds fails the statement, and nothing of it stays.
    pub(crate) async fn create_alone(
        &mut self,
        create: DeferredCreate,
        audit: Vec<Vec<Arg>>,
    ) -> Result<()> {
        let mut args = vec![
            Arg::Text(create.resource_type.clone()),
            Arg::Text(create.id.clone()),
            Arg::I64(create.version_id),
            Arg::I64(create.now),
            Arg::Text(create.text.clone()),
            Arg::Text(create.method.clone()),
        ];
        let mut sql = String::from(CREATE_ROW);
        if !create.claims.is_empty() {
            let rows: Vec<Vec<Arg>> = create
                .claims
                .iter()
                .map(|(s, v)| vec![Arg::Text(s.clone()), Arg::Text(v.clone())])
                .collect();
            sql.push_str(&format!(
                ", c AS (INSERT INTO unique_identifier (resource_type, system, value, rid) \
                 SELECT $1, v.system, v.value, r.rid FROM r, {} AS v(system, value))",
                crate::unnest(&rows, &mut args)
            ));
        }
        for (i, index) in IndexTable::ALL.into_iter().enumerate() {
            let rows = index.rows(&create.rows);
            if rows.is_empty() {
                continue;
            }
            sql.push_str(&format!(
                ", i{i} AS (INSERT INTO {} (rid, resource_type, {}) SELECT r.rid, $1, v.* FROM r, {} AS v)",
                index.name(),
                index.columns(),
                crate::unnest(&rows, &mut args)
            ));
        }
        if !audit.is_empty() {
            sql.push_str(&format!(
                ", a AS ({}SELECT v.* FROM r, {} AS v)",
                crate::audit::insert_prefix().trim_end_matches("VALUES "),
                crate::unnest(&audit, &mut args)
            ));
        }
        sql.push_str(" SELECT rid FROM r");
        self.conn = crate::tx::Conn::Ended;
        let writer = self.store.inner.writer.clone();
        match bind_all(sqlx::query(&sql), &args)
            .fetch_optional(&writer)
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StoreError::VersionConflict {
                expected: 0,
                current: 1,
            }),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                // Name the resource that holds the identifier.
                for (system, value) in &create.claims {
                    let row = sqlx::query(
                        "SELECT r.resource_id FROM unique_identifier u JOIN resources r ON r.rid = u.rid \
                         WHERE u.resource_type = $1 AND u.system = $2 AND u.value = $3",
                    )
                    .bind(create.resource_type.as_str())
                    .bind(system.as_str())
                    .bind(value.as_str())
                    .fetch_optional(&writer)
                    .await?;
                    if let Some(row) = row {
                        let existing: String = row.try_get(0)?;
                        return Err(StoreError::DuplicateIdentifier {
                            system: system.clone(),
                            existing: format!("{}/{existing}", create.resource_type),
                        });
                    }
                }
                Err(StoreError::Database(sqlx::Error::Database(e)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the rows derived from the version `rid` had (used by both backends' delete).
    pub(crate) async fn clear_index(&mut self, rid: i64) -> Result<()> {
        self.pending_index.retain(|(r, ..)| *r != rid);
        let tables: Vec<&str> = derived_tables().collect();
        match self.dialect() {
            // One round trip: data-modifying CTEs.
            Dialect::Postgres => {
                let (last, rest) = tables.split_last().expect("derived tables");
                let ctes: Vec<String> = rest
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("d{i} AS (DELETE FROM {t} WHERE rid = $1)"))
                    .collect();
                let sql = format!("WITH {} DELETE FROM {last} WHERE rid = $1", ctes.join(", "));
                sqlx::query(&sql)
                    .bind(rid)
                    .execute(self.conn().await?)
                    .await?;
            }
            Dialect::Sqlite => {
                let sql: String = tables
                    .iter()
                    .map(|t| format!("DELETE FROM {t} WHERE rid = {rid};"))
                    .collect();
                sqlx::query(&sql).execute(self.conn().await?).await?;
            }
        }
        Ok(())
    }

    /// Inserts the pending index rows (a rebuild's, on both stores; a PostgreSQL write's) and,
    /// on PostgreSQL, the audit records: one multi-row INSERT per table (in chunks that stay
    /// far below both backends' bind-parameter limits). SQLite's audit records go in the
    /// transaction's last hop (`commit_member`, or the lone writes of `write_sqlite.rs`).
    pub(crate) async fn flush_index(&mut self) -> Result<()> {
        let audit = self.dialect() == crate::Dialect::Postgres;
        if self.pending_index.is_empty() && (!audit || self.pending_audit.is_empty()) {
            return Ok(());
        }
        let d = self.dialect();
        let pending = std::mem::take(&mut self.pending_index);
        let mut tables: Vec<(String, Vec<Vec<Arg>>)> = IndexTable::ALL
            .iter()
            .map(|t| {
                (
                    format!(
                        "INSERT INTO {} (rid, resource_type, {}) VALUES ",
                        t.name(),
                        t.columns()
                    ),
                    Vec::new(),
                )
            })
            .collect();
        for (rid, rt, rows) in &pending {
            for (i, index) in IndexTable::ALL.into_iter().enumerate() {
                for row in index.rows(rows) {
                    let mut full = Vec::with_capacity(row.len() + 2);
                    full.push(Arg::I64(*rid));
                    full.push(Arg::Text(rt.clone()));
                    full.extend(row);
                    tables[i].1.push(full);
                }
            }
        }
        // PostgreSQL: the transaction's audit records go with its index rows.
        if audit {
            tables.push((
                crate::audit::insert_prefix(),
                std::mem::take(&mut self.pending_audit),
            ));
        }
        // Each chunk one INSERT; on PostgreSQL, as many as fit together go in one statement
        // (data-modifying CTEs), so a transaction's index rows usually cost one round trip.
        let mut inserts: Vec<(Vec<String>, Vec<Arg>)> = Vec::new();
        for (prefix, rows) in tables {
            let Some(width) = rows.first().map(Vec::len) else {
                continue;
            };
            for chunk in rows.chunks(200) {
                let fits = |args: &Vec<Arg>| {
                    d == Dialect::Postgres && args.len() + chunk.len() * width < 20_000
                };
                if !inserts.last().is_some_and(|(_, args)| fits(args)) {
                    inserts.push((Vec::new(), Vec::new()));
                }
                let (statements, args) = inserts.last_mut().expect("a group");
                let mut one = prefix.clone();
                for i in 0..chunk.len() {
                    one.push_str(if i > 0 { ",(" } else { "(" });
                    for col in 0..width {
                        if col > 0 {
                            one.push(',');
                        }
                        one.push_str(&d.ph(args.len() + i * width + col + 1));
                    }
                    one.push(')');
                }
                args.extend(chunk.iter().flatten().cloned());
                statements.push(one);
            }
        }
        for (mut statements, args) in inserts {
            let last = statements.pop().expect("a statement");
            let sql = if statements.is_empty() {
                last
            } else {
                // Data-modifying CTEs: all run, in one round trip.
                let ctes: Vec<String> = statements
                    .iter()
                    .enumerate()
                    .map(|(i, st)| format!("i{i} AS ({st})"))
                    .collect();
                format!("WITH {} {last}", ctes.join(", "))
            };
            bind_all(sqlx::query(&sql), &args)
                .execute(self.conn().await?)
                .await?;
        }
        Ok(())
    }

    /// Enforces the declared unique identifiers `claims` (from [`Tx::unique_claims`]: an
    /// identifier whose period has ended — a cancelled, re-issued number — stays searchable
    /// but no longer claims uniqueness): one multi-row INSERT, and a look at the holder of
    /// any that another resource has.
    async fn claim_unique_identifiers(
        &mut self,
        rid: i64,
        resource_type: &str,
        claims: Vec<(String, String)>,
    ) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let mut sql = String::from(
            "INSERT INTO unique_identifier (resource_type, system, value, rid) VALUES ",
        );
        for i in 0..claims.len() {
            let b = i * 3;
            sql.push_str(&format!(
                "{}($1, ${}, ${}, ${})",
                if i > 0 { "," } else { "" },
                b + 2,
                b + 3,
                b + 4
            ));
        }
        sql.push_str(
            " ON CONFLICT (resource_type, system, value) DO NOTHING RETURNING system, value",
        );
        let mut q = sqlx::query(&sql).bind(resource_type);
        for (system, value) in &claims {
            q = q.bind(system.as_str()).bind(value.as_str()).bind(rid);
        }
        let inserted: Vec<(String, String)> = q
            .fetch_all(self.conn().await?)
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect::<Result<_>>()?;
        self.check_claims(rid, resource_type, claims, &inserted)
            .await
    }

    /// Of `claims`, those not `inserted` must already be `rid`'s: another resource holding one
    /// is a duplicate identifier (named, with its holder).
    async fn check_claims(
        &mut self,
        rid: i64,
        resource_type: &str,
        claims: Vec<(String, String)>,
        inserted: &[(String, String)],
    ) -> Result<()> {
        for (system, value) in claims {
            if inserted.iter().any(|(s, v)| *s == system && *v == value) {
                continue;
            }
            let row = sqlx::query(
                "SELECT r.rid, r.resource_id FROM unique_identifier u JOIN resources r ON r.rid = u.rid \
                 WHERE u.resource_type = $1 AND u.system = $2 AND u.value = $3",
            )
            .bind(resource_type)
            .bind(system.as_str())
            .bind(value.as_str())
            .fetch_one(self.conn().await?)
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

/// Keeps in `rows` only the rows `old` does not have (to insert), and returns the rows of
/// `old` that `rows` no longer has (to delete): an update touches only the index rows that
/// changed.
fn keep_added(rows: &mut extract::IndexRows, old: &extract::IndexRows) -> extract::IndexRows {
    let mut removed = extract::IndexRows::default();
    macro_rules! diff {
        ($field:ident) => {
            removed.$field = old
                .$field
                .iter()
                .filter(|r| !rows.$field.contains(r))
                .cloned()
                .collect();
            rows.$field.retain(|r| !old.$field.contains(r));
        };
    }
    diff!(tokens);
    diff!(strings);
    diff!(dates);
    diff!(references);
    diff!(numbers);
    diff!(combos);
    removed
}

/// The deletions (for data-modifying CTEs, `$1` being the rid) of the index rows `removed`
/// and of the claims of identifiers no longer held; their values are appended to `args`.
fn removal_ctes(
    removed: &extract::IndexRows,
    gone: &[(String, String)],
    args: &mut Vec<Arg>,
) -> Vec<String> {
    let mut deletes = Vec::new();
    for table in IndexTable::ALL {
        let rows = table.rows(removed);
        if rows.is_empty() {
            continue;
        }
        let mut tuples = Vec::with_capacity(rows.len());
        for row in rows {
            let mut ph = Vec::with_capacity(row.len());
            for a in row {
                args.push(a);
                ph.push(format!("${}", args.len()));
            }
            tuples.push(format!("({})", ph.join(", ")));
        }
        deletes.push(format!(
            "DELETE FROM {} WHERE rid = $1 AND ({}) IN ({})",
            table.name(),
            table.columns(),
            tuples.join(", ")
        ));
    }
    for (system, value) in gone {
        args.push(Arg::Text(system.clone()));
        args.push(Arg::Text(value.clone()));
        deletes.push(format!(
            "DELETE FROM unique_identifier WHERE rid = $1 AND system = ${} AND value = ${}",
            args.len() - 1,
            args.len()
        ));
    }
    deletes
}
