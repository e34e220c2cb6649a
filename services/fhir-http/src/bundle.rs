//! `batch` and `transaction` Bundles (<https://hl7.org/fhir/R4B/http.html#transaction>).
//! A transaction is one database transaction: all entries commit or none does. `urn:uuid:`
//! full URLs are given ids before any write, and every reference to them is rewritten.

use crate::rest::{
    begin_as, commit_audited, conditional_match, http_date, parse_query, run_search,
};
use crate::security::{Caller, Touched, authorize, reveal};
use crate::{ApiError, FhirApi, parse_etag};
use hospital_auth::Action;
use hospital_store::{SearchQuery, Tx, Version};
use serde_json::{Value, json};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Method {
    Delete,
    Post,
    Put,
    Get,
}

struct Entry {
    index: usize,
    method: Method,
    rtype: String,
    id: Option<String>,
    query: Option<String>,
    resource: Option<Value>,
    full_url: Option<String>,
    if_none_exist: Option<String>,
    if_match: Option<i64>,
}

fn entry_err(i: usize, e: ApiError) -> ApiError {
    let prefix = |m: String| format!("Bundle.entry[{i}]: {m}");
    match e {
        ApiError::Invalid { path, message } => ApiError::Invalid {
            path,
            message: prefix(message),
        },
        ApiError::NotFound(m) => ApiError::NotFound(prefix(m)),
        ApiError::Gone(m) => ApiError::Gone(prefix(m)),
        ApiError::MethodNotAllowed(m) => ApiError::MethodNotAllowed(prefix(m)),
        ApiError::Conflict(m) => ApiError::Conflict(prefix(m)),
        ApiError::PreconditionFailed(m) => ApiError::PreconditionFailed(prefix(m)),
        ApiError::Unprocessable(m) => ApiError::Unprocessable(prefix(m)),
        other => other,
    }
}

fn parse_entry(i: usize, e: &Value) -> Result<Entry, ApiError> {
    let path = |p: &str| format!("Bundle.entry[{i}].{p}");
    let req = e
        .get("request")
        .ok_or_else(|| ApiError::invalid(path("request"), "every entry needs a request"))?;
    let method = match req.get("method").and_then(Value::as_str) {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        other => {
            return Err(ApiError::invalid(
                path("request.method"),
                format!("method {other:?} is not supported in bundles"),
            ));
        }
    };
    let url = req
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(path("request.url"), "request.url is required"))?;
    let (p, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url, None),
    };
    let mut segs = p.trim_matches('/').split('/');
    let rtype = segs.next().unwrap_or_default().to_owned();
    let id = segs.next().map(str::to_owned);
    if rtype.is_empty() || segs.next().is_some() {
        return Err(ApiError::invalid(
            path("request.url"),
            format!("`{url}` is not a Type, Type/id or Type?query URL"),
        ));
    }
    if !hospital_fhir_model::is_supported(&rtype) {
        return Err(ApiError::invalid(
            path("request.url"),
            format!("resource type `{rtype}` is not supported"),
        ));
    }
    let resource = e.get("resource").cloned();
    if matches!(method, Method::Post | Method::Put) {
        let r = resource.as_ref().ok_or_else(|| {
            ApiError::invalid(path("resource"), "POST and PUT entries need a resource")
        })?;
        if r.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str()) {
            return Err(ApiError::invalid(
                path("resource.resourceType"),
                format!("the resource must be a {rtype} to match request.url"),
            ));
        }
    }
    if method == Method::Delete && id.is_none() {
        return Err(ApiError::invalid(
            path("request.url"),
            "DELETE needs Type/id",
        ));
    }
    if method == Method::Put && id.is_none() && query.is_none() {
        return Err(ApiError::invalid(
            path("request.url"),
            "PUT needs Type/id or Type?condition",
        ));
    }
    let if_match = match req.get("ifMatch").and_then(Value::as_str) {
        Some(v) => Some(
            parse_etag(v)
                .ok_or_else(|| ApiError::invalid(path("request.ifMatch"), "not a version ETag"))?,
        ),
        None => None,
    };
    Ok(Entry {
        index: i,
        method,
        rtype,
        id,
        query,
        resource,
        full_url: e.get("fullUrl").and_then(Value::as_str).map(str::to_owned),
        if_none_exist: req
            .get("ifNoneExist")
            .and_then(Value::as_str)
            .map(str::to_owned),
        if_match,
    })
}

fn rewrite_references(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                    && let Some(target) = map.get(s.as_str())
                {
                    *s = target.clone();
                    continue;
                }
                rewrite_references(child, map);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_references(c, map)),
        _ => {}
    }
}

