//! A practitioner's schedule (FHIR `Schedule`) and the slots it makes (FHIR `Slot`).
//!
//! FHIR's Schedule says whose calendar it is and what it offers (`serviceType`, `specialty`),
//! not when they work. The working plan is the hospital's extension `urn:hospital:schedule`:
//!
//! ```json
//! {"url": "urn:hospital:schedule", "extension": [
//!   {"url": "mode", "valueCode": "video"},                 // or "in-person"
//!   {"url": "slot-minutes", "valueInteger": 20},
//!   {"url": "horizon-days", "valueInteger": 14},           // slots kept generated this far ahead
//!   {"url": "available", "extension": [                    // repeated: working hours
//!     {"url": "day", "valueCode": "mon"}, {"url": "day", "valueCode": "tue"},
//!     {"url": "start", "valueTime": "08:00:00"}, {"url": "end", "valueTime": "11:30:00"}]},
//!   {"url": "break", "extension": [                        // repeated: every working day
//!     {"url": "start", "valueTime": "09:40:00"}, {"url": "end", "valueTime": "10:00:00"}]},
//!   {"url": "day-off", "valueDate": "2026-12-24"}          // repeated
//! ]}
//! ```
//!
//! Times are wall-clock times in Vietnam. No slot is made on a public holidays
//! ([`crate::calendar`]) or a day off, across a break, or past the end of the working hours.
//! A slot's id is its schedule's id and its start (`<schedule>-202612030800`), so making the
//! slots again makes nothing twice, on any replica.

use crate::calendar;
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Weekday};
use hospital_core::{Error, Tx};
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub const SCHEDULE: &str = "urn:hospital:schedule";
/// On a Slot: the practitioner whose schedule it is (what `Slot?practitioner=` searches).
pub const SLOT_PRACTITIONER: &str = "urn:hospital:slot:practitioner";
/// On a Slot and an Appointment: `video` or `in-person`.
pub const MODE: &str = "urn:hospital:visit-mode";

/// Bounds on one schedule, so that making its slots is bounded work.
pub const MAX_HORIZON_DAYS: u32 = 60;
pub const MAX_AVAILABLE: usize = 21;
pub const MAX_BREAKS: usize = 10;
pub const MAX_DAYS_OFF: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Video,
    InPerson,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Video => "video",
            Mode::InPerson => "in-person",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "video" => Some(Mode::Video),
            "in-person" => Some(Mode::InPerson),
            _ => None,
        }
    }
}

/// When a practitioner works, from a Schedule.
#[derive(Debug, Clone)]
pub struct Plan {
    pub practitioner: String,
    pub mode: Mode,
    pub slot_minutes: u32,
    pub horizon_days: u32,
    /// Working hours: the weekdays (bit 0 Monday … bit 6 Sunday), from, to.
    pub available: Vec<(u8, NaiveTime, NaiveTime)>,
    pub breaks: Vec<(NaiveTime, NaiveTime)>,
    pub days_off: BTreeSet<NaiveDate>,
}

fn ext<'a>(v: &'a Value, url: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
    let url = url.to_owned();
    v.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| e.get("url").and_then(Value::as_str) == Some(url.as_str()))
}

fn time(v: &Value, path: &str) -> Result<NaiveTime, Error> {
    let s = v
        .get("valueTime")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(path, "a valueTime (HH:MM:SS) is required"))?;
    NaiveTime::parse_from_str(s, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        .map_err(|_| Error::invalid(path, format!("`{s}` is not a time of day")))
}

fn window(v: &Value, path: &str) -> Result<(NaiveTime, NaiveTime), Error> {
    let start = ext(v, "start")
        .next()
        .ok_or_else(|| Error::invalid(path, "a start is required"))?;
    let end = ext(v, "end")
        .next()
        .ok_or_else(|| Error::invalid(path, "an end is required"))?;
    let (start, end) = (
        time(start, &format!("{path}.start"))?,
        time(end, &format!("{path}.end"))?,
    );
    if end <= start {
        return Err(Error::invalid(path, "the end is not after the start"));
    }
    Ok((start, end))
}

