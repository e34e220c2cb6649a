//! FHIR search (<https://hl7.org/fhir/R4B/search.html>) in three steps:
//!
//! 1. [`parse`] reads the query parameters into a typed [`parse::Plan`]: every value is
//!    checked and converted once (dates to ranges, numbers with their precision, tokens split
//!    into system and code), so a bad parameter is refused before any SQL exists;
//! 2. [`compile`] turns the plan into one indexed SQL query per page: each parameter is an
//!    `rid IN (SELECT rid FROM idx_* WHERE ...)` semi-join, several values of a parameter are
//!    one bound list (`= ANY($1)` / `json_each`), paging is keyset, never OFFSET;
//! 3. [`execute`] runs it, and the `_include`/`_revinclude` queries for the page.
//!
//! A search across types ([`system`]) plans and compiles each type's search the same way and
//! merges their pages.
//!
//! Decisions about the query (e.g. whether the type must be tested on `resources`) are made
//! on the plan, never by inspecting generated SQL text.

mod compile;
mod execute;
mod parse;
mod system;

use crate::Version;

pub use execute::run;
pub use system::{MAX_SYSTEM_COUNT, run_system};

/// Default and maximum page sizes.
pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 1000;

/// Bounds on the work one search may cause (each over it is a 400 naming the bound): query
/// parameters, comma-separated values of one parameter, and `_include`/`_revinclude`s.
pub const MAX_PARAMETERS: usize = 100;
pub const MAX_VALUES_PER_PARAMETER: usize = 100;
pub const MAX_INCLUDES: usize = 10;
/// Rounds of `:iterate` includes after the first, and the resources they may add in all:
/// past either, the search answers what it has, with a warning.
pub const MAX_INCLUDE_ROUNDS: usize = 3;
pub const MAX_INCLUDED: usize = 2_000;
/// Links of one chain (`subject:Patient.organization.name` has two), and `_has` nesting.
pub const MAX_CHAIN: usize = 3;

/// A search request as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub resource_type: String,
    /// Query parameters in order, names with their modifiers (`name:exact`).
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=lenient`: unknown parameters are ignored (and reported).
    pub lenient: bool,
    /// The patient whose compartment confines a patient token's search: the searched type's
    /// results, and every type a chain (`subject.name`) or a reverse chain (`_has:...`)
    /// looks into, when it is patient data.
    pub compartment: Option<String>,
    /// Which types are patient data (the policy's rule); every type is, when not given.
    pub patient_data: Option<fn(&str) -> bool>,
}

impl SearchQuery {
    pub fn new(resource_type: &str, params: Vec<(String, String)>) -> Self {
        SearchQuery {
            resource_type: resource_type.to_owned(),
            params,
            lenient: false,
            compartment: None,
            patient_data: None,
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

/// Splits a parameter value on unescaped commas (`\,` is a literal comma).
pub fn split_values(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next()
                    && let Some(last) = out.last_mut()
                {
                    last.push(n);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_on_unescaped_commas() {
        assert_eq!(split_values("a,b\\,c"), vec!["a", "b,c"]);
    }
}
