//! Routes of `/fhir`: the tree is the API map.
//!
//! | route | interactions |
//! |---|---|
//! | `GET /fhir/metadata` | capabilities |
//! | `POST /fhir` | batch, transaction |
//! | `GET, POST(create), PUT(conditional update) /fhir/{type}` | search, create |
//! | `POST /fhir/{type}/_search` | search with a form body |
//! | `GET /fhir/{type}/_history` | type history |
//! | `GET, PUT, DELETE /fhir/{type}/{id}` | read, update, delete |
//! | `GET /fhir/{type}/{id}/_history[/{vid}]` | instance history, vread |
//! | `GET /fhir/Patient/{id}/$everything` | the patient compartment |
//! | `POST /fhir/{type}/{id}/$sign`, `POST .../$amend`, `GET .../$verify` | signatures |
//! | `GET /fhir/AuditEvent` | the audit trail (admins) |
//!
//! Every route but `metadata` passes [`crate::security::authenticate`] first.

use crate::security::{Caller, Touched, authorize, finish, reveal, visible};
use crate::{ApiError, FHIR_JSON, FhirApi, parse_etag};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hospital_auth::Action;
use hospital_store::{HistoryQuery, SearchQuery, SearchResult, Version, dates};
use serde_json::Value;

type ApiResult = Result<Response, ApiError>;
/// A handler's result with what it touched, for the audit record.
type Touching = Result<(Response, Touched), ApiError>;

/// The `/fhir` router.
pub fn router(api: FhirApi) -> Router {
    let limit = api.config.max_body_bytes;
    Router::new()
        .route("/", axum::routing::post(bundle_entry).get(root_get))
        .route("/AuditEvent", get(crate::audit_event::search))
        .route(
            "/{rtype}",
            get(search_get)
                .post(create)
                .put(conditional_update)
                .delete(conditional_delete),
        )
        .route("/{rtype}/_search", axum::routing::post(search_post))
        .route("/{rtype}/_history", get(type_history))
        .route("/{rtype}/{id}", get(read).put(update).delete(delete))
        .route(
            "/{rtype}/{id}/{op}",
            get(instance_op).post(crate::signing::operation),
        )
        .route("/{rtype}/{id}/_history/{vid}", get(vread))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            crate::security::authenticate,
        ))
        // Only the capability statement is public.
        .route("/metadata", get(metadata))
        .fallback(|| async { ApiError::NotFound("no such FHIR endpoint".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

pub(crate) fn http_date(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn fhir_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    res
}

fn version_headers(res: &mut Response, base: &str, v: &Version, location: bool) {
    let h = res.headers_mut();
    if let Ok(val) = HeaderValue::from_str(&v.etag()) {
        h.insert(header::ETAG, val);
    }
    if let Ok(val) = HeaderValue::from_str(&http_date(v.last_updated)) {
        h.insert(header::LAST_MODIFIED, val);
    }
    if location
        && let Ok(val) = HeaderValue::from_str(&format!(
            "{base}/{}/{}/_history/{}",
            v.resource_type, v.id, v.version_id
        ))
    {
        h.insert(header::LOCATION, val);
    }
}

/// Refuses requests whose `Accept` or `_format` asks for something other than JSON.
fn negotiate(headers: &HeaderMap, query: &[(String, String)]) -> Result<(), ApiError> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format")
        && !f.contains("json")
    {
        return Err(ApiError::NotAcceptable(format!(
            "_format={f} is not supported; this server speaks FHIR JSON"
        )));
    }
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accept.contains("json")
        && !accept.contains("*/*")
        && !accept.trim().is_empty()
    {
        return Err(ApiError::NotAcceptable(format!(
            "cannot produce `{accept}`; use application/fhir+json"
        )));
    }
    Ok(())
}

/// `_count` of history and audit pages: a whole number, kept within 1..=1000.
pub(crate) fn page_size(v: &str) -> Result<usize, ApiError> {
    Ok(v.parse::<usize>()
        .map_err(|_| ApiError::bad_request("_count must be a whole number"))?
        .clamp(1, 1000))
}

/// `_cursor` of history and audit pages: the sequence number this server put in a `next` link.
pub(crate) fn seq_cursor(v: &str) -> Result<i64, ApiError> {
    v.parse()
        .map_err(|_| ApiError::bad_request("the _cursor value is not one this server issued"))
}

pub(crate) fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// Reads a FHIR JSON request body, enforcing media type and size.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !matches!(media, "application/fhir+json" | "application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "content type `{media}` is not supported; send application/fhir+json"
        )));
    }
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body exceeds the configured limit".into())
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

