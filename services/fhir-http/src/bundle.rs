//! `batch` and `transaction` Bundles (<https://hl7.org/fhir/R4B/http.html#transaction>).
//! A transaction is one database transaction: all entries commit or none does. `urn:uuid:`
//! full URLs are given ids before any write, and every reference to them is rewritten.
//! Every write entry — of a transaction, of a batch — goes through [`write_entry`], the same
//! single-entry path whatever the Bundle, so what works in one works in the other.

use crate::request::parse_query;
use crate::subset::Subset;
use crate::{FhirApi, parse_etag};
use hospital_core::auth::Action;
use hospital_core::conditional::find_match;
use hospital_core::store::{SearchQuery, Version};
use hospital_core::{Caller, Checks, Error, Interaction, Touched, Tx, authorize, codes, reveal};
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

/// Two entries of one transaction that would write the same resource.
fn repeated(first: usize, second: usize, what: &str) -> Error {
    Error::new(
        codes::REPEATED_IN_TRANSACTION,
        format!(
            "Bundle.entry[{first}] and Bundle.entry[{second}] both write {what}; a transaction writes each resource once"
        ),
    )
    .at(format!("Bundle.entry[{second}]"))
}

fn entry_err(i: usize, e: Error) -> Error {
    e.prefixed(&format!("Bundle.entry[{i}]: "))
}

fn parse_entry(i: usize, e: &Value) -> Result<Entry, Error> {
    let path = |p: &str| format!("Bundle.entry[{i}].{p}");
    let req = e
        .get("request")
        .ok_or_else(|| Error::invalid(path("request"), "every entry needs a request"))?;
    let method = match req.get("method").and_then(Value::as_str) {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        other => {
            return Err(Error::invalid(
                path("request.method"),
                format!("method {other:?} is not supported in bundles"),
            ));
        }
    };
    let url = req
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(path("request.url"), "request.url is required"))?;
    let (p, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url, None),
    };
    let mut segs = p.trim_matches('/').split('/');
    let rtype = segs.next().unwrap_or_default().to_owned();
    let id = segs.next().map(str::to_owned);
    if rtype.is_empty() || segs.next().is_some() {
        return Err(Error::invalid(
            path("request.url"),
            format!("`{url}` is not a Type, Type/id or Type?query URL"),
        ));
    }
    if !hospital_fhir_model::is_supported(&rtype) {
        return Err(Error::new(
            codes::NO_SUCH_ENDPOINT,
            format!("resource type `{rtype}` is not supported"),
        )
        .at(path("request.url")));
    }
    let resource = e.get("resource").cloned();
    if matches!(method, Method::Post | Method::Put) {
        let r = resource.as_ref().ok_or_else(|| {
            Error::invalid(path("resource"), "POST and PUT entries need a resource")
        })?;
        if r.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str()) {
            return Err(Error::invalid(
                path("resource.resourceType"),
                format!("the resource must be a {rtype} to match request.url"),
            ));
        }
    }
    if method == Method::Delete && id.is_none() {
        return Err(Error::invalid(path("request.url"), "DELETE needs Type/id"));
    }
    if method == Method::Put && id.is_none() && query.is_none() {
        return Err(Error::invalid(
            path("request.url"),
            "PUT needs Type/id or Type?condition",
        ));
    }
    let if_match = match req.get("ifMatch").and_then(Value::as_str) {
        Some(v) => Some(
            parse_etag(v)
                .ok_or_else(|| Error::invalid(path("request.ifMatch"), "not a version ETag"))?,
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
            "lastModified": hospital_core::store::dates::format_instant(v.last_updated),
        }
    });
    if with_resource && !v.body.is_empty() {
        e["fullUrl"] = Value::String(format!("{base}/{}/{}", v.resource_type, v.id));
        e["resource"] = serde_json::from_str(&v.body).unwrap_or(Value::Null);
    }
    e
}

