//! A plan to SQL: the conditions over the alias `r` (table `resources`) and the bound
//! arguments. Placeholders and list binding go through [`Dialect`].

use super::parse::{
    Condition, NumberValue, Plan, Prefix, ReferenceValue, SortKey, StringMatch, TokenValue,
};
use crate::dates::Range;
use crate::index::IndexTable;
use crate::params::{ComboIndex, SearchParam};
use crate::text::fold;
use crate::{Arg, Dialect};

/// The SQL being assembled: what it reads, conditions and their binds.
pub(crate) struct Sql {
    pub d: Dialect,
    /// `resources r`, joined to the one row of a combined index (`c`) when a search is served
    /// by one key of it.
    pub from: &'static str,
    pub conds: Vec<String>,
    pub args: Vec<Arg>,
    /// The date parameter whose value is the joined combined index's `c.lo`.
    pub joined_date: Option<&'static str>,
    /// The joined combined index's conditions, when they are the whole search: the page can
    /// then be chosen from the index alone before any resource is read.
    pub combo_only: Option<String>,
}

impl Sql {
    pub(crate) fn new(d: Dialect) -> Sql {
        Sql {
            d,
            from: "resources r",
            conds: Vec::new(),
            args: Vec::new(),
            joined_date: None,
            combo_only: None,
        }
    }

    pub(crate) fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        self.d.ph(self.args.len())
    }

    /// A bound list of strings, `column IN <list>` (or `=` for one value).
    fn list(&mut self, column: &str, values: Vec<String>) -> String {
        if values.len() == 1 {
            let a = self.arg(Arg::Text(values.into_iter().next().unwrap_or_default()));
            format!("{column} = {a}")
        } else {
            self.args.push(self.d.list_arg(&values));
            self.d.in_list(column, self.args.len())
        }
    }

    /// `SELECT rid FROM <table of p> WHERE resource_type = .. AND param = .. AND (inner)`.
    fn semi_join(&mut self, rt: &str, p: &SearchParam, inner: Option<&str>) -> String {
        let table = IndexTable::of(p.kind).name();
        let t = self.arg(Arg::Text(rt.to_owned()));
        let n = self.arg(Arg::Text(p.name.to_owned()));
        match inner {
            Some(i) => format!(
                "SELECT rid FROM {table} WHERE resource_type = {t} AND param = {n} AND ({i})"
            ),
            None => format!("SELECT rid FROM {table} WHERE resource_type = {t} AND param = {n}"),
        }
    }
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
) -> String {
    let slo = sql.arg(Arg::I64(r.lo));
    let shi = sql.arg(Arg::I64(r.hi));
    if let Some(w) = max_width {
        match prefix {
            Prefix::Ge => {
                let floor = sql.arg(Arg::I64(r.lo.saturating_sub(w)));
                return format!("({hi} >= {slo} AND {lo} >= {floor})");
            }
            Prefix::Gt => {
                let floor = sql.arg(Arg::I64(r.hi.saturating_sub(w)));
                return format!("({hi} > {shi} AND {lo} > {floor})");
            }
            _ => {}
        }
    }
    match prefix {
        // `lo <= shi` is implied; it lets the index on `lo` bound the scan on both sides.
        Prefix::Eq | Prefix::Ap => format!("({lo} >= {slo} AND {lo} <= {shi} AND {hi} <= {shi})"),
        Prefix::Ne => format!("NOT ({lo} >= {slo} AND {hi} <= {shi})"),
        Prefix::Gt => format!("{hi} > {shi}"),
        Prefix::Lt => format!("{lo} < {slo}"),
        Prefix::Ge => format!("{hi} >= {slo}"),
        Prefix::Le => format!("{lo} <= {shi}"),
        Prefix::Sa => format!("{lo} > {shi}"),
        Prefix::Eb => format!("{hi} < {slo}"),
    }
}

