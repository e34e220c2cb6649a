//! Rows as one JSON argument, for SQLite statements that unpack them with `json_each`: the
//! statement's text stays the same whatever the number of rows, so SQLite compiles it once
//! per connection (see `write_sqlite::render` and the audit inserts).

use crate::Arg;

/// Appends `value` to a JSON array being written.
pub(crate) fn push_json(out: &mut String, value: &Arg) {
    match value {
        Arg::I64(v) => out.push_str(&v.to_string()),
        // Shortest round-trip form, always a JSON number (`1.0`, `1e300`); not finite: null.
        Arg::F64(v) => out.push_str(&serde_json::Value::from(*v).to_string()),
        Arg::Text(v) => push_text(out, v),
    }
}

/// Appends `text` as a JSON string.
pub(crate) fn push_text(out: &mut String, text: &str) {
    // Serialising a string cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// Appends `values` to a JSON array being written, separated by commas.
pub(crate) fn push_texts(out: &mut String, values: &[&str]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_text(out, v);
    }
}

/// A JSON array of rows, each an array of `values(row)`.
pub(crate) fn json_rows<T>(
    items: impl IntoIterator<Item = T>,
    mut values: impl FnMut(&mut String, T),
) -> String {
    let mut out = String::from("[");
    for item in items {
        if out.len() > 1 {
            out.push(',');
        }
        out.push('[');
        values(&mut out, item);
        out.push(']');
    }
    out.push(']');
    out
}

/// `j.value->>A, j.value->>B, ...`: columns of a row of [`json_rows`], from `from` on.
pub(crate) fn row_columns(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|c| format!("j.value->>{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
