//! The one list of tables derived from a resource's current version: the search index tables
//! (each with its columns, the parameter kinds it serves, and the rows of one version), and
//! the unique identifiers. Writing, clearing and searching all read this list.

use crate::params::ParamKind;
use crate::{Arg, extract};

/// One search index table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexTable {
    Token,
    String,
    Date,
    Reference,
    Number,
    /// The combined indexes (`params::ComboIndex`).
    Combo,
}

impl IndexTable {
    pub(crate) const ALL: [IndexTable; 6] = [
        IndexTable::Token,
        IndexTable::String,
        IndexTable::Date,
        IndexTable::Reference,
        IndexTable::Number,
        IndexTable::Combo,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            IndexTable::Token => "idx_token",
            IndexTable::String => "idx_string",
            IndexTable::Date => "idx_date",
            IndexTable::Reference => "idx_reference",
            IndexTable::Number => "idx_number",
            IndexTable::Combo => "idx_combo",
        }
    }

    /// Its columns besides `rid` and `resource_type`.
    pub(crate) fn columns(self) -> &'static str {
        match self {
            IndexTable::Token => "param, system, code, sc",
            IndexTable::String => "param, value, raw",
            IndexTable::Date => "param, lo, hi",
            IndexTable::Reference => "param, target_type, target_id",
            IndexTable::Number => "param, value, system, code",
            IndexTable::Combo => "param, key, lo, hi",
        }
    }

    /// The table that indexes parameters of `kind`.
    pub(crate) fn of(kind: ParamKind) -> IndexTable {
        match kind {
            ParamKind::Token | ParamKind::Uri => IndexTable::Token,
            ParamKind::String => IndexTable::String,
            ParamKind::Date => IndexTable::Date,
            ParamKind::Reference => IndexTable::Reference,
            ParamKind::Quantity | ParamKind::Number => IndexTable::Number,
        }
    }

    /// The rows of this table for one version, without `rid` and `resource_type` (which the
    /// two backends supply in their own ways).
    pub(crate) fn rows(self, rows: &extract::IndexRows) -> Vec<Vec<Arg>> {
        let t = |s: &str| Arg::Text(s.to_owned());
        match self {
            IndexTable::Token => rows
                .tokens
                .iter()
                .map(|(p, sys, code)| {
                    vec![t(p), t(sys), t(code), Arg::Text(format!("{sys}|{code}"))]
                })
                .collect(),
            IndexTable::String => rows
                .strings
                .iter()
                .map(|(p, v, raw)| vec![t(p), t(v), t(raw)])
                .collect(),
            IndexTable::Date => rows
                .dates
                .iter()
                .map(|(p, r)| vec![t(p), Arg::I64(r.lo), Arg::I64(r.hi)])
                .collect(),
            IndexTable::Reference => rows
                .references
                .iter()
                .map(|(p, tt, ti)| vec![t(p), t(tt), t(ti)])
                .collect(),
            IndexTable::Number => rows
                .numbers
                .iter()
                .map(|(p, v, sys, c)| vec![t(p), Arg::F64(*v), t(sys), t(c)])
                .collect(),
            IndexTable::Combo => rows
                .combos
                .iter()
                .map(|(p, key, r)| vec![t(p), t(key), Arg::I64(r.lo), Arg::I64(r.hi)])
                .collect(),
        }
    }
}

/// Every table that holds rows derived from a resource's current version, cleared when a new
/// version replaces it: the index tables, and the unique identifiers.
pub(crate) fn derived_tables() -> impl Iterator<Item = &'static str> {
    IndexTable::ALL
        .into_iter()
        .map(IndexTable::name)
        .chain(["unique_identifier"])
}
