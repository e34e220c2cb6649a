//! `POST [type]/$validate` and `POST [type]/[id]/$validate`
//! (<https://hl7.org/fhir/R4B/resource-operation-validate.html>): the input (a resource, or a
//! `Parameters` with `resource` and `mode`) read into a [`Proposal`] for
//! [`hospital_core::validation`], and its verdict as FHIR says: 200 and an `OperationOutcome`
//! whether or not the write would be accepted — the refusal exactly as the write would give it
//! — and a 4xx only when the validation itself could not be made (the caller may not write the
//! type, the input is unreadable).

use crate::FhirApi;
use crate::request::{check_id, check_type, json_body};
use crate::response::fhir_response;
use crate::security::finish;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hospital_core::auth::Action;
use hospital_core::validation::{Proposal, Verdict};
use hospital_core::{Caller, Error, Interaction, Touched, authorize};
use serde_json::{Value, json};

/// The resource and mode of the input: the body itself, or a `Parameters`.
fn input(
    rtype: &str,
    body: Value,
    query: &[(String, String)],
) -> Result<(Option<Value>, Option<String>), Error> {
    let mut mode = query
        .iter()
        .find(|(k, _)| k == "mode")
        .map(|(_, v)| v.clone());
    let resource = match body.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") if rtype != "Parameters" => {
            let mut resource = None;
            for p in body
                .get("parameter")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match p.get("name").and_then(Value::as_str) {
                    Some("resource") => resource = p.get("resource").cloned(),
                    Some("mode") => {
                        mode = p
                            .get("valueCode")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    }
                    Some("profile") => {
                        return Err(Error::bad_request(
                            "validation against a profile is not supported; validate without `profile`",
                        ));
                    }
                    _ => {}
                }
            }
            resource
        }
        Some(_) => Some(body),
        None => {
            return Err(Error::invalid(
                "resourceType",
                format!("the body must be a {rtype}, or a Parameters with a `resource`"),
            ));
        }
    };
    if let Some(r) = &resource
        && r.get("resourceType").and_then(Value::as_str) != Some(rtype)
    {
        return Err(Error::invalid(
            "resourceType",
            format!("the resource to validate must be a {rtype}"),
        ));
    }
    Ok((resource, mode))
}

/// The write the input proposes, by its mode: a create at the type, an update (or a
/// deletion) at an instance.
fn proposal(
    id: Option<&str>,
    resource: Option<Value>,
    mode: Option<&str>,
) -> Result<Proposal, Error> {
    let needs =
        |r: Option<Value>| r.ok_or_else(|| Error::bad_request("a resource to validate is needed"));
    match (id, mode) {
        (None, None | Some("create")) => Ok(Proposal::Create(needs(resource)?)),
        (Some(id), None | Some("update")) => Ok(Proposal::Update {
            id: id.to_owned(),
            body: needs(resource)?,
        }),
        (Some(id), Some("delete")) => Ok(Proposal::Delete { id: id.to_owned() }),
        (None, Some(m @ ("update" | "delete"))) => Err(Error::bad_request(format!(
            "mode {m} validates a change of one resource: POST [type]/[id]/$validate"
        ))),
        (Some(_), Some("create")) => Err(Error::bad_request(
            "mode create validates a new resource: POST [type]/$validate",
        )),
        (_, Some(m)) => Err(Error::bad_request(format!(
            "mode `{m}` is not one of create, update, delete"
        ))),
    }
}

/// Runs `$validate` on `rtype` (at `id` when given) and answers it.
pub(crate) async fn validate(
    api: &FhirApi,
    caller: &Caller,
    rtype: &str,
    id: Option<&str>,
    headers: &HeaderMap,
    query: &[(String, String)],
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let target = match id {
        Some(id) => format!("{rtype}/{id}"),
        None => rtype.to_owned(),
    };
    let r: Result<(Response, Touched), Error> = async {
        check_type(rtype)?;
        if let Some(id) = id {
            check_id(rtype, id)?;
        }
        // Whoever may not make the write may not try it: its refusal would tell what the
        // store holds (a personal ID's holder, for one).
        authorize(caller, Action::Write, rtype)?;
        api.platform.check_written_here(rtype)?;
        let body = if body.as_ref().is_ok_and(|b| b.is_empty()) {
            json!({"resourceType": "Parameters"})
        } else {
            json_body(headers, body)?
        };
        let (resource, mode) = input(rtype, body, query)?;
        let proposal = proposal(id, resource, mode.as_deref())?;
        let (verdict, touched) =
            hospital_core::validation::validate(&api.platform, caller, rtype, proposal).await?;
        let outcome = match verdict {
            Verdict::Accepted => json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information",
                "code": "informational",
                "diagnostics": format!(
                    "{target}: the write would be accepted by the rules of its owner; nothing was written"
                ),
            }]}),
            Verdict::Refused(e) => crate::error::outcome(&e),
        };
        Ok((fhir_response(StatusCode::OK, outcome.to_string()), touched))
    }
    .await;
    finish(api, caller, Interaction::Validate, rtype, Some(&target), r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_is_valid_only_where_it_means_something() {
        let r = || Some(json!({"resourceType": "Patient"}));
        assert!(matches!(proposal(None, r(), None), Ok(Proposal::Create(_))));
        assert!(matches!(
            proposal(Some("p"), r(), Some("update")),
            Ok(Proposal::Update { .. })
        ));
        assert!(matches!(
            proposal(Some("p"), None, Some("delete")),
            Ok(Proposal::Delete { .. })
        ));
        assert!(proposal(None, r(), Some("delete")).is_err());
        assert!(proposal(Some("p"), r(), Some("create")).is_err());
        assert!(proposal(Some("p"), None, None).is_err());
        assert!(proposal(None, r(), Some("patch")).is_err());
    }

    #[test]
    fn the_resource_comes_from_the_body_or_its_parameters() {
        let p = json!({"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient", "gender": "male"}},
            {"name": "mode", "valueCode": "create"}]});
        let (r, m) = input("Patient", p, &[]).unwrap();
        assert_eq!(r.unwrap()["gender"], "male");
        assert_eq!(m.as_deref(), Some("create"));
        assert!(input("Patient", json!({"resourceType": "Observation"}), &[]).is_err());
        assert!(input("Patient", json!({"gender": "male"}), &[]).is_err());
        let profiled = json!({"resourceType": "Parameters", "parameter": [
            {"name": "profile", "valueUri": "http://example.org/p"}]});
        assert!(input("Patient", profiled, &[]).is_err());
    }
}