fn check_id(rtype: &str, id: &str) -> Result<(), ApiError> {
    if hospital_store::is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            format!("{rtype}.id"),
            "an id is 1 to 64 letters, digits, '-' or '.'",
        ))
    }
}

fn check_type(api: &FhirApi, rtype: &str) -> Result<(), ApiError> {
    if hospital_fhir_model::is_supported(rtype) {
        Ok(())
    } else {
        let _ = api;
        Err(ApiError::NotFound(format!(
            "resource type `{rtype}` is not supported"
        )))
    }
}

fn lenient(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("handling=lenient"))
}

fn return_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("return=minimal"))
}

async fn metadata(State(api): State<FhirApi>) -> Response {
    fhir_response(
        StatusCode::OK,
        crate::capability::statement(&api).to_string(),
    )
}

async fn root_get() -> ApiResult {
    Err(ApiError::bad_request(
        "system-level search is not supported; search a resource type",
    ))
}

async fn read(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let r: Touching = async {
        negotiate(&headers, &parse_query(q.as_deref()))?;
        check_type(&api, &rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Read, &rtype)?;
        let v = reveal(&caller, &rtype, &id, api.store.read(&rtype, &id).await)?;
        let touched = Touched::of(std::slice::from_ref(&v));
        if let Some(inm) = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            && parse_etag(inm) == Some(v.version_id)
        {
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            version_headers(&mut res, &api.config.base_url, &v, false);
            return Ok((res, touched));
        }
        let mut res = fhir_response(StatusCode::OK, v.body.clone());
        version_headers(&mut res, &api.config.base_url, &v, false);
        Ok((res, touched))
    }
    .await;
    finish(&api, &caller, "read", &rtype, r).await
}

async fn vread(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id, vid)): Path<(String, String, String)>,
) -> Response {
    let r: Touching = async {
        check_type(&api, &rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Read, &rtype)?;
        let vid: i64 = vid
            .parse()
            .map_err(|_| ApiError::bad_request(format!("`{vid}` is not a version id")))?;
        let v = reveal(
            &caller,
            &rtype,
            &id,
            api.store.vread(&rtype, &id, vid).await,
        )?;
        let mut res = fhir_response(StatusCode::OK, v.body.clone());
        version_headers(&mut res, &api.config.base_url, &v, false);
        Ok((res, Touched::of(std::slice::from_ref(&v))))
    }
    .await;
    finish(&api, &caller, "vread", &rtype, r).await
}

/// The response to a successful write, as FHIR asks: 201 + Location for a create.
fn write_response(api: &FhirApi, headers: &HeaderMap, v: &Version, created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = if return_minimal(headers) {
        String::new()
    } else {
        v.body.clone()
    };
    let mut res = fhir_response(status, body);
    version_headers(&mut res, &api.config.base_url, v, true);
    res
}

/// Audits a single-resource write in its transaction, commits, and answers as FHIR asks.
async fn written(
    api: &FhirApi,
    headers: &HeaderMap,
    tx: hospital_store::Tx,
    caller: &Caller,
    action: &str,
    rtype: &str,
    out: hospital_store::WriteOutcome,
) -> Touching {
    let status = if out.created { 201 } else { 200 };
    let touched = Touched::of(std::slice::from_ref(&out.version));
    let touched = commit_audited(tx, caller, action, rtype, touched, status).await?;
    Ok((
        write_response(api, headers, &out.version, out.created),
        touched,
    ))
}

