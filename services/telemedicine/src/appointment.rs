//! The Appointment's rule, run on every write of one whatever the door (the booking operations,
//! a plain FHIR write, a transaction Bundle, gRPC):
//!
//! - it names one patient and at least one practitioner; on a slot, the slot's practitioner
//!   and the slot's time (which it takes when it gives none) and mode (a video visit cannot be
//!   booked on an in-person schedule);
//! - a visit newly `pending` or `booked` cannot be in the past, nor on a slot blocked or
//!   entered in error;
//! - **no double booking**: an active appointment claims its window for each practitioner and
//!   for the patient in the store's time claims ([`hospital_core::Tx::claim_times`]), which
//!   refuse a second overlapping claim of one holder (`CF_06`, 409) on either store, under any
//!   concurrency; a cancelled, no-show or entered-in-error one claims nothing;
//! - **the slot follows**: a slot is `busy-tentative` while its appointment is pending,
//!   `busy` while it is booked or under way, `free` again when the appointment ends without
//!   taking place or moves to another slot — written as a consequence of the same write;
//! - **reminders**: a booked appointment's reminders go to the outbox in the same transaction
//!   ([`crate::reminders`]).

use crate::calendar;
use crate::schedule::{self, MODE, Mode, SLOT_PRACTITIONER};
use hospital_core::rules::check_references;
use hospital_core::{Error, Origin, Tx, Write, WriteKind, codes};
use serde_json::{Value, json};

/// On a pending appointment: when it lapses (a hold, or the payment window of a prepaid visit).
pub const EXPIRES: &str = "urn:hospital:appointment:expires";
/// On a prepaid appointment: the invoice of its fee (`valueReference`).
pub const INVOICE: &str = "urn:hospital:appointment:invoice";
/// On a prepaid appointment: the payment page of its invoice (`valueUrl`).
pub const PAYMENT_PAGE: &str = "urn:hospital:appointment:payment-page";
/// On an appointment: who booked it (`online`: the patient; `staff`).
pub const BOOKED_BY: &str = "urn:hospital:appointment:booked-by";

/// Statuses that hold the time: the practitioner and the patient are taken.
pub fn is_active(status: &str) -> bool {
    matches!(
        status,
        "pending" | "booked" | "arrived" | "checked-in" | "fulfilled"
    )
}

/// The references of the appointment's participants of `rtype` (not those who declined).
pub fn actors(appointment: &Value, rtype: &str) -> Vec<String> {
    let prefix = format!("{rtype}/");
    appointment
        .get("participant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("status").and_then(Value::as_str) != Some("declined"))
        .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
        .filter(|r| r.starts_with(&prefix) && r.len() > prefix.len())
        .map(str::to_owned)
        .collect()
}

/// The appointment's patient (`Patient/<id>`).
pub fn patient_of(appointment: &Value) -> Option<String> {
    actors(appointment, "Patient").into_iter().next()
}

/// The slot the appointment is on (its id).
pub fn slot_of(appointment: &Value) -> Option<String> {
    appointment
        .get("slot")
        .and_then(Value::as_array)?
        .first()?
        .get("reference")
        .and_then(Value::as_str)?
        .strip_prefix("Slot/")
        .map(str::to_owned)
}

pub fn ext<'a>(v: &'a Value, url: &str) -> Option<&'a Value> {
    v.get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// Sets (or, with `None`, removes) the extension `url` of `v` to `value` (`{"valueX": ...}`).
pub fn set_ext(v: &mut Value, url: &str, value: Option<Value>) {
    let mut exts: Vec<Value> = v
        .get("extension")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.get("url").and_then(Value::as_str) != Some(url))
        .collect();
    if let Some(Value::Object(mut m)) = value {
        m.insert("url".into(), json!(url));
        exts.push(Value::Object(m));
    }
    if exts.is_empty() {
        if let Some(o) = v.as_object_mut() {
            o.remove("extension");
        }
    } else {
        v["extension"] = Value::Array(exts);
    }
}

/// The invoice of a prepaid appointment (its id).
pub fn invoice_of(appointment: &Value) -> Option<String> {
    ext(appointment, INVOICE)?
        .pointer("/valueReference/reference")?
        .as_str()?
        .strip_prefix("Invoice/")
        .map(str::to_owned)
}

