//! Index extraction: from one resource, the rows of every declared search parameter.

use crate::dates::{self, Range};
use crate::params::{self, ParamKind, SearchParam};
use crate::text::fold;
use serde_json::Value;

/// The index rows of one resource version.
#[derive(Debug, Default, PartialEq)]
pub struct IndexRows {
    pub tokens: Vec<(&'static str, String, String)>,
    pub strings: Vec<(&'static str, String, String)>,
    pub dates: Vec<(&'static str, Range)>,
    pub references: Vec<(&'static str, String, String)>,
    pub numbers: Vec<(&'static str, f64, String, String)>,
    /// Rows of the type's combined indexes: (index name, key, the date's range).
    pub combos: Vec<(&'static str, String, Range)>,
    /// A combined index this resource would have more than `params::MAX_COMBO_ROWS` rows in:
    /// the write is refused.
    pub combo_overflow: Option<&'static str>,
}

/// Separates the parts of a combined index's key: a character no code or system contains.
pub const COMBO_SEPARATOR: char = '\u{1f}';

/// Walks `path` from `root`, calling `f` for every value found (arrays flattened).
fn walk<'a>(root: &'a Value, path: &str, f: &mut dyn FnMut(&'a Value)) {
    // Steps are split on dots outside a filter's parentheses (a filter's value may be a URL).
    let mut depth = 0;
    let split = path.char_indices().find(|&(_, c)| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        c == '.' && depth == 0
    });
    let (step, rest) = match split {
        Some((i, _)) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    };
    let (name, filter) = match step.split_once('(') {
        Some((n, f)) => (n, f.strip_suffix(')').and_then(|f| f.split_once('='))),
        None => (step, None),
    };
    let found = root.get(name);
    let Some(child) = found.or_else(|| choice(root, name)) else {
        return;
    };
    let mut visit = |v: &'a Value| {
        if let Some((k, want)) = filter
            && v.get(k).and_then(Value::as_str) != Some(want)
        {
            return;
        }
        match rest {
            Some(rest) => walk(v, rest, f),
            None => f(v),
        }
    };
    match child {
        Value::Array(items) => items.iter().for_each(&mut visit),
        other => visit(other),
    }
}

/// The datatypes a choice element (`value[x]`, `effective[x]`) may take, as JSON spells them
/// after the element's name.
const CHOICE_TYPES: &[&str] = &[
    "Boolean",
    "Integer",
    "UnsignedInt",
    "PositiveInt",
    "Decimal",
    "String",
    "Code",
    "Markdown",
    "Uri",
    "Url",
    "Canonical",
    "Id",
    "Oid",
    "Uuid",
    "Base64Binary",
    "Date",
    "DateTime",
    "Instant",
    "Time",
    "Period",
    "Quantity",
    "Age",
    "Duration",
    "Range",
    "Ratio",
    "SampledData",
    "Money",
    "Count",
    "Distance",
    "CodeableConcept",
    "Coding",
    "Identifier",
    "Reference",
    "Attachment",
    "Annotation",
    "Timing",
    "HumanName",
    "Address",
    "ContactPoint",
    "Signature",
    "Dosage",
    "Expression",
    "Meta",
    "ContactDetail",
    "Contributor",
    "DataRequirement",
    "ParameterDefinition",
    "RelatedArtifact",
    "TriggerDefinition",
    "UsageContext",
];

/// The value of the choice element `name` (FHIR's `name[x]`): at most one `name<Type>` member
/// is present (`effective` finds `effectiveDateTime` or `effectivePeriod`).
fn choice<'a>(root: &'a Value, name: &str) -> Option<&'a Value> {
    root.as_object()?.iter().find_map(|(k, v)| {
        k.strip_prefix(name)
            .filter(|t| CHOICE_TYPES.contains(t))
            .map(|_| v)
    })
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn tokens_of(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((String::new(), s.clone())),
        Value::Bool(b) => out.push((String::new(), b.to_string())),
        Value::Object(o) => {
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                // CodeableConcept
                for c in codings {
                    tokens_of(c, out);
                }
            } else if let Some(code) = str_of(v, "code") {
                // Coding (also Quantity-like codes)
                out.push((
                    str_of(v, "system").unwrap_or("").to_owned(),
                    code.to_owned(),
                ));
            } else if let Some(value) = str_of(v, "value") {
                // Identifier, ContactPoint
                out.push((
                    str_of(v, "system").unwrap_or("").to_owned(),
                    value.to_owned(),
                ));
            }
        }
        _ => {}
    }
}

fn strings_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Object(o) => {
            // HumanName and Address: each part, and the whole text, are searchable.
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match o.get(key) {
                    Some(Value::String(s)) => out.push(s.clone()),
                    Some(Value::Array(a)) => {
                        out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned))
                    }
                    _ => {}
                }
            }
            // A full name as written, so that `nguyen van an` matches as a prefix.
            let family = str_of(v, "family");
            let given: Vec<&str> = o
                .get("given")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if family.is_some() && !given.is_empty() {
                let family = family.unwrap_or_default();
                out.push(format!("{family} {}", given.join(" ")));
                out.push(format!("{} {family}", given.join(" ")));
            }
        }
        _ => {}
    }
}