/// Begins a write transaction that stamps its versions with the caller.
pub async fn begin_as(api: &FhirApi, caller: &Caller) -> Result<hospital_store::Tx, ApiError> {
    let mut tx = api.store.begin().await?;
    tx.set_author(&caller.principal.audit_name());
    Ok(tx)
}

/// Writes the audit record of a write inside its transaction, then commits.
pub async fn commit_audited(
    mut tx: hospital_store::Tx,
    caller: &Caller,
    action: &str,
    rtype: &str,
    mut touched: Touched,
    status: u16,
) -> Result<Touched, ApiError> {
    tx.audit(&caller.record(action, rtype, &touched, status))
        .await?;
    tx.commit().await?;
    touched.audited = true;
    Ok(touched)
}

async fn create(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r: Touching = async {
        check_type(&api, &rtype)?;
        authorize(&caller, Action::Write, &rtype)?;
        let body = json_body(&headers, body)?;
        if body.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str()) {
            return Err(ApiError::invalid(
                "resourceType",
                format!("the body must be a {rtype}"),
            ));
        }
        let mut tx = begin_as(&api, &caller).await?;
        if let Some(cond) = headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
            let cond = cond.trim_start_matches('?').to_owned();
            let existing = conditional_match(&mut tx, &rtype, &cond).await?;
            if let Some(v) = existing {
                let touched = Touched::of(std::slice::from_ref(&v));
                let touched = commit_audited(tx, &caller, "create", &rtype, touched, 200).await?;
                return Ok((write_response(&api, &headers, &v, false), touched));
            }
        }
        let out = api
            .writer()
            .create(&mut tx, &rtype, None, body, true)
            .await?;
        written(&api, &headers, tx, &caller, "create", &rtype, out).await
    }
    .await;
    finish(&api, &caller, "create", &rtype, r).await
}

/// Finds the single resource matching a conditional request's query, holding a lock on the
/// condition so that concurrent identical requests see each other's result.
pub(crate) async fn conditional_match(
    tx: &mut hospital_store::Tx,
    rtype: &str,
    cond: &str,
) -> Result<Option<Version>, ApiError> {
    let params = parse_query(Some(cond));
    if params.is_empty() {
        return Err(ApiError::bad_request(
            "the condition has no search parameters",
        ));
    }
    let mut canonical = params.clone();
    canonical.sort();
    tx.lock(&format!("{rtype}?{canonical:?}")).await?;
    let mut query = SearchQuery::new(rtype, params);
    query.params.push(("_count".into(), "2".into()));
    let found = tx.search(&query).await?;
    match found.matches.len() {
        0 => Ok(None),
        1 => Ok(found.matches.into_iter().next()),
        _ => Err(ApiError::PreconditionFailed(format!(
            "the condition `{cond}` matches more than one {rtype}"
        ))),
    }
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => Ok(None),
        Some(v) => parse_etag(v)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("If-Match `{v}` is not a version ETag"))),
    }
}

async fn update(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r: Touching = async {
        check_type(&api, &rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Write, &rtype)?;
        let body = json_body(&headers, body)?;
        if body.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str()) {
            return Err(ApiError::invalid(
                "resourceType",
                format!("the body must be a {rtype}"),
            ));
        }
        let expected = if_match(&headers)?;
        let mut tx = begin_as(&api, &caller).await?;
        let out = api
            .writer()
            .update(&mut tx, &rtype, &id, body, expected, true)
            .await?;
        written(&api, &headers, tx, &caller, "update", &rtype, out).await
    }
    .await;
    finish(&api, &caller, "update", &rtype, r).await
}

