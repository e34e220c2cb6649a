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
    if let Some(pid) = caller.principal.compartment() {
        // Confines the searched type when it is patient data, and every type a chain looks
        // into (`Practitioner?_has:Observation:performer:code=...` must not tell a patient
        // about other patients' observations).
        query.compartment = Some(pid.to_owned());
        query.patient_data = Some(hospital_auth::is_patient_data);
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