/// Numeric comparison; `eq` honours the precision of the value given (`5.4` means [5.35, 5.45)).
fn number_cond(sql: &mut Sql, col: &str, v: &NumberValue) -> String {
    let n = v.value;
    let half = 0.5 * 10f64.powi(-v.decimals);
    match v.prefix {
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
    }
}

/// Whether a condition is an index semi-join that itself names the resource type: then
/// testing the type again on `resources` would only tempt the planner to scan every resource
/// of the type instead of driving from the (selective) index.
fn names_the_type(c: &Condition) -> bool {
    match c {
        Condition::Compartment { params, .. } => !params.is_empty(),
        Condition::Missing { missing, .. } => !missing,
        Condition::Token { negated, .. } => !negated,
        Condition::String { .. }
        | Condition::Date { .. }
        | Condition::Reference { .. }
        | Condition::Number { .. } => true,
        Condition::Chain { .. } => true,
        Condition::Id(_) | Condition::LastUpdated(_) | Condition::Has { .. } => false,
    }
}

/// Values of date/dateTime elements span at most a (leap) year, instants at most a second;
/// anything else (a Period, a choice element that may hold one: `effective`) has no bound.
fn max_width(param: &SearchParam) -> Option<i64> {
    if param.instant {
        return Some(1_000_000);
    }
    let dated = |path: &&str| {
        let last = path.rsplit('.').next().unwrap_or_default();
        last == "date" || last.ends_with("Date") || last.ends_with("DateTime")
    };
    param
        .paths
        .iter()
        .all(dated)
        .then_some(366 * 86_400 * 1_000_000)
}

/// Combined-index keys from more value combinations than this are not worth it: the search
/// uses the plain index instead.
const MAX_COMBO_KEYS: usize = 64;

/// A combined index serving part of a plan: the keys it reads, and the plan's conditions it
/// answers exactly (by their position), which the query then leaves out.
struct ComboUse {
    combo: &'static ComboIndex,
    keys: Vec<String>,
    covered: Vec<usize>,
}

/// The combined index that serves the most of `plan`, if any does: one whose every parameter
/// the plan tests for values given in the forms it keys (`code` or `system|code`; `id` or
/// `Type/id`), and whose date parameter the plan bounds. A resource lacking a value of any of them has no
/// rows in the index, and no such resource could match such a plan either.
fn choose_combo(plan: &Plan) -> Option<ComboUse> {
    let mut best: Option<ComboUse> = None;
    for combo in crate::params::combos_of(&plan.resource_type) {
        let dated: Vec<usize> = plan
            .conditions
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, Condition::Date { param, .. } if param.name == combo.date))
            .map(|(i, _)| i)
            .collect();
        if dated.is_empty() {
            continue;
        }
        let mut keys = vec![String::new()];
        let mut covered = dated;
        let mut usable = true;
        for (n, name) in combo.parts.iter().enumerate() {
            let found = plan
                .conditions
                .iter()
                .enumerate()
                .find_map(|(i, c)| Some((i, keyed_forms(c, name)?)));
            let Some((i, forms)) = found else {
                usable = false;
                break;
            };
            if keys.len() * forms.len() > MAX_COMBO_KEYS {
                usable = false;
                break;
            }
            keys = keys
                .iter()
                .flat_map(|k| {
                    forms.iter().map(move |f| {
                        if n == 0 {
                            (*f).to_owned()
                        } else {
                            format!("{k}{}{f}", crate::extract::COMBO_SEPARATOR)
                        }
                    })
                })
                .collect();
            covered.push(i);
        }
        if usable
            && best
                .as_ref()
                .is_none_or(|b| b.covered.len() < covered.len())
        {
            keys.sort();
            keys.dedup();
            best = Some(ComboUse {
                combo,
                keys,
                covered,
            });
        }
    }
    best
}