/// When a pending appointment lapses.
pub fn expires_of(appointment: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    calendar::parse_instant(ext(appointment, EXPIRES)?.get("valueInstant")?.as_str()?)
}

fn window(
    v: &Value,
) -> Option<(
    chrono::DateTime<chrono::FixedOffset>,
    chrono::DateTime<chrono::FixedOffset>,
)> {
    let start = calendar::parse_instant(v.get("start")?.as_str()?)?;
    let end = calendar::parse_instant(v.get("end")?.as_str()?)?;
    Some((start, end))
}

/// The slot's status an appointment in `status` gives it.
fn slot_status_for(status: &str) -> &'static str {
    match status {
        "pending" => "busy-tentative",
        s if is_active(s) => "busy",
        _ => "free",
    }
}

/// Sets the stored slot `slot_id` to `status` unless it already is, or is blocked.
async fn set_slot(tx: &mut Tx, slot_id: &str, status: &str) -> Result<(), Error> {
    let v = match tx.read("Slot", slot_id).await {
        Ok(v) => v,
        Err(e) if e.code == codes::NOT_KNOWN || e.code == codes::DELETED => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut slot: Value =
        serde_json::from_str(&v.body).map_err(|_| Error::internal("stored slot unreadable"))?;
    let now = slot.get("status").and_then(Value::as_str).unwrap_or("");
    if now == status || matches!(now, "busy-unavailable" | "entered-in-error") {
        return Ok(());
    }
    slot["status"] = json!(status);
    tx.write_consequence("Slot", slot_id, slot, Some(v.version_id))
        .await?;
    Ok(())
}

/// Checks and completes an Appointment before it is stored.
pub async fn prepare(tx: &mut Tx, w: &Write<'_>, body: &mut Value) -> Result<(), Error> {
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let patients = actors(body, "Patient");
    if patients.len() > 1 {
        return Err(Error::invalid(
            "Appointment.participant",
            "an appointment is for one patient",
        ));
    }
    let old = if w.kind == WriteKind::Update {
        match tx.read("Appointment", w.id).await {
            Ok(v) if !v.deleted => serde_json::from_str::<Value>(&v.body).ok(),
            _ => None,
        }
    } else {
        None
    };
    let was_active = old
        .as_ref()
        .and_then(|o| o.get("status").and_then(Value::as_str))
        .is_some_and(is_active);
    let old_window = old.as_ref().and_then(window);
    let slot = slot_of(body);
    if body
        .get("slot")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        > 1
    {
        return Err(Error::invalid(
            "Appointment.slot",
            "an appointment is on one slot",
        ));
    }
    if let Some(slot_id) = &slot {
        let v = tx.read("Slot", slot_id).await.map_err(|_| {
            Error::invalid(
                "Appointment.slot[0].reference",
                format!("Slot/{slot_id} is not known"),
            )
        })?;
        let s: Value =
            serde_json::from_str(&v.body).map_err(|_| Error::internal("stored slot unreadable"))?;
        let (start, end) = (s["start"].clone(), s["end"].clone());
        if body.get("start").is_none() && body.get("end").is_none() {
            body["start"] = start.clone();
            body["end"] = end.clone();
        }
        let same = |a: &Value, b: &Value| match (
            a.as_str().and_then(calendar::parse_instant),
            b.as_str().and_then(calendar::parse_instant),
        ) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        };
        if !same(&body["start"], &start) || !same(&body["end"], &end) {
            return Err(Error::invalid(
                "Appointment.start",
                format!("the appointment's time is not the time of Slot/{slot_id}"),
            ));
        }
        let owner = ext(&s, SLOT_PRACTITIONER)
            .and_then(|e| e.pointer("/valueReference/reference"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !owner.is_empty() && !actors(body, "Practitioner").contains(&owner) {
            if w.origin == Origin::Client && body.get("participant").is_some() {
                return Err(Error::invalid(
                    "Appointment.participant",
                    format!(
                        "an appointment on Slot/{slot_id} has its practitioner, {owner}, as a participant"
                    ),
                ));
            }
            let mut parts = body
                .get("participant")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            parts.push(json!({"actor": {"reference": owner}, "status": "accepted"}));
            body["participant"] = Value::Array(parts);
        }
        let slot_mode = schedule::mode_of(&s);
        match (schedule::mode_of(body), slot_mode) {
            (Some(asked), Some(offered)) if asked != offered => {
                return Err(Error::new(
                    codes::BUSINESS_RULE,
                    format!(
                        "Slot/{slot_id} is for {} visits, not {}",
                        offered.as_str(),
                        asked.as_str()
                    ),
                )
                .at("Appointment.extension"));
            }
            (None, Some(offered)) => {
                set_ext(body, MODE, Some(json!({"valueCode": offered.as_str()})));
            }
            _ => {}
        }
        let slot_status = s.get("status").and_then(Value::as_str).unwrap_or("");
        let same_slot = old.as_ref().and_then(slot_of).as_deref() == Some(slot_id.as_str());
        if is_active(&status)
            && !(was_active && same_slot)
            && matches!(slot_status, "busy-unavailable" | "entered-in-error")
        {
            return Err(Error::new(
                codes::TIME_TAKEN,
                format!("Slot/{slot_id} is not open for booking ({slot_status})"),
            ));
        }
    }
    if patients.is_empty() && is_active(&status) {
        return Err(Error::invalid(
            "Appointment.participant",
            "an active appointment names its patient (Patient/<id>)",
        ));
    }
    if let Some(m) = ext(body, MODE)
        .and_then(|e| e.get("valueCode"))
        .and_then(Value::as_str)
        && Mode::parse(m).is_none()
    {
        return Err(Error::invalid(
            "Appointment.extension",
            format!("the visit mode is `video` or `in-person`, not `{m}`"),
        ));
    }
    let win = match (body.get("start"), body.get("end")) {
        (None, None) => None,
        (Some(_), Some(_)) => Some(window(body).ok_or_else(|| {
            Error::invalid(
                "Appointment.start",
                "start and end are instants with a time zone",
            )
        })?),
        _ => {
            return Err(Error::invalid(
                "Appointment.end",
                "an appointment gives both its start and its end, or neither",
            ));
        }
    };
    if let Some((start, end)) = win {
        if end <= start {
            return Err(Error::invalid(
                "Appointment.end",
                "the end is not after the start",
            ));
        }
        if end - start > chrono::Duration::hours(24) {
            return Err(Error::invalid(
                "Appointment.end",
                "an appointment lasts at most a day",
            ));
        }
        // A visit newly made, or moved, cannot be in the past.
        let newly = matches!(status.as_str(), "pending" | "booked")
            && (!was_active || old_window != Some((start, end)));
        if newly && end <= calendar::now() {
            return Err(Error::new(
                codes::BUSINESS_RULE,
                "the appointment's time is past: book a slot that has not ended",
            )
            .at("Appointment.start"));
        }
    } else if is_active(&status) && !matches!(status.as_str(), "pending") {
        return Err(Error::invalid(
            "Appointment.start",
            "a booked appointment has a start and an end",
        ));
    }
    if status != "pending" {
        set_ext(body, EXPIRES, None);
    }
    // The slot it leaves is free again.
    if let Some(old_slot) = old.as_ref().and_then(slot_of)
        && slot.as_deref() != Some(old_slot.as_str())
        && was_active
    {
        set_slot(tx, &old_slot, "free").await?;
    }
    Ok(())
}

/// After the write: the time claims and the slot's status.
pub async fn check(tx: &mut Tx, body: &Value) -> Result<(), Error> {
    check_references(tx, body).await?;
    let id = body.get("id").and_then(Value::as_str).unwrap_or("");
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    let mut claims = Vec::new();
    if is_active(status)
        && let Some((start, end)) = window(body)
    {
        let (lo, hi) = (calendar::micros(start), calendar::micros(end));
        for holder in actors(body, "Practitioner")
            .into_iter()
            .chain(actors(body, "Patient"))
        {
            claims.push((holder, lo, hi));
        }
    }
    tx.claim_times("Appointment", id, &claims).await?;
    if status == "booked"
        && let Some(start) = body.get("start").and_then(Value::as_str)
    {
        crate::reminders::enqueue(tx, id, start).await?;
    }
    if let Some(slot) = slot_of(body) {
        set_slot(tx, &slot, slot_status_for(status)).await?;
    }
    Ok(())
}
