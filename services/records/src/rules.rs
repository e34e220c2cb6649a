//! The records service's rules on the resources it owns. They run on every write door: REST,
//! Bundles and gRPC all go through [`hospital_core::Writer`].

use crate::identifiers::{
    BhytCardNumber, CITIZEN_ID, Cccd, INSURANCE_NUMBER, NATIONAL_ID, PATIENT_INTERNAL_ID, Sex,
};
use async_trait::async_trait;
use hospital_core::{Error, Origin, ResourceRules, Tx, Write, WriteKind};
use serde_json::{Value, json};

pub struct RecordsRules;

fn identifiers(body: &Value) -> impl Iterator<Item = (usize, &str, &str)> {
    body.get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, id)| {
            Some((
                i,
                id.get("system").and_then(Value::as_str)?,
                id.get("value").and_then(Value::as_str)?,
            ))
        })
}

fn check_patient_identifiers(body: &Value) -> Result<(), Error> {
    let birth_year: Option<i32> = body
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(|d| d.get(..4))
        .and_then(|y| y.parse().ok());
    let gender = body.get("gender").and_then(Value::as_str);
    for (i, system, value) in identifiers(body) {
        let path = format!("Patient.identifier[{i}].value");
        match system {
            NATIONAL_ID => {
                let id = Cccd::parse(value).map_err(|m| Error::invalid(&path, m))?;
                if let Some(y) = birth_year
                    && y != id.birth_year()
                {
                    return Err(Error::invalid(
                        &path,
                        "the personal ID's century and year digits disagree with birthDate",
                    ));
                }
                let sex_disagrees = matches!(
                    (gender, id.sex()),
                    (Some("male"), Sex::Female) | (Some("female"), Sex::Male)
                );
                if sex_disagrees {
                    return Err(Error::invalid(
                        &path,
                        "the personal ID's sex digit disagrees with gender",
                    ));
                }
            }
            CITIZEN_ID if value.len() != 9 || !value.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(Error::invalid(
                    &path,
                    "an old identity card number (CMND) is 9 digits",
                ));
            }
            INSURANCE_NUMBER => {
                BhytCardNumber::parse(value).map_err(|m| Error::invalid(&path, m))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_coverage_identifiers(body: &Value) -> Result<(), Error> {
    for (i, system, value) in identifiers(body) {
        if system == INSURANCE_NUMBER {
            BhytCardNumber::parse(value)
                .map_err(|m| Error::invalid(format!("Coverage.identifier[{i}].value"), m))?;
        }
    }
    Ok(())
}

/// Gives a Patient its facility code (MA_BN): kept from the stored version on update,
/// assigned from the counter on create.
async fn assign_facility_code(
    tx: &mut Tx,
    id: &str,
    kind: WriteKind,
    body: &mut Value,
) -> Result<(), Error> {
    if identifiers(body).any(|(_, s, _)| s == PATIENT_INTERNAL_ID) {
        return Ok(());
    }
    let stored = if kind == WriteKind::Create {
        None
    } else {
        tx.read("Patient", id).await.ok()
    };
    let kept = match stored.ok_or(()) {
        Ok(v) => serde_json::from_str::<Value>(&v.body).ok().and_then(|old| {
            old.get("identifier")?
                .as_array()?
                .iter()
                .find(|i| i.get("system").and_then(Value::as_str) == Some(PATIENT_INTERNAL_ID))
                .cloned()
        }),
        Err(_) => None,
    };
    let ident = match kept {
        Some(i) => i,
        None => {
            let n = tx.next_counter("patient-internal-id").await?;
            json!({
                "use": "secondary",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Mã bệnh nhân"},
                "system": PATIENT_INTERNAL_ID,
                "value": format!("BN{n:08}"),
            })
        }
    };
    match body.get_mut("identifier").and_then(Value::as_array_mut) {
        Some(list) => list.push(ident),
        None => body["identifier"] = json!([ident]),
    }
    Ok(())
}

#[async_trait]
impl ResourceRules for RecordsRules {
    async fn prepare(&self, tx: &mut Tx, w: &Write<'_>, body: &mut Value) -> Result<(), Error> {
        match w.resource_type {
            "Patient" => {
                check_patient_identifiers(body)?;
                assign_facility_code(tx, w.id, w.kind, body).await?;
            }
            "Coverage" => check_coverage_identifiers(body)?,
            "Provenance" if w.origin != Origin::Signature => {
                return Err(Error::not_supported(
                    "Provenance records signatures; they are written by $sign and $amend",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    async fn check(&self, tx: &mut Tx, resource_type: &str, body: &Value) -> Result<(), Error> {
        hospital_core::rules::check_references(tx, body).await?;
        if resource_type == "Composition" {
            crate::discharge::check(tx, body).await?;
        }
        Ok(())
    }
}
