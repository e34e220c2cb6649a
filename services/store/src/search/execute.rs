//! Running a compiled search: one query for the page (and one for `_total`), one per
//! `_include` / `_revinclude` for the page's matches.

use super::compile::{self, Sql};
use super::parse;
use super::{SearchQuery, SearchResult};
use crate::read::current_from_row;
use crate::{Arg, Dialect, Result, bind_all};
use sqlx::{AnyConnection, Row};

/// A search's statement, planned for its own values every time (never kept prepared): how
/// selective a search is depends entirely on its values (a specialty nobody offers by video,
/// a day of one doctor), and a plan PostgreSQL made once for any values — its "generic" plan
/// after five runs of a prepared statement — took 150 ms where the planned one takes 1 ms.
/// Generated SQL also has too many shapes to be worth a place in the statement cache. The one
/// exception is a search whose plan cannot depend on its values ([`plan_stable`]).
fn unprepared(q: &str) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(q).persistent(false)
}

/// Whether the best plan for a search's page cannot depend on its values: one exact
/// identifier (`system|value`) or one id, in the default order, nothing else. Such a search —
/// the commonest a clinic makes, finding a patient by personal ID — keeps its statement
/// prepared: parsed once per connection, and PostgreSQL may reuse one plan for it (planning
/// every search was 18 % of the machine under a PostgreSQL identifier-search load), since its
/// generic plan for an equality on a near-unique key is the plan any value would get. (Whether
/// PostgreSQL still chooses the generic plan after `ANALYZE` is open: BENCHMARKS.md, fifth
/// round.)
fn plan_stable(plan: &parse::Plan) -> bool {
    use parse::{Condition, SortKey, TokenValue};
    let one = match plan.conditions.as_slice() {
        [Condition::Id(ids)] => ids.len() == 1,
        [
            Condition::Token {
                param,
                negated: false,
                values,
            },
        ] => param.name == "identifier" && matches!(values.as_slice(), [TokenValue::SystemCode(_)]),
        _ => false,
    };
    one && matches!(plan.sort, SortKey::Rid) && !plan.descending && plan.cursor.is_none()
}

