//! Keeping the stored index in step with the declarations: when what decides a type's index
//! rows changes (a parameter or combined index declared, moved or removed; the extraction
//! code revised: `params::fingerprint`), the rows of every stored resource of that type are
//! derived again. It runs when the store opens, in batches of one transaction each; a batch
//! takes a lock on the type and continues from the cursor the last batch left, so replicas
//! starting together share the work, and one that dies leaves the rest to the next.
//!
//! Until a type is rebuilt, a process of the new version does not serve: `Store::open` returns
//! when every declared type is current. Replicas of the previous version still running write
//! rows by the previous declarations, so a release that changes them is rolled out with every
//! replica of the previous version stopped first (`k8s/README.md`, upgrades).

use crate::index::IndexTable;
use crate::{Dialect, Result, Store, WriteKey, extract, params};
use sqlx::Row;

/// Resources derived again per transaction.
const BATCH: i64 = 500;

impl Store {
    /// Rebuilds the index rows of every declared type whose stored rows were derived from other
    /// declarations. Returns the types rebuilt, with how many resources each had.
    pub(crate) async fn rebuild_stale_indexes(&self) -> Result<Vec<(&'static str, u64)>> {
        if !params::installed() {
            return Ok(Vec::new());
        }
        let d = self.dialect();
        let known: Vec<(String, String)> =
            sqlx::query("SELECT resource_type, fingerprint FROM index_state")
                .fetch_all(&self.inner.writer)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_>>()?;
        // A database from before the index state: its rows were derived by the same code from
        // the same declarations, but for the combined indexes, which came with the state.
        let predates = known.is_empty();
        if predates
            && sqlx::query("SELECT rid FROM resources LIMIT 1")
                .fetch_optional(&self.inner.writer)
                .await?
                .is_none()
        {
            // A new database: nothing to derive, every type current (one statement; a test
            // opens hundreds of these).
            let types = params::declared_types();
            let mut sql =
                String::from("INSERT INTO index_state (resource_type, fingerprint) VALUES ");
            let mut args = Vec::new();
            for (i, rt) in types.iter().enumerate() {
                sql.push_str(&format!(
                    "{}({}, {})",
                    if i > 0 { ", " } else { "" },
                    d.ph(2 * i + 1),
                    d.ph(2 * i + 2)
                ));
                args.push(crate::Arg::Text((*rt).to_owned()));
                args.push(crate::Arg::Text(params::fingerprint(rt)));
            }
            sql.push_str(" ON CONFLICT (resource_type) DO NOTHING");
            if !types.is_empty() {
                crate::bind_all(sqlx::query(&sql), &args)
                    .execute(&self.inner.writer)
                    .await?;
            }
            return Ok(Vec::new());
        }
        let mut rebuilt = Vec::new();
        for rt in params::declared_types() {
            let fp = params::fingerprint(rt);
            if known.iter().any(|(t, f)| t == rt && *f == fp) {
                continue;
            }
            let trusted = predates && params::combos_of(rt).next().is_none();
            let mut count = 0u64;
            loop {
                let mut tx = self.begin(&WriteKey::PLATFORM).await?;
                tx.lock(&format!("index-state:{rt}")).await?;
                let state = sqlx::query(&d.sql(
                    "SELECT fingerprint, building, cursor FROM index_state WHERE resource_type = $1",
                ))
                .bind(rt)
                .fetch_optional(tx.conn().await?)
                .await?;
                let (current, building, cursor) = match &state {
                    Some(r) => (
                        Some(r.try_get::<String, _>(0)?),
                        r.try_get::<Option<String>, _>(1)?,
                        r.try_get::<i64, _>(2)?,
                    ),
                    None => (None, None, 0),
                };
                if current.as_deref() == Some(fp.as_str()) {
                    // Another replica finished it.
                    break;
                }
                let cursor = if building.as_deref() == Some(fp.as_str()) {
                    cursor
                } else {
                    0
                };
                let rows = if trusted {
                    Vec::new()
                } else {
                    let lock = if d == Dialect::Postgres {
                        " FOR UPDATE"
                    } else {
                        ""
                    };
                    sqlx::query(&d.sql(&format!(
                        "SELECT rid, body FROM resources WHERE resource_type = $1 AND rid > $2 \
                         AND deleted = 0 ORDER BY rid LIMIT $3{lock}"
                    )))
                    .bind(rt)
                    .bind(cursor)
                    .bind(BATCH)
                    .fetch_all(tx.conn().await?)
                    .await?
                };
                let mut last = cursor;
                let mut rids = Vec::with_capacity(rows.len());
                for row in &rows {
                    let rid: i64 = row.try_get(0)?;
                    let body: String = row.try_get(1)?;
                    let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                        crate::StoreError::invalid(
                            format!("{rt} row {rid}"),
                            format!("stored JSON is unreadable: {e}"),
                        )
                    })?;
                    let index = extract::extract(rt, &value);
                    if let Some(name) = index.combo_overflow {
                        // Loud, not silent: a search through the index would miss it.
                        return Err(crate::StoreError::TooCostly(format!(
                            "{rt} row {rid} has more combinations of values than the combined \
                             index {name} holds (at most {}); correct it before upgrading",
                            params::MAX_COMBO_ROWS
                        )));
                    }
                    tx.pending_index.push((rid, rt.to_owned(), index));
                    rids.push(rid);
                    last = rid;
                }
                if !rids.is_empty() {
                    let list = d.int_list_arg(&rids);
                    for table in IndexTable::ALL {
                        crate::bind_all(
                            sqlx::query(&format!(
                                "DELETE FROM {} WHERE {}",
                                table.name(),
                                d.in_int_list("rid", 1)
                            )),
                            std::slice::from_ref(&list),
                        )
                        .execute(tx.conn().await?)
                        .await?;
                    }
                }
                count += rids.len() as u64;
                let done = (rows.len() as i64) < BATCH;
                let (fingerprint, building) = match (done, current) {
                    (true, _) => (Some(fp.clone()), None),
                    (false, Some(f)) => (Some(f), Some(fp.clone())),
                    (false, None) => (None, Some(fp.clone())),
                };
                // A type never rebuilt before holds an empty fingerprint while it is built.
                sqlx::query(&d.sql(
                    "INSERT INTO index_state (resource_type, fingerprint, building, cursor) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (resource_type) DO UPDATE SET \
                     fingerprint = excluded.fingerprint, building = excluded.building, \
                     cursor = excluded.cursor",
                ))
                .bind(rt)
                .bind(fingerprint.unwrap_or_default())
                .bind(building)
                .bind(if done { 0 } else { last })
                .execute(tx.conn().await?)
                .await?;
                tx.commit().await?;
                if done {
                    break;
                }
            }
            if count > 0 {
                tracing::info!(
                    resource_type = rt,
                    resources = count,
                    "index rebuilt for changed declarations"
                );
                rebuilt.push((rt, count));
            }
        }
        if !rebuilt.is_empty() {
            self.refresh_statistics().await?;
        }
        Ok(rebuilt)
    }
}
