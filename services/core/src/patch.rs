//! JSON Patch (RFC 6902, <https://www.rfc-editor.org/rfc/rfc6902>), as FHIR's patch
//! interaction takes it (<https://hl7.org/fhir/R4B/http.html#patch>). A patch is read whole
//! before anything is applied, and applied whole or not at all; the patched resource is then
//! written by [`crate::Writer::patch`] like any update. Errors name operations and paths,
//! never values (a `test` value may be a personal ID).

use crate::error::{Error, codes};
use serde_json::Value;

/// A JSON Patch document, checked: every operation has what its kind needs.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPatch(Vec<Operation>);

#[derive(Debug, Clone, PartialEq)]
enum Operation {
    Add { path: Pointer, value: Value },
    Remove { path: Pointer },
    Replace { path: Pointer, value: Value },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: Value },
}

/// A JSON Pointer (RFC 6901): its reference tokens, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pointer {
    text: String,
    tokens: Vec<String>,
}

/// Patch documents are small; more operations than this is not an edit.
pub const MAX_OPERATIONS: usize = 1000;

fn malformed(i: usize, member: &str, message: impl Into<String>) -> Error {
    Error::new(codes::MALFORMED_PATCH, message).at(format!("[{i}].{member}"))
}

impl Pointer {
    fn parse(i: usize, member: &str, text: &str) -> Result<Pointer, Error> {
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(malformed(
                i,
                member,
                format!(
                    "`{member}` of operation {i} is not a JSON Pointer: it must start with `/`"
                ),
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => {
                        return Err(malformed(
                            i,
                            member,
                            format!("`{member}` of operation {i} has a `~` not followed by 0 or 1"),
                        ));
                    }
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_owned(),
            tokens,
        })
    }

    fn split_last(&self) -> Option<(&[String], &str)> {
        self.tokens
            .split_last()
            .map(|(last, parent)| (parent, last.as_str()))
    }

    /// Whether `other` lies inside the value this pointer names (a value cannot move into
    /// itself).
    fn contains(&self, other: &Pointer) -> bool {
        other.tokens.len() > self.tokens.len() && other.tokens.starts_with(&self.tokens)
    }
}

impl JsonPatch {
    /// Reads a JSON Patch document: an array of operations, each with its members.
    pub fn parse(doc: &Value) -> Result<JsonPatch, Error> {
        let Some(ops) = doc.as_array() else {
            return Err(Error::new(
                codes::MALFORMED_PATCH,
                "a JSON Patch is an array of operations",
            ));
        };
        if ops.len() > MAX_OPERATIONS {
            return Err(Error::new(
                codes::BOUND_EXCEEDED,
                format!(
                    "a JSON Patch takes at most {MAX_OPERATIONS} operations; this one has {}",
                    ops.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let Some(o) = op.as_object() else {
                return Err(malformed(
                    i,
                    "op",
                    format!("operation {i} is not an object"),
                ));
            };
            let text = |member: &str| -> Result<&str, Error> {
                o.get(member).and_then(Value::as_str).ok_or_else(|| {
                    malformed(
                        i,
                        member,
                        format!("operation {i} needs `{member}` as a string"),
                    )
                })
            };
            let pointer = |member: &str| Pointer::parse(i, member, text(member)?);
            let value = || {
                o.get("value")
                    .cloned()
                    .ok_or_else(|| malformed(i, "value", format!("operation {i} needs a `value`")))
            };
            out.push(match text("op")? {
                "add" => Operation::Add {
                    path: pointer("path")?,
                    value: value()?,
                },
                "remove" => Operation::Remove {
                    path: pointer("path")?,
                },
                "replace" => Operation::Replace {
                    path: pointer("path")?,
                    value: value()?,
                },
                "move" => Operation::Move {
                    from: pointer("from")?,
                    path: pointer("path")?,
                },
                "copy" => Operation::Copy {
                    from: pointer("from")?,
                    path: pointer("path")?,
                },
                "test" => Operation::Test {
                    path: pointer("path")?,
                    value: value()?,
                },
                other => {
                    return Err(malformed(
                        i,
                        "op",
                        format!(
                            "operation {i} is `{other}`; JSON Patch has add, remove, replace, move, copy and test"
                        ),
                    ));
                }
            });
        }
        Ok(JsonPatch(out))
    }

    /// Applies every operation in order to `doc`; on the first that fails, `doc` is left as
    /// it was.
    pub fn apply(&self, doc: &mut Value) -> Result<(), Error> {
        let mut work = doc.clone();
        for (i, op) in self.0.iter().enumerate() {
            apply_one(&mut work, op).map_err(|why| {
                Error::new(
                    codes::PATCH_DOES_NOT_APPLY,
                    format!("operation {i} does not apply: {why}; nothing was written"),
                )
            })?;
        }
        *doc = work;
        Ok(())
    }
}

/// An array index as a pointer token names it: digits without a leading zero.
fn index(token: &str) -> Option<usize> {
    if token == "0" || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit())) {
        token.parse().ok()
    } else {
        None
    }
}

fn get<'a>(doc: &'a Value, path: &Pointer) -> Result<&'a Value, String> {
    let mut at = doc;
    for t in &path.tokens {
        at = match at {
            Value::Object(m) => m.get(t),
            Value::Array(a) => index(t).and_then(|n| a.get(n)),
            _ => None,
        }
        .ok_or_else(|| format!("`{}` names nothing in the resource", path.text))?;
    }
    Ok(at)
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String], text: &str) -> Result<&'a mut Value, String> {
    let mut at = doc;
    for t in tokens {
        at = match at {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => index(t).and_then(|n| a.get_mut(n)),
            _ => None,
        }
        .ok_or_else(|| format!("`{text}` names nothing in the resource"))?;
    }
    Ok(at)
}

