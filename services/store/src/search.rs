//! FHIR search (<https://hl7.org/fhir/R4B/search.html>) compiled to one indexed SQL query per
//! page. Paging is keyset (`_cursor`), never OFFSET, so a `next` link stays correct while
//! resources are being inserted. Multiple values of one parameter are bound as one list
//! parameter, never as an OR chain of placeholders.

use crate::dates::{self, Range};
use crate::params::{self, ParamKind, SearchParam};
use crate::read::current_from_row;
use crate::text::fold;
use crate::{Arg, Dialect, Result, StoreError, Version, bind_all};
use sqlx::{AnyConnection, Row};

/// Default and maximum page sizes.
pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 1000;

/// A search request as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub resource_type: String,
    /// Query parameters in order, names with their modifiers (`name:exact`).
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=lenient`: unknown parameters are ignored (and reported).
    pub lenient: bool,
    /// Confine the results to one Patient's compartment (a patient's own token).
    pub compartment: Option<String>,
}

impl SearchQuery {
    pub fn new(resource_type: &str, params: Vec<(String, String)>) -> Self {
        SearchQuery {
            resource_type: resource_type.to_owned(),
            params,
            lenient: false,
            compartment: None,
        }
    }
}

/// A page of results.
#[derive(Debug, Default)]
pub struct SearchResult {
    pub matches: Vec<Version>,
    /// Resources added by `_include` / `_revinclude`.
    pub included: Vec<Version>,
    /// Present for `_total=accurate` and `_summary=count`.
    pub total: Option<i64>,
    /// Keyset cursor for the next page.
    pub next_cursor: Option<String>,
    /// Parameters ignored under lenient handling, with the reason.
    pub ignored: Vec<String>,
    /// The query parameters that shaped the result (for `self` and `next` links).
    pub applied: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

fn split_prefix(v: &str) -> (Prefix, &str) {
    let p = match v.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, v),
    };
    (p, &v[2..])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Rid,
    LastUpdated,
    Date(&'static str),
}

/// The SQL being assembled: conditions over the alias `r` (table `resources`) and the binds.
struct Sql {
    d: Dialect,
    conds: Vec<String>,
    args: Vec<Arg>,
    /// Conditions on each date parameter, combined into one subquery per parameter.
    date_groups: Vec<(&'static str, Vec<String>)>,
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        self.d.ph(self.args.len())
    }
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::BadSearch(msg.into())
}

/// Splits a parameter value on unescaped commas (`\,` is a literal comma).
pub fn split_values(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap_or(&mut String::new()).push(n);
                }
            }
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c)
                }
            }
        }
    }
    out
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_range(value: &str, name: &str) -> Result<Range> {
    dates::parse_range(value).ok_or_else(|| {
        bad(format!(
            "`{value}` is not a valid date for parameter `{name}`"
        ))
    })
}

/// SQL condition for a date comparison between the target columns and the search range
/// (<https://hl7.org/fhir/R4B/search.html#prefix>).
/// `max_width`: the widest range a stored value of the parameter can cover, when known (a
/// date or dateTime covers at most a year; a Period is unbounded). It turns `ge`/`gt` into a
/// bounded scan of the index on `lo`.
fn date_cond(
    sql: &mut Sql,
    lo: &str,
    hi: &str,
    prefix: Prefix,
    r: Range,
    max_width: Option<i64>,
) -> Result<String> {
    let slo = sql.arg(Arg::I64(r.lo));
    let shi = sql.arg(Arg::I64(r.hi));
    if let Some(w) = max_width {
        match prefix {
            Prefix::Ge => {
                let floor = sql.arg(Arg::I64(r.lo.saturating_sub(w)));
                return Ok(format!("({hi} >= {slo} AND {lo} >= {floor})"));
            }
            Prefix::Gt => {
                let floor = sql.arg(Arg::I64(r.hi.saturating_sub(w)));
                return Ok(format!("({hi} > {shi} AND {lo} > {floor})"));
            }
            _ => {}
        }
    }
    Ok(match prefix {
        // `lo <= shi` is implied; it lets the index on `lo` bound the scan on both sides.
        Prefix::Eq | Prefix::Ap => format!("({lo} >= {slo} AND {lo} <= {shi} AND {hi} <= {shi})"),
        Prefix::Ne => format!("NOT ({lo} >= {slo} AND {hi} <= {shi})"),
        Prefix::Gt => format!("{hi} > {shi}"),
        Prefix::Lt => format!("{lo} < {slo}"),
        Prefix::Ge => format!("{hi} >= {slo}"),
        Prefix::Le => format!("{lo} <= {shi}"),
        Prefix::Sa => format!("{lo} > {shi}"),
        Prefix::Eb => format!("{hi} < {slo}"),
    })
}

/// Numeric comparison; `eq` honours the precision of the value given (`5.4` means [5.35, 5.45)).
fn number_cond(sql: &mut Sql, col: &str, prefix: Prefix, raw: &str, name: &str) -> Result<String> {
    let n: f64 = raw
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| bad(format!("`{raw}` is not a number for parameter `{name}`")))?;
    let decimals = raw.split_once('.').map_or(0, |(_, f)| {
        f.trim_end_matches(|c: char| !c.is_ascii_digit()).len()
    });
    let half = 0.5 * 10f64.powi(-(decimals as i32));
    Ok(match prefix {
        Prefix::Eq => {
            let lo = sql.arg(Arg::F64(n - half));
            let hi = sql.arg(Arg::F64(n + half));
            format!("({col} >= {lo} AND {col} < {hi})")
        }
        Prefix::Ap => {
            let lo = sql.arg(Arg::F64(n * 0.9));
            let hi = sql.arg(Arg::F64(n * 1.1));
            format!("({col} >= {lo} AND {col} <= {hi})")
        }
        Prefix::Ne => {
            let lo = sql.arg(Arg::F64(n - half));
            let hi = sql.arg(Arg::F64(n + half));
            format!("NOT ({col} >= {lo} AND {col} < {hi})")
        }
        Prefix::Gt | Prefix::Sa => format!("{col} > {}", sql.arg(Arg::F64(n))),
        Prefix::Lt | Prefix::Eb => format!("{col} < {}", sql.arg(Arg::F64(n))),
        Prefix::Ge => format!("{col} >= {}", sql.arg(Arg::F64(n))),
        Prefix::Le => format!("{col} <= {}", sql.arg(Arg::F64(n))),
    })
}

fn index_table(kind: ParamKind) -> &'static str {
    crate::index::IndexTable::of(kind).name()
}

/// Adds the condition of one declared parameter.
fn param_cond(
    sql: &mut Sql,
    rt: &str,
    p: &'static SearchParam,
    modifier: Option<&str>,
    value: &str,
) -> Result<()> {
    let table = index_table(p.kind);
    let name = p.name;
    let sub = |sql: &mut Sql, inner: &str| -> String {
        let t = sql.arg(Arg::Text(rt.to_owned()));
        let n = sql.arg(Arg::Text(name.to_owned()));
        format!("SELECT rid FROM {table} WHERE resource_type = {t} AND param = {n} AND ({inner})")
    };
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad(format!("`{name}:missing` takes true or false"))),
        };
        let t = sql.arg(Arg::Text(rt.to_owned()));
        let n = sql.arg(Arg::Text(name.to_owned()));
        let s = format!("SELECT rid FROM {table} WHERE resource_type = {t} AND param = {n}");
        sql.conds.push(if missing {
            format!("r.rid NOT IN ({s})")
        } else {
            format!("r.rid IN ({s})")
        });
        return Ok(());
    }
    let values = split_values(value);
    if values.iter().any(String::is_empty) {
        return Err(bad(format!("parameter `{name}` has an empty value")));
    }
    match p.kind {
        ParamKind::Token => {
            if !matches!(modifier, None | Some("not")) {
                return Err(bad(format!(
                    "modifier `:{}` is not supported on token parameter `{name}`",
                    modifier.unwrap_or_default()
                )));
            }
            let mut code_only = Vec::new();
            let mut with_system = Vec::new();
            let mut no_system = Vec::new();
            let mut system_only = Vec::new();
            for v in &values {
                match v.split_once('|') {
                    None => code_only.push(v.clone()),
                    Some(("", code)) => no_system.push(code.to_owned()),
                    Some((system, "")) => system_only.push(system.to_owned()),
                    Some((system, code)) => with_system.push(format!("{system}|{code}")),
                }
            }
            let d = sql.d;
            let mut ors = Vec::new();
            let list = |sql: &mut Sql, col: &str, vals: Vec<String>| -> String {
                if vals.len() == 1 {
                    let a = sql.arg(Arg::Text(vals.into_iter().next().unwrap_or_default()));
                    format!("{col} = {a}")
                } else {
                    sql.args.push(d.list_arg(&vals));
                    d.in_list(col, sql.args.len())
                }
            };
            if !code_only.is_empty() {
                ors.push(list(sql, "code", code_only));
            }
            if !with_system.is_empty() {
                ors.push(list(sql, "sc", with_system));
            }
            if !no_system.is_empty() {
                let l = list(sql, "code", no_system);
                ors.push(format!("(system = '' AND {l})"));
            }
            if !system_only.is_empty() {
                ors.push(list(sql, "system", system_only));
            }
            let inner = ors.join(" OR ");
            let s = sub(sql, &inner);
            sql.conds.push(if modifier == Some("not") {
                format!("r.rid NOT IN ({s})")
            } else {
                format!("r.rid IN ({s})")
            });
        }
        ParamKind::String => {
            let mut ors = Vec::new();
            for v in &values {
                match modifier {
                    None => {
                        // A prefix as a range over the folded values, so both backends walk
                        // their index (LIKE cannot use SQLite's, being case-insensitive).
                        let folded = fold(v);
                        let lo = sql.arg(Arg::Text(folded.clone()));
                        let hi = sql.arg(Arg::Text(format!("{folded}\u{10FFFF}")));
                        ors.push(format!("(value >= {lo} AND value <= {hi})"));
                    }
                    Some("contains") => {
                        let a = sql.arg(Arg::Text(format!("%{}%", like_escape(&fold(v)))));
                        ors.push(format!("value LIKE {a} ESCAPE '\\'"));
                    }
                    Some("exact") => {
                        let f = sql.arg(Arg::Text(fold(v)));
                        let a = sql.arg(Arg::Text(v.clone()));
                        ors.push(format!("(value = {f} AND raw = {a})"));
                    }
                    Some(m) => {
                        return Err(bad(format!(
                            "modifier `:{m}` is not supported on string parameter `{name}`"
                        )));
                    }
                }
            }
            let s = sub(sql, &ors.join(" OR "));
            sql.conds.push(format!("r.rid IN ({s})"));
        }
        ParamKind::Date => {
            if let Some(m) = modifier {
                return Err(bad(format!(
                    "modifier `:{m}` is not supported on date parameter `{name}`"
                )));
            }
            // Every declared date parameter is single-valued (birthDate, period, effective[x],
            // ...), so repeated conditions (`date=ge..&date=le..`) can test the same index row:
            // they join the group of this parameter and become one range subquery.
            let mut ors = Vec::new();
            for v in &values {
                let (prefix, raw) = split_prefix(v);
                let r = parse_range(raw, name)?;
                // Values of date/dateTime paths span at most a (leap) year; Periods have no bound.
                let width = (!p
                    .paths
                    .iter()
                    .any(|path| path.to_ascii_lowercase().contains("period")))
                .then_some(366 * 86_400 * 1_000_000);
                ors.push(date_cond(sql, "lo", "hi", prefix, r, width)?);
            }
            let cond = format!("({})", ors.join(" OR "));
            match sql.date_groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, conds)) => conds.push(cond),
                None => sql.date_groups.push((name, vec![cond])),
            }
        }
        ParamKind::Reference => {
            let target_filter = match modifier {
                None => None,
                Some(t) if t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => Some(t),
                Some(m) => {
                    return Err(bad(format!(
                        "modifier `:{m}` is not supported on reference parameter `{name}`"
                    )));
                }
            };
            let mut ids = Vec::new();
            let mut typed = Vec::new();
            for v in &values {
                // Absolute references to this server: keep the last two segments.
                let segs: Vec<&str> = v.trim_end_matches('/').rsplit('/').take(2).collect();
                match (segs.first(), segs.get(1), target_filter) {
                    (Some(id), Some(t), None) if v.contains('/') => {
                        if !crate::is_valid_id(id) {
                            return Err(bad(format!(
                                "`{v}` is not a valid reference for `{name}`"
                            )));
                        }
                        typed.push(format!("{t}/{id}"));
                    }
                    (Some(id), _, Some(t)) if !v.contains('/') => typed.push(format!("{t}/{id}")),
                    (Some(id), _, None) if !v.contains('/') => ids.push((*id).to_owned()),
                    _ => return Err(bad(format!("`{v}` is not a valid reference for `{name}`"))),
                }
            }
            for id in ids.iter().chain(typed.iter()) {
                let id = id.rsplit('/').next().unwrap_or_default();
                if !crate::is_valid_id(id) {
                    return Err(bad(format!("`{id}` is not a valid id for `{name}`")));
                }
            }
            let d = sql.d;
            let mut ors = Vec::new();
            if !ids.is_empty() {
                if ids.len() == 1 {
                    let a = sql.arg(Arg::Text(ids.remove(0)));
                    ors.push(format!("target_id = {a}"));
                } else {
                    sql.args.push(d.list_arg(&ids));
                    ors.push(d.in_list("target_id", sql.args.len()));
                }
            }
            for t in typed {
                let (ty, id) = t.split_once('/').unwrap_or_default();
                let a = sql.arg(Arg::Text(ty.to_owned()));
                let b = sql.arg(Arg::Text(id.to_owned()));
                ors.push(format!("(target_type = {a} AND target_id = {b})"));
            }
            let s = sub(sql, &ors.join(" OR "));
            sql.conds.push(format!("r.rid IN ({s})"));
        }
        ParamKind::Quantity | ParamKind::Number => {
            if let Some(m) = modifier {
                return Err(bad(format!("modifier `:{m}` is not supported on `{name}`")));
            }
            let mut ors = Vec::new();
            for v in &values {
                let mut parts = v.splitn(3, '|');
                let number = parts.next().unwrap_or_default();
                let system = parts.next();
                let code = parts.next();
                let (prefix, raw) = split_prefix(number);
                let mut c = number_cond(sql, "value", prefix, raw, name)?;
                if let Some(s) = system.filter(|s| !s.is_empty()) {
                    c = format!("{c} AND system = {}", sql.arg(Arg::Text(s.to_owned())));
                }
                if let Some(code) = code.filter(|s| !s.is_empty()) {
                    c = format!("{c} AND code = {}", sql.arg(Arg::Text(code.to_owned())));
                }
                ors.push(format!("({c})"));
            }
            let s = sub(sql, &ors.join(" OR "));
            sql.conds.push(format!("r.rid IN ({s})"));
        }
    }
    Ok(())
}

/// A parsed `_include` / `_revinclude` value `Source:param[:Target]`.
struct Include {
    source: String,
    param: &'static SearchParam,
    target: Option<String>,
}

fn parse_include(v: &str, rt: &str, rev: bool) -> Result<Include> {
    let mut parts = v.split(':');
    let source = parts.next().unwrap_or_default();
    let pname = parts.next().unwrap_or_default();
    let target = parts.next().map(str::to_owned);
    if source == "*" || pname == "*" {
        return Err(bad("wildcard includes are not supported"));
    }
    if !rev && source != rt {
        return Err(bad(format!(
            "_include must start with the searched type {rt}"
        )));
    }
    let p = params::find(source, pname)
        .filter(|p| p.kind == ParamKind::Reference)
        .ok_or_else(|| bad(format!("`{v}` does not name a reference search parameter")))?;
    Ok(Include {
        source: source.to_owned(),
        param: p,
        target,
    })
}

/// Runs `query` on `conn`.
pub async fn run(
    d: Dialect,
    conn: &mut AnyConnection,
    query: &SearchQuery,
) -> Result<SearchResult> {
    let rt = query.resource_type.as_str();
    let mut sql = Sql {
        d,
        conds: Vec::new(),
        args: Vec::new(),
        date_groups: Vec::new(),
    };
    sql.conds.push("r.deleted = 0".into());

    if let Some(pid) = &query.compartment {
        // The compartment's own parameters only (params::PATIENT_COMPARTMENT), so that e.g.
        // an Encounter a patient merely takes part in is not theirs.
        let names: Vec<String> = params::compartment_params(rt)
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        let a = sql.arg(Arg::Text(pid.clone()));
        let by_reference = if names.is_empty() {
            None
        } else {
            let t = sql.arg(Arg::Text(rt.to_owned()));
            sql.args.push(d.list_arg(&names));
            let list = d.in_list("param", sql.args.len());
            Some(format!(
                "r.rid IN (SELECT rid FROM idx_reference WHERE resource_type = {t} AND {list} \
                 AND target_type = 'Patient' AND target_id = {a})"
            ))
        };
        sql.conds.push(match (rt == "Patient", by_reference) {
            (true, Some(r)) => format!("(r.resource_id = {a} OR {r})"),
            (true, None) => format!("r.resource_id = {a}"),
            (false, Some(r)) => r,
            (false, None) => "1 = 0".to_owned(),
        });
    }
    let mut count = DEFAULT_COUNT;
    let mut sort = SortKey::Rid;
    let mut descending = false;
    let mut includes = Vec::new();
    let mut revincludes = Vec::new();
    let mut summary_count = false;
    let mut total = false;
    let mut cursor: Option<String> = None;
    let mut result = SearchResult::default();

    for (key, value) in &query.params {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key.as_str(), None),
        };
        let outcome: Result<()> = (|| {
            if value
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(bad(format!(
                    "the value of `{key}` contains control characters"
                )));
            }
            match name {
                "_count" => {
                    count = value
                        .parse::<usize>()
                        .map_err(|_| bad(format!("_count must be a whole number, not `{value}`")))?
                        .min(MAX_COUNT);
                }
                "_sort" => {
                    let (desc, field) = match value.strip_prefix('-') {
                        Some(f) => (true, f),
                        None => (false, value.as_str()),
                    };
                    descending = desc;
                    sort = match field {
                        "_lastUpdated" => SortKey::LastUpdated,
                        "_id" => SortKey::Rid,
                        f => match params::find(rt, f) {
                            Some(p) if p.kind == ParamKind::Date => SortKey::Date(p.name),
                            _ => {
                                return Err(bad(format!(
                                    "_sort supports _lastUpdated and date parameters, not `{f}`"
                                )));
                            }
                        },
                    };
                }
                "_include" => includes.push(parse_include(value, rt, false)?),
                "_revinclude" => revincludes.push(parse_include(value, rt, true)?),
                "_summary" => match value.as_str() {
                    "count" => summary_count = true,
                    "false" => {}
                    v => return Err(bad(format!("_summary={v} is not supported"))),
                },
                "_total" => match value.as_str() {
                    "accurate" => total = true,
                    "none" | "estimate" => {}
                    v => return Err(bad(format!("_total={v} is not valid"))),
                },
                "_cursor" => cursor = Some(value.clone()),
                "_format" | "_pretty" => {}
                "_id" => {
                    if modifier.is_some() {
                        return Err(bad("_id takes no modifier"));
                    }
                    let ids = split_values(value);
                    if ids.iter().any(|i| !crate::is_valid_id(i)) {
                        return Err(bad(format!("`{value}` is not a valid _id")));
                    }
                    if ids.len() == 1 {
                        let a = sql.arg(Arg::Text(ids[0].clone()));
                        sql.conds.push(format!("r.resource_id = {a}"));
                    } else {
                        sql.args.push(d.list_arg(&ids));
                        let c = d.in_list("r.resource_id", sql.args.len());
                        sql.conds.push(c);
                    }
                }
                "_lastUpdated" => {
                    let mut ors = Vec::new();
                    for v in split_values(value) {
                        let (prefix, raw) = split_prefix(&v);
                        let r = parse_range(raw, "_lastUpdated")?;
                        ors.push(date_cond(
                            &mut sql,
                            "r.last_updated",
                            "r.last_updated",
                            prefix,
                            r,
                            None,
                        )?);
                    }
                    sql.conds.push(format!("({})", ors.join(" OR ")));
                }
                _ => {
                    let p = params::find(rt, name).ok_or_else(|| {
                        bad(format!("unknown search parameter `{name}` for {rt}"))
                    })?;
                    param_cond(&mut sql, rt, p, modifier, value)?;
                }
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                if name != "_cursor" {
                    result.applied.push((key.clone(), value.clone()));
                }
            }
            Err(StoreError::BadSearch(msg)) if query.lenient => result.ignored.push(msg),
            Err(e) => return Err(e),
        }
    }

    // Every parameter condition already names the resource type; testing it again on
    // `resources` tempts the planner to scan all resources of the type instead of driving
    // from the (selective) index subqueries.
    let typed = sql
        .conds
        .iter()
        .any(|c| c.starts_with("r.rid IN (SELECT rid FROM idx_") && c.contains("resource_type = "));
    if !typed && sql.date_groups.is_empty() {
        let t = sql.arg(Arg::Text(rt.to_owned()));
        sql.conds.push(format!("r.resource_type = {t}"));
    }
    for (name, conds) in std::mem::take(&mut sql.date_groups) {
        let t = sql.arg(Arg::Text(rt.to_owned()));
        let n = sql.arg(Arg::Text(name.to_owned()));
        sql.conds.push(format!(
            "r.rid IN (SELECT rid FROM idx_date WHERE resource_type = {t} AND param = {n} AND {})",
            conds.join(" AND ")
        ));
    }
    let where_sql = sql.conds.join(" AND ");
    if total || summary_count {
        let q = format!("SELECT COUNT(*) FROM resources r WHERE {where_sql}");
        let row = bind_all(sqlx::query(&q), &sql.args)
            .fetch_one(&mut *conn)
            .await?;
        result.total = Some(row.try_get(0)?);
        if summary_count {
            return Ok(result);
        }
    }

    let key_expr = match sort {
        SortKey::Rid => "r.rid".to_owned(),
        SortKey::LastUpdated => "r.last_updated".to_owned(),
        SortKey::Date(p) => {
            let t = sql.arg(Arg::Text(rt.to_owned()));
            let n = sql.arg(Arg::Text(p.to_owned()));
            // Resources without the date sort last in either direction.
            let missing = if descending { i64::MIN } else { i64::MAX };
            format!(
                "COALESCE((SELECT MIN(lo) FROM idx_date WHERE rid = r.rid AND resource_type = {t} AND param = {n}), {missing})"
            )
        }
    };
    let (cmp, dir) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let mut conds = where_sql;
    if let Some(c) = &cursor {
        let (k, rid) = c
            .split_once('.')
            .and_then(|(k, r)| Some((k.parse::<i64>().ok()?, r.parse::<i64>().ok()?)))
            .ok_or_else(|| bad("the _cursor value is not one this server issued"))?;
        let a = sql.arg(Arg::I64(k));
        let b = sql.arg(Arg::I64(rid));
        conds =
            format!("{conds} AND ({key_expr} {cmp} {a} OR ({key_expr} = {a} AND r.rid {cmp} {b}))");
    }
    let limit = sql.arg(Arg::I64(count as i64 + 1));
    let q = format!(
        "SELECT r.resource_type, r.resource_id, r.version_id, r.last_updated, r.body, r.rid, {key_expr} AS sort_key \
         FROM resources r WHERE {conds} ORDER BY sort_key {dir}, r.rid {dir} LIMIT {limit}"
    );
    let rows = if count == 0 {
        Vec::new()
    } else {
        bind_all(sqlx::query(&q), &sql.args)
            .fetch_all(&mut *conn)
            .await?
    };
    let mut last = None;
    let mut rids = Vec::new();
    for row in rows.iter().take(count) {
        result.matches.push(current_from_row(row)?);
        let rid: i64 = row.try_get(5)?;
        let key: i64 = row.try_get(6)?;
        rids.push(rid);
        last = Some((key, rid));
    }
    if rows.len() > count
        && let Some((k, rid)) = last
    {
        result.next_cursor = Some(format!("{k}.{rid}"));
    }

    if !rids.is_empty() {
        for inc in &includes {
            let mut s = Sql {
                d,
                conds: Vec::new(),
                args: Vec::new(),
                date_groups: Vec::new(),
            };
            s.args.push(d.int_list_arg(&rids));
            let rid_list = d.in_int_list("i.rid", 1);
            let p = s.arg(Arg::Text(inc.param.name.to_owned()));
            let mut q = format!(
                "SELECT DISTINCT t.resource_type, t.resource_id, t.version_id, t.last_updated, t.body, t.rid \
                 FROM idx_reference i JOIN resources t ON t.resource_type = i.target_type AND t.resource_id = i.target_id \
                 WHERE {rid_list} AND i.param = {p} AND t.deleted = 0"
            );
            if let Some(target) = &inc.target {
                let a = s.arg(Arg::Text(target.clone()));
                q.push_str(&format!(" AND i.target_type = {a}"));
            }
            q.push_str(" ORDER BY t.rid");
            let rows = bind_all(sqlx::query(&q), &s.args)
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                result.included.push(current_from_row(row)?);
            }
        }
        let ids: Vec<String> = result.matches.iter().map(|v| v.id.clone()).collect();
        for inc in &revincludes {
            let mut s = Sql {
                d,
                conds: Vec::new(),
                args: Vec::new(),
                date_groups: Vec::new(),
            };
            s.args.push(d.list_arg(&ids));
            let id_list = d.in_list("i.target_id", 1);
            let src = s.arg(Arg::Text(inc.source.clone()));
            let p = s.arg(Arg::Text(inc.param.name.to_owned()));
            let tt = s.arg(Arg::Text(rt.to_owned()));
            let q = format!(
                "SELECT t.resource_type, t.resource_id, t.version_id, t.last_updated, t.body, t.rid \
                 FROM resources t WHERE t.deleted = 0 AND t.rid IN (SELECT i.rid FROM idx_reference i \
                 WHERE i.resource_type = {src} AND i.param = {p} AND i.target_type = {tt} AND {id_list}) ORDER BY t.rid"
            );
            let rows = bind_all(sqlx::query(&q), &s.args)
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                result.included.push(current_from_row(row)?);
            }
        }
        // A resource may be included by several paths, or be a match itself.
        let mut seen: std::collections::HashSet<(String, String)> = result
            .matches
            .iter()
            .map(|v| (v.resource_type.clone(), v.id.clone()))
            .collect();
        result
            .included
            .retain(|v| seen.insert((v.resource_type.clone(), v.id.clone())));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_on_unescaped_commas() {
        assert_eq!(split_values("a,b\\,c"), vec!["a", "b,c"]);
    }

    #[test]
    fn prefixes_are_recognised() {
        assert_eq!(split_prefix("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(split_prefix("2020"), (Prefix::Eq, "2020"));
    }
}
