//! Writing FHIR responses: resources as stored, version headers, searchset Bundles assembled
//! from stored JSON text without re-parsing it.

use crate::FHIR_JSON;
use crate::subset::Subset;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hospital_core::Error;
use hospital_core::store::{HistoryPage, Method, SearchResult, Version, dates};
use serde_json::Value;

pub(crate) fn http_date(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

pub(crate) fn fhir_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    res
}

pub(crate) fn version_headers(res: &mut Response, base: &str, v: &Version, location: bool) {
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

/// The response to a successful write, as FHIR asks: 201 + Location for a create.
pub(crate) fn write_response(
    api: &crate::FhirApi,
    headers: &HeaderMap,
    v: &Version,
    created: bool,
) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = if crate::request::return_minimal(headers) {
        String::new()
    } else {
        v.body.clone()
    };
    let mut res = fhir_response(status, body);
    version_headers(&mut res, &api.config.base_url, v, true);
    res
}

pub(crate) fn link_url(base: &str, path: &str, params: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    let q = s.finish();
    // An empty path is the base itself (a search across types).
    let at = if path.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{path}")
    };
    if q.is_empty() {
        at
    } else {
        format!("{at}?{q}")
    }
}

/// A searchset Bundle, assembled from the stored JSON text without re-parsing it (unless the
/// client asked for a [`Subset`] of each resource).
pub(crate) fn searchset(
    base: &str,
    rtype: &str,
    r: &SearchResult,
    subset: &Subset,
) -> Result<String, Error> {
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
        let body = if subset.is_whole() {
            std::borrow::Cow::Borrowed(&v.body)
        } else {
            std::borrow::Cow::Owned(subset.apply(&v.body)?)
        };
        out.push_str(&format!(
            r#"{{"fullUrl":{},"resource":{},"search":{{"mode":"{mode}"}}}}"#,
            Value::String(format!("{base}/{}/{}", v.resource_type, v.id)),
            body
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
    Ok(out)
}

/// A history Bundle of `page`, assembled from the stored JSON text; `path` and `params` make
/// its `self` and `next` links.
pub(crate) fn history_bundle(
    base: &str,
    path: &str,
    params: &[(String, String)],
    page: &HistoryPage,
) -> String {
    let kept: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "_cursor")
        .cloned()
        .collect();
    let mut links =
        vec![serde_json::json!({"relation": "self", "url": link_url(base, path, &kept)})];
    if let Some(seq) = page.next_before_seq {
        let mut p = kept.clone();
        p.push(("_cursor".into(), seq.to_string()));
        links.push(serde_json::json!({"relation": "next", "url": link_url(base, path, &p)}));
    }
    let mut out = format!(
        r#"{{"resourceType":"Bundle","type":"history","link":{}"#,
        Value::Array(links)
    );
    for (i, v) in page.versions.iter().enumerate() {
        out.push_str(if i == 0 { r#","entry":["# } else { "," });
        let full = format!("{base}/{}/{}", v.resource_type, v.id);
        let (method, url, status) = match v.method {
            Method::Delete => ("DELETE", format!("{}/{}", v.resource_type, v.id), "204"),
            Method::Post => ("POST", v.resource_type.clone(), "201"),
            Method::Put => (
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
    out
}