fn add(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), String> {
    let Some((parent, last)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent, &path.text)? {
        Value::Object(m) => {
            m.insert(last.to_owned(), value);
            Ok(())
        }
        Value::Array(a) => {
            let n = if last == "-" {
                Some(a.len())
            } else {
                index(last)
            };
            match n {
                Some(n) if n <= a.len() => {
                    a.insert(n, value);
                    Ok(())
                }
                _ => Err(format!("`{}` is past the end of its array", path.text)),
            }
        }
        _ => Err(format!(
            "`{}` is inside a value that has no members",
            path.text
        )),
    }
}

fn remove(doc: &mut Value, path: &Pointer) -> Result<Value, String> {
    let Some((parent, last)) = path.split_last() else {
        return Err("the whole resource cannot be removed".into());
    };
    let missing = || format!("`{}` names nothing in the resource", path.text);
    match get_mut(doc, parent, &path.text)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => match index(last) {
            Some(n) if n < a.len() => Ok(a.remove(n)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// JSON equality, numbers by value (`1` equals `1.0`), as RFC 6902's `test` compares.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn apply_one(doc: &mut Value, op: &Operation) -> Result<(), String> {
    match op {
        Operation::Add { path, value } => add(doc, path, value.clone()),
        Operation::Remove { path } => remove(doc, path).map(|_| ()),
        Operation::Replace { path, value } => {
            *get_mut(doc, &path.tokens, &path.text)? = value.clone();
            Ok(())
        }
        Operation::Move { from, path } => {
            if from.contains(path) {
                return Err(format!("`{}` cannot move into itself", from.text));
            }
            let value = remove(doc, from)?;
            add(doc, path, value)
        }
        Operation::Copy { from, path } => {
            let value = get(doc, from)?.clone();
            add(doc, path, value)
        }
        Operation::Test { path, value } => {
            if same(get(doc, path)?, value) {
                Ok(())
            } else {
                Err(format!(
                    "the value at `{}` is not the one tested",
                    path.text
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(doc: Value, patch: Value) -> Result<Value, Error> {
        let mut doc = doc;
        JsonPatch::parse(&patch)?.apply(&mut doc)?;
        Ok(doc)
    }

    #[test]
    fn the_six_operations_do_what_rfc_6902_says() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x", "d~/e": 1});
        let out = patched(
            doc,
            json!([
                {"op": "test", "path": "/a/b/1", "value": 2.0},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "add", "path": "/a/b/0", "value": 0},
                {"op": "remove", "path": "/a/b/1"},
                {"op": "replace", "path": "/c", "value": {"y": true}},
                {"op": "copy", "from": "/c", "path": "/f"},
                {"op": "move", "from": "/d~0~1e", "path": "/g"},
                {"op": "test", "path": "/g", "value": 1}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": {"b": [0, 2, 3]}, "c": {"y": true}, "f": {"y": true}, "g": 1})
        );
    }

    #[test]
    fn a_failing_operation_changes_nothing_and_names_no_value() {
        let mut doc = json!({"identifier": [{"value": "051085000123"}], "active": true});
        let before = doc.clone();
        let patch = JsonPatch::parse(&json!([
            {"op": "replace", "path": "/active", "value": false},
            {"op": "test", "path": "/identifier/0/value", "value": "079085000999"}
        ]))
        .unwrap();
        let e = patch.apply(&mut doc).unwrap_err();
        assert_eq!(e.code.id, "CF_07");
        assert!(
            !e.message.contains("0790") && !e.message.contains("0510"),
            "{e}"
        );
        assert_eq!(doc, before);
        for (p, why) in [
            (json!([{"op": "remove", "path": "/nothing"}]), "missing"),
            (
                json!([{"op": "replace", "path": "/identifier/1", "value": 1}]),
                "past",
            ),
            (
                json!([{"op": "add", "path": "/identifier/5", "value": 1}]),
                "past end",
            ),
            (
                json!([{"op": "add", "path": "/identifier/01", "value": 1}]),
                "leading zero",
            ),
            (
                json!([{"op": "move", "from": "/identifier", "path": "/identifier/0/x"}]),
                "into itself",
            ),
            (json!([{"op": "remove", "path": ""}]), "the whole"),
        ] {
            let e = JsonPatch::parse(&p).unwrap().apply(&mut doc).unwrap_err();
            assert_eq!(e.code.id, "CF_07", "{why}");
        }
    }

    #[test]
    fn malformed_documents_are_refused_before_anything_is_applied() {
        for p in [
            json!({"op": "add"}),
            json!([{"op": "delete", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "remove", "path": "a"}]),
            json!([{"op": "move", "path": "/a"}]),
            json!([{"op": "remove", "path": "/a~2"}]),
            json!(["remove"]),
        ] {
            assert_eq!(JsonPatch::parse(&p).unwrap_err().code.id, "IR_06", "{p}");
        }
    }
}
