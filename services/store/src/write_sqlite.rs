//! SQLite's write path: the whole version as one script.

use crate::index::{IndexTable, derived_tables};
use crate::{Arg, Result, StoreError, Target, Tx, Version, bind_all, extract};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

/// SQLite: a version's script ([`Tx::write_sqlite_script`]) and what naming a duplicate
/// identifier needs. Its parameters are numbered from `?1`; the spare arguments that keep
/// sqlx binding past numbering gaps are added when it is sent ([`pad_gaps`]).
pub(crate) struct SqliteScript {
    pub(crate) sql: String,
    pub(crate) args: Vec<crate::Arg>,
    pub(crate) resource_type: String,
    pub(crate) id: String,
    pub(crate) claims: Vec<(String, String)>,
}

/// sqlx binds a multi-statement script statement by statement; each gap in a statement's
/// `?NNN` numbering consumes one positional argument, and binding stops (leaving NULLs) once
/// those run past the end. Padding with as many spare arguments as there are gaps keeps
/// every numbered parameter bound.
pub(crate) fn pad_gaps(sql: &str, args: &mut Vec<crate::Arg>) {
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
    args.extend(std::iter::repeat_n(crate::Arg::I64(0), gaps));
}

impl Tx {
    /// SQLite: the whole version (row, history, index rows, unique identifiers) as one script
    /// of statements sharing numbered parameters. Every hop to SQLite's worker thread is a
    /// turn of the single writer spent waiting, and those hops, not SQLite, bound the write
    /// rate: the script goes in one hop with the member's savepoint, and in a transaction of
    /// one write ([`Tx::one_write`]) also with its audit record and the savepoint's release.
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
        let script = SqliteScript {
            sql,
            args,
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            claims,
        };
        if self.one_write && self.deferred_script.is_none() {
            // Sent at commit, with the audit record and the savepoint's release: one hop.
            self.deferred_script = Some(script);
            return Ok(());
        }
        self.run_script(script).await
    }

    /// Sends a version's script (with the member's savepoint in front, if not opened yet).
    pub(crate) async fn run_script(&mut self, script: SqliteScript) -> Result<()> {
        let (conn, prefix) = self.sqlite_prefixed().await?;
        let sql = format!("{prefix}{}", script.sql);
        let mut args = script.args.clone();
        pad_gaps(&sql, &mut args);
        match bind_all(sqlx::query(&sql), &args).execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(e) => Err(named_duplicate(conn, &script, e).await),
        }
    }
}

/// The error of a failed script: a unique identifier another resource holds is named, with
/// its holder; anything else is the database's error.
pub(crate) async fn named_duplicate(
    conn: &mut AnyConnection,
    script: &SqliteScript,
    e: sqlx::Error,
) -> StoreError {
    let sqlx::Error::Database(db) = &e else {
        return e.into();
    };
    if !db.message().contains("unique_identifier") {
        return e.into();
    }
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
                    return StoreError::DuplicateIdentifier {
                        system: system.clone(),
                        existing: format!("{}/{existing}", script.resource_type),
                    };
                }
                Err(e) => return e.into(),
            },
            Ok(None) => {}
            Err(e) => return e.into(),
        }
    }
    e.into()
}