/// Runs `query` on `conn`.
pub async fn run(
    d: Dialect,
    conn: &mut AnyConnection,
    query: &SearchQuery,
) -> Result<SearchResult> {
    let plan = parse::parse(query)?;
    let mut result = SearchResult {
        applied: plan.applied.clone(),
        ignored: plan.ignored.clone(),
        ..Default::default()
    };
    let mut sql = compile::where_clause(d, &plan);
    let where_sql = sql.conds.join(" AND ");
    if plan.total || plan.summary_count {
        let q = format!("SELECT COUNT(*) FROM {} WHERE {where_sql}", sql.from);
        let row = bind_all(unprepared(&q), &sql.args)
            .fetch_one(&mut *conn)
            .await?;
        result.total = Some(row.try_get(0)?);
        if plan.summary_count {
            return Ok(result);
        }
    }

    let key_expr = compile::sort_key(&mut sql, &plan);
    let (cmp, dir) = if plan.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    // A search the joined combined index answers alone, in an order it holds (row id, or its
    // date): the page's rows are chosen from the index, then only they are read. Otherwise
    // the database may read every match's row before it sorts and cuts (3,600 rows, 11 ms).
    let index_order = match plan.sort {
        parse::SortKey::Rid => Some("c.rid"),
        parse::SortKey::Date(p) if sql.joined_date == Some(p) => Some("c.lo"),
        _ => None,
    };
    let q = match (&sql.combo_only, index_order) {
        (Some(only), Some(col)) => {
            let mut inner = only.clone();
            if let Some((k, rid)) = plan.cursor {
                let a = sql.arg(Arg::I64(k));
                let b = sql.arg(Arg::I64(rid));
                inner =
                    format!("{inner} AND ({col} {cmp} {a} OR ({col} = {a} AND c.rid {cmp} {b}))");
            }
            let limit = sql.arg(Arg::I64(plan.count as i64 + 1));
            format!(
                "SELECT r.resource_type, r.resource_id, r.version_id, r.last_updated, r.body, r.rid, c.sk AS sort_key \
                 FROM (SELECT c.rid, {col} AS sk FROM idx_combo c WHERE {inner} \
                 ORDER BY sk {dir}, c.rid {dir} LIMIT {limit}) c JOIN resources r ON r.rid = c.rid \
                 WHERE r.deleted = 0 ORDER BY sort_key {dir}, r.rid {dir}"
            )
        }
        _ => {
            let mut conds = where_sql;
            if let Some((k, rid)) = plan.cursor {
                let a = sql.arg(Arg::I64(k));
                let b = sql.arg(Arg::I64(rid));
                conds = format!(
                    "{conds} AND ({key_expr} {cmp} {a} OR ({key_expr} = {a} AND r.rid {cmp} {b}))"
                );
            }
            let limit = sql.arg(Arg::I64(plan.count as i64 + 1));
            format!(
                "SELECT r.resource_type, r.resource_id, r.version_id, r.last_updated, r.body, r.rid, {key_expr} AS sort_key \
                 FROM {} WHERE {conds} ORDER BY sort_key {dir}, r.rid {dir} LIMIT {limit}",
                sql.from
            )
        }
    };
    let rows = if plan.count == 0 {
        Vec::new()
    } else if plan_stable(&plan) {
        bind_all(sqlx::query(&q), &sql.args)
            .fetch_all(&mut *conn)
            .await?
    } else {
        bind_all(unprepared(&q), &sql.args)
            .fetch_all(&mut *conn)
            .await?
    };
    let mut last = None;
    let mut rids = Vec::new();
    for row in rows.iter().take(plan.count) {
        result.matches.push(current_from_row(row)?);
        let rid: i64 = row.try_get(5)?;
        let key: i64 = row.try_get(6)?;
        rids.push(rid);
        last = Some((key, rid));
    }
    if rows.len() > plan.count
        && let Some((k, rid)) = last
    {
        result.next_cursor = Some(format!("{k}.{rid}"));
    }

    // The includes: the page's, then `:iterate` rounds over what the last round added.
    let mut seen: std::collections::HashSet<(String, String)> = result
        .matches
        .iter()
        .map(|v| (v.resource_type.clone(), v.id.clone()))
        .collect();
    let mut frontier: Vec<(String, i64, String)> = result
        .matches
        .iter()
        .zip(&rids)
        .map(|(v, rid)| (v.resource_type.clone(), *rid, v.id.clone()))
        .collect();
    let iterates = plan
        .includes
        .iter()
        .chain(&plan.revincludes)
        .any(|i| i.iterate);
    for round in 0..=super::MAX_INCLUDE_ROUNDS {
        if frontier.is_empty() || (round > 0 && !iterates) {
            break;
        }
        if round > 0 && result.included.len() >= super::MAX_INCLUDED {
            result.ignored.push(format!(
                "`:iterate` stopped after {} included resources",
                super::MAX_INCLUDED
            ));
            break;
        }
        let mut next = Vec::new();
        for (v, rid) in include_round(d, conn, &plan, &frontier, round == 0).await? {
            if seen.insert((v.resource_type.clone(), v.id.clone())) {
                next.push((v.resource_type.clone(), rid, v.id.clone()));
                result.included.push(v);
            }
        }
        frontier = next;
    }
    Ok(result)
}