/// The values a condition on the parameter `name` asks for, in the forms a combined index keys
/// them, when it asks for nothing else (none for a negation, `|code`, `system|`).
fn keyed_forms(c: &Condition, name: &str) -> Option<Vec<String>> {
    match c {
        Condition::Token {
            param,
            negated: false,
            values,
        } if param.name == name => values
            .iter()
            .map(|v| match v {
                TokenValue::Code(c) | TokenValue::SystemCode(c) => Some(c.clone()),
                TokenValue::NoSystem(_) | TokenValue::System(_) => None,
            })
            .collect(),
        Condition::Reference { param, values } if param.name == name => Some(
            values
                .iter()
                .map(|v| match v {
                    ReferenceValue::Id(id) => id.clone(),
                    ReferenceValue::Typed(t, id) => format!("{t}/{id}"),
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The conditions of a combined index serving the plan: its rows (`c` when joined, else a
/// semi-join) with one of the keys, whose date range meets every date condition it covers.
fn combo_conds(sql: &mut Sql, plan: &Plan, using: ComboUse) -> String {
    let rt = plan.resource_type.as_str();
    let mut dates = Vec::new();
    for i in &using.covered {
        if let Condition::Date { param, values } = &plan.conditions[*i] {
            let (lo, hi) = if using.keys.len() == 1 {
                ("c.lo", "c.hi")
            } else {
                ("lo", "hi")
            };
            let ors: Vec<String> = values
                .iter()
                .map(|(p, r)| date_cond(sql, lo, hi, *p, *r, max_width(param)))
                .collect();
            dates.push(format!("({})", ors.join(" OR ")));
        }
    }
    let t = sql.arg(Arg::Text(rt.to_owned()));
    let n = sql.arg(Arg::Text(using.combo.name.to_owned()));
    if using.keys.len() == 1 {
        // One key: a resource has at most one row of it (its date is single-valued), so the
        // row is joined, and its date is there to sort by.
        let k = sql.arg(Arg::Text(using.keys.into_iter().next().unwrap_or_default()));
        sql.from = "resources r JOIN idx_combo c ON c.rid = r.rid";
        sql.joined_date = Some(using.combo.date);
        format!(
            "c.resource_type = {t} AND c.param = {n} AND c.key = {k} AND {}",
            dates.join(" AND ")
        )
    } else {
        let keys = sql.list("key", using.keys);
        format!(
            "r.rid IN (SELECT rid FROM idx_combo WHERE resource_type = {t} AND param = {n} AND {keys} AND {})",
            dates.join(" AND ")
        )
    }
}

/// The WHERE clause of a plan (without paging).
pub(crate) fn where_clause(d: Dialect, plan: &Plan) -> Sql {
    let rt = plan.resource_type.as_str();
    let mut sql = Sql::new(d);
    sql.conds.push("r.deleted = 0".into());
    let combo = choose_combo(plan);
    let covered: Vec<usize> = combo
        .as_ref()
        .map(|c| c.covered.clone())
        .unwrap_or_default();
    if let Some(using) = combo {
        let c = combo_conds(&mut sql, plan, using);
        if sql.joined_date.is_some() && covered.len() == plan.conditions.len() {
            sql.combo_only = Some(c.clone());
        }
        sql.conds.push(c);
    }
    push_conditions(&mut sql, rt, &plan.conditions, &covered);
    sql
}

/// The conditions on a resource (alias `r`) of the type a chain links to, as one SQL
/// condition: the same compiler, one level down (the alias shadows the outer one).
fn nested(sql: &mut Sql, rt: &str, conditions: &[Condition]) -> String {
    let outer = std::mem::take(&mut sql.conds);
    push_conditions(sql, rt, conditions, &[]);
    let inner = std::mem::replace(&mut sql.conds, outer);
    inner.join(" AND ")
}

/// Adds the SQL of `conditions` on resources of type `rt` (alias `r`), but those `covered` by
/// a combined index, to `sql.conds`.
fn push_conditions(sql: &mut Sql, rt: &str, conditions: &[Condition], covered: &[usize]) {
    let d = sql.d;
    // Conditions on each date parameter, combined into one subquery per parameter: every
    // declared date parameter is single-valued (birthDate, period, effective[x], ...), so
    // repeated conditions (`date=ge..&date=le..`) can test the same index row.
    let mut date_groups: Vec<(&'static SearchParam, Vec<String>)> = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        if covered.contains(&i) {
            continue;
        }
        match c {
            Condition::Chain { param, targets } => {
                let mut ors = Vec::new();
                for (target, conds) in targets {
                    let inner = nested(sql, target, conds);
                    let a = sql.arg(Arg::Text(target.clone()));
                    ors.push(format!(
                        "(target_type = {a} AND target_id IN (SELECT r.resource_id FROM resources r \
                         WHERE r.resource_type = {a} AND r.deleted = 0 AND {inner}))"
                    ));
                }
                let s = sql.semi_join(rt, param, Some(&ors.join(" OR ")));
                sql.conds.push(format!("r.rid IN ({s})"));
            }
            Condition::Has {
                source,
                param,
                conditions,
            } => {
                let inner = nested(sql, source, conditions);
                let s = sql.arg(Arg::Text(source.clone()));
                let n = sql.arg(Arg::Text(param.name.to_owned()));
                let t = sql.arg(Arg::Text(rt.to_owned()));
                sql.conds.push(format!(
                    "r.resource_id IN (SELECT target_id FROM idx_reference WHERE resource_type = {s} \
                     AND param = {n} AND target_type = {t} AND rid IN (SELECT r.rid FROM resources r \
                     WHERE r.resource_type = {s} AND r.deleted = 0 AND {inner}))"
                ));
            }
            Condition::Compartment { patient, params } => {
                let a = sql.arg(Arg::Text(patient.clone()));
                let by_reference = if params.is_empty() {
                    None
                } else {
                    let t = sql.arg(Arg::Text(rt.to_owned()));
                    sql.args.push(d.list_arg(params));
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
            Condition::Id(ids) => {
                let c = sql.list("r.resource_id", ids.clone());
                sql.conds.push(c);
            }
            Condition::LastUpdated(values) => {
                let ors: Vec<String> = values
                    .iter()
                    .map(|(p, r)| date_cond(sql, "r.last_updated", "r.last_updated", *p, *r, None))
                    .collect();
                sql.conds.push(format!("({})", ors.join(" OR ")));
            }
            Condition::Missing { param, missing } => {
                let s = sql.semi_join(rt, param, None);
                sql.conds.push(if *missing {
                    format!("r.rid NOT IN ({s})")
                } else {
                    format!("r.rid IN ({s})")
                });
            }
            Condition::Token {
                param,
                negated,
                values,
            } => {
                let (mut code, mut sc, mut none, mut system) = (vec![], vec![], vec![], vec![]);
                for v in values {
                    match v {
                        TokenValue::Code(c) => code.push(c.clone()),
                        TokenValue::SystemCode(c) => sc.push(c.clone()),
                        TokenValue::NoSystem(c) => none.push(c.clone()),
                        TokenValue::System(s) => system.push(s.clone()),
                    }
                }
                let mut ors = Vec::new();
                if !code.is_empty() {
                    ors.push(sql.list("code", code));
                }
                if !sc.is_empty() {
                    ors.push(sql.list("sc", sc));
                }
                if !none.is_empty() {
                    let l = sql.list("code", none);
                    ors.push(format!("(system = '' AND {l})"));
                }
                if !system.is_empty() {
                    ors.push(sql.list("system", system));
                }
                let s = sql.semi_join(rt, param, Some(&ors.join(" OR ")));
                sql.conds.push(if *negated {
                    format!("r.rid NOT IN ({s})")
                } else {
                    format!("r.rid IN ({s})")
                });
            }
            Condition::String {
                param,
                matching,
                values,
            } => {
                let mut ors = Vec::new();
                for v in values {
                    ors.push(match matching {
                        StringMatch::Prefix => {
                            // A prefix as a range over the folded values, so both backends walk
                            // their index (LIKE cannot use SQLite's, being case-insensitive).
                            let folded = fold(v);
                            let lo = sql.arg(Arg::Text(folded.clone()));
                            let hi = sql.arg(Arg::Text(format!("{folded}\u{10FFFF}")));
                            format!("(value >= {lo} AND value <= {hi})")
                        }
                        StringMatch::Contains => {
                            let a = sql.arg(Arg::Text(format!("%{}%", like_escape(&fold(v)))));
                            format!("value LIKE {a} ESCAPE '\\'")
                        }
                        StringMatch::Exact => {
                            let f = sql.arg(Arg::Text(fold(v)));
                            let a = sql.arg(Arg::Text(v.clone()));
                            format!("(value = {f} AND raw = {a})")
                        }
                    });
                }
                let s = sql.semi_join(rt, param, Some(&ors.join(" OR ")));
                sql.conds.push(format!("r.rid IN ({s})"));
            }
            Condition::Date { param, values } => {
                let width = max_width(param);
                let ors: Vec<String> = values
                    .iter()
                    .map(|(p, r)| date_cond(sql, "lo", "hi", *p, *r, width))
                    .collect();
                let cond = format!("({})", ors.join(" OR "));
                match date_groups.iter_mut().find(|(p, _)| p.name == param.name) {
                    Some((_, conds)) => conds.push(cond),
                    None => date_groups.push((param, vec![cond])),
                }
            }
            Condition::Reference { param, values } => {
                let mut ids = Vec::new();
                let mut ors = Vec::new();
                for v in values {
                    match v {
                        ReferenceValue::Id(id) => ids.push(id.clone()),
                        ReferenceValue::Typed(t, id) => {
                            let a = sql.arg(Arg::Text(t.clone()));
                            let b = sql.arg(Arg::Text(id.clone()));
                            ors.push(format!("(target_type = {a} AND target_id = {b})"));
                        }
                    }
                }
                if !ids.is_empty() {
                    let l = sql.list("target_id", ids);
                    ors.insert(0, l);
                }
                let s = sql.semi_join(rt, param, Some(&ors.join(" OR ")));
                sql.conds.push(format!("r.rid IN ({s})"));
            }
            Condition::Number { param, values } => {
                let mut ors = Vec::new();
                for v in values {
                    let mut c = number_cond(sql, "value", v);
                    if let Some(s) = &v.system {
                        c = format!("{c} AND system = {}", sql.arg(Arg::Text(s.clone())));
                    }
                    if let Some(code) = &v.code {
                        c = format!("{c} AND code = {}", sql.arg(Arg::Text(code.clone())));
                    }
                    ors.push(format!("({c})"));
                }
                let s = sql.semi_join(rt, param, Some(&ors.join(" OR ")));
                sql.conds.push(format!("r.rid IN ({s})"));
            }
        }
    }
    if !conditions.iter().any(names_the_type) {
        let t = sql.arg(Arg::Text(rt.to_owned()));
        sql.conds.push(format!("r.resource_type = {t}"));
    }
    for (param, conds) in date_groups {
        let t = sql.arg(Arg::Text(rt.to_owned()));
        let n = sql.arg(Arg::Text(param.name.to_owned()));
        sql.conds.push(format!(
            "r.rid IN (SELECT rid FROM idx_date WHERE resource_type = {t} AND param = {n} AND {})",
            conds.join(" AND ")
        ));
    }
}

/// The sort key expression of a plan.
pub(crate) fn sort_key(sql: &mut Sql, plan: &Plan) -> String {
    match plan.sort {
        SortKey::Rid => "r.rid".to_owned(),
        SortKey::LastUpdated => "r.last_updated".to_owned(),
        // The joined row of a combined index holds the date: the index gives the order.
        SortKey::Date(p) if sql.joined_date == Some(p) => "c.lo".to_owned(),
        SortKey::Date(p) => {
            let t = sql.arg(Arg::Text(plan.resource_type.clone()));
            let n = sql.arg(Arg::Text(p.to_owned()));
            // Resources without the date sort last in either direction.
            let missing = if plan.descending { i64::MIN } else { i64::MAX };
            format!(
                "COALESCE((SELECT MIN(lo) FROM idx_date WHERE rid = r.rid AND resource_type = {t} AND param = {n}), {missing})"
            )
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::params::{ParamKind, install};
    use crate::search::SearchQuery;

    /// The search parameters of the search module's unit tests (installed once per process:
    /// every test installs this same set).
    pub(crate) static PARAMS: &[SearchParam] = &[
        SearchParam::new("Slot", "specialty", ParamKind::Token, &["specialty"]),
        SearchParam::new("Slot", "status", ParamKind::Token, &["status"]),
        SearchParam::new("Slot", "start", ParamKind::Date, &["start"]),
        SearchParam::new("Patient", "identifier", ParamKind::Token, &["identifier"]),
        SearchParam::new("Patient", "gender", ParamKind::Token, &["gender"]),
        SearchParam::new("Patient", "name", ParamKind::String, &["name"]),
    ];
    pub(crate) static COMBOS: &[ComboIndex] = &[ComboIndex {
        resource_type: "Slot",
        name: "specialty-status-start",
        parts: &["specialty", "status"],
        date: "start",
    }];

    fn compiled(query: &str) -> Sql {
        install(&[PARAMS], &[COMBOS]).unwrap();
        let params = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let plan = super::super::parse::parse(&SearchQuery::new("Slot", params)).unwrap();
        where_clause(Dialect::Postgres, &plan)
    }

    #[test]
    fn a_search_naming_every_part_of_a_combined_index_reads_it_alone() {
        let sql = compiled("specialty=http://snomed.info/sct|1&status=free&start=ge2026-12-01");
        assert!(sql.from.contains("idx_combo"), "{}", sql.from);
        let all = sql.conds.join(" AND ");
        assert!(
            !all.contains("idx_token") && !all.contains("idx_date"),
            "{all}"
        );
        assert!(
            sql.args
                .iter()
                .any(|a| matches!(a, Arg::Text(k) if k == "http://snomed.info/sct|1\u{1f}free"))
        );
        assert!(sql.combo_only.is_some(), "the index alone answers it");
        // A patient's search keeps its compartment condition: never the index alone.
        install(&[PARAMS], &[COMBOS]).unwrap();
        let mut q = SearchQuery::new(
            "Slot",
            vec![
                ("specialty".into(), "1".into()),
                ("status".into(), "free".into()),
                ("start".into(), "ge2026-12-01".into()),
            ],
        );
        q.compartment = Some("p1".into());
        let plan = super::super::parse::parse(&q).unwrap();
        let sql = where_clause(Dialect::Postgres, &plan);
        assert!(sql.combo_only.is_none());
        assert!(sql.conds.iter().any(|c| c == "1 = 0"), "{:?}", sql.conds);
        // Several values: several keys, read as a semi-join (a resource may hold two).
        let sql = compiled("specialty=1,2&status=free&start=ge2026-12-01");
        assert_eq!(sql.from, "resources r");
        assert!(sql.conds.join(" ").contains("FROM idx_combo"));
    }

    #[test]
    fn a_search_the_combined_index_cannot_answer_exactly_uses_the_plain_index() {
        for q in [
            // No date bound: resources without a start are not in the combined index.
            "specialty=1&status=free",
            // A form it does not key (`|code`: no system), a negation, a part missing.
            "specialty=1&status=|free&start=ge2026-12-01",
            "specialty=1&status:not=free&start=ge2026-12-01",
            "status=free&start=ge2026-12-01",
        ] {
            let sql = compiled(q);
            let all = sql.conds.join(" ");
            assert!(
                !all.contains("idx_combo") && sql.from == "resources r",
                "{q}: {all}"
            );
        }
    }
}
