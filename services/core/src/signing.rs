//! Signatures on entries (medical-record law: a signed entry is never edited; it is corrected
//! by an amendment that carries a reason and is signed in turn). The edges only translate.

use crate::caller::Caller;
use crate::error::{Error, codes};
use crate::platform::Platform;
use crate::rules::{Checks, Origin};
use crate::tx::Tx;
use hospital_auth::Role;
use hospital_store::signing::{SignatureRecord, b64, digest_of, unb64};
use hospital_store::{Version, WriteOutcome, dates};
use serde_json::{Value, json};

/// The practitioner a signing caller is.
pub fn signer_of(caller: &Caller) -> Result<String, Error> {
    match (&caller.principal.role, &caller.principal.practitioner) {
        (Role::Clinician, Some(p)) if !p.is_empty() => Ok(format!("Practitioner/{p}")),
        _ => Err(Error::forbidden(
            "only a clinician whose token names their Practitioner can sign",
        )),
    }
}

pub use crate::rules::is_signable;

/// The signer `caller` is for `v`, if they may sign it: a clinical entry, signed by its author
/// (the user who wrote this version, as the system recorded it) or by a practitioner the
/// entry names in a role (performer, asserter, recorder, requester, author, participant).
pub fn may_sign(caller: &Caller, v: &Version) -> Result<String, Error> {
    if !is_signable(&v.resource_type) {
        return Err(Error::new(
            codes::NOT_SIGNABLE,
            format!("{} entries are not signed", v.resource_type),
        ));
    }
    let signer = signer_of(caller)?;
    let body: Value =
        serde_json::from_str(&v.body).map_err(|_| Error::internal("stored resource unreadable"))?;
    let author = body
        .pointer("/meta/extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(hospital_store::RECORDED_BY))
        .and_then(|e| e.get("valueString").and_then(Value::as_str));
    let is_author = author == Some(caller.principal.audit_name().as_str());
    let named = hospital_store::extract::all_references(&body)
        .iter()
        .any(|(path, r)| r == &signer && !path.ends_with(".subject"));
    if is_author || named {
        Ok(signer)
    } else {
        Err(Error::new(
            codes::NOT_THE_SIGNER,
            format!(
                "{}/{} was not written by this clinician and does not name them; they may not sign it",
                v.resource_type, v.id
            ),
        ))
    }
}

/// Signs `v` as `signer` inside `tx`: the key store signs the digest, a Provenance is written
/// (through the owner's rules, as the platform's signature), and the signature is recorded.
pub async fn sign_version(
    platform: &Platform,
    tx: &mut Tx,
    v: &Version,
    signer: &str,
    reason: Option<&str>,
) -> Result<Version, Error> {
    let digest = digest_of(&v.body)?;
    let raw = hex_decode(&digest)?;
    let signature = platform
        .security()
        .keys
        .sign(&mut tx.inner, signer, &raw)
        .await?;
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
    let prov = platform
        .writer()
        .create_as(
            tx,
            "Provenance",
            None,
            provenance,
            Checks::Now,
            Origin::Signature,
        )
        .await?;
    tx.inner
        .record_signature(
            &crate::WRITE_KEY,
            &SignatureRecord {
                resource_type: v.resource_type.clone(),
                resource_id: v.id.clone(),
                version_id: v.version_id,
                provenance_id: prov.version.id.clone(),
                signer: signer.to_owned(),
                digest,
                signature: b64(&signature),
                signed_at: now,
            },
        )
        .await?;
    Ok(prov.version)
}

/// Amends `rtype/id` with `body` and signs the new version with `reason`, in `tx`.
pub async fn amend(
    platform: &Platform,
    tx: &mut Tx,
    rtype: &str,
    id: &str,
    body: Value,
    signer: &str,
    reason: &str,
) -> Result<(WriteOutcome, Version), Error> {
    let out = platform.writer().amend(tx, rtype, id, body).await?;
    let prov = sign_version(platform, tx, &out.version, signer, Some(reason)).await?;
    Ok((out, prov))
}

fn hex_decode(s: &str) -> Result<Vec<u8>, Error> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| Error::internal("digest is not hex"))
        })
        .collect()
}

/// What `$verify` found.
pub struct Verification {
    pub valid: bool,
    pub message: &'static str,
    pub signature: Option<SignatureRecord>,
}

/// Whether the current content of `current` still matches its latest signature.
pub async fn verify(platform: &Platform, current: &Version) -> Result<Verification, Error> {
    let store = platform.store();
    let Some(sig) = store
        .latest_signature(&current.resource_type, &current.id)
        .await?
    else {
        return Ok(Verification {
            valid: false,
            message: "this entry has not been signed",
            signature: None,
        });
    };
    let digest_now = digest_of(&current.body)?;
    let raw = hex_decode(&sig.digest).unwrap_or_default();
    let signature_ok = match unb64(&sig.signature) {
        Some(s) => {
            platform
                .security()
                .keys
                .verify(store, &sig.signer, &raw, &s)
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
    Ok(Verification {
        valid,
        message,
        signature: Some(sig),
    })
}
