//! The telemedicine service's rules on its types, one door for each: every write of a
//! Schedule, Slot or Appointment, by REST, Bundle, gRPC or operation, comes through
//! [`TelemedicineRules`].

use async_trait::async_trait;
use hospital_core::rules::check_references;
use hospital_core::{Error, ResourceRules, Tx, Write};
use serde_json::Value;

pub struct TelemedicineRules;

#[async_trait]
impl ResourceRules for TelemedicineRules {
    async fn prepare(&self, tx: &mut Tx, w: &Write<'_>, body: &mut Value) -> Result<(), Error> {
        match w.resource_type {
            "Schedule" => crate::schedule::prepare_schedule(tx, body).await,
            "Slot" => prepare_slot(tx, body).await,
            "Appointment" => crate::appointment::prepare(tx, w, body).await,
            _ => Ok(()),
        }
    }

    async fn check(&self, tx: &mut Tx, resource_type: &str, body: &Value) -> Result<(), Error> {
        match resource_type {
            "Appointment" => crate::appointment::check(tx, body).await,
            _ => check_references(tx, body).await,
        }
    }
}

/// A Slot is on a stored Schedule, from which it takes its practitioner and mode; it ends
/// after it starts.
async fn prepare_slot(tx: &mut Tx, body: &mut Value) -> Result<(), Error> {
    let schedule_id = body
        .pointer("/schedule/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Schedule/"))
        .ok_or_else(|| Error::invalid("Slot.schedule", "a slot is on a Schedule/<id>"))?
        .to_owned();
    let v = tx.read("Schedule", &schedule_id).await.map_err(|_| {
        Error::invalid(
            "Slot.schedule.reference",
            format!("Schedule/{schedule_id} is not known"),
        )
    })?;
    let schedule: Value =
        serde_json::from_str(&v.body).map_err(|_| Error::internal("stored schedule unreadable"))?;
    let plan = crate::schedule::plan_of(&schedule)?;
    let start = body
        .get("start")
        .and_then(Value::as_str)
        .and_then(crate::calendar::parse_instant);
    let end = body
        .get("end")
        .and_then(Value::as_str)
        .and_then(crate::calendar::parse_instant);
    match (start, end) {
        (Some(s), Some(e)) if e > s => {}
        (Some(_), Some(_)) => {
            return Err(Error::invalid("Slot.end", "the end is not after the start"));
        }
        _ => {
            return Err(Error::invalid(
                "Slot.start",
                "start and end are instants with a time zone",
            ));
        }
    }
    crate::schedule::slot_derived(body, &plan);
    Ok(())
}
