//! The records service's rules on the resources it owns. They run on every write door: REST,
//! Bundles and gRPC all go through [`hospital_fhir_http::Writer`].

use crate::identifiers::{
    BhytCardNumber, CITIZEN_ID, Cccd, INSURANCE_NUMBER, NATIONAL_ID, PATIENT_INTERNAL_ID, Sex,
};
use async_trait::async_trait;
use hospital_fhir_http::{ApiError, ResourceRules};
use hospital_store::Tx;
use hospital_store::extract::{all_references, split_reference};
use serde_json::{Value, json};

/// Resource types the records service owns (writes).
pub const OWNED_TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Coverage",
    "Encounter",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "Procedure",
    "DiagnosticReport",
    "DocumentReference",
    "ServiceRequest",
    "Provenance",
];

/// Reference targets that must exist when a resource points at them.
const CHECKED_TARGETS: &[&str] = &["Patient", "Encounter", "Practitioner", "Organization"];

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

fn check_patient_identifiers(body: &Value) -> Result<(), ApiError> {
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
                let id = Cccd::parse(value).map_err(|m| ApiError::invalid(&path, m))?;
                if let Some(y) = birth_year
                    && y != id.birth_year()
                {
                    return Err(ApiError::invalid(
                        &path,
                        "the personal ID's century and year digits disagree with birthDate",
                    ));
                }
                let sex_disagrees = matches!(
                    (gender, id.sex()),
                    (Some("male"), Sex::Female) | (Some("female"), Sex::Male)
                );
                if sex_disagrees {
                    return Err(ApiError::invalid(
                        &path,
                        "the personal ID's sex digit disagrees with gender",
                    ));
                }
            }
            CITIZEN_ID if value.len() != 9 || !value.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(ApiError::invalid(
                    &path,
                    "an old identity card number (CMND) is 9 digits",
                ));
            }
            INSURANCE_NUMBER => {
                BhytCardNumber::parse(value).map_err(|m| ApiError::invalid(&path, m))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_coverage_identifiers(body: &Value) -> Result<(), ApiError> {
    for (i, system, value) in identifiers(body) {
        if system == INSURANCE_NUMBER {
            BhytCardNumber::parse(value)
                .map_err(|m| ApiError::invalid(format!("Coverage.identifier[{i}].value"), m))?;
        }
    }
    Ok(())
}

/// Gives a Patient its facility code (MA_BN): kept from the stored version on update,
/// assigned from the counter on create.
async fn assign_facility_code(
    tx: &mut Tx,
    id: &str,
    creating: bool,
    body: &mut Value,
) -> Result<(), ApiError> {
    if identifiers(body).any(|(_, s, _)| s == PATIENT_INTERNAL_ID) {
        return Ok(());
    }
    let stored = if creating {
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
    async fn prepare(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        creating: bool,
        body: &mut Value,
    ) -> Result<(), ApiError> {
        match resource_type {
            "Patient" => {
                check_patient_identifiers(body)?;
                assign_facility_code(tx, id, creating, body).await?;
            }
            "Coverage" => check_coverage_identifiers(body)?,
            "Provenance" => {
                return Err(ApiError::MethodNotAllowed(
                    "Provenance records signatures; they are written by $sign and $amend".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    async fn check(&self, tx: &mut Tx, _resource_type: &str, body: &Value) -> Result<(), ApiError> {
        for (path, reference) in all_references(body) {
            let Some((t, target_id)) = split_reference(&reference) else {
                continue;
            };
            if CHECKED_TARGETS.contains(&t) && !tx.exists(t, target_id).await? {
                return Err(ApiError::invalid(
                    format!("{path}.reference"),
                    format!(
                        "the reference `{t}/{target_id}` does not resolve to a stored resource"
                    ),
                ));
            }
        }
        Ok(())
    }
}