/// Handles `POST /fhir` with a Bundle, as `caller`: every entry is authorised on its own.
pub async fn process(
    api: &FhirApi,
    caller: &Caller,
    body: Value,
) -> Result<(Value, Touched), Error> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Error::invalid("resourceType", "POST /fhir takes a Bundle"));
    }
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
    let entries = match body.get("entry") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(Error::invalid("Bundle.entry", "entry must be an array")),
    };
    let max = hospital_core::platform::limits::MAX_BUNDLE_ENTRIES;
    if entries.len() > max {
        return Err(Error::new(
            codes::BOUND_EXCEEDED,
            format!(
                "a Bundle takes at most {max} entries; this one has {}",
                entries.len()
            ),
        )
        .at("Bundle.entry"));
    }
    match kind {
        "transaction" => transaction(api, caller, entries).await,
        "batch" => Ok(batch(api, caller, entries).await),
        other => Err(Error::invalid(
            "Bundle.type",
            format!("Bundle.type must be batch or transaction, not `{other}`"),
        )),
    }
}

fn action_of(m: Method) -> Action {
    if m == Method::Get {
        Action::Read
    } else {
        Action::Write
    }
}

/// What one write entry did.
struct Written {
    response: Value,
    /// The version written, to check after the transaction's writes (None: nothing written,
    /// e.g. a conditional create that found its match).
    version: Option<Version>,
    touched: Touched,
    interaction: Interaction,
    status: u16,
}

/// One write entry, the same for a transaction (`Checks::Deferred`, ids assigned beforehand)
/// and a batch (`Checks::Now`). `assigned` is the id a transaction gave a POST, or the match
/// its condition found.
async fn write_entry(
    api: &FhirApi,
    tx: &mut Tx,
    e: &Entry,
    assigned: Option<&Assigned>,
    checks: Checks,
) -> Result<Written, Error> {
    let writer = api.platform.writer();
    let base = &api.config.base_url;
    match e.method {
        Method::Delete => {
            let id = e.id.as_deref().unwrap_or_default();
            let mut touched = match tx.read(&e.rtype, id).await {
                Ok(v) => Touched::of(std::slice::from_ref(&v)),
                Err(_) => Touched::default(),
            };
            writer.delete(tx, &e.rtype, id).await?;
            touched.entity(&format!("{}/{id}", e.rtype));
            Ok(Written {
                response: json!({"response": {"status": "204 No Content"}}),
                version: None,
                touched,
                interaction: Interaction::Delete,
                status: 204,
            })
        }
        Method::Post => {
            let found = match assigned {
                Some(Assigned::Existing(v)) => Some(v.clone()),
                Some(Assigned::New(_)) => None,
                None => match &e.if_none_exist {
                    Some(cond) => find_match(tx, &e.rtype, cond).await?,
                    None => None,
                },
            };
            if let Some(v) = found {
                return Ok(Written {
                    response: response_entry(&v, "200 OK", base, false),
                    version: None,
                    touched: Touched::of(std::slice::from_ref(&v)),
                    interaction: Interaction::Create,
                    status: 200,
                });
            }
            let id = match assigned {
                Some(Assigned::New(id)) => Some(id.as_str()),
                _ => None,
            };
            let out = writer
                .create(
                    tx,
                    &e.rtype,
                    id,
                    e.resource.clone().unwrap_or_default(),
                    checks,
                )
                .await?;
            Ok(Written {
                response: response_entry(&out.version, "201 Created", base, false),
                touched: Touched::of(std::slice::from_ref(&out.version)),
                version: Some(out.version),
                interaction: Interaction::Create,
                status: 201,
            })
        }
        Method::Put => {
            let mut resource = e.resource.clone().unwrap_or_default();
            let id = match (&e.id, &e.query, assigned) {
                (_, _, Some(Assigned::Existing(v))) => v.id.clone(),
                (_, _, Some(Assigned::New(id))) => id.clone(),
                (Some(id), _, None) => id.clone(),
                (None, Some(q), None) => match find_match(tx, &e.rtype, q).await? {
                    Some(v) => v.id,
                    None => resource
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                },
                (None, None, None) => {
                    return Err(Error::bad_request("PUT needs Type/id or Type?condition"));
                }
            };
            resource["id"] = Value::String(id.clone());
            let out = writer
                .update(tx, &e.rtype, &id, resource, e.if_match, checks)
                .await?;
            let (status, code) = if out.created {
                ("201 Created", 201)
            } else {
                ("200 OK", 200)
            };
            Ok(Written {
                response: response_entry(&out.version, status, base, false),
                touched: Touched::of(std::slice::from_ref(&out.version)),
                version: Some(out.version),
                interaction: Interaction::Update,
                status: code,
            })
        }
        Method::Get => Err(Error::internal("a GET entry is not a write")),
    }
}

