//! `$sign`, `$amend` and `$verify` (medical-record law: a signed entry is never edited; it is
//! corrected by an amendment that carries a reason and is signed in turn).
//!
//! - `POST /fhir/{type}/{id}/$sign` — the calling clinician signs the current version: a
//!   `Provenance` records signer, time and an Ed25519 signature over the SHA-256 of the
//!   canonical content.
//! - `POST /fhir/{type}/{id}/$amend` with `Parameters` (`resource`, `reason`) — a new version,
//!   signed at once, its Provenance carrying the reason. Plain PUT/DELETE of a signed entry is
//!   refused (409).
//! - `GET /fhir/{type}/{id}/$verify` — whether the current content still matches its latest
//!   signature.

use crate::security::finish;
use crate::{FHIR_JSON, FhirApi};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hospital_core::auth::Action;
use hospital_core::signing::{self, signer_of};
use hospital_core::store::dates;
use hospital_core::{Caller, Error, Interaction, Touched, authorize, codes, reveal};
use serde_json::{Value, json};

fn respond(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    res
}

/// `POST /fhir/{type}/{id}/$sign` and `$amend`.
pub async fn operation(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id, op)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let interaction = match op.as_str() {
        "$sign" => Interaction::Sign,
        "$amend" => Interaction::Amend,
        _ => Interaction::Call("operation", hospital_core::AuditAction::E),
    };
    let r = async {
        if !hospital_fhir_model::is_supported(&rtype) || !hospital_core::store::is_valid_id(&id) {
            return Err(Error::not_found(format!("{rtype}/{id} is not known")));
        }
        authorize(&caller, Action::Write, &rtype)?;
        // Only a clinician who is a practitioner signs; what they may sign is decided on
        // the entry itself.
        signer_of(&caller)?;
        match op.as_str() {
            "$sign" => {
                let mut tx = api.platform.begin(&caller).await?;
                let v = tx.read(&rtype, &id).await?;
                let signer = signing::may_sign(&caller, &v)?;
                let prov = signing::sign_version(&api.platform, &mut tx, &v, &signer, None).await?;
                let mut touched = Touched::of(std::slice::from_ref(&v));
                touched.entity(&format!("Provenance/{}", prov.id));
                let touched = tx.commit_audited(interaction, &rtype, touched, 201).await?;
                Ok((
                    respond(
                        StatusCode::CREATED,
                        &serde_json::from_str(&prov.body).unwrap_or_default(),
                    ),
                    touched,
                ))
            }
            "$amend" => {
                let params = crate::request::json_body(&headers, body)?;
                if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
                    return Err(Error::invalid("resourceType", "$amend takes Parameters"));
                }
                let list = params
                    .get("parameter")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let find = |name: &str| {
                    list.iter()
                        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
                        .cloned()
                };
                let resource = find("resource")
                    .and_then(|p| p.get("resource").cloned())
                    .ok_or_else(|| {
                        Error::invalid("Parameters.parameter", "give the amended `resource`")
                    })?;
                let reason = find("reason")
                    .and_then(|p| {
                        p.get("valueString")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .filter(|r| !r.trim().is_empty())
                    .ok_or_else(|| {
                        Error::invalid(
                            "Parameters.parameter",
                            "an amendment needs a `reason` (valueString)",
                        )
                    })?;
                let mut tx = api.platform.begin(&caller).await?;
                // Whoever may sign the entry may amend it (and signs the amendment).
                let current = tx.read(&rtype, &id).await?;
                let signer = signing::may_sign(&caller, &current)?;
                let (out, prov) = signing::amend(
                    &api.platform,
                    &mut tx,
                    &rtype,
                    &id,
                    resource,
                    &signer,
                    &reason,
                )
                .await?;
                let mut touched = Touched::of(std::slice::from_ref(&out.version));
                touched.entity(&format!("Provenance/{}", prov.id));
                let touched = tx.commit_audited(interaction, &rtype, touched, 200).await?;
                let mut res = respond(
                    StatusCode::OK,
                    &serde_json::from_str(&out.version.body).unwrap_or_default(),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("Provenance/{}", prov.id)) {
                    res.headers_mut().insert("x-provenance", v);
                }
                Ok((res, touched))
            }
            other => Err(Error::new(
                codes::NO_SUCH_ENDPOINT,
                format!("operation `{other}` is not supported"),
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

/// `GET /fhir/{type}/{id}/$verify`: a `Parameters` answer with `valid`.
pub async fn verify(
    api: &FhirApi,
    caller: &Caller,
    rtype: &str,
    id: &str,
) -> Result<(Response, Touched), Error> {
    let current = reveal(
        caller,
        rtype,
        id,
        api.platform.store().read(rtype, id).await,
    )?;
    let touched = Touched::of(std::slice::from_ref(&current));
    let found = signing::verify(&api.platform, &current).await?;
    let mut parameters = vec![
        json!({"name": "valid", "valueBoolean": found.valid}),
        json!({"name": "message", "valueString": found.message}),
    ];
    if let Some(sig) = &found.signature {
        parameters.extend([
            json!({"name": "signedVersion", "valueString": sig.version_id.to_string()}),
            json!({"name": "signer", "valueReference": {"reference": sig.signer}}),
            json!({"name": "signedAt", "valueInstant": dates::format_instant(sig.signed_at)}),
            json!({"name": "provenance", "valueReference": {"reference": format!("Provenance/{}", sig.provenance_id)}}),
        ]);
    }
    Ok((
        respond(
            StatusCode::OK,
            &json!({"resourceType": "Parameters", "parameter": parameters}),
        ),
        touched,
    ))
}
