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

use crate::rest::{begin_as, commit_audited};
use crate::security::{Caller, Touched, authorize, finish, reveal};
use crate::{ApiError, FHIR_JSON, FhirApi};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hospital_auth::{Action, Role};
use hospital_store::signing::{SignatureRecord, b64, digest_of, unb64};
use hospital_store::{Tx, Version, dates};
use serde_json::{Value, json};

fn respond(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    res
}

/// The practitioner a signing caller is.
fn signer_of(caller: &Caller) -> Result<String, ApiError> {
    match (&caller.principal.role, &caller.principal.practitioner) {
        (Role::Clinician, Some(p)) if !p.is_empty() => Ok(format!("Practitioner/{p}")),
        _ => Err(ApiError::Forbidden(
            "only a clinician whose token names their Practitioner can sign".into(),
        )),
    }
}

/// Signs `v` as `signer` inside `tx`: the key store signs the digest, a Provenance is written,
/// and the signature is recorded.
async fn sign_version(
    api: &FhirApi,
    tx: &mut Tx,
    v: &Version,
    signer: &str,
    reason: Option<&str>,
) -> Result<Version, ApiError> {
    let digest = digest_of(&v.body)?;
    let raw = hex::decode(&digest).map_err(|_| ApiError::Internal("digest".into()))?;
    let signature = api.security.keys.sign(tx, signer, &raw).await?;
    let now = dates::now_micros();
    let when = dates::format_instant(now);
    let mut provenance = json!({
        "resourceType": "Provenance",
        "target": [{"reference": format!("{}/{}/_history/{}", v.resource_type, v.id, v.version_id)}],
        "recorded": when,
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"reference": signer}
        }],
        "signature": [{
            "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}],
            "when": when,
            "who": {"reference": signer},
            "sigFormat": "application/octet-stream",
            "data": b64(&signature)
        }]
    });
    if let Some(r) = reason {
        provenance["reason"] = json!([{"text": r}]);
        provenance["activity"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE", "display": "revise"}]});
    }
    let prov = tx.create("Provenance", provenance).await?;
    tx.record_signature(&SignatureRecord {
        resource_type: v.resource_type.clone(),
        resource_id: v.id.clone(),
        version_id: v.version_id,
        provenance_id: prov.version.id.clone(),
        signer: signer.to_owned(),
        digest,
        signature: b64(&signature),
        signed_at: now,
    })
    .await?;
    Ok(prov.version)
}

/// `POST /fhir/{type}/{id}/$sign` and `$amend`.
pub async fn operation(
    State(api): State<FhirApi>,
    Extension(caller): Extension<Caller>,
    Path((rtype, id, op)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let action = match op.as_str() {
        "$sign" => "sign",
        "$amend" => "amend",
        _ => "operation",
    };
    let r = async {
        if !hospital_fhir_model::is_supported(&rtype) || !hospital_store::is_valid_id(&id) {
            return Err(ApiError::NotFound(format!("{rtype}/{id} is not known")));
        }
        authorize(&caller, Action::Write, &rtype)?;
        let signer = signer_of(&caller)?;
        match op.as_str() {
            "$sign" => {
                let mut tx = begin_as(&api, &caller).await?;
                let v = tx.read(&rtype, &id).await?;
                let prov = sign_version(&api, &mut tx, &v, &signer, None).await?;
                let mut touched = Touched::of(std::slice::from_ref(&v));
                touched.entities.push(format!("Provenance/{}", prov.id));
                let touched = commit_audited(tx, &caller, action, &rtype, touched, 201).await?;
                Ok((
                    respond(
                        StatusCode::CREATED,
                        &serde_json::from_str(&prov.body).unwrap_or_default(),
                    ),
                    touched,
                ))
            }
            "$amend" => {
                let params = crate::rest::json_body(&headers, body)?;
                if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
                    return Err(ApiError::invalid("resourceType", "$amend takes Parameters"));
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
                        ApiError::invalid("Parameters.parameter", "give the amended `resource`")
                    })?;
                let reason = find("reason")
                    .and_then(|p| {
                        p.get("valueString")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .filter(|r| !r.trim().is_empty())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "Parameters.parameter",
                            "an amendment needs a `reason` (valueString)",
                        )
                    })?;
                let mut tx = begin_as(&api, &caller).await?;
                let out = api.writer().amend(&mut tx, &rtype, &id, resource).await?;
                let prov =
                    sign_version(&api, &mut tx, &out.version, &signer, Some(&reason)).await?;
                let mut touched = Touched::of(std::slice::from_ref(&out.version));
                touched.entities.push(format!("Provenance/{}", prov.id));
                let touched = commit_audited(tx, &caller, action, &rtype, touched, 200).await?;
                let mut res = respond(
                    StatusCode::OK,
                    &serde_json::from_str(&out.version.body).unwrap_or_default(),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("Provenance/{}", prov.id)) {
                    res.headers_mut().insert("x-provenance", v);
                }
                Ok((res, touched))
            }
            other => Err(ApiError::NotFound(format!(
                "operation `{other}` is not supported"
            ))),
        }
    }
    .await;
    finish(&api, &caller, action, &rtype, r).await
}

/// `GET /fhir/{type}/{id}/$verify`: a `Parameters` answer with `valid`.
pub async fn verify(
    api: &FhirApi,
    caller: &Caller,
    rtype: &str,
    id: &str,
) -> Result<(Response, Touched), ApiError> {
    let current = reveal(caller, rtype, id, api.store.read(rtype, id).await)?;
    let touched = Touched::of(std::slice::from_ref(&current));
    let Some(sig) = api.store.latest_signature(rtype, id).await? else {
        return Ok((
            respond(
                StatusCode::OK,
                &json!({"resourceType": "Parameters", "parameter": [
                    {"name": "valid", "valueBoolean": false},
                    {"name": "message", "valueString": "this entry has not been signed"}
                ]}),
            ),
            touched,
        ));
    };
    let digest_now = digest_of(&current.body)?;
    let raw = hex::decode(&sig.digest).unwrap_or_default();
    let signature_ok = match unb64(&sig.signature) {
        Some(s) => {
            api.security
                .keys
                .verify(&api.store, &sig.signer, &raw, &s)
                .await?
        }
        None => false,
    };
    let (valid, message) = if !signature_ok {
        (
            false,
            "the stored signature does not verify with the signer's key",
        )
    } else if sig.version_id != current.version_id {
        (false, "the current version is not the signed one")
    } else if digest_now != sig.digest {
        (false, "the content was changed after it was signed")
    } else {
        (true, "the content matches its signature")
    };
    Ok((
        respond(
            StatusCode::OK,
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "valid", "valueBoolean": valid},
                {"name": "message", "valueString": message},
                {"name": "signedVersion", "valueString": sig.version_id.to_string()},
                {"name": "signer", "valueReference": {"reference": sig.signer}},
                {"name": "signedAt", "valueInstant": dates::format_instant(sig.signed_at)},
                {"name": "provenance", "valueReference": {"reference": format!("Provenance/{}", sig.provenance_id)}}
            ]}),
        ),
        touched,
    ))
}