fn weekday(code: &str) -> Option<Weekday> {
    Some(match code {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// The practitioner a resource's `actor` names (`Practitioner/<id>`), if exactly one.
pub fn practitioner_of(schedule: &Value) -> Option<String> {
    let mut found = schedule
        .get("actor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("reference").and_then(Value::as_str))
        .filter(|r| r.starts_with("Practitioner/"));
    let first = found.next()?.to_owned();
    found.next().is_none().then_some(first)
}

/// The working plan of a Schedule, checked.
pub fn plan_of(schedule: &Value) -> Result<Plan, Error> {
    let practitioner = practitioner_of(schedule).ok_or_else(|| {
        Error::invalid(
            "Schedule.actor",
            "a schedule names exactly one practitioner (Practitioner/<id>)",
        )
    })?;
    let root = ext(schedule, SCHEDULE).next().ok_or_else(|| {
        Error::invalid(
            "Schedule.extension",
            format!("the working plan ({SCHEDULE}) is required"),
        )
    })?;
    let at = |p: &str| format!("Schedule.extension({SCHEDULE}).{p}");
    let mode = ext(root, "mode")
        .next()
        .and_then(|m| m.get("valueCode").and_then(Value::as_str))
        .and_then(Mode::parse)
        .ok_or_else(|| Error::invalid(at("mode"), "the mode is `video` or `in-person`"))?;
    let int = |name: &str, lo: i64, hi: i64, default: Option<i64>| -> Result<i64, Error> {
        match ext(root, name).next() {
            Some(v) => v
                .get("valueInteger")
                .and_then(Value::as_i64)
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| Error::invalid(at(name), format!("an integer from {lo} to {hi}"))),
            None => default.ok_or_else(|| Error::invalid(at(name), "required")),
        }
    };
    let slot_minutes = int("slot-minutes", 5, 240, None)? as u32;
    let horizon_days = int("horizon-days", 1, MAX_HORIZON_DAYS as i64, Some(14))? as u32;
    let mut available = Vec::new();
    for (i, a) in ext(root, "available").enumerate() {
        let path = at(&format!("available[{i}]"));
        let mut days = 0u8;
        for d in ext(a, "day") {
            let code = d.get("valueCode").and_then(Value::as_str).unwrap_or("");
            let w = weekday(code).ok_or_else(|| {
                Error::invalid(format!("{path}.day"), format!("`{code}` is not mon … sun"))
            })?;
            days |= 1 << w.num_days_from_monday();
        }
        if days == 0 {
            return Err(Error::invalid(path, "name at least one day"));
        }
        let (start, end) = window(a, &path)?;
        available.push((days, start, end));
    }
    if available.is_empty() || available.len() > MAX_AVAILABLE {
        return Err(Error::invalid(
            at("available"),
            format!("1 to {MAX_AVAILABLE} spans of working hours"),
        ));
    }
    let breaks = ext(root, "break")
        .enumerate()
        .map(|(i, b)| window(b, &at(&format!("break[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    if breaks.len() > MAX_BREAKS {
        return Err(Error::invalid(
            at("break"),
            format!("at most {MAX_BREAKS} breaks"),
        ));
    }
    let mut days_off = BTreeSet::new();
    for (i, d) in ext(root, "day-off").enumerate() {
        let s = d.get("valueDate").and_then(Value::as_str).unwrap_or("");
        days_off.insert(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            Error::invalid(at(&format!("day-off[{i}]")), "a valueDate (YYYY-MM-DD)")
        })?);
    }
    if days_off.len() > MAX_DAYS_OFF {
        return Err(Error::invalid(
            at("day-off"),
            format!("at most {MAX_DAYS_OFF} days off"),
        ));
    }
    Ok(Plan {
        practitioner,
        mode,
        slot_minutes,
        horizon_days,
        available,
        breaks,
        days_off,
    })
}

impl Plan {
    /// The slots of `day` (start, end), in Vietnam, in order.
    pub fn slots_on(&self, day: NaiveDate) -> Vec<(DateTime<FixedOffset>, DateTime<FixedOffset>)> {
        if calendar::is_holiday(day) || self.days_off.contains(&day) {
            return Vec::new();
        }
        let len = Duration::minutes(i64::from(self.slot_minutes));
        let mut out = Vec::new();
        for (days, start, end) in &self.available {
            if days & (1 << day.weekday().num_days_from_monday()) == 0 {
                continue;
            }
            let mut t = day.and_time(*start);
            let stop = day.and_time(*end);
            while t + len <= stop {
                let slot_end = t + len;
                // A slot that would run into a break starts again at its end.
                if let Some((_, b_end)) = self
                    .breaks
                    .iter()
                    .find(|(bs, be)| t < day.and_time(*be) && slot_end > day.and_time(*bs))
                {
                    t = day.and_time(*b_end).max(t + Duration::minutes(1));
                    continue;
                }
                out.push((calendar::at(t), calendar::at(slot_end)));
                t = slot_end;
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// A slot's id: its schedule's and its start in Vietnam (`<schedule>-202612030800`).
pub fn slot_id(schedule_id: &str, start: DateTime<FixedOffset>) -> String {
    format!(
        "{schedule_id}-{}",
        start
            .with_timezone(&calendar::vietnam())
            .format("%Y%m%d%H%M")
    )
}

/// The Slot a schedule makes for `[start, end)`: free, with what the schedule offers.
pub fn slot_body(
    schedule_id: &str,
    schedule: &Value,
    plan: &Plan,
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
) -> Value {
    let mut slot = json!({
        "resourceType": "Slot",
        "schedule": {"reference": format!("Schedule/{schedule_id}")},
        "status": "free",
        "start": calendar::instant(start),
        "end": calendar::instant(end),
    });
    for k in ["serviceCategory", "serviceType", "specialty"] {
        if let Some(v) = schedule.get(k) {
            slot[k] = v.clone();
        }
    }
    slot_derived(&mut slot, plan);
    slot
}

/// What a Slot takes from its schedule, whoever writes it: the practitioner and the mode.
pub fn slot_derived(slot: &mut Value, plan: &Plan) {
    let mut exts: Vec<Value> = slot
        .get("extension")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            !matches!(
                e.get("url").and_then(Value::as_str),
                Some(SLOT_PRACTITIONER | MODE)
            )
        })
        .collect();
    exts.push(json!({"url": SLOT_PRACTITIONER,
        "valueReference": {"reference": plan.practitioner}}));
    exts.push(json!({"url": MODE, "valueCode": plan.mode.as_str()}));
    slot["extension"] = Value::Array(exts);
}

/// The mode a Slot or Appointment carries.
pub fn mode_of(resource: &Value) -> Option<Mode> {
    ext(resource, MODE)
        .next()?
        .get("valueCode")
        .and_then(Value::as_str)
        .and_then(Mode::parse)
}

/// Makes the schedule's missing slots from `from` to the end of its horizon, in one
/// transaction per day under a lock on the schedule (so replicas making them at once make
/// each once). Slots in the past are never made. Returns how many were made.
pub async fn generate(
    platform: &hospital_core::Platform,
    caller: &hospital_core::Caller,
    schedule_id: &str,
    schedule: &Value,
    from: DateTime<FixedOffset>,
) -> Result<usize, Error> {
    if schedule.get("active").and_then(Value::as_bool) == Some(false) {
        return Ok(0);
    }
    let plan = plan_of(schedule)?;
    let first = calendar::day_of(from);
    let mut made = 0;
    for d in 0..plan.horizon_days {
        let day = first + Duration::days(i64::from(d));
        let wanted: Vec<_> = plan
            .slots_on(day)
            .into_iter()
            .filter(|(start, _)| *start > from)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let ids: Vec<String> = wanted
            .iter()
            .map(|(s, _)| slot_id(schedule_id, *s))
            .collect();
        let mut tx = platform.begin(caller).await?;
        tx.lock(&format!("slots-of:Schedule/{schedule_id}")).await?;
        let targets: Vec<(&str, &str)> = ids.iter().map(|i| ("Slot", i.as_str())).collect();
        let missing: BTreeSet<String> = tx
            .missing(&targets)
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        if missing.is_empty() {
            continue;
        }
        for ((start, end), id) in wanted.iter().zip(&ids) {
            if missing.contains(id) {
                let body = slot_body(schedule_id, schedule, &plan, *start, *end);
                platform
                    .writer()
                    .create(
                        &mut tx,
                        "Slot",
                        Some(id),
                        body,
                        hospital_core::rules::Checks::Now,
                    )
                    .await?;
                made += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(made)
}

/// A Schedule's rule: its plan is well formed.
pub async fn prepare_schedule(_tx: &mut Tx, body: &mut Value) -> Result<(), Error> {
    plan_of(body)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Value {
        json!({"resourceType": "Schedule", "actor": [{"reference": "Practitioner/p1"}],
            "extension": [{"url": SCHEDULE, "extension": [
                {"url": "mode", "valueCode": "video"},
                {"url": "slot-minutes", "valueInteger": 20},
                {"url": "available", "extension": [
                    {"url": "day", "valueCode": "mon"}, {"url": "day", "valueCode": "thu"},
                    {"url": "start", "valueTime": "08:00:00"}, {"url": "end", "valueTime": "10:30:00"}]},
                {"url": "available", "extension": [
                    {"url": "day", "valueCode": "thu"},
                    {"url": "start", "valueTime": "13:30:00"}, {"url": "end", "valueTime": "14:30:00"}]},
                {"url": "break", "extension": [
                    {"url": "start", "valueTime": "09:00:00"}, {"url": "end", "valueTime": "09:10:00"}]},
                {"url": "day-off", "valueDate": "2026-12-07"}]}]})
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn starts(plan: &Plan, d: &str) -> Vec<String> {
        plan.slots_on(day(d))
            .iter()
            .map(|(s, _)| s.format("%H:%M").to_string())
            .collect()
    }

    #[test]
    fn slots_follow_the_hours_and_step_over_breaks() {
        let plan = plan_of(&schedule()).unwrap();
        // Thursday 3 December 2026: morning and afternoon; 09:00 would run into the break.
        assert_eq!(
            starts(&plan, "2026-12-03"),
            [
                "08:00", "08:20", "08:40", "09:10", "09:30", "09:50", "10:10", "13:30", "13:50",
                "14:10"
            ]
        );
        assert!(starts(&plan, "2026-12-02").is_empty(), "a Wednesday");
        assert!(starts(&plan, "2026-12-07").is_empty(), "a day off");
        assert_eq!(starts(&plan, "2026-09-03").len(), 10);
        assert!(
            starts(&plan, "2027-05-03").is_empty(),
            "a compensatory holiday Monday"
        );
        let (s, e) = plan.slots_on(day("2026-12-03"))[0];
        assert_eq!(calendar::instant(s), "2026-12-03T08:00:00+07:00");
        assert_eq!((e - s).num_minutes(), 20);
        assert_eq!(slot_id("sch1", s), "sch1-202612030800");
    }

    #[test]
    fn a_bad_plan_is_refused_naming_the_element() {
        let mut s = schedule();
        s["extension"][0]["extension"][1]["valueInteger"] = json!(2);
        assert!(
            plan_of(&s)
                .unwrap_err()
                .path
                .unwrap()
                .ends_with("slot-minutes")
        );
        let mut s = schedule();
        s["extension"][0]["extension"][2]["extension"][3]["valueTime"] = json!("07:00:00");
        assert!(plan_of(&s).unwrap_err().message.contains("not after"));
        let mut s = schedule();
        s["actor"] = json!([{"reference": "Location/l1"}]);
        assert!(plan_of(&s).is_err());
        let mut s = schedule();
        s["extension"][0]["extension"][0]["valueCode"] = json!("phone");
        assert!(plan_of(&s).is_err());
    }
}
