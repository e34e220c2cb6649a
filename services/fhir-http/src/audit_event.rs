//! The audit trail as FHIR `AuditEvent` (<https://hl7.org/fhir/R4B/auditevent.html>), for
//! admins only. Search by `patient`, `agent`, `date` (with prefixes) and `action` (C R U D E).

use crate::request::{page_size, parse_query, seq_cursor};
use crate::security::finish;
use crate::{FHIR_JSON, FhirApi};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hospital_core::auth::Action;
use hospital_core::store::dates;
use hospital_core::store::{AuditQuery, AuditRow};
use hospital_core::{AuditAction, Caller, Error, Interaction, Touched, authorize};
use serde_json::{Value, json};

/// The action codes of records written before each record kept its own: by interaction name.
fn legacy_interactions(code: AuditAction) -> &'static [&'static str] {
    match code {
        AuditAction::C => &["create"],
        AuditAction::R => &[
            "read",
            "vread",
            "search-type",
            "history-instance",
            "history-type",
            "everything",
            "verify",
        ],
        AuditAction::U => &["update", "amend"],
        AuditAction::D => &["delete"],
        AuditAction::E => &["transaction", "batch", "sign", "authenticate", "operation"],
    }
}

/// The record's action code, derived from its interaction for records from before codes.
fn action_code(r: &hospital_core::store::AuditRecord) -> String {
    if !r.action_code.is_empty() {
        return r.action_code.clone();
    }
    for a in [
        AuditAction::C,
        AuditAction::R,
        AuditAction::U,
        AuditAction::D,
    ] {
        if legacy_interactions(a).contains(&r.action.as_str()) {
            return a.as_str().to_owned();
        }
    }
    "E".into()
}

fn to_fhir(row: &AuditRow) -> Value {
    let r = &row.record;
    let outcome = match r.outcome {
        200..=399 => "0",
        400..=499 => "4",
        _ => "8",
    };
    let mut agent = json!({
        "who": {"identifier": {"system": "urn:hospital:actor", "value": r.actor}},
        "requestor": true,
        "network": {"address": r.client, "type": "2"},
    });
    if !r.role.is_empty() {
        agent["role"] = json!([{"text": r.role}]);
    }
    let mut agents = vec![agent];
    if !r.on_behalf_of.is_empty() {
        agents.push(json!({
            "who": {"identifier": {"system": "urn:hospital:actor", "value": r.on_behalf_of}},
            "requestor": false
        }));
    }
    let mut entity: Vec<Value> = r
        .entities
        .iter()
        .map(|e| json!({"what": {"reference": e}}))
        .collect();
    for p in &r.patients {
        if !r.entities.iter().any(|e| e == &format!("Patient/{p}")) {
            entity.push(json!({"what": {"reference": format!("Patient/{p}")}, "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}}));
        }
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": row.seq.to_string(),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": r.action}],
        "action": action_code(r),
        "recorded": dates::format_instant(r.at),
        "outcome": outcome,
        "outcomeDesc": format!("HTTP {}", r.outcome),
        "agent": agents,
        "source": {"observer": {"display": "hospital"}},
    });
    if !entity.is_empty() {
        ev["entity"] = Value::Array(entity);
    }
    if !r.user_agent.is_empty() {
        ev["source"]["site"] = json!(r.user_agent);
    }
    ev
}

/// `GET /fhir/AuditEvent`.
pub async fn search(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        authorize(&caller, Action::Read, "AuditEvent")?;
        let mut query = AuditQuery {
            count: 50,
            ..Default::default()
        };
        for (k, v) in parse_query(q.as_deref()) {
            match k.as_str() {
                "patient" => query.patient = Some(v.trim_start_matches("Patient/").to_owned()),
                "agent" => query.agent = Some(v),
                "action" => {
                    let code = AuditAction::parse(&v)
                        .ok_or_else(|| Error::bad_request("action is one of C, R, U, D, E"))?;
                    let legacy = legacy_interactions(code).iter().map(|a| (*a).to_owned());
                    query.action = Some((code.as_str().to_owned(), legacy.collect()));
                }
                "date" => {
                    // A prefix is two ASCII letters; anything else is the date itself.
                    let (prefix, raw) = match v.get(..2) {
                        Some(p) if p.bytes().all(|b| b.is_ascii_alphabetic()) => (p, &v[2..]),
                        _ => ("eq", v.as_str()),
                    };
                    let range = dates::parse_range(raw)
                        .ok_or_else(|| Error::bad_request(format!("`{raw}` is not a date")))?;
                    match prefix {
                        "eq" => {
                            query.from = Some(range.lo);
                            query.to = Some(range.hi);
                        }
                        "ge" => query.from = Some(range.lo),
                        "gt" => query.from = Some(range.hi + 1),
                        "le" => query.to = Some(range.hi),
                        "lt" => query.to = Some(range.lo - 1),
                        other => {
                            return Err(Error::bad_request(format!(
                                "date prefix `{other}` is not supported on AuditEvent"
                            )));
                        }
                    }
                }
                "_count" => query.count = page_size(&v)?,
                "_cursor" => query.before_seq = Some(seq_cursor(&v)?),
                "_format" => {}
                other => {
                    return Err(Error::bad_request(format!(
                        "unknown search parameter `{other}` for AuditEvent"
                    )));
                }
            }
        }
        // One more than asked tells whether a next page exists.
        let want = query.count;
        query.count = want + 1;
        let mut rows = api.platform.store().audit_search(&query).await?;
        let next = (rows.len() > want).then(|| rows[want - 1].seq);
        rows.truncate(want);
        let base = &api.config.base_url;
        let entries: Vec<Value> = rows
            .iter()
            .map(|r| json!({"fullUrl": format!("{base}/AuditEvent/{}", r.seq), "resource": to_fhir(r), "search": {"mode": "match"}}))
            .collect();
        let mut links = vec![json!({"relation": "self", "url": format!("{base}/AuditEvent?{}", q.clone().unwrap_or_default())})];
        if let Some(seq) = next {
            let kept: Vec<String> = q
                .as_deref()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("_cursor="))
                .map(str::to_owned)
                .collect();
            let mut url = format!("{base}/AuditEvent?{}", kept.join("&"));
            url.push_str(&format!("{}_cursor={seq}", if kept.is_empty() { "" } else { "&" }));
            links.push(json!({"relation": "next", "url": url}));
        }
        let bundle = json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries});
        let mut res = (StatusCode::OK, bundle.to_string()).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        Ok((res, Touched::default()))
    }
    .await;
    finish(
        &api,
        &caller,
        Interaction::SearchType,
        "AuditEvent",
        Some("AuditEvent"),
        r,
    )
    .await
}
