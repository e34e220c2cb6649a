//! Routes of `/fhir`: the tree is the API map.
//!
//! | route | interactions |
//! |---|---|
//! | `GET /fhir/metadata` | capabilities |
//! | `POST /fhir` | batch, transaction |
//! | `GET /fhir?_type=...` | search across types |
//! | `GET /fhir/_history` | the history of every type the caller may read |
//! | `GET, POST(create), PUT(conditional update) /fhir/{type}` | search, create |
//! | `POST /fhir/{type}/_search` | search with a form body |
//! | `GET /fhir/{type}/_history` | type history |
//! | `GET, PUT, PATCH, DELETE /fhir/{type}/{id}` | read, update, patch (JSON Patch), delete |
//! | `POST /fhir/{type}/$validate`, `POST /fhir/{type}/{id}/$validate` | a write tried, not kept |
//! | `GET /fhir/{type}/{id}/_history[/{vid}]` | instance history, vread |
//! | `GET /fhir/Patient/{id}/$everything` | the patient compartment |
//! | `POST /fhir/{type}/{id}/$sign`, `POST .../$amend`, `GET .../$verify` | signatures |
//! | `GET /fhir/AuditEvent` | the audit trail (admins) |
//!
//! Every route but `metadata` passes [`crate::security::authenticate`] first.

use crate::request::{
    check_id, check_type, if_match, json_body, json_patch_body, lenient, negotiate, page_size,
    parse_query, seq_cursor,
};
use crate::response::{fhir_response, history_bundle, searchset, version_headers, write_response};
use crate::security::{finish, finish_touched};
use crate::subset::Subset;
use crate::{FhirApi, parse_etag};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hospital_core::auth::Action;
use hospital_core::conditional::find_match;
use hospital_core::store::{HistoryQuery, HistoryScope, SearchQuery, SearchResult, dates};
use hospital_core::{
    Caller, Checks, Error, Interaction, JsonPatch, Touched, Tx, authorize, codes, reveal,
    reveal_version,
};
use serde_json::Value;

/// A handler's result with what it touched, for the audit record.
type Touching = Result<(Response, Touched), Error>;

/// The `/fhir` router.
pub fn router(api: FhirApi) -> Router {
    let limit = api.config.max_body_bytes;
    Router::new()
        .route("/", axum::routing::post(bundle_entry).get(system_search))
        .route("/_history", get(system_history))
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
        .route(
            "/{rtype}/{id}",
            get(read)
                .put(update)
                .patch(patch)
                .delete(delete)
                .post(type_op_post),
        )
        .route("/{rtype}/{id}/{op}", get(instance_op).post(posted_op))
        .route("/{rtype}/{id}/_history/{vid}", get(vread))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            crate::security::authenticate,
        ))
        // Only the capability statement is public.
        .route("/metadata", get(metadata))
        .fallback(|| async {
            crate::error::response(&Error::new(
                codes::NO_SUCH_ENDPOINT,
                "no such FHIR endpoint",
            ))
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

async fn metadata(State(api): State<FhirApi>) -> Response {
    fhir_response(
        StatusCode::OK,
        crate::capability::statement(&api).to_string(),
    )
}

async fn read(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if id.starts_with('$') {
        let input = hospital_core::operation::query_parameters(&parse_query(q.as_deref()));
        return type_op(api, caller, rtype, id, false, Ok(input)).await;
    }
    let r: Touching = async {
        let params = parse_query(q.as_deref());
        negotiate(&headers, &params)?;
        check_type(&rtype)?;
        check_id(&rtype, &id)?;
        let subset = Subset::from_query(&params, &[&rtype], false)?;
        authorize(&caller, Action::Read, &rtype)?;
        let v = reveal(
            &caller,
            &rtype,
            &id,
            api.platform.store().read(&rtype, &id).await,
        )?;
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
        let mut res = fhir_response(StatusCode::OK, subset.apply(&v.body)?);
        version_headers(&mut res, &api.config.base_url, &v, false);
        Ok((res, touched))
    }
    .await;
    finish(
        &api,
        &caller,
        Interaction::Read,
        &rtype,
        Some(&format!("{rtype}/{id}")),
        r,
    )
    .await
}

async fn vread(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id, vid)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        let target = || Touched::target(&format!("{rtype}/{id}"));
        check_type(&rtype).map_err(|e| (e, target()))?;
        check_id(&rtype, &id).map_err(|e| (e, target()))?;
        let subset = Subset::from_query(&parse_query(q.as_deref()), &[&rtype], false)
            .map_err(|e| (e, target()))?;
        authorize(&caller, Action::Read, &rtype).map_err(|e| (e, target()))?;
        let vid: i64 = vid.parse().map_err(|_| {
            (
                Error::bad_request(format!("`{vid}` is not a version id")),
                target(),
            )
        })?;
        // Whether a patient may see an old version depends on whom the resource belongs to
        // now, not on whom the old version named.
        let (v, touched) = reveal_version(
            api.platform.store(),
            &caller,
            api.platform.store().vread(&rtype, &id, vid).await,
            &rtype,
            &id,
        )
        .await?;
        let body = subset.apply(&v.body).map_err(|e| (e, touched.clone()))?;
        let mut res = fhir_response(StatusCode::OK, body);
        version_headers(&mut res, &api.config.base_url, &v, false);
        Ok((res, touched))
    }
    .await;
    finish_touched(&api, &caller, Interaction::VRead, &rtype, r).await
}

