//! Charges for care given, as FHIR `ChargeItem`s: one item of the price list (by its service
//! code), a quantity, the day of service, for one patient's encounter.
//!
//! ```json
//! {"resourceType": "ChargeItem", "status": "billable",
//!  "code": {"coding": [{"system": "urn:hospital:service-code", "code": "XN.01"}]},
//!  "subject": {"reference": "Patient/…"}, "context": {"reference": "Encounter/…"},
//!  "occurrenceDateTime": "2026-08-01", "quantity": {"value": 1}}
//! ```
//!
//! The rule, on every door: the code has a price in force on the day (the charge records which
//! one, in `definitionCanonical`); the encounter is the patient's; a clinician charges only for
//! an encounter they take part in (a participant of it, or the Encounter's author); `billed` is
//! set by billing alone, when an invoice takes the charge in, and a billed charge is not
//! changed by a client until that invoice is cancelled. An extension
//! `urn:hospital:charge:on-request` = true marks care the patient asked for beyond what was
//! indicated, which BHYT does not pay for.

use crate::prices::{self, service_code};
use chrono::NaiveDate;
use hospital_core::auth::Role;
use hospital_core::{Error, Origin, Tx, Write, WriteKind, codes};
use serde_json::{Value, json};

pub const ON_REQUEST: &str = "urn:hospital:charge:on-request";

/// The most units one charge may carry.
pub const MAX_QUANTITY: i64 = 10_000;

/// The day of service of a charge.
pub fn occurrence(body: &Value) -> Result<NaiveDate, Error> {
    let s = body
        .get("occurrenceDateTime")
        .and_then(Value::as_str)
        .or_else(|| {
            body.pointer("/occurrencePeriod/start")
                .and_then(Value::as_str)
        })
        .ok_or_else(|| {
            Error::invalid(
                "ChargeItem.occurrence[x]",
                "a charge says the day the care was given",
            )
        })?;
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
        .map_err(|_| Error::invalid("ChargeItem.occurrence[x]", "the day is YYYY-MM-DD"))
}

/// The whole quantity of a charge (1 when absent).
pub fn quantity(body: &Value) -> Result<i64, Error> {
    match body.pointer("/quantity/value") {
        None => Ok(1),
        Some(v) => match v.as_f64() {
            Some(q) if q >= 1.0 && q.fract() == 0.0 && q <= MAX_QUANTITY as f64 => Ok(q as i64),
            _ => Err(Error::invalid(
                "ChargeItem.quantity.value",
                format!("a quantity is a whole number from 1 to {MAX_QUANTITY}"),
            )),
        },
    }
}

pub fn on_request(body: &Value) -> bool {
    body.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| {
            e.get("url").and_then(Value::as_str) == Some(ON_REQUEST)
                && e.get("valueBoolean").and_then(Value::as_bool) == Some(true)
        })
}

fn reference_id<'a>(body: &'a Value, pointer: &str, rtype: &str) -> Option<&'a str> {
    body.pointer(pointer)?
        .as_str()?
        .strip_prefix(rtype)?
        .strip_prefix('/')
}

/// Whether `practitioner` takes part in `encounter`.
fn takes_part(encounter: &Value, practitioner: &str) -> bool {
    let me = format!("Practitioner/{practitioner}");
    encounter
        .get("participant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|p| p.pointer("/individual/reference").and_then(Value::as_str) == Some(me.as_str()))
}

pub async fn prepare(tx: &mut Tx, w: &Write<'_>, body: &mut Value) -> Result<(), Error> {
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    let stored: Option<Value> = if w.kind == WriteKind::Create {
        None
    } else {
        tx.read("ChargeItem", w.id)
            .await
            .ok()
            .and_then(|v| serde_json::from_str(&v.body).ok())
    };
    let was = stored
        .as_ref()
        .and_then(|s| s.get("status"))
        .and_then(Value::as_str);
    if w.origin != Origin::Service {
        if status == "billed" && was != Some("billed") {
            return Err(Error::new(
                codes::BUSINESS_RULE,
                "a charge is billed by billing, when an invoice takes it in",
            ));
        }
        if was == Some("billed") {
            return Err(Error::new(
                codes::STATE_CONFLICT,
                "this charge is on an issued invoice: cancel the invoice to change it",
            ));
        }
    }
    let code = service_code(body)
        .ok_or_else(|| {
            Error::invalid(
                "ChargeItem.code",
                format!(
                    "a charge names a price-list item by a code of {}",
                    prices::SERVICE_CODE
                ),
            )
        })?
        .to_owned();
    let day = occurrence(body)?;
    quantity(body)?;
    let patient = reference_id(body, "/subject/reference", "Patient")
        .ok_or_else(|| Error::invalid("ChargeItem.subject", "a charge is for a Patient"))?
        .to_owned();
    let encounter_id = reference_id(body, "/context/reference", "Encounter")
        .ok_or_else(|| {
            Error::invalid(
                "ChargeItem.context",
                "a charge is for an Encounter (`context`)",
            )
        })?
        .to_owned();
    let encounter = tx.read("Encounter", &encounter_id).await.map_err(|_| {
        Error::invalid(
            "ChargeItem.context",
            format!("Encounter/{encounter_id} is not known"),
        )
    })?;
    let encounter: Value = serde_json::from_str(&encounter.body)
        .map_err(|_| Error::internal("stored encounter unreadable"))?;
    if reference_id(&encounter, "/subject/reference", "Patient") != Some(patient.as_str()) {
        return Err(Error::invalid(
            "ChargeItem.subject",
            "the charge's patient is not its encounter's",
        ));
    }
    let caller = tx.caller().clone();
    if caller.principal.role == Role::Clinician && w.origin != Origin::Service {
        let me = caller.principal.practitioner.clone().unwrap_or_default();
        if me.is_empty() || !takes_part(&encounter, &me) {
            return Err(Error::forbidden(
                "a clinician charges only for an encounter they take part in",
            ));
        }
    }
    let price = prices::price_on(tx, &code, day).await?;
    body["definitionCanonical"] = json!([price.canonical]);
    Ok(())
}