/// What one round of includes adds from `frontier` (type, row id, id): on the first round the
/// page's matches and every include; later, what the last round added and the `:iterate` ones.
/// One query per include and type.
async fn include_round(
    d: Dialect,
    conn: &mut AnyConnection,
    plan: &parse::Plan,
    frontier: &[(String, i64, String)],
    first: bool,
) -> Result<Vec<(crate::Version, i64)>> {
    let mut out = Vec::new();
    for inc in plan.includes.iter().filter(|i| first || i.iterate) {
        let rids: Vec<i64> = frontier
            .iter()
            .filter(|(t, ..)| *t == inc.source)
            .map(|(_, rid, _)| *rid)
            .collect();
        if rids.is_empty() {
            continue;
        }
        let mut s = Sql::new(d);
        s.args.push(d.int_list_arg(&rids));
        let rid_list = d.in_int_list("i.rid", 1);
        let p = s.arg(Arg::Text(inc.param.name.to_owned()));
        let src = s.arg(Arg::Text(inc.source.clone()));
        let mut q = format!(
            "SELECT DISTINCT t.resource_type, t.resource_id, t.version_id, t.last_updated, t.body, t.rid \
             FROM idx_reference i JOIN resources t ON t.resource_type = i.target_type AND t.resource_id = i.target_id \
             WHERE {rid_list} AND i.resource_type = {src} AND i.param = {p} AND t.deleted = 0"
        );
        if let Some(target) = &inc.target {
            let a = s.arg(Arg::Text(target.clone()));
            q.push_str(&format!(" AND i.target_type = {a}"));
        }
        q.push_str(" ORDER BY t.rid");
        for row in bind_all(unprepared(&q), &s.args)
            .fetch_all(&mut *conn)
            .await?
        {
            out.push((current_from_row(&row)?, row.try_get(5)?));
        }
    }
    for inc in plan.revincludes.iter().filter(|i| first || i.iterate) {
        let mut types: Vec<&str> = frontier.iter().map(|(t, ..)| t.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        for t in types {
            if !(inc.param.targets.is_empty() || inc.param.targets.contains(&t)) {
                continue;
            }
            let ids: Vec<String> = frontier
                .iter()
                .filter(|(ft, ..)| ft == t)
                .map(|(.., id)| id.clone())
                .collect();
            let mut s = Sql::new(d);
            s.args.push(d.list_arg(&ids));
            let id_list = d.in_list("i.target_id", 1);
            let src = s.arg(Arg::Text(inc.source.clone()));
            let p = s.arg(Arg::Text(inc.param.name.to_owned()));
            let tt = s.arg(Arg::Text(t.to_owned()));
            let q = format!(
                "SELECT t.resource_type, t.resource_id, t.version_id, t.last_updated, t.body, t.rid \
                 FROM resources t WHERE t.deleted = 0 AND t.rid IN (SELECT i.rid FROM idx_reference i \
                 WHERE i.resource_type = {src} AND i.param = {p} AND i.target_type = {tt} AND {id_list}) ORDER BY t.rid"
            );
            for row in bind_all(unprepared(&q), &s.args)
                .fetch_all(&mut *conn)
                .await?
            {
                out.push((current_from_row(&row)?, row.try_get(5)?));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stable(params: &[(&str, &str)]) -> bool {
        use super::compile::tests::{COMBOS, PARAMS};
        crate::params::install(&[PARAMS], &[COMBOS]).unwrap();
        let q = SearchQuery::new(
            "Patient",
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        plan_stable(&parse::parse(&q).expect("a valid search"))
    }

    #[test]
    fn only_one_exact_identifier_or_id_in_the_default_order_keeps_its_statement() {
        assert!(stable(&[("identifier", "urn:sys|051085000127")]));
        assert!(stable(&[("_id", "p1")]));
        assert!(stable(&[("identifier", "urn:sys|1"), ("_count", "5")]));
        // Plans that may depend on the values, or other shapes: planned every time.
        assert!(!stable(&[("identifier", "051085000127")]));
        assert!(!stable(&[("identifier", "urn:sys|")]));
        assert!(!stable(&[("identifier", "urn:sys|1,urn:sys|2")]));
        assert!(!stable(&[("_id", "p1,p2")]));
        assert!(!stable(&[("identifier", "urn:sys|1"), ("gender", "male")]));
        assert!(!stable(&[
            ("identifier", "urn:sys|1"),
            ("_sort", "-_lastUpdated")
        ]));
        assert!(!stable(&[("name", "Nguyen")]));
    }
}