/// Audits a single-resource write in its transaction, commits, and answers as FHIR asks.
async fn written(
    api: &FhirApi,
    headers: &HeaderMap,
    tx: Tx,
    interaction: Interaction,
    rtype: &str,
    out: hospital_core::store::WriteOutcome,
) -> Touching {
    let status = if out.created { 201 } else { 200 };
    let touched = Touched::of(std::slice::from_ref(&out.version));
    let touched = tx
        .commit_audited(interaction, rtype, touched, status)
        .await?;
    Ok((
        write_response(api, headers, &out.version, out.created),
        touched,
    ))
}

async fn create(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r: Touching = async {
        check_type(&rtype)?;
        authorize(&caller, Action::Write, &rtype)?;
        api.platform.check_written_here(&rtype)?;
        let body = json_body(&headers, body)?;
        if body.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str()) {
            return Err(Error::invalid(
                "resourceType",
                format!("the body must be a {rtype}"),
            ));
        }
        let mut tx = api.platform.begin(&caller).await?;
        if let Some(cond) = headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
            let existing = find_match(&mut tx, &rtype, cond).await?;
            if let Some(v) = existing {
                let touched = Touched::of(std::slice::from_ref(&v));
                let touched = tx
                    .commit_audited(Interaction::Create, &rtype, touched, 200)
                    .await?;
                return Ok((write_response(&api, &headers, &v, false), touched));
            }
        }
        tx.one_write();
        let out = api
            .platform
            .writer()
            .create(&mut tx, &rtype, None, body, Checks::Now)
            .await?;
        written(&api, &headers, tx, Interaction::Create, &rtype, out).await
    }
    .await;
    finish(&api, &caller, Interaction::Create, &rtype, Some(&rtype), r).await
}