fn date_of(v: &Value) -> Option<Range> {
    match v {
        Value::String(s) => dates::parse_range(s),
        Value::Object(_) => {
            // Period: an open end is unbounded.
            let start = str_of(v, "start").and_then(dates::parse_range);
            let end = str_of(v, "end").and_then(dates::parse_range);
            if start.is_none() && end.is_none() {
                return None;
            }
            Some(Range {
                lo: start.map_or(i64::MIN / 2, |r| r.lo),
                hi: end.map_or(i64::MAX / 2, |r| r.hi),
            })
        }
        _ => None,
    }
}

/// Splits a relative reference `Type/id` (optionally `Type/id/_history/n`); absolute URLs,
/// contained (`#x`) and `urn:` references give `None`.
pub fn split_reference(reference: &str) -> Option<(&str, &str)> {
    if reference.contains("://") || reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let mut parts = reference.split('/');
    let t = parts.next()?;
    let id = parts.next()?;
    let valid_type = t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && t.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid_type || id.is_empty() {
        return None;
    }
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) | (Some("_history"), Some(_), None) => Some((t, id)),
        _ => None,
    }
}

/// Extracts the index rows of `resource` (of type `resource_type`).
pub fn extract(resource_type: &str, resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    for param in params::indexed_of_type(resource_type) {
        extract_param(param, resource, &mut rows);
    }
    for combo in params::combos_of(resource_type) {
        combine(combo, &mut rows);
    }
    rows
}

/// The index rows of a version about to be written: refused when a combined index would need
/// more rows than its bound.
pub(crate) fn for_write(resource_type: &str, resource: &Value) -> crate::Result<IndexRows> {
    let rows = extract(resource_type, resource);
    match rows.combo_overflow {
        Some(name) => Err(crate::StoreError::TooCostly(format!(
            "too many combinations of values to index in {resource_type}'s combined index \
             {name} (at most {}): fewer codings per element",
            params::MAX_COMBO_ROWS
        ))),
        None => Ok(rows),
    }
}

/// The forms a token value is searched by, as a combined index keys it: `code`, and
/// `system|code` when it has a system (`mode=video`, `specialty=http://snomed.info/sct|394802001`).
pub fn token_forms(system: &str, code: &str) -> Vec<String> {
    if system.is_empty() {
        vec![code.to_owned()]
    } else {
        vec![code.to_owned(), format!("{system}|{code}")]
    }
}

/// The forms a reference is searched by, as a combined index keys it: `id` and `Type/id`.
pub fn reference_forms(target_type: &str, target_id: &str) -> Vec<String> {
    vec![target_id.to_owned(), format!("{target_type}/{target_id}")]
}

/// The rows of `combo` from the rows already extracted: every combination of one form of a
/// value of each of its parameters, with each range of the date parameter. None when any of
/// them has no value.
fn combine(combo: &'static params::ComboIndex, rows: &mut IndexRows) {
    let mut keys: Vec<String> = vec![String::new()];
    for (i, name) in combo.parts.iter().enumerate() {
        let mut forms: Vec<String> = rows
            .tokens
            .iter()
            .filter(|(p, ..)| p == name)
            .flat_map(|(_, system, code)| token_forms(system, code))
            .chain(
                rows.references
                    .iter()
                    .filter(|(p, ..)| p == name)
                    .flat_map(|(_, t, id)| reference_forms(t, id)),
            )
            .collect();
        forms.sort();
        forms.dedup();
        if forms.is_empty() {
            return;
        }
        if keys.len() * forms.len() > params::MAX_COMBO_ROWS {
            rows.combo_overflow = Some(combo.name);
            return;
        }
        keys = keys
            .iter()
            .flat_map(|k| {
                forms.iter().map(move |f| {
                    if i == 0 {
                        f.clone()
                    } else {
                        format!("{k}{COMBO_SEPARATOR}{f}")
                    }
                })
            })
            .collect();
    }
    let dates: Vec<Range> = rows
        .dates
        .iter()
        .filter(|(p, _)| *p == combo.date)
        .map(|(_, r)| *r)
        .collect();
    if keys.len() * dates.len() > params::MAX_COMBO_ROWS {
        rows.combo_overflow = Some(combo.name);
        return;
    }
    for key in keys {
        for r in &dates {
            rows.combos.push((combo.name, key.clone(), *r));
        }
    }
}

