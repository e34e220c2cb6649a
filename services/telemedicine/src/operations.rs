//! Telemedicine's FHIR operations: each reads its `Parameters` (`slot`, `patient`, `reason`,
//! `appointment`, `mode`) and calls the rule in [`crate::booking`]; each returns the
//! Appointment.
//!
//! | operation | who | rule |
//! |---|---|---|
//! | `POST Appointment/$hold` | the patient (own), staff | [`Booking::hold`] |
//! | `POST Appointment/$book` | the patient (own), staff | [`Booking::book`] |
//! | `POST Appointment/{id}/$cancel` (`reason`) | the patient (own), staff | [`Booking::cancel`] |
//! | `POST Appointment/{id}/$reschedule` (`slot`) | the patient (own), staff | [`Booking::reschedule`] |

use crate::booking::{Ask, Booking};
use async_trait::async_trait;
use hospital_core::operation::parameter_text;
use hospital_core::{AuditAction, Caller, Error, Operation, Touched, codes};
use serde_json::Value;

/// Which booking operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hold,
    Book,
    Cancel,
    Reschedule,
}

pub struct BookingOperation {
    pub kind: Kind,
    pub booking: Booking,
}

const NAMES: &[&str] = &["slot", "patient", "reason", "appointment", "mode"];

fn ask_of(input: &Value) -> Result<Ask, Error> {
    if input.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(Error::new(
            codes::MALFORMED_REQUEST,
            "the body is a FHIR Parameters resource",
        ));
    }
    for p in input
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if !NAMES.contains(&name) {
            return Err(Error::new(
                codes::MALFORMED_REQUEST,
                format!("unknown parameter `{name}`: the parameters are slot, patient, reason, appointment, mode"),
            )
            .at(format!("Parameters.{name}")));
        }
    }
    let text = |n: &str| parameter_text(input, n).map(str::to_owned);
    if let Some(r) = text("reason")
        && r.chars().count() > 500
    {
        return Err(Error::invalid(
            "Parameters.reason",
            "a reason is at most 500 characters",
        ));
    }
    Ok(Ask {
        slot: text("slot"),
        patient: text("patient"),
        reason: text("reason"),
        appointment: text("appointment"),
        mode: text("mode"),
    })
}

#[async_trait]
impl Operation for BookingOperation {
    fn resource_type(&self) -> &'static str {
        "Appointment"
    }
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Hold => "$hold",
            Kind::Book => "$book",
            Kind::Cancel => "$cancel",
            Kind::Reschedule => "$reschedule",
        }
    }
    fn action(&self) -> AuditAction {
        match self.kind {
            Kind::Hold | Kind::Book => AuditAction::C,
            Kind::Cancel | Kind::Reschedule => AuditAction::U,
        }
    }
    fn posted(&self) -> bool {
        true
    }
    fn on_type(&self) -> bool {
        matches!(self.kind, Kind::Hold | Kind::Book)
    }

    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let input = input.unwrap_or_else(|| serde_json::json!({"resourceType": "Parameters"}));
        let ask = ask_of(&input)?;
        let (v, touched) = match self.kind {
            Kind::Hold => self.booking.hold(caller, &ask).await?,
            Kind::Book => self.booking.book(caller, &ask).await?,
            Kind::Cancel => {
                self.booking
                    .cancel(caller, id, ask.reason.as_deref())
                    .await?
            }
            Kind::Reschedule => self.booking.reschedule(caller, id, &ask).await?,
        };
        let body = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored appointment unreadable"))?;
        Ok((body, touched))
    }
}

/// `POST Appointment/{id}/$join` (`consent`, valueBoolean: the patient's, asked before their
/// first join): the same join as the visit page's, for API clients (a
/// patient's or practitioner's bearer token). Returns `Parameters`: `token`, `expires`
/// (valueInteger, Unix time), `role`, `iceServers` (valueString, JSON as WebRTC takes it) and
/// `signalling` (valueUrl, the WebSocket).
pub struct Join {
    pub visits: crate::visit::Visits,
    pub public_url: String,
}

#[async_trait]
impl Operation for Join {
    fn resource_type(&self) -> &'static str {
        "Appointment"
    }
    fn name(&self) -> &'static str {
        "$join"
    }
    fn action(&self) -> AuditAction {
        AuditAction::E
    }
    fn posted(&self) -> bool {
        true
    }

    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let consent = input
            .as_ref()
            .and_then(|i| hospital_core::operation::parameter(i, "consent"))
            .and_then(|p| p.get("valueBoolean"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (j, touched) = self.visits.join(caller, id, consent).await?;
        let ws = format!(
            "{}/visit/{id}/ws",
            self.public_url
                .replacen("http://", "ws://", 1)
                .replacen("https://", "wss://", 1)
        );
        Ok((
            serde_json::json!({"resourceType": "Parameters", "parameter": [
                {"name": "token", "valueString": j.token},
                {"name": "expires", "valueInteger": j.expires},
                {"name": "role", "valueCode": j.participant.role},
                {"name": "iceServers", "valueString": j.ice_servers.to_string()},
                {"name": "signalling", "valueUrl": ws},
            ]}),
            touched,
        ))
    }
}

/// `POST Appointment/{id}/$end`: the practitioner ends the visit (the same rule as the visit
/// page's button): the Encounter closed, the appointment `fulfilled`. Returns the Appointment.
pub struct End(pub crate::visit::Visits);

#[async_trait]
impl Operation for End {
    fn resource_type(&self) -> &'static str {
        "Appointment"
    }
    fn name(&self) -> &'static str {
        "$end"
    }
    fn action(&self) -> AuditAction {
        AuditAction::U
    }
    fn posted(&self) -> bool {
        true
    }

    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        _input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        self.0.end(caller, id).await
    }
}