fn response_entry(v: &Version, status: &str, base: &str, with_resource: bool) -> Value {
    let mut e = json!({
        "response": {
            "status": status,
            "location": format!("{}/{}/_history/{}", v.resource_type, v.id, v.version_id),
            "etag": v.etag(),
            "lastModified": hospital_store::dates::format_instant(v.last_updated),
        }
    });
    if with_resource && !v.body.is_empty() {
        e["fullUrl"] = Value::String(format!("{base}/{}/{}", v.resource_type, v.id));
        e["resource"] = serde_json::from_str(&v.body).unwrap_or(Value::Null);
    }
    let _ = http_date;
    e
}

/// Handles `POST /fhir` with a Bundle, as `caller`: every entry is authorised on its own.
pub async fn process(
    api: &FhirApi,
    caller: &Caller,
    body: Value,
) -> Result<(Value, Touched), ApiError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::invalid(
            "resourceType",
            "POST /fhir takes a Bundle",
        ));
    }
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
    let entries = match body.get("entry") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::invalid("Bundle.entry", "entry must be an array")),
    };
    match kind {
        "transaction" => transaction(api, caller, entries).await,
        "batch" => Ok(batch(api, caller, entries).await),
        other => Err(ApiError::invalid(
            "Bundle.type",
            format!("Bundle.type must be batch or transaction, not `{other}`"),
        )),
    }
}

async fn transaction(
    api: &FhirApi,
    caller: &Caller,
    raw: Vec<Value>,
) -> Result<(Value, Touched), ApiError> {
    let mut entries = raw
        .iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    for e in &entries {
        let action = if e.method == Method::Get {
            Action::Read
        } else {
            Action::Write
        };
        authorize(caller, action, &e.rtype).map_err(|err| entry_err(e.index, err))?;
    }
    let mut touched = Touched::default();
    let mut tx = begin_as(api, caller).await?;
    let writer = api.writer();
    let base = &api.config.base_url;

    // 1. Decide every POST's id (or its existing match) before anything is written.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut skip: Vec<Option<Version>> = (0..entries.len()).map(|_| None).collect();
    let mut assigned: Vec<Option<String>> = vec![None; entries.len()];
    for e in &entries {
        let i = e.index;
        match e.method {
            Method::Post => {
                let id = match &e.if_none_exist {
                    Some(cond) => {
                        match conditional_match(&mut tx, &e.rtype, cond.trim_start_matches('?'))
                            .await
                            .map_err(|err| entry_err(i, err))?
                        {
                            Some(v) => {
                                let id = v.id.clone();
                                skip[i] = Some(v);
                                id
                            }
                            None => uuid::Uuid::new_v4().to_string(),
                        }
                    }
                    None => uuid::Uuid::new_v4().to_string(),
                };
                if let Some(f) = &e.full_url {
                    ids.insert(f.clone(), format!("{}/{id}", e.rtype));
                }
                assigned[i] = Some(id);
            }
            Method::Put => {
                if let (Some(f), Some(id)) = (&e.full_url, &e.id) {
                    ids.insert(f.clone(), format!("{}/{id}", e.rtype));
                }
            }
            _ => {}
        }
    }
    for e in &mut entries {
        if let Some(r) = &mut e.resource {
            rewrite_references(r, &ids);
        }
    }

    // 2. Writes in the order FHIR prescribes: DELETE, POST, PUT, then GET.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].method, i));
    let mut responses: Vec<Value> = vec![Value::Null; entries.len()];
    let mut written: Vec<(usize, Version)> = Vec::new();
    for i in order {
        let e = &entries[i];
        let resp = match e.method {
            Method::Delete => {
                let id = e.id.as_deref().unwrap_or_default();
                writer
                    .delete(&mut tx, &e.rtype, id)
                    .await
                    .map_err(|err| entry_err(i, err))?;
                touched.entities.push(format!("{}/{id}", e.rtype));
                json!({"response": {"status": "204 No Content"}})
            }
            Method::Post => {
                if let Some(v) = &skip[i] {
                    touched.add(v);
                    response_entry(v, "200 OK", base, false)
                } else {
                    let out = writer
                        .create(
                            &mut tx,
                            &e.rtype,
                            assigned[i].as_deref(),
                            e.resource.clone().unwrap_or_default(),
                            false,
                        )
                        .await
                        .map_err(|err| entry_err(i, err))?;
                    written.push((i, out.version.clone()));
                    response_entry(&out.version, "201 Created", base, false)
                }
            }
            Method::Put => {
                let mut resource = e.resource.clone().unwrap_or_default();
                let id = match (&e.id, &e.query) {
                    (Some(id), _) => id.clone(),
                    (None, Some(q)) => {
                        match conditional_match(&mut tx, &e.rtype, q)
                            .await
                            .map_err(|err| entry_err(i, err))?
                        {
                            Some(v) => v.id,
                            None => resource
                                .get("id")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                        }
                    }
                    (None, None) => unreachable!("checked when parsing"),
                };
                resource["id"] = Value::String(id.clone());
                let out = writer
                    .update(&mut tx, &e.rtype, &id, resource, e.if_match, false)
                    .await
                    .map_err(|err| entry_err(i, err))?;
                written.push((i, out.version.clone()));
                let status = if out.created { "201 Created" } else { "200 OK" };
                response_entry(&out.version, status, base, false)
            }
            Method::Get => get_entry(&mut tx, api, caller, e, &mut touched)
                .await
                .map_err(|err| entry_err(i, err))?,
        };
        responses[i] = resp;
    }

    // 3. Every written resource is checked against the store as the transaction left it.
    for (i, v) in &written {
        writer
            .check(&mut tx, v)
            .await
            .map_err(|err| entry_err(*i, err))?;
        touched.add(v);
    }
    let touched = commit_audited(tx, caller, "transaction", "Bundle", touched, 200).await?;
    Ok((
        json!({
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": responses,
        }),
        touched,
    ))
}