async fn update(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r: Touching = async {
        check_type(&rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Write, &rtype)?;
        api.platform.check_written_here(&rtype)?;
        let body = json_body(&headers, body)?;
        if body.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str()) {
            return Err(Error::invalid(
                "resourceType",
                format!("the body must be a {rtype}"),
            ));
        }
        let expected = if_match(&headers)?;
        let mut tx = api.platform.begin(&caller).await?;
        let out = api
            .platform
            .writer()
            .update(&mut tx, &rtype, &id, body, expected, Checks::Now)
            .await?;
        written(&api, &headers, tx, Interaction::Update, &rtype, out).await
    }
    .await;
    finish(
        &api,
        &caller,
        Interaction::Update,
        &rtype,
        Some(&format!("{rtype}/{id}")),
        r,
    )
    .await
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
        check_type(&rtype)?;
        authorize(&caller, Action::Write, &rtype)?;
        api.platform.check_written_here(&rtype)?;
        let body = json_body(&headers, body)?;
        let cond = q.unwrap_or_default();
        let mut tx = api.platform.begin(&caller).await?;
        let found = find_match(&mut tx, &rtype, &cond).await?;
        let id = match (&found, body.get("id").and_then(Value::as_str)) {
            (Some(v), Some(b)) if b != v.id => {
                return Err(Error::bad_request(format!(
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
            .platform
            .writer()
            .update(&mut tx, &rtype, &id, body, if_match(&headers)?, Checks::Now)
            .await?;
        written(&api, &headers, tx, Interaction::Update, &rtype, out).await
    }
    .await;
    finish(&api, &caller, Interaction::Update, &rtype, Some(&rtype), r).await
}

async fn delete(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id)): Path<(String, String)>,
) -> Response {
    let r: Touching = async {
        check_type(&rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Write, &rtype)?;
        api.platform.check_written_here(&rtype)?;
        let mut tx = api.platform.begin(&caller).await?;
        // The patients of what is deleted, read before the tombstone hides them.
        let mut touched = match tx.read(&rtype, &id).await {
            Ok(v) => Touched::of(std::slice::from_ref(&v)),
            Err(_) => Touched::default(),
        };
        let v = api.platform.writer().delete(&mut tx, &rtype, &id).await?;
        touched.entity(&format!("{rtype}/{id}"));
        let touched = tx
            .commit_audited(Interaction::Delete, &rtype, touched, 204)
            .await?;
        let mut res = StatusCode::NO_CONTENT.into_response();
        if let Some(v) = v {
            version_headers(&mut res, &api.config.base_url, &v, false);
        }
        Ok((res, touched))
    }
    .await;
    finish(
        &api,
        &caller,
        Interaction::Delete,
        &rtype,
        Some(&format!("{rtype}/{id}")),
        r,
    )
    .await
}

async fn conditional_delete() -> Response {
    crate::error::response(&Error::not_supported(
        "conditional delete is not supported; delete by id",
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

async fn search(
    api: FhirApi,
    caller: Caller,
    rtype: String,
    headers: HeaderMap,
    params: Vec<(String, String)>,
) -> Response {
    let r: Touching = async {
        negotiate(&headers, &params)?;
        check_type(&rtype)?;
        let subset = Subset::from_query(&params, &[&rtype], true)?;
        authorize(&caller, Action::Read, &rtype)?;
        let mut query = SearchQuery::new(&rtype, params);
        query.lenient = lenient(&headers);
        let result = hospital_core::read::search(&api.platform, &caller, &mut query, None).await?;
        let mut touched = Touched::of(&result.matches);
        for v in &result.included {
            touched.add(v);
        }
        Ok((
            fhir_response(
                StatusCode::OK,
                searchset(&api.config.base_url, &rtype, &result, &subset)?,
            ),
            touched,
        ))
    }
    .await;
    finish(
        &api,
        &caller,
        Interaction::SearchType,
        &rtype,
        Some(&rtype),
        r,
    )
    .await
}

/// `GET [base]?_type=A,B&...`: the same search over several types (every type the caller may
/// read without `_type`), merged in one order and bounded as one search.
async fn system_search(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = parse_query(q.as_deref());
    let r: Touching = async {
        negotiate(&headers, &params)?;
        let (named, rest): (Vec<_>, Vec<_>) = params.into_iter().partition(|(k, _)| k == "_type");
        let types = match named.as_slice() {
            [] => readable_types(&caller),
            [(_, list)] => {
                let mut types: Vec<String> = Vec::new();
                for t in list.split(',') {
                    if !hospital_fhir_model::is_supported(t) {
                        return Err(Error::new(
                            codes::INVALID_SEARCH,
                            format!(
                                "_type names `{t}`, which is not a resource type of this server"
                            ),
                        ));
                    }
                    authorize(&caller, Action::Read, t)?;
                    if !types.iter().any(|x| x == t) {
                        types.push(t.to_owned());
                    }
                }
                types
            }
            _ => {
                return Err(Error::new(codes::INVALID_SEARCH, "_type is given twice"));
            }
        };
        if types.is_empty() {
            return Err(Error::forbidden("this role reads no resource type"));
        }
        let type_names: Vec<&str> = types.iter().map(String::as_str).collect();
        let subset = Subset::from_query(&rest, &type_names, true)?;
        let mut result = hospital_core::read::search_types(
            &api.platform,
            &caller,
            &types,
            rest,
            lenient(&headers),
        )
        .await?;
        if let [(k, v)] = named.as_slice() {
            result.applied.insert(0, (k.clone(), v.clone()));
        }
        let touched = Touched::of(&result.matches);
        Ok((
            fhir_response(
                StatusCode::OK,
                searchset(&api.config.base_url, "", &result, &subset)?,
            ),
            touched,
        ))
    }
    .await;
    finish(&api, &caller, Interaction::SearchSystem, "", None, r).await
}

/// `PATCH [type]/[id]` with a JSON Patch: an update through the same door as PUT.
async fn patch(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r: Touching = async {
        check_type(&rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Write, &rtype)?;
        api.platform.check_written_here(&rtype)?;
        let patch = JsonPatch::parse(&json_patch_body(&headers, body)?)?;
        let expected = if_match(&headers)?;
        let mut tx = api.platform.begin(&caller).await?;
        let out = api
            .platform
            .writer()
            .patch(&mut tx, &rtype, &id, &patch, expected, Checks::Now)
            .await?;
        written(&api, &headers, tx, Interaction::Patch, &rtype, out).await
    }
    .await;
    finish(
        &api,
        &caller,
        Interaction::Patch,
        &rtype,
        Some(&format!("{rtype}/{id}")),
        r,
    )
    .await
}

/// `POST /{type}/$op`: `$validate`, or an operation a service defines on the type.
async fn type_op_post(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, op)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if op == "$validate" {
        let query = parse_query(q.as_deref());
        return crate::validate::validate(&api, &caller, &rtype, None, &headers, &query, body)
            .await;
    }
    let input = body
        .map_err(|e| Error::bad_request(format!("the body could not be read: {e}")))
        .and_then(|b| {
            serde_json::from_slice::<Value>(&b)
                .map_err(|e| Error::bad_request(format!("the body is not JSON: {e}")))
        });
    type_op(api, caller, rtype, op, true, input).await
}

/// Runs the type-level operation `op` of `rtype`, invoked by `POST` or by `GET`.
async fn type_op(
    api: FhirApi,
    caller: Caller,
    rtype: String,
    op: String,
    posted: bool,
    input: Result<Value, Error>,
) -> Response {
    let defined = api
        .operations
        .iter()
        .find(|o| {
            o.on_type() && o.resource_type() == rtype && o.name() == op && o.posted() == posted
        })
        .cloned();
    let interaction = match &defined {
        Some(o) => Interaction::Call(o.name(), o.action()),
        None => Interaction::Call("operation", hospital_core::AuditAction::E),
    };
    let r: Touching = async {
        check_type(&rtype)?;
        let Some(o) = defined else {
            return Err(Error::new(
                codes::NO_SUCH_ENDPOINT,
                format!(
                    "operation `{op}` is not supported on {rtype} by {}",
                    if posted { "POST" } else { "GET" }
                ),
            ));
        };
        let (out, touched) = o.run(&caller, "", Some(input?)).await?;
        Ok((fhir_response(StatusCode::OK, out.to_string()), touched))
    }
    .await;
    finish(&api, &caller, interaction, &rtype, Some(&rtype), r).await
}

async fn instance_op(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id, op)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let defined = api
        .operations
        .iter()
        .find(|o| !o.on_type() && o.resource_type() == rtype && o.name() == op && !o.posted())
        .cloned();
    let interaction = match (op.as_str(), &defined) {
        (_, Some(o)) => Interaction::Call(o.name(), o.action()),
        ("_history", _) => Interaction::HistoryInstance,
        ("$everything", _) => Interaction::Everything,
        ("$verify", _) => Interaction::Verify,
        _ => Interaction::Call("operation", hospital_core::AuditAction::E),
    };
    if let Some(o) = defined {
        let r: Touching = async {
            check_id(&rtype, &id)?;
            let input = hospital_core::operation::query_parameters(&parse_query(q.as_deref()));
            let (body, touched) = o.run(&caller, &id, Some(input)).await?;
            Ok((fhir_response(StatusCode::OK, body.to_string()), touched))
        }
        .await;
        return finish(
            &api,
            &caller,
            interaction,
            &rtype,
            Some(&format!("{rtype}/{id}")),
            r,
        )
        .await;
    }
    let r: Touching = async {
        check_type(&rtype)?;
        check_id(&rtype, &id)?;
        authorize(&caller, Action::Read, &rtype)?;
        match op.as_str() {
            "_history" => {
                let scope = HistoryScope::Instance {
                    resource_type: rtype.clone(),
                    id: id.clone(),
                };
                history(&api, &caller, scope, parse_query(q.as_deref())).await
            }
            "$everything" if rtype == "Patient" => {
                if let Some(pid) = caller.principal.compartment()
                    && pid != id
                {
                    return Err(Error::not_found(format!("{rtype}/{id} is not known")));
                }
                let mut all = api.platform.store().patient_everything(&id).await?;
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
                    &Subset::Whole,
                )?;
                Ok((fhir_response(StatusCode::OK, body), touched))
            }
            "$verify" => crate::signing::verify(&api, &caller, &rtype, &id).await,
            other => Err(Error::new(
                codes::NO_SUCH_ENDPOINT,
                format!("operation `{other}` is not supported on {rtype}"),
            )),
        }
    }
    .await;
    finish(
        &api,
        &caller,
        interaction,
        &rtype,
        Some(&format!("{rtype}/{id}")),
        r,
    )
    .await
}

/// `POST /{type}/{id}/$op`: an operation a service defines, or the platform's `$sign`/`$amend`.
async fn posted_op(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id, op)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if op == "$validate" {
        let query = parse_query(q.as_deref());
        return crate::validate::validate(&api, &caller, &rtype, Some(&id), &headers, &query, body)
            .await;
    }
    let defined = api
        .operations
        .iter()
        .find(|o| !o.on_type() && o.resource_type() == rtype && o.name() == op && o.posted())
        .cloned();
    let Some(o) = defined else {
        return crate::signing::operation(
            State(api),
            Extension(caller),
            Path((rtype, id, op)),
            headers,
            body,
        )
        .await;
    };
    let interaction = Interaction::Call(o.name(), o.action());
    let r: Touching = async {
        check_id(&rtype, &id)?;
        let body =
            body.map_err(|e| Error::bad_request(format!("the body could not be read: {e}")))?;
        let input: Value = serde_json::from_slice(&body)
            .map_err(|e| Error::bad_request(format!("the body is not JSON: {e}")))?;
        let (out, touched) = o.run(&caller, &id, Some(input)).await?;
        Ok((fhir_response(StatusCode::OK, out.to_string()), touched))
    }
    .await;
    finish(
        &api,
        &caller,
        interaction,
        &rtype,
        Some(&format!("{rtype}/{id}")),
        r,
    )
    .await
}