async fn conditional_update(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r: Touching = async {
        check_type(&api, &rtype)?;
        authorize(&caller, Action::Write, &rtype)?;
        let body = json_body(&headers, body)?;
        let cond = q.unwrap_or_default();
        let mut tx = begin_as(&api, &caller).await?;
        let found = conditional_match(&mut tx, &rtype, &cond).await?;
        let id = match (&found, body.get("id").and_then(Value::as_str)) {
            (Some(v), Some(b)) if b != v.id => {
                return Err(ApiError::bad_request(format!(
                    "the body's id `{b}` is not the matching resource's id"
                )));
            }
            (Some(v), _) => v.id.clone(),
            (None, Some(b)) => b.to_owned(),
            (None, None) => uuid::Uuid::new_v4().to_string(),
        };
        let mut body = body;
        body["id"] = Value::String(id.clone());
        let out = api
            .writer()
            .update(&mut tx, &rtype, &id, body, if_match(&headers)?, true)
            .await?;
        written(&api, &headers, tx, &caller, "update", &rtype, out).await
    }
    .await;
    finish(&api, &caller, "update", &rtype, r).await
}

async fn delete(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id)): Path<(String, String)>,
) -> Response {
    let r: Touching = async {
        check_type(&api, &rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Write, &rtype)?;
        let mut tx = begin_as(&api, &caller).await?;
        // The patients of what is deleted, read before the tombstone hides them.
        let mut touched = match tx.read(&rtype, &id).await {
            Ok(v) => Touched::of(std::slice::from_ref(&v)),
            Err(_) => Touched::default(),
        };
        let v = api.writer().delete(&mut tx, &rtype, &id).await?;
        if touched.entities.is_empty() {
            touched.entities.push(format!("{rtype}/{id}"));
        }
        let touched = commit_audited(tx, &caller, "delete", &rtype, touched, 204).await?;
        let mut res = StatusCode::NO_CONTENT.into_response();
        if let Some(v) = v {
            version_headers(&mut res, &api.config.base_url, &v, false);
        }
        Ok((res, touched))
    }
    .await;
    finish(&api, &caller, "delete", &rtype, r).await
}

async fn conditional_delete() -> ApiResult {
    Err(ApiError::MethodNotAllowed(
        "conditional delete is not supported; delete by id".into(),
    ))
}

async fn search_get(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = parse_query(q.as_deref());
    search(api, caller, rtype, headers, params).await
}

async fn search_post(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = parse_query(q.as_deref());
    params.extend(parse_query(std::str::from_utf8(&body).ok()));
    search(api, caller, rtype, headers, params).await
}

