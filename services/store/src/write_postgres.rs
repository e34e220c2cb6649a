//! PostgreSQL's write path: the row and its history at once, index rows queued and inserted
//! together (one multi-row INSERT per table) before the transaction's next search and before
//! commit, unique identifiers claimed by a primary key.

use crate::index::{IndexTable, derived_tables};
use crate::{Arg, Dialect, Result, StoreError, Target, Tx, Version, bind_all, extract};
use serde_json::Value;
use sqlx::Row;

impl Tx {
    /// PostgreSQL: the row, its history and unique identifiers now; index rows with the
    /// transaction's others ([`Tx::flush_index`]).
    pub(crate) async fn write_postgres(
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
                sqlx::query(&sql).bind(rid).execute(&mut *self.tx).await?;
            }
            Dialect::Sqlite => {
                let sql: String = tables
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
    pub(crate) async fn flush_index(&mut self) -> Result<()> {
        if self.pending_index.is_empty() {
            return Ok(());
        }
        let d = self.dialect();
        let pending = std::mem::take(&mut self.pending_index);
        let mut tables: Vec<(&'static str, &'static str, Vec<Vec<Arg>>)> = IndexTable::ALL
            .iter()
            .map(|t| (t.name(), t.columns(), Vec::new()))
            .collect();
        for (rid, rt, rows) in &pending {
            for (i, index) in IndexTable::ALL.into_iter().enumerate() {
                for row in index.rows(rows) {
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
