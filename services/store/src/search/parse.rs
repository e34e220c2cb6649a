//! Query parameters to a typed plan. Every value is checked and converted here; nothing in
//! the plan can fail to compile.

use super::{
    DEFAULT_COUNT, MAX_CHAIN, MAX_COUNT, MAX_INCLUDES, MAX_PARAMETERS, MAX_VALUES_PER_PARAMETER,
    SearchQuery, split_values,
};
use crate::dates::{self, Range};
use crate::params::{self, ParamKind, SearchParam};
use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
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

/// Splits a comparison prefix off a value. A prefix is two ASCII letters, so the split never
/// falls inside a character.
pub(crate) fn split_prefix(v: &str) -> (Prefix, &str) {
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
pub(crate) enum SortKey {
    Rid,
    LastUpdated,
    Date(&'static str),
}

/// One value of a token parameter.
#[derive(Debug, Clone)]
pub(crate) enum TokenValue {
    /// `code`: any system.
    Code(String),
    /// `system|code`.
    SystemCode(String),
    /// `|code`: no system.
    NoSystem(String),
    /// `system|`: any code of the system.
    System(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringMatch {
    Prefix,
    Contains,
    Exact,
}

/// One value of a reference parameter.
#[derive(Debug, Clone)]
pub(crate) enum ReferenceValue {
    Id(String),
    Typed(String, String),
}

/// One value of a number or quantity parameter, with the precision it was written in.
#[derive(Debug, Clone)]
pub(crate) struct NumberValue {
    pub prefix: Prefix,
    pub value: f64,
    /// Decimal places written (`5.4` has 1): `eq` means the value's interval at that precision.
    pub decimals: i32,
    pub system: Option<String>,
    pub code: Option<String>,
}

/// A condition on the resources searched.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    /// In the patient's compartment, through these reference parameters of the type.
    Compartment {
        patient: String,
        params: Vec<String>,
    },
    Id(Vec<String>),
    LastUpdated(Vec<(Prefix, Range)>),
    Missing {
        param: &'static SearchParam,
        missing: bool,
    },
    Token {
        param: &'static SearchParam,
        negated: bool,
        values: Vec<TokenValue>,
    },
    String {
        param: &'static SearchParam,
        matching: StringMatch,
        values: Vec<String>,
    },
    /// One value list of a date parameter (any of them); several for one parameter all hold.
    Date {
        param: &'static SearchParam,
        values: Vec<(Prefix, Range)>,
    },
    Reference {
        param: &'static SearchParam,
        values: Vec<ReferenceValue>,
    },
    Number {
        param: &'static SearchParam,
        values: Vec<NumberValue>,
    },
    /// A chain (`subject:Patient.name=..`): the reference `param` points at a resource of one
    /// of these types that meets that type's conditions.
    Chain {
        param: &'static SearchParam,
        targets: Vec<(String, Vec<Condition>)>,
    },
    /// A reverse chain (`_has:Observation:patient:code=..`): some resource of type `source`
    /// whose reference `param` points at this one meets `conditions`.
    Has {
        source: String,
        param: &'static SearchParam,
        conditions: Vec<Condition>,
    },
}

/// Whose compartment confines a search, and which types it confines.
struct Confine<'a> {
    patient: Option<&'a str>,
    patient_data: Option<fn(&str) -> bool>,
}

impl Confine<'_> {
    /// The compartment condition on `rt` for a patient's search, when `rt` is patient data:
    /// only the compartment's own parameters (params::PATIENT_COMPARTMENT), so that e.g. an
    /// Encounter a patient merely takes part in is not theirs.
    fn of(&self, rt: &str) -> Option<Condition> {
        let patient = self.patient?;
        if !self.patient_data.is_none_or(|f| f(rt)) {
            return None;
        }
        Some(Condition::Compartment {
            patient: patient.to_owned(),
            params: params::compartment_params(rt)
                .iter()
                .map(|n| (*n).to_owned())
                .collect(),
        })
    }
}

/// The conditions a chain looks for on `rt`: the key's, and the compartment's when confined.
fn linked_conditions(
    rt: &str,
    key: &str,
    value: &str,
    depth: usize,
    confine: &Confine,
) -> Result<Vec<Condition>> {
    let mut out: Vec<Condition> = confine.of(rt).into_iter().collect();
    out.push(key_condition(rt, key, value, depth, confine)?);
    Ok(out)
}

/// The condition of `key=value` on `rt`, where the key may be a chain (`subject.name`,
/// `subject:Patient.identifier`) or a reverse chain (`_has:Observation:patient:code`).
fn key_condition(
    rt: &str,
    key: &str,
    value: &str,
    depth: usize,
    confine: &Confine,
) -> Result<Condition> {
    if depth > MAX_CHAIN {
        return Err(StoreError::TooCostly(format!(
            "a chain takes at most {MAX_CHAIN} links; `{key}` has more"
        )));
    }
    if let Some(rest) = key.strip_prefix("_has:") {
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(pname), Some(inner)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(format!(
                "`{key}` is not a reverse chain: write _has:Type:reference:parameter"
            )));
        };
        let p = params::find(source, pname)
            .filter(|p| p.kind == ParamKind::Reference)
            .ok_or_else(|| {
                bad(format!(
                    "`{source}:{pname}` is not a reference search parameter"
                ))
            })?;
        if !(p.targets.is_empty() || p.targets.contains(&rt)) {
            return Err(bad(format!("`{source}:{pname}` never points at a {rt}")));
        }
        let conditions = linked_conditions(source, inner, value, depth + 1, confine)?;
        return Ok(Condition::Has {
            source: source.to_owned(),
            param: p,
            conditions,
        });
    }
    if let Some((head, rest)) = key.split_once('.') {
        let (pname, named) = match head.split_once(':') {
            Some((n, t)) => (n, Some(t)),
            None => (head, None),
        };
        let p = params::find(rt, pname)
            .filter(|p| p.kind == ParamKind::Reference)
            .ok_or_else(|| {
                bad(format!(
                    "`{pname}` is not a reference search parameter of {rt}"
                ))
            })?;
        let types: Vec<&str> = match named {
            Some(t) if p.targets.is_empty() || p.targets.contains(&t) => vec![t],
            Some(t) => return Err(bad(format!("`{pname}` of {rt} never points at a {t}"))),
            None if p.targets.is_empty() => {
                return Err(bad(format!(
                    "`{pname}` of {rt} may point at any type: name one (`{pname}:Patient.{rest}`)"
                )));
            }
            None => p.targets.to_vec(),
        };
        let mut targets = Vec::new();
        for t in types {
            match linked_conditions(t, rest, value, depth + 1, confine) {
                Ok(c) => targets.push((t.to_owned(), c)),
                // Without a type named, the chain goes to the types that know the parameter.
                Err(StoreError::BadSearch(_)) if named.is_none() => {}
                Err(e) => return Err(e),
            }
        }
        if targets.is_empty() {
            return Err(bad(format!(
                "`{rest}` is not a search parameter of what `{pname}` of {rt} points at"
            )));
        }
        return Ok(Condition::Chain { param: p, targets });
    }
    let (name, modifier) = match key.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (key, None),
    };
    if name == "_id" && depth > 0 {
        let ids = split_values(value);
        if modifier.is_some() || ids.iter().any(|i| !crate::is_valid_id(i)) {
            return Err(bad(format!("`{value}` is not a valid _id")));
        }
        return Ok(Condition::Id(ids));
    }
    let p = params::find(rt, name)
        .ok_or_else(|| bad(format!("unknown search parameter `{name}` for {rt}")))?;
    param_condition(p, modifier, value)
}

