//! The telemedicine indicators the hospital reports (the province's digital-transformation
//! figures), for admins over any period of Vietnamese calendar days: the share of appointments
//! booked online (by the patient rather than at a desk), the number of telemedicine sessions
//! (video visits that took place), and the no-show rate (of visits that were due, those nobody
//! came to). `GET /fhir/Appointment/$indicators?start=YYYY-MM-DD&end=YYYY-MM-DD` (`end`
//! included) answers `Parameters`.

use crate::appointment::{BOOKED_BY, ext};
use crate::calendar;
use async_trait::async_trait;
use chrono::NaiveDate;
use hospital_core::auth::Role;
use hospital_core::operation::parameter_text;
use hospital_core::store::SearchQuery;
use hospital_core::{AuditAction, Caller, Error, Operation, Platform, Touched, codes};
use serde_json::{Value, json};

/// At most this many appointments are read for one figure; a longer period is refused.
pub const MAX_APPOINTMENTS: usize = 200_000;
/// The longest period, in days.
pub const MAX_DAYS: i64 = 366;

/// The figures of a period.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Figures {
    pub appointments: u64,
    pub booked_online: u64,
    pub telemedicine_sessions: u64,
    pub fulfilled: u64,
    pub no_shows: u64,
}

impl Figures {
    pub fn online_share(&self) -> f64 {
        ratio(self.booked_online, self.appointments)
    }
    pub fn no_show_rate(&self) -> f64 {
        ratio(self.no_shows, self.no_shows + self.fulfilled)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        ((a as f64 / b as f64) * 10_000.0).round() / 10_000.0
    }
}

/// The figures of the appointments starting from `start` to `end` (days in Vietnam, `end`
/// included). Cancelled and entered-in-error appointments are not counted.
pub async fn figures(
    platform: &Platform,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Figures, Error> {
    if end < start {
        return Err(Error::new(
            codes::INVALID_SEARCH,
            "the period ends before it starts",
        ));
    }
    if (end - start).num_days() >= MAX_DAYS {
        return Err(Error::new(
            codes::BOUND_EXCEEDED,
            format!("a period is at most {MAX_DAYS} days"),
        ));
    }
    let from = calendar::at(start.and_hms_opt(0, 0, 0).unwrap_or_default());
    let to = calendar::at(
        (end + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default(),
    );
    let mut f = Figures::default();
    let mut cursor: Option<String> = None;
    let mut read = 0usize;
    loop {
        let mut params = vec![
            ("date".into(), format!("ge{}", calendar::instant(from))),
            ("date".into(), format!("lt{}", calendar::instant(to))),
            ("_count".into(), "1000".into()),
        ];
        if let Some(c) = &cursor {
            params.push(("_cursor".into(), c.clone()));
        }
        let page = platform
            .store()
            .search(&SearchQuery::new("Appointment", params))
            .await?;
        read += page.matches.len();
        if read > MAX_APPOINTMENTS {
            return Err(Error::new(
                codes::BOUND_EXCEEDED,
                format!("more than {MAX_APPOINTMENTS} appointments: ask for a shorter period"),
            ));
        }
        for v in &page.matches {
            let a: Value = serde_json::from_str(&v.body).unwrap_or(Value::Null);
            let status = a["status"].as_str().unwrap_or("");
            if matches!(
                status,
                "cancelled" | "entered-in-error" | "proposed" | "waitlist"
            ) {
                continue;
            }
            f.appointments += 1;
            if ext(&a, BOOKED_BY).and_then(|e| e["valueCode"].as_str()) == Some("online") {
                f.booked_online += 1;
            }
            match status {
                "fulfilled" => {
                    f.fulfilled += 1;
                    if crate::schedule::mode_of(&a) == Some(crate::schedule::Mode::Video) {
                        f.telemedicine_sessions += 1;
                    }
                }
                "noshow" => f.no_shows += 1,
                _ => {}
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(f)
}

/// `GET Appointment/$indicators` (admins).
pub struct Indicators(pub Platform);

fn day(input: &Value, name: &str) -> Result<NaiveDate, Error> {
    let s = parameter_text(input, name).ok_or_else(|| {
        Error::new(
            codes::MALFORMED_REQUEST,
            format!("`{name}` (YYYY-MM-DD) is required"),
        )
        .at(name)
    })?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        Error::new(codes::MALFORMED_REQUEST, format!("`{name}` is YYYY-MM-DD")).at(name)
    })
}

#[async_trait]
impl Operation for Indicators {
    fn resource_type(&self) -> &'static str {
        "Appointment"
    }
    fn name(&self) -> &'static str {
        "$indicators"
    }
    fn action(&self) -> AuditAction {
        AuditAction::R
    }
    fn on_type(&self) -> bool {
        true
    }

    async fn run(
        &self,
        caller: &Caller,
        _id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        if caller.principal.role != Role::Admin {
            return Err(Error::new(
                codes::ROLE_FORBIDS,
                "the indicators are for administrators",
            ));
        }
        let input = input.unwrap_or(Value::Null);
        let (start, end) = (day(&input, "start")?, day(&input, "end")?);
        let f = figures(&self.0, start, end).await?;
        Ok((
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "start", "valueDate": start.to_string()},
                {"name": "end", "valueDate": end.to_string()},
                {"name": "appointments", "valueInteger": f.appointments},
                {"name": "booked-online", "valueInteger": f.booked_online},
                {"name": "online-share", "valueDecimal": f.online_share()},
                {"name": "telemedicine-sessions", "valueInteger": f.telemedicine_sessions},
                {"name": "no-shows", "valueInteger": f.no_shows},
                {"name": "no-show-rate", "valueDecimal": f.no_show_rate()},
            ]}),
            Touched::default(),
        ))
    }
}