/// The search a caller may run: a patient's is confined to their compartment, and what it
/// includes is filtered the same way.
pub(crate) async fn run_search(
    api: &FhirApi,
    caller: &Caller,
    query: &mut SearchQuery,
    tx: Option<&mut hospital_store::Tx>,
) -> Result<SearchResult, ApiError> {
    if let Some(pid) = caller.principal.compartment()
        && hospital_auth::is_patient_data(&query.resource_type)
    {
        query.compartment = Some(pid.to_owned());
    }
    let mut result = match tx {
        Some(tx) => tx.search(query).await?,
        None => api.store.search(query).await?,
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

async fn search(
    api: FhirApi,
    caller: Caller,
    rtype: String,
    headers: HeaderMap,
    params: Vec<(String, String)>,
) -> Response {
    let r: Touching = async {
        negotiate(&headers, &params)?;
        check_type(&api, &rtype)?;
        authorize(&caller, Action::Read, &rtype)?;
        let mut query = SearchQuery::new(&rtype, params);
        query.lenient = lenient(&headers);
        let result = run_search(&api, &caller, &mut query, None).await?;
        let mut touched = Touched::of(&result.matches);
        for v in &result.included {
            touched.add(v);
        }
        Ok((
            fhir_response(
                StatusCode::OK,
                searchset(&api.config.base_url, &rtype, &result),
            ),
            touched,
        ))
    }
    .await;
    finish(&api, &caller, "search-type", &rtype, r).await
}

fn link_url(base: &str, path: &str, params: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    let q = s.finish();
    if q.is_empty() {
        format!("{base}/{path}")
    } else {
        format!("{base}/{path}?{q}")
    }
}

/// A searchset Bundle, assembled from the stored JSON text without re-parsing it.
pub(crate) fn searchset(base: &str, rtype: &str, r: &SearchResult) -> String {
    let mut out = String::with_capacity(
        256 + r
            .matches
            .iter()
            .chain(&r.included)
            .map(|v| v.body.len() + 128)
            .sum::<usize>(),
    );
    out.push_str(r#"{"resourceType":"Bundle","type":"searchset""#);
    if let Some(t) = r.total {
        out.push_str(&format!(r#","total":{t}"#));
    }
    let self_link = link_url(base, rtype, &r.applied);
    out.push_str(&format!(
        r#","link":[{{"relation":"self","url":{}}}"#,
        Value::String(self_link)
    ));
    if let Some(c) = &r.next_cursor {
        let mut p = r.applied.clone();
        p.push(("_cursor".into(), c.clone()));
        out.push_str(&format!(
            r#",{{"relation":"next","url":{}}}"#,
            Value::String(link_url(base, rtype, &p))
        ));
    }
    out.push(']');
    let mut first = true;
    for (mode, v) in r
        .matches
        .iter()
        .map(|v| ("match", v))
        .chain(r.included.iter().map(|v| ("include", v)))
    {
        out.push_str(if first { r#","entry":["# } else { "," });
        first = false;
        out.push_str(&format!(
            r#"{{"fullUrl":{},"resource":{},"search":{{"mode":"{mode}"}}}}"#,
            Value::String(format!("{base}/{}/{}", v.resource_type, v.id)),
            v.body
        ));
    }
    if !r.ignored.is_empty() {
        let issues: Vec<Value> = r
            .ignored
            .iter()
            .map(|m| serde_json::json!({"severity": "warning", "code": "not-supported", "diagnostics": format!("ignored: {m}")}))
            .collect();
        let oo = serde_json::json!({"resourceType": "OperationOutcome", "issue": issues});
        out.push_str(if first { r#","entry":["# } else { "," });
        first = false;
        out.push_str(&format!(
            r#"{{"resource":{oo},"search":{{"mode":"outcome"}}}}"#
        ));
    }
    if !first {
        out.push(']');
    }
    out.push('}');
    out
}

async fn instance_op(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id, op)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let action = match op.as_str() {
        "_history" => "history-instance",
        "$everything" => "everything",
        "$verify" => "verify",
        _ => "operation",
    };
    let r: Touching = async {
        check_type(&api, &rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Read, &rtype)?;
        match op.as_str() {
            "_history" => {
                // A patient sees the history of what is theirs now.
                if caller.principal.compartment().is_some() {
                    reveal(&caller, &rtype, &id, api.store.read(&rtype, &id).await)?;
                }
                history(
                    &api,
                    &caller,
                    rtype.clone(),
                    Some(id.clone()),
                    parse_query(q.as_deref()),
                )
                .await
            }
            "$everything" if rtype == "Patient" => {
                if let Some(pid) = caller.principal.compartment()
                    && pid != id
                {
                    return Err(ApiError::NotFound(format!("{rtype}/{id} is not known")));
                }
                let mut all = api.store.patient_everything(&id).await?;
                all.retain(|v| caller.principal.may(Action::Read, &v.resource_type));
                let touched = Touched::of(&all);
                let result = SearchResult {
                    matches: all,
                    ..Default::default()
                };
                let body = searchset(
                    &api.config.base_url,
                    &format!("Patient/{id}/$everything"),
                    &result,
                );
                Ok((fhir_response(StatusCode::OK, body), touched))
            }
            "$verify" => crate::signing::verify(&api, &caller, &rtype, &id).await,
            other => Err(ApiError::NotFound(format!(
                "operation `{other}` is not supported on {rtype}"
            ))),
        }
    }
    .await;
    finish(&api, &caller, action, &rtype, r).await
}

async fn type_history(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let r: Touching = async {
        check_type(&api, &rtype)?;
        authorize(&caller, Action::Read, &rtype)?;
        history(
            &api,
            &caller,
            rtype.clone(),
            None,
            parse_query(q.as_deref()),
        )
        .await
    }
    .await;
    finish(&api, &caller, "history-type", &rtype, r).await
}

async fn history(
    api: &FhirApi,
    caller: &Caller,
    rtype: String,
    id: Option<String>,
    params: Vec<(String, String)>,
) -> Touching {
    let mut query = HistoryQuery {
        resource_type: rtype.clone(),
        id: id.clone(),
        since: None,
        count: 50,
        before_seq: None,
    };
    for (k, v) in &params {
        match k.as_str() {
            "_count" => query.count = page_size(v)?,
            "_since" => {
                query.since = Some(
                    dates::parse_range(v)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!("_since `{v}` is not a date"))
                        })?
                        .lo,
                )
            }
            "_cursor" => query.before_seq = Some(seq_cursor(v)?),
            "_format" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "history does not support the parameter `{other}`"
                )));
            }
        }
    }
    let mut page = api.store.history(&query).await?;
    // A patient sees the versions that are theirs (a deletion shows no owner: hidden).
    page.versions
        .retain(|v| !v.deleted || caller.principal.compartment().is_none());
    page.versions.retain(|v| v.deleted || visible(caller, v));
    let touched = Touched::of(&page.versions);
    let base = &api.config.base_url;
    let path = match &id {
        Some(id) => format!("{rtype}/{id}/_history"),
        None => format!("{rtype}/_history"),
    };
    let kept: Vec<(String, String)> = params.into_iter().filter(|(k, _)| k != "_cursor").collect();
    let mut links =
        vec![serde_json::json!({"relation": "self", "url": link_url(base, &path, &kept)})];
    if let Some(seq) = page.next_before_seq {
        let mut p = kept.clone();
        p.push(("_cursor".into(), seq.to_string()));
        links.push(serde_json::json!({"relation": "next", "url": link_url(base, &path, &p)}));
    }
    let mut out = format!(
        r#"{{"resourceType":"Bundle","type":"history","link":{}"#,
        Value::Array(links)
    );
    for (i, v) in page.versions.iter().enumerate() {
        out.push_str(if i == 0 { r#","entry":["# } else { "," });
        let full = format!("{base}/{}/{}", v.resource_type, v.id);
        let (method, url, status) = match v.method.as_str() {
            "DELETE" => ("DELETE", format!("{}/{}", v.resource_type, v.id), "204"),
            "POST" => ("POST", v.resource_type.clone(), "201"),
            _ => (
                "PUT",
                format!("{}/{}", v.resource_type, v.id),
                if v.version_id == 1 { "201" } else { "200" },
            ),
        };
        out.push_str(&format!(r#"{{"fullUrl":{}"#, Value::String(full)));
        if !v.deleted {
            out.push_str(&format!(r#","resource":{}"#, v.body));
        }
        out.push_str(&format!(
            r#","request":{{"method":"{method}","url":{}}},"response":{{"status":"{status}","etag":{},"lastModified":"{}"}}}}"#,
            Value::String(url),
            Value::String(v.etag()),
            dates::format_instant(v.last_updated)
        ));
    }
    if !page.versions.is_empty() {
        out.push(']');
    }
    out.push('}');
    Ok((fhir_response(StatusCode::OK, out), touched))
}

async fn bundle_entry(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = json_body(&headers, body);
    let kind = match &parsed {
        Ok(b) if b.get("type").and_then(Value::as_str) == Some("transaction") => "transaction",
        _ => "batch",
    };
    let r: Touching = async {
        let (out, touched) = crate::bundle::process(&api, &caller, parsed?).await?;
        Ok((fhir_response(StatusCode::OK, out.to_string()), touched))
    }
    .await;
    finish(&api, &caller, kind, "Bundle", r).await
}