/// A parsed `_include` / `_revinclude` value `Source:param[:Target]`.
#[derive(Debug, Clone)]
pub(crate) struct Include {
    pub source: String,
    pub param: &'static SearchParam,
    pub target: Option<String>,
    /// `:iterate`: applied again to what the last round included, not only to the page.
    pub iterate: bool,
}

/// What a search asks for.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub resource_type: String,
    pub conditions: Vec<Condition>,
    pub count: usize,
    pub sort: SortKey,
    pub descending: bool,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub summary_count: bool,
    pub total: bool,
    /// Keyset cursor: the last page's sort key and row id.
    pub cursor: Option<(i64, i64)>,
    pub applied: Vec<(String, String)>,
    pub ignored: Vec<String>,
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::BadSearch(msg.into())
}

fn parse_range(value: &str, name: &str) -> Result<Range> {
    dates::parse_range(value).ok_or_else(|| {
        bad(format!(
            "`{value}` is not a valid date for parameter `{name}`"
        ))
    })
}

fn parse_number(raw: &str, name: &str, prefix: Prefix) -> Result<(f64, i32, Prefix)> {
    let n: f64 = raw
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| bad(format!("`{raw}` is not a number for parameter `{name}`")))?;
    let decimals = raw.split_once('.').map_or(0, |(_, f)| {
        f.trim_end_matches(|c: char| !c.is_ascii_digit()).len()
    });
    Ok((n, decimals as i32, prefix))
}

