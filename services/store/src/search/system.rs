//! A search across types (<https://hl7.org/fhir/R4B/http.html#search>, `GET [base]?_type=`):
//! each type's search is planned and compiled exactly as its own search is (so a patient's is
//! confined by the same compartment condition), one page query per type, and the pages are
//! merged by the one order every type shares: row id (the default) or `_lastUpdated`. The
//! keyset cursor is global, so the next page continues every type where the merge stopped.

use super::compile;
use super::parse::{self, SortKey};
use super::{SearchQuery, SearchResult};
use crate::read::current_from_row;
use crate::{Arg, Dialect, Result, StoreError, Version, bind_all};
use sqlx::{AnyConnection, Row};

/// The largest page of a search across types: each type is asked for a page, so this bounds
/// the rows one request reads to (types × this).
pub const MAX_SYSTEM_COUNT: usize = 100;

/// Runs the same search over several types: `searches` holds one query per type, with the
/// same parameters (each with its own compartment, when confined).
pub async fn run_system(
    d: Dialect,
    conn: &mut AnyConnection,
    searches: &[SearchQuery],
) -> Result<SearchResult> {
    let mut result = SearchResult::default();
    let mut rows: Vec<(i64, i64, Version)> = Vec::new();
    let mut count = 0;
    let mut descending = false;
    let mut total: Option<i64> = None;
    for (n, query) in searches.iter().enumerate() {
        let plan = parse::parse(query)?;
        if !plan.includes.is_empty() || !plan.revincludes.is_empty() {
            return Err(StoreError::BadSearch(
                "_include and _revinclude are for a search of one type".into(),
            ));
        }
        if !matches!(plan.sort, SortKey::Rid | SortKey::LastUpdated) {
            return Err(StoreError::BadSearch(
                "a search across types sorts by _id or _lastUpdated only".into(),
            ));
        }
        if n == 0 {
            result.applied = plan.applied.clone();
            result.ignored = plan.ignored.clone();
        }
        count = plan.count.min(MAX_SYSTEM_COUNT);
        descending = plan.descending;
        let mut sql = compile::where_clause(d, &plan);
        let where_sql = sql.conds.join(" AND ");
        if plan.total || plan.summary_count {
            let q = format!("SELECT COUNT(*) FROM {} WHERE {where_sql}", sql.from);
            let row = bind_all(sqlx::query(&q).persistent(false), &sql.args)
                .fetch_one(&mut *conn)
                .await?;
            *total.get_or_insert(0) += row.try_get::<i64, _>(0)?;
            if plan.summary_count {
                continue;
            }
        }
        if count == 0 {
            continue;
        }
        let key = compile::sort_key(&mut sql, &plan);
        let (cmp, dir) = if descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let mut conds = where_sql;
        if let Some((k, rid)) = plan.cursor {
            let a = sql.arg(Arg::I64(k));
            let b = sql.arg(Arg::I64(rid));
            conds = format!("{conds} AND ({key} {cmp} {a} OR ({key} = {a} AND r.rid {cmp} {b}))");
        }
        let limit = sql.arg(Arg::I64(count as i64 + 1));
        let q = format!(
            "SELECT r.resource_type, r.resource_id, r.version_id, r.last_updated, r.body, r.rid, {key} AS sort_key \
             FROM {} WHERE {conds} ORDER BY sort_key {dir}, r.rid {dir} LIMIT {limit}",
            sql.from
        );
        for row in bind_all(sqlx::query(&q).persistent(false), &sql.args)
            .fetch_all(&mut *conn)
            .await?
        {
            rows.push((row.try_get(6)?, row.try_get(5)?, current_from_row(&row)?));
        }
    }
    result.total = total;
    rows.sort_by_key(|(k, rid, _)| (*k, *rid));
    if descending {
        rows.reverse();
    }
    let more = rows.len() > count;
    rows.truncate(count);
    if more && let Some((k, rid, _)) = rows.last() {
        result.next_cursor = Some(format!("{k}.{rid}"));
    }
    result.matches = rows.into_iter().map(|(_, _, v)| v).collect();
    Ok(result)
}
