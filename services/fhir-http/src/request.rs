//! Reading FHIR requests: media types, bodies, query strings, ids, preferences.

use crate::parse_etag;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use hospital_core::{Error, codes};
use serde_json::Value;

pub(crate) use hospital_core::conditional::parse_query;

/// Refuses requests whose `Accept` or `_format` asks for something other than JSON.
pub(crate) fn negotiate(headers: &HeaderMap, query: &[(String, String)]) -> Result<(), Error> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format")
        && !f.contains("json")
    {
        return Err(Error::new(
            codes::NOT_ACCEPTABLE,
            format!("_format={f} is not supported; this server speaks FHIR JSON"),
        ));
    }
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accept.contains("json")
        && !accept.contains("*/*")
        && !accept.trim().is_empty()
    {
        return Err(Error::new(
            codes::NOT_ACCEPTABLE,
            format!("cannot produce `{accept}`; use application/fhir+json"),
        ));
    }
    Ok(())
}

/// `_count` of history and audit pages: a whole number, kept within 1..=1000.
pub(crate) fn page_size(v: &str) -> Result<usize, Error> {
    Ok(v.parse::<usize>()
        .map_err(|_| Error::bad_request("_count must be a whole number"))?
        .clamp(1, 1000))
}

/// `_cursor` of history and audit pages: the sequence number this server put in a `next` link.
pub(crate) fn seq_cursor(v: &str) -> Result<i64, Error> {
    v.parse()
        .map_err(|_| Error::bad_request("the _cursor value is not one this server issued"))
}

/// Reads a FHIR JSON request body, enforcing media type and size.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Error> {
    body_of(
        headers,
        body,
        &["application/fhir+json", "application/json"],
        "application/fhir+json",
    )
}

/// Reads the JSON Patch body of a PATCH (`application/json-patch+json`).
pub(crate) fn json_patch_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Error> {
    body_of(
        headers,
        body,
        &["application/json-patch+json"],
        "application/json-patch+json (a JSON Patch; FHIRPath Patch is not supported)",
    )
}

fn body_of(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    media_types: &[&str],
    send: &str,
) -> Result<Value, Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media_types.contains(&media) {
        return Err(Error::new(
            codes::UNSUPPORTED_MEDIA_TYPE,
            format!("content type `{media}` is not supported here; send {send}"),
        ));
    }
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(
                codes::BODY_TOO_LARGE,
                "the request body exceeds the configured limit",
            )
        } else {
            Error::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| Error::bad_request(format!("malformed JSON: {e}")))
}

pub(crate) fn check_id(rtype: &str, id: &str) -> Result<(), Error> {
    if hospital_core::store::is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::new(
            codes::INVALID_ID,
            "an id is 1 to 64 letters, digits, '-' or '.'",
        )
        .at(format!("{rtype}.id")))
    }
}

pub(crate) fn check_type(rtype: &str) -> Result<(), Error> {
    if hospital_fhir_model::is_supported(rtype) {
        Ok(())
    } else {
        Err(Error::new(
            codes::NO_SUCH_ENDPOINT,
            format!("resource type `{rtype}` is not supported"),
        ))
    }
}

pub(crate) fn lenient(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("handling=lenient"))
}

pub(crate) fn return_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("return=minimal"))
}

pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Error> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => Ok(None),
        Some(v) => parse_etag(v)
            .map(Some)
            .ok_or_else(|| Error::bad_request(format!("If-Match `{v}` is not a version ETag"))),
    }
}
