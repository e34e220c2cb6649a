//! SQLite's write path: the whole version as one script.

use crate::index::{IndexTable, derived_tables};
use crate::{Arg, Result, StoreError, Target, Tx, Version, bind_all, extract};
use serde_json::Value;
use sqlx::Row;

impl Tx {
    /// SQLite: the whole version (row, history, index rows, unique identifiers) as one script
    /// of statements sharing numbered parameters. Every statement costs a hop to SQLite's
    /// worker thread, and those hops, not SQLite, bound the write rate.
    pub(crate) async fn write_sqlite_script(
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
            for table in derived_tables() {
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
        let rows = extract::for_write(resource_type, body)?;
        for index in IndexTable::ALL {
            let (table, columns, rows) = (index.name(), index.columns(), index.rows(&rows));
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
            .execute(self.conn().await?)
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
                    .fetch_optional(self.conn().await?)
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
}
