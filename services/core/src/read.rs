//! Reads as a caller may make them: a patient's searches are confined to their compartment
//! (in SQL), and what they include is filtered by the same rule.

use crate::caller::Caller;
use crate::error::Error;
use crate::platform::Platform;
use crate::tx::Tx;
use crate::visibility::visible;
use hospital_auth::Action;
use hospital_store::{SearchQuery, SearchResult};

/// Runs `query` as `caller` (inside `tx` when given, seeing its writes).
pub async fn search(
    platform: &Platform,
    caller: &Caller,
    query: &mut SearchQuery,
    tx: Option<&mut Tx>,
) -> Result<SearchResult, Error> {
    if let Some(pid) = caller.principal.compartment()
        && hospital_auth::is_patient_data(&query.resource_type)
    {
        query.compartment = Some(pid.to_owned());
    }
    let mut result = match tx {
        Some(tx) => tx.search(query).await?,
        None => platform.store().search(query).await?,
    };
    if caller.principal.compartment().is_some() {
        result.matches.retain(|v| visible(caller, v));
        result.included.retain(|v| visible(caller, v));
    }
    result
        .included
        .retain(|v| caller.principal.may(Action::Read, &v.resource_type));
    Ok(result)
}
