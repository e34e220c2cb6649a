//! Conditional writes (`If-None-Exist`, conditional PUT, idempotency keys): the condition is
//! evaluated under a lock, so concurrent requests with the same condition see each other.
//!
//! The lock is taken on what the condition means, not on how it is spelled:
//! `identifier=urn:x|V` and `identifier=V` can match the same resource, so both lock the
//! token value `V` of `identifier`. Two conditions that share a parameter value serialise.

use crate::error::{Error, codes};
use crate::tx::Tx;
use hospital_store::params::{self, ParamKind};
use hospital_store::{SearchQuery, Version};

/// Splits a query string into its parameters.
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// The lock keys of a condition: one per parameter value, in the value's most general form.
pub fn lock_keys(resource_type: &str, params: &[(String, String)]) -> Vec<String> {
    let mut keys = Vec::new();
    for (key, value) in params {
        let name = key.split(':').next().unwrap_or_default();
        let kind = params::find(resource_type, name).map(|p| p.kind);
        for v in hospital_store::search::split_values(value) {
            let general = match kind {
                Some(ParamKind::Token) => match v.rsplit_once('|') {
                    Some((system, "")) => format!("system:{system}"),
                    Some((_, code)) => code.to_owned(),
                    None => v.clone(),
                },
                Some(ParamKind::String) => hospital_store::text::fold(&v),
                Some(ParamKind::Reference) => v.rsplit('/').next().unwrap_or_default().to_owned(),
                _ => v.clone(),
            };
            keys.push(format!("{resource_type}|{name}|{general}"));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Takes the locks of `keys` sorted, so that every transaction takes its locks in one order.
/// A transaction with several conditions takes them all this way before evaluating any: a
/// lock already held is taken again at no cost.
pub async fn lock_in_order(tx: &mut Tx, mut keys: Vec<String>) -> Result<(), Error> {
    keys.sort();
    keys.dedup();
    for key in keys {
        tx.lock(&key).await?;
    }
    Ok(())
}

/// Finds the single resource matching a condition, holding locks on it so that concurrent
/// requests with an overlapping condition see each other's result.
pub async fn find_match(
    tx: &mut Tx,
    resource_type: &str,
    condition: &str,
) -> Result<Option<Version>, Error> {
    let params = parse_query(Some(condition.trim_start_matches('?')));
    if params.is_empty() {
        return Err(Error::bad_request("the condition has no search parameters"));
    }
    for key in lock_keys(resource_type, &params) {
        tx.lock(&key).await?;
    }
    let mut query = SearchQuery::new(resource_type, params);
    query.params.push(("_count".into(), "2".into()));
    let found = tx.search(&query).await?;
    match found.matches.len() {
        0 => Ok(None),
        1 => Ok(found.matches.into_iter().next()),
        _ => Err(Error::new(
            codes::AMBIGUOUS_CONDITION,
            format!("the condition `{condition}` matches more than one {resource_type}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_spellings_of_one_identifier_lock_the_same_key() {
        static PARAMS: &[params::SearchParam] = &[params::SearchParam::new(
            "Patient",
            "identifier",
            ParamKind::Token,
            &["identifier"],
        )];
        params::install(&[PARAMS], &[]).unwrap();
        let a = lock_keys(
            "Patient",
            &[("identifier".into(), "urn:probe:mrn|V".into())],
        );
        let b = lock_keys("Patient", &[("identifier".into(), "V".into())]);
        assert_eq!(a, b);
    }
}
