//! Reads as a caller may make them: a patient's searches are confined to their compartment
//! (in SQL), and what they include is filtered by the same rule; a patient's history holds
//! only the versions of what is theirs now.

use crate::caller::Caller;
use crate::compartment::standing_patients;
use crate::error::Error;
use crate::platform::Platform;
use crate::touched::Touched;
use crate::tx::Tx;
use crate::visibility::{reveal, visible};
use hospital_auth::{Action, is_patient_data};
use hospital_store::{HistoryPage, HistoryQuery, HistoryScope, SearchQuery, SearchResult, Version};
use std::collections::HashMap;

/// A patient's search runs inside their compartment: the searched type when it holds
/// patients' data, and every type a chain looks into that does
/// (`Practitioner?_has:Observation:performer:code=...` must not tell a patient about other
/// patients' observations).
fn confine(caller: &Caller, query: &mut SearchQuery) {
    if let Some(pid) = caller.principal.compartment() {
        query.compartment = Some(pid.to_owned());
        query.patient_data = Some(is_patient_data);
    }
}

/// What a confined caller may not see leaves the result (a second guard behind the SQL);
/// included resources of types the caller may not read leave it too.
fn filter(caller: &Caller, result: &mut SearchResult) {
    if caller.principal.compartment().is_some() {
        result.matches.retain(|v| visible(caller, v));
        result.included.retain(|v| visible(caller, v));
    }
    result
        .included
        .retain(|v| caller.principal.may(Action::Read, &v.resource_type));
}

/// Runs `query` as `caller` (inside `tx` when given, seeing its writes).
pub async fn search(
    platform: &Platform,
    caller: &Caller,
    query: &mut SearchQuery,
    tx: Option<&mut Tx>,
) -> Result<SearchResult, Error> {
    confine(caller, query);
    let mut result = match tx {
        Some(tx) => tx.search(query).await?,
        None => platform.store().search(query).await?,
    };
    filter(caller, &mut result);
    Ok(result)
}

/// Runs the search `params` over `types` as `caller`: each type's search is the one
/// [`search`] would run (confined alike), merged in one order. Which types the caller may
/// read is the edge's to decide, as for a search of one type.
pub async fn search_types(
    platform: &Platform,
    caller: &Caller,
    types: &[String],
    params: Vec<(String, String)>,
    lenient: bool,
) -> Result<SearchResult, Error> {
    let searches: Vec<SearchQuery> = types
        .iter()
        .map(|t| {
            let mut q = SearchQuery::new(t, params.clone());
            q.lenient = lenient;
            confine(caller, &mut q);
            q
        })
        .collect();
    let mut result = platform.store().search_system(&searches).await?;
    filter(caller, &mut result);
    Ok(result)
}

/// A page of history as `caller` may read it, with what it touched. A version belongs to
/// whom its resource belongs now (for a deleted one, as of its last version before the
/// deletion): a patient sees the versions of what is theirs, and every access is recorded
/// under every patient it concerns.
pub async fn history(
    platform: &Platform,
    caller: &Caller,
    query: &HistoryQuery,
) -> Result<(HistoryPage, Touched), Error> {
    let store = platform.store();
    // A patient asking for one resource's history learns nothing of a resource not theirs.
    if let HistoryScope::Instance { resource_type, id } = &query.scope
        && caller.principal.compartment().is_some()
    {
        reveal(
            caller,
            resource_type,
            id,
            store.read(resource_type, id).await,
        )?;
    }
    let mut page = store.history(query).await?;
    let mut standing: HashMap<(String, String), Vec<String>> = HashMap::new();
    for v in &page.versions {
        let key = (v.resource_type.clone(), v.id.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = standing.entry(key) {
            slot.insert(standing_patients(store, &v.resource_type, &v.id).await?);
        }
    }
    let now_of = |v: &Version| &standing[&(v.resource_type.clone(), v.id.clone())];
    if let Some(pid) = caller.principal.compartment() {
        page.versions.retain(|v| {
            !v.deleted && (!is_patient_data(&v.resource_type) || now_of(v).iter().any(|p| p == pid))
        });
    }
    let mut touched = Touched::of(&page.versions);
    for v in &page.versions {
        for p in now_of(v) {
            touched.patient(p);
        }
    }
    Ok((page, touched))
}