/// A transaction's decision for a POST entry, made before anything is written.
enum Assigned {
    New(String),
    Existing(Version),
}

async fn transaction(
    api: &FhirApi,
    caller: &Caller,
    raw: Vec<Value>,
) -> Result<(Value, Touched), Error> {
    let mut entries = raw
        .iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    for e in &entries {
        authorize(caller, action_of(e.method), &e.rtype).map_err(|err| entry_err(e.index, err))?;
    }
    let mut touched = Touched::default();
    if entries.iter().all(|e| e.method == Method::Get) {
        // Nothing to write: the reads run on the read pool, as one request's reads do, and
        // never hold SQLite's single writer (which every other request's audit needs).
        let mut responses = Vec::with_capacity(entries.len());
        for e in &entries {
            responses.push(
                get_entry(None, api, caller, e, &mut touched)
                    .await
                    .map_err(|err| entry_err(e.index, err))?,
            );
        }
        return Ok((
            json!({"resourceType": "Bundle", "type": "transaction-response", "entry": responses}),
            touched,
        ));
    }
    let mut tx = api.platform.begin(caller).await?;
    // Every entry is validated, extracted and serialised before the transaction takes
    // SQLite's single writer; the writes then go to it together.
    tx.write_behind();

    // 1. Decide every write's target before anything is written: a POST's new id (or its
    //    existing match), a conditional PUT's match (or new id). FHIR: a transaction that
    //    writes one resource twice fails.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut assigned: Vec<Option<Assigned>> = (0..entries.len()).map(|_| None).collect();
    let mut targets: HashMap<(String, String), usize> = HashMap::new();
    // Conditions by what they mean: two spellings of one condition are one condition.
    let mut conditions: HashMap<Vec<String>, usize> = HashMap::new();
    let condition_of = |e: &Entry| match e.method {
        Method::Post => e.if_none_exist.clone(),
        Method::Put if e.id.is_none() => e.query.clone(),
        _ => None,
    };
    // Every condition's locks at once, in one order for every transaction: two transactions
    // naming the same conditions in opposite orders then wait for each other, never deadlock.
    let every_key = entries.iter().flat_map(|e| {
        condition_of(e)
            .map(|c| {
                let params = parse_query(Some(c.trim_start_matches('?')));
                hospital_core::conditional::lock_keys(&e.rtype, &params)
            })
            .unwrap_or_default()
    });
    hospital_core::conditional::lock_in_order(&mut tx, every_key.collect()).await?;
    for e in &entries {
        let i = e.index;
        let condition_owned = condition_of(e);
        let condition = condition_owned.as_deref();
        if let Some(cond) = condition {
            let params = parse_query(Some(cond.trim_start_matches('?')));
            let meaning = hospital_core::conditional::lock_keys(&e.rtype, &params);
            if let Some(first) = conditions.insert(meaning, i) {
                return Err(repeated(first, i, "the resource of one condition"));
            }
        }
        let target = match e.method {
            Method::Post | Method::Put if condition.is_some() || e.method == Method::Post => {
                let found = match condition {
                    Some(cond) => find_match(&mut tx, &e.rtype, cond)
                        .await
                        .map_err(|err| entry_err(i, err))?,
                    None => None,
                };
                let decision = match found {
                    Some(v) => Assigned::Existing(v),
                    None => Assigned::New(
                        e.resource
                            .as_ref()
                            .filter(|_| e.method == Method::Put)
                            .and_then(|r| r.get("id"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                    ),
                };
                let id = match &decision {
                    Assigned::New(id) => id.clone(),
                    Assigned::Existing(v) => v.id.clone(),
                };
                if let Some(f) = &e.full_url {
                    ids.insert(f.clone(), format!("{}/{id}", e.rtype));
                }
                assigned[i] = Some(decision);
                Some(id)
            }
            Method::Put | Method::Delete => {
                if let (Some(f), Some(id)) = (&e.full_url, &e.id)
                    && e.method == Method::Put
                {
                    ids.insert(f.clone(), format!("{}/{id}", e.rtype));
                }
                e.id.clone()
            }
            _ => None,
        };
        if let Some(id) = target
            && let Some(first) = targets.insert((e.rtype.clone(), id.clone()), i)
        {
            return Err(repeated(first, i, &format!("{}/{id}", e.rtype)));
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
        let resp = if e.method == Method::Get {
            match get_entry(Some(&mut tx), api, caller, e, &mut touched).await {
                Ok(r) => r,
                Err(err) => return Err(entry_err(blame(&tx, &written).unwrap_or(i), err)),
            }
        } else {
            let w = match write_entry(api, &mut tx, e, assigned[i].as_ref(), Checks::Deferred).await
            {
                Ok(w) => w,
                Err(err) => return Err(entry_err(blame(&tx, &written).unwrap_or(i), err)),
            };
            for x in &w.touched.entities {
                touched.entity(x);
            }
            for p in &w.touched.patients {
                touched.patient(p);
            }
            if let Some(v) = w.version {
                written.push((i, v));
            }
            w.response
        };
        responses[i] = resp;
    }

    // 3. Every written resource is checked against the store as the transaction left it.
    let writer = api.platform.writer();
    for (i, v) in &written {
        if let Err(err) = writer.check(&mut tx, v).await {
            return Err(entry_err(blame(&tx, &written).unwrap_or(*i), err));
        }
    }
    // 4. What still waits is sent, so that its failure names its entry.
    if let Err(err) = tx.flush_writes().await {
        return Err(match blame(&tx, &written) {
            Some(i) => entry_err(i, err),
            None => err,
        });
    }
    let touched = tx
        .commit_audited(Interaction::Transaction, "Bundle", touched, 200)
        .await?;
    Ok((
        json!({
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": responses,
        }),
        touched,
    ))
}

/// The entry of the write a failure belongs to, when it surfaced after that write (its
/// statements waited, see `Tx::write_behind`).
fn blame(tx: &Tx, written: &[(usize, Version)]) -> Option<usize> {
    let w = tx.failed_write()?;
    written
        .iter()
        .find(|(_, v)| w.split_once('/') == Some((v.resource_type.as_str(), v.id.as_str())))
        .map(|(i, _)| *i)
}

/// A GET entry: inside the transaction when it has one (seeing its writes), else on the
/// read pool — a read never holds SQLite's single writer.
async fn get_entry(
    tx: Option<&mut Tx>,
    api: &FhirApi,
    caller: &Caller,
    e: &Entry,
    touched: &mut Touched,
) -> Result<Value, Error> {
    match &e.id {
        Some(id) => {
            let read = match tx {
                Some(tx) => tx.read_raw(&e.rtype, id).await,
                None => api.platform.store().read(&e.rtype, id).await,
            };
            let v = reveal(caller, &e.rtype, id, read)?;
            touched.add(&v);
            Ok(response_entry(&v, "200 OK", &api.config.base_url, true))
        }
        None => {
            let params = parse_query(e.query.as_deref());
            let subset = Subset::from_query(&params, &[&e.rtype], true)?;
            let mut q = SearchQuery::new(&e.rtype, params);
            let r = hospital_core::read::search(&api.platform, caller, &mut q, tx).await?;
            for v in r.matches.iter().chain(&r.included) {
                touched.add(v);
            }
            let bundle = crate::response::searchset(&api.config.base_url, &e.rtype, &r, &subset)?;
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
            authorize(caller, action_of(entry.method), &entry.rtype)?;
            if entry.method == Method::Get {
                return get_entry(None, api, caller, &entry, &mut read).await;
            }
            let mut tx = api.platform.begin(caller).await?;
            // Each entry is its own transaction and reports its own outcome.
            tx.one_write();
            let w = write_entry(api, &mut tx, &entry, None, Checks::Now).await?;
            tx.commit_audited(w.interaction, &entry.rtype, w.touched, w.status)
                .await?;
            Ok(w.response)
        }
        .await;
        responses.push(match r {
            Ok(v) => v,
            Err(err) => json!({"response": {
                "status": crate::error::status(&err).as_u16().to_string(),
                "outcome": crate::error::outcome(&err),
            }}),
        });
    }
    (
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": responses}),
        read,
    )
}