fn extract_param(param: &'static SearchParam, resource: &Value, rows: &mut IndexRows) {
    for path in param.paths {
        walk(resource, path, &mut |v| match param.kind {
            ParamKind::Uri => {
                if let Some(u) = v.as_str() {
                    rows.tokens.push((param.name, String::new(), u.to_owned()));
                }
            }
            ParamKind::Token => {
                let mut found = Vec::new();
                tokens_of(v, &mut found);
                rows.tokens
                    .extend(found.into_iter().map(|(s, c)| (param.name, s, c)));
            }
            ParamKind::String => {
                let mut found = Vec::new();
                strings_of(v, &mut found);
                found.sort();
                found.dedup();
                rows.strings
                    .extend(found.into_iter().map(|s| (param.name, fold(&s), s)));
            }
            ParamKind::Date => {
                if let Some(r) = date_of(v) {
                    rows.dates.push((param.name, r));
                }
            }
            ParamKind::Reference => {
                if let Some((t, id)) = str_of(v, "reference").and_then(split_reference)
                    && (param.targets.is_empty() || param.targets.contains(&t))
                {
                    rows.references
                        .push((param.name, t.to_owned(), id.to_owned()));
                }
            }
            ParamKind::Quantity | ParamKind::Number => {
                let n = if param.kind == ParamKind::Number {
                    v.as_f64()
                } else {
                    v.get("value").and_then(Value::as_f64)
                };
                if let Some(n) = n {
                    let system = str_of(v, "system").unwrap_or("").to_owned();
                    let code = str_of(v, "code").or(str_of(v, "unit")).unwrap_or("");
                    rows.numbers.push((param.name, n, system, code.to_owned()));
                }
            }
        });
    }
}

/// The patients whose compartment holds `resource_type/id` with this body: a Patient is in
/// its own, and anything is in the compartment of every Patient its compartment parameters
/// reference.
pub fn compartment_patients(
    resource_type: &str,
    id: &str,
    body: &serde_json::Value,
) -> Vec<std::string::String> {
    let mut out = Vec::new();
    if resource_type == "Patient" {
        out.push(id.to_owned());
    }
    let names = params::compartment_params(resource_type);
    if names.is_empty() {
        return out;
    }
    // Only the compartment's parameters: this runs for every resource a patient is shown.
    let mut rows = IndexRows::default();
    for param in params::of_type(resource_type).filter(|p| names.contains(&p.name)) {
        extract_param(param, body, &mut rows);
    }
    for (param, t, target) in &rows.references {
        if t == "Patient" && names.contains(param) && !out.contains(target) {
            out.push(target.clone());
        }
    }
    out
}

/// Every relative reference anywhere in the resource (for referential checks), with the
/// element path where it was found.
pub fn all_references(resource: &Value) -> Vec<(String, String)> {
    fn go(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                for (k, child) in o {
                    if k == "reference"
                        && let Value::String(s) = child
                    {
                        out.push((path.to_owned(), s.clone()));
                        continue;
                    }
                    if k == "contained" {
                        continue;
                    }
                    go(child, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    go(child, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let root = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    go(resource, root, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_only_when_relative() {
        assert_eq!(split_reference("Patient/1"), Some(("Patient", "1")));
        assert_eq!(
            split_reference("Patient/1/_history/2"),
            Some(("Patient", "1"))
        );
        assert_eq!(split_reference("http://x/Patient/1"), None);
        assert_eq!(split_reference("#c1"), None);
        assert_eq!(split_reference("urn:uuid:abc"), None);
    }
}