impl Include {
    fn same_as(&self, other: &Include) -> bool {
        self.source == other.source
            && std::ptr::eq(self.param, other.param)
            && self.target == other.target
            && self.iterate == other.iterate
    }
}

fn parse_include(v: &str, rt: &str, rev: bool, iterate: bool) -> Result<Include> {
    let mut parts = v.split(':');
    let source = parts.next().unwrap_or_default();
    let pname = parts.next().unwrap_or_default();
    let target = parts.next().map(str::to_owned);
    if source == "*" || pname == "*" {
        return Err(bad("wildcard includes are not supported"));
    }
    // An iterated include may start from any type an earlier round brings in.
    if !rev && !iterate && source != rt {
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
        iterate,
    })
}

/// The condition of one declared parameter with its modifier and (comma-separated) value.
fn param_condition(
    p: &'static SearchParam,
    modifier: Option<&str>,
    value: &str,
) -> Result<Condition> {
    let name = p.name;
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad(format!("`{name}:missing` takes true or false"))),
        };
        return Ok(Condition::Missing { param: p, missing });
    }
    let values = split_values(value);
    if values.iter().any(String::is_empty) {
        return Err(bad(format!("parameter `{name}` has an empty value")));
    }
    Ok(match p.kind {
        ParamKind::Token => {
            if !matches!(modifier, None | Some("not")) {
                return Err(bad(format!(
                    "modifier `:{}` is not supported on token parameter `{name}`",
                    modifier.unwrap_or_default()
                )));
            }
            let values = values
                .into_iter()
                .map(|v| match v.split_once('|') {
                    None => TokenValue::Code(v),
                    Some(("", code)) => TokenValue::NoSystem(code.to_owned()),
                    Some((system, "")) => TokenValue::System(system.to_owned()),
                    Some((system, code)) => TokenValue::SystemCode(format!("{system}|{code}")),
                })
                .collect();
            Condition::Token {
                param: p,
                negated: modifier == Some("not"),
                values,
            }
        }
        ParamKind::Uri => {
            // The whole URI is the value: `|` in a canonical URL is its version, not a system.
            if let Some(m) = modifier.filter(|m| *m != "not") {
                return Err(bad(format!(
                    "modifier `:{m}` is not supported on uri parameter `{name}`"
                )));
            }
            Condition::Token {
                param: p,
                negated: modifier == Some("not"),
                values: values.into_iter().map(TokenValue::NoSystem).collect(),
            }
        }
        ParamKind::String => {
            let matching = match modifier {
                None => StringMatch::Prefix,
                Some("contains") => StringMatch::Contains,
                Some("exact") => StringMatch::Exact,
                Some(m) => {
                    return Err(bad(format!(
                        "modifier `:{m}` is not supported on string parameter `{name}`"
                    )));
                }
            };
            Condition::String {
                param: p,
                matching,
                values,
            }
        }
        ParamKind::Date => {
            if let Some(m) = modifier {
                return Err(bad(format!(
                    "modifier `:{m}` is not supported on date parameter `{name}`"
                )));
            }
            let values = values
                .iter()
                .map(|v| {
                    let (prefix, raw) = split_prefix(v);
                    Ok((prefix, parse_range(raw, name)?))
                })
                .collect::<Result<Vec<_>>>()?;
            Condition::Date { param: p, values }
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
            let mut out = Vec::new();
            for v in &values {
                // Absolute references to this server: keep the last two segments.
                let segs: Vec<&str> = v.trim_end_matches('/').rsplit('/').take(2).collect();
                let value = match (segs.first(), segs.get(1), target_filter) {
                    (Some(id), Some(t), None) if v.contains('/') => {
                        ReferenceValue::Typed((*t).to_owned(), (*id).to_owned())
                    }
                    (Some(id), _, Some(t)) if !v.contains('/') => {
                        ReferenceValue::Typed(t.to_owned(), (*id).to_owned())
                    }
                    (Some(id), _, None) if !v.contains('/') => ReferenceValue::Id((*id).to_owned()),
                    _ => return Err(bad(format!("`{v}` is not a valid reference for `{name}`"))),
                };
                let id = match &value {
                    ReferenceValue::Id(id) | ReferenceValue::Typed(_, id) => id,
                };
                if !crate::is_valid_id(id) {
                    return Err(bad(format!("`{v}` is not a valid reference for `{name}`")));
                }
                out.push(value);
            }
            Condition::Reference {
                param: p,
                values: out,
            }
        }
        ParamKind::Quantity | ParamKind::Number => {
            if let Some(m) = modifier {
                return Err(bad(format!("modifier `:{m}` is not supported on `{name}`")));
            }
            let values = values
                .iter()
                .map(|v| {
                    let mut parts = v.splitn(3, '|');
                    let number = parts.next().unwrap_or_default();
                    let system = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                    let code = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                    let (prefix, raw) = split_prefix(number);
                    let (value, decimals, prefix) = parse_number(raw, name, prefix)?;
                    Ok(NumberValue {
                        prefix,
                        value,
                        decimals,
                        system,
                        code,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Condition::Number { param: p, values }
        }
    })
}

/// Reads a search request into a plan.
pub(crate) fn parse(query: &SearchQuery) -> Result<Plan> {
    let rt = query.resource_type.as_str();
    let mut plan = Plan {
        resource_type: rt.to_owned(),
        conditions: Vec::new(),
        count: DEFAULT_COUNT,
        sort: SortKey::Rid,
        descending: false,
        includes: Vec::new(),
        revincludes: Vec::new(),
        summary_count: false,
        total: false,
        cursor: None,
        applied: Vec::new(),
        ignored: Vec::new(),
    };
    let confine = Confine {
        patient: query.compartment.as_deref(),
        patient_data: query.patient_data,
    };
    plan.conditions.extend(confine.of(rt));
    if query.params.len() > MAX_PARAMETERS {
        return Err(StoreError::TooCostly(format!(
            "a search takes at most {MAX_PARAMETERS} parameters; this one has {}",
            query.params.len()
        )));
    }
    let includes = query
        .params
        .iter()
        .filter(|(k, _)| k == "_include" || k == "_revinclude")
        .count();
    if includes > MAX_INCLUDES {
        return Err(StoreError::TooCostly(format!(
            "a search takes at most {MAX_INCLUDES} _include and _revinclude parameters; this one has {includes}"
        )));
    }
    for (key, value) in &query.params {
        let values = value.split(',').count();
        if values > MAX_VALUES_PER_PARAMETER {
            return Err(StoreError::TooCostly(format!(
                "a search parameter takes at most {MAX_VALUES_PER_PARAMETER} values; `{key}` has {values}"
            )));
        }
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
                    plan.count = value
                        .parse::<usize>()
                        .map_err(|_| bad(format!("_count must be a whole number, not `{value}`")))?
                        .min(MAX_COUNT);
                }
                "_sort" => {
                    let (desc, field) = match value.strip_prefix('-') {
                        Some(f) => (true, f),
                        None => (false, value.as_str()),
                    };
                    plan.descending = desc;
                    plan.sort = match field {
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
                // An include asked for twice is one include: each costs a query.
                "_include" | "_revinclude" if !matches!(modifier, None | Some("iterate")) => {
                    return Err(bad(format!(
                        "`{key}`: the only modifier of an include is `iterate`"
                    )));
                }
                "_include" => {
                    let i = parse_include(value, rt, false, modifier.is_some())?;
                    if !plan.includes.iter().any(|x| x.same_as(&i)) {
                        plan.includes.push(i);
                    }
                }
                "_revinclude" => {
                    let i = parse_include(value, rt, true, modifier.is_some())?;
                    if !plan.revincludes.iter().any(|x| x.same_as(&i)) {
                        plan.revincludes.push(i);
                    }
                }
                // The other summaries and `_elements` shape each resource returned, which the
                // FHIR edge does; the search is the same.
                "_summary" => match value.as_str() {
                    "count" => plan.summary_count = true,
                    "false" | "true" | "text" | "data" => {}
                    v => return Err(bad(format!("_summary={v} is not supported"))),
                },
                "_total" => match value.as_str() {
                    "accurate" => plan.total = true,
                    "none" | "estimate" => {}
                    v => return Err(bad(format!("_total={v} is not valid"))),
                },
                "_cursor" => {
                    plan.cursor = Some(
                        value
                            .split_once('.')
                            .and_then(|(k, r)| Some((k.parse().ok()?, r.parse().ok()?)))
                            .ok_or_else(|| {
                                bad("the _cursor value is not one this server issued")
                            })?,
                    );
                }
                "_format" | "_pretty" | "_elements" => {}
                "_id" => {
                    if modifier.is_some() {
                        return Err(bad("_id takes no modifier"));
                    }
                    let ids = split_values(value);
                    if ids.iter().any(|i| !crate::is_valid_id(i)) {
                        return Err(bad(format!("`{value}` is not a valid _id")));
                    }
                    plan.conditions.push(Condition::Id(ids));
                }
                "_lastUpdated" => {
                    let values = split_values(value)
                        .iter()
                        .map(|v| {
                            let (prefix, raw) = split_prefix(v);
                            Ok((prefix, parse_range(raw, "_lastUpdated")?))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    plan.conditions.push(Condition::LastUpdated(values));
                }
                _ => {
                    plan.conditions
                        .push(key_condition(rt, key, value, 0, &confine)?);
                }
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                if name != "_cursor" {
                    plan.applied.push((key.clone(), value.clone()));
                }
            }
            Err(StoreError::BadSearch(msg)) if query.lenient => plan.ignored.push(msg),
            Err(e) => return Err(e),
        }
    }
    reversed_ranges(&plan.conditions)?;
    Ok(plan)
}

/// A date parameter bounded from below and from above by bounds that cross
/// (`start=ge2026-12-10&start=le2026-12-01`) can match nothing: a mistake, said so.
fn reversed_ranges(conditions: &[Condition]) -> Result<()> {
    let mut lower: Vec<(&str, i64)> = Vec::new();
    let mut upper: Vec<(&str, i64)> = Vec::new();
    for c in conditions {
        if let Condition::Date { param, values } = c
            && let [(prefix, range)] = values.as_slice()
        {
            match prefix {
                Prefix::Ge | Prefix::Gt | Prefix::Sa => lower.push((param.name, range.lo)),
                Prefix::Le | Prefix::Lt | Prefix::Eb => upper.push((param.name, range.hi)),
                _ => {}
            }
        }
    }
    for (name, lo) in &lower {
        if upper.iter().any(|(n, hi)| n == name && hi < lo) {
            return Err(bad(format!(
                "the range of `{name}` is reversed: its lower bound is after its upper bound"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_recognised() {
        assert_eq!(split_prefix("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(split_prefix("2020"), (Prefix::Eq, "2020"));
        // Two bytes that are not a prefix, inside a multi-byte character: no split.
        assert_eq!(split_prefix("aé2024"), (Prefix::Eq, "aé2024"));
    }
}