async fn get_entry(
    tx: &mut Tx,
    api: &FhirApi,
    caller: &Caller,
    e: &Entry,
    touched: &mut Touched,
) -> Result<Value, ApiError> {
    match &e.id {
        Some(id) => {
            let v = reveal(caller, &e.rtype, id, tx.read(&e.rtype, id).await)?;
            touched.add(&v);
            Ok(response_entry(&v, "200 OK", &api.config.base_url, true))
        }
        None => {
            let mut q = SearchQuery::new(&e.rtype, parse_query(e.query.as_deref()));
            let r = run_search(api, caller, &mut q, Some(tx)).await?;
            for v in r.matches.iter().chain(&r.included) {
                touched.add(v);
            }
            let bundle = crate::rest::searchset(&api.config.base_url, &e.rtype, &r);
            Ok(json!({
                "resource": serde_json::from_str::<Value>(&bundle).unwrap_or(Value::Null),
                "response": {"status": "200 OK"}
            }))
        }
    }
}

async fn batch(api: &FhirApi, caller: &Caller, raw: Vec<Value>) -> (Value, Touched) {
    let mut responses = Vec::with_capacity(raw.len());
    let mut read = Touched::default();
    for (i, e) in raw.iter().enumerate() {
        let r = async {
            let entry = parse_entry(i, e)?;
            let action = if entry.method == Method::Get {
                Action::Read
            } else {
                Action::Write
            };
            authorize(caller, action, &entry.rtype)?;
            let writer = api.writer();
            let mut tx = begin_as(api, caller).await?;
            let mut touched = Touched::default();
            let (resp, verb, status) = match entry.method {
                Method::Get => {
                    let resp = get_entry(&mut tx, api, caller, &entry, &mut read).await?;
                    tx.commit().await?;
                    return Ok::<Value, ApiError>(resp);
                }
                Method::Delete => {
                    let id = entry.id.as_deref().unwrap_or_default();
                    writer.delete(&mut tx, &entry.rtype, id).await?;
                    touched.entities.push(format!("{}/{id}", entry.rtype));
                    (
                        json!({"response": {"status": "204 No Content"}}),
                        "delete",
                        204,
                    )
                }
                Method::Post => {
                    if let Some(cond) = &entry.if_none_exist
                        && let Some(v) =
                            conditional_match(&mut tx, &entry.rtype, cond.trim_start_matches('?'))
                                .await?
                    {
                        touched.add(&v);
                        commit_audited(tx, caller, "create", &entry.rtype, touched, 200).await?;
                        return Ok(response_entry(&v, "200 OK", &api.config.base_url, false));
                    }
                    let out = writer
                        .create(
                            &mut tx,
                            &entry.rtype,
                            None,
                            entry.resource.clone().unwrap_or_default(),
                            true,
                        )
                        .await?;
                    touched.add(&out.version);
                    (
                        response_entry(&out.version, "201 Created", &api.config.base_url, false),
                        "create",
                        201,
                    )
                }
                Method::Put => {
                    let Some(id) = entry.id.clone() else {
                        return Err(ApiError::bad_request(
                            "conditional PUT is not supported in a batch",
                        ));
                    };
                    let out = writer
                        .update(
                            &mut tx,
                            &entry.rtype,
                            &id,
                            entry.resource.clone().unwrap_or_default(),
                            entry.if_match,
                            true,
                        )
                        .await?;
                    touched.add(&out.version);
                    let (status, code) = if out.created {
                        ("201 Created", 201)
                    } else {
                        ("200 OK", 200)
                    };
                    (
                        response_entry(&out.version, status, &api.config.base_url, false),
                        "update",
                        code,
                    )
                }
            };
            commit_audited(tx, caller, verb, &entry.rtype, touched, status).await?;
            Ok(resp)
        }
        .await;
        responses.push(match r {
            Ok(v) => v,
            Err(err) => json!({"response": {
                "status": err.status().as_u16().to_string(),
                "outcome": err.outcome(),
            }}),
        });
    }
    (
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": responses}),
        read,
    )
}