async fn type_history(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let r: Touching = async {
        check_type(&rtype)?;
        authorize(&caller, Action::Read, &rtype)?;
        let scope = HistoryScope::Type(rtype.clone());
        history(&api, &caller, scope, parse_query(q.as_deref())).await
    }
    .await;
    finish(
        &api,
        &caller,
        Interaction::HistoryType,
        &rtype,
        Some(&rtype),
        r,
    )
    .await
}

/// `GET [base]/_history`: the history of every type the caller may read, newest first.
async fn system_history(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let r: Touching = async {
        let types = readable_types(&caller);
        if types.is_empty() {
            return Err(Error::forbidden("this role reads no resource type"));
        }
        history(
            &api,
            &caller,
            HistoryScope::System(types),
            parse_query(q.as_deref()),
        )
        .await
    }
    .await;
    finish(&api, &caller, Interaction::HistorySystem, "", None, r).await
}

/// The types the caller's role (and scopes) let it read.
fn readable_types(caller: &Caller) -> Vec<String> {
    hospital_fhir_model::SUPPORTED_TYPES
        .iter()
        .filter(|t| caller.principal.may(Action::Read, t))
        .map(|t| (*t).to_owned())
        .collect()
}

/// A history Bundle of `scope` as the caller may read it (`_count`, `_since`, and the
/// `_cursor` of a `next` link).
async fn history(
    api: &FhirApi,
    caller: &Caller,
    scope: HistoryScope,
    params: Vec<(String, String)>,
) -> Touching {
    let mut query = HistoryQuery {
        scope,
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
                        .ok_or_else(|| Error::bad_request(format!("_since `{v}` is not a date")))?
                        .lo,
                )
            }
            "_cursor" => query.before_seq = Some(seq_cursor(v)?),
            "_format" => {}
            other => {
                return Err(Error::bad_request(format!(
                    "history does not support the parameter `{other}`"
                )));
            }
        }
    }
    let path = match &query.scope {
        HistoryScope::Instance { resource_type, id } => format!("{resource_type}/{id}/_history"),
        HistoryScope::Type(t) => format!("{t}/_history"),
        HistoryScope::System(_) => "_history".to_owned(),
    };
    let (page, touched) = hospital_core::read::history(&api.platform, caller, &query).await?;
    let body = history_bundle(&api.config.base_url, &path, &params, &page);
    Ok((fhir_response(StatusCode::OK, body), touched))
}

async fn bundle_entry(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = json_body(&headers, body);
    let kind = match &parsed {
        Ok(b) if b.get("type").and_then(Value::as_str) == Some("transaction") => {
            Interaction::Transaction
        }
        _ => Interaction::Batch,
    };
    let r: Touching = async {
        let (out, touched) = crate::bundle::process(&api, &caller, parsed?).await?;
        Ok((fhir_response(StatusCode::OK, out.to_string()), touched))
    }
    .await;
    finish(&api, &caller, kind, "Bundle", Some("Bundle"), r).await
}
