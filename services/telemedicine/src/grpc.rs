//! The telemedicine gRPC server (`hospital.telemedicine.v1.Telemedicine`). It only translates
//! prost messages to telemedicine's rules ([`Booking`]) and back; authentication is the shared
//! layer, and every call is audited before its answer leaves.

use crate::appointment;
use crate::booking::{Ask, Booking};
use crate::calendar;
use hospital_core::auth::{Action, Role};
use hospital_core::store::{SearchQuery, Version, is_valid_id};
use hospital_core::{
    AuditAction, Caller, Error, Interaction, Touched, authorize, codes, reveal, visible,
};
use hospital_grpc::{Call, caller};
use hospital_proto::telemedicine::v1 as pb;
use serde_json::Value;
use tonic::{Request, Response, Status};

const GET: Interaction = Interaction::Call("GetAppointment", AuditAction::R);
const DAY: Interaction = Interaction::Call("ListPractitionerDay", AuditAction::R);
const BOOK: Interaction = Interaction::Call("BookAppointment", AuditAction::C);
const CONFIRM: Interaction = Interaction::Call("ConfirmPayment", AuditAction::U);

pub struct TelemedicineGrpc {
    pub booking: Booking,
}

impl TelemedicineGrpc {
    pub fn into_server(self) -> pb::telemedicine_server::TelemedicineServer<TelemedicineGrpc> {
        pb::telemedicine_server::TelemedicineServer::new(self)
    }

    fn call<'a>(&'a self, caller: &'a Caller, interaction: Interaction) -> Call<'a> {
        Call {
            platform: &self.booking.platform,
            caller,
            interaction,
            resource_type: "Appointment",
        }
    }
}

fn valid(id: &str, field: &str) -> Result<(), Error> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{field} is not a valid FHIR id"),
        ))
    }
}

/// An appointment as the contract gives it.
pub fn record(v: &Version) -> Result<pb::AppointmentRecord, Error> {
    let a: Value = serde_json::from_str(&v.body)
        .map_err(|_| Error::internal("stored appointment unreadable"))?;
    let s = |k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let strip = |r: String, t: &str| r.strip_prefix(&format!("{t}/")).unwrap_or(&r).to_owned();
    Ok(pb::AppointmentRecord {
        id: v.id.clone(),
        version_id: v.version_id,
        status: s("status"),
        start: s("start"),
        end: s("end"),
        patient_id: strip(appointment::patient_of(&a).unwrap_or_default(), "Patient"),
        practitioner_ids: appointment::actors(&a, "Practitioner")
            .into_iter()
            .map(|p| strip(p, "Practitioner"))
            .collect(),
        slot_id: appointment::slot_of(&a).unwrap_or_default(),
        mode: crate::schedule::mode_of(&a)
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        invoice_id: appointment::invoice_of(&a).unwrap_or_default(),
        payment_page_url: appointment::ext(&a, appointment::PAYMENT_PAGE)
            .and_then(|e| e.get("valueUrl"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        resource_json: v.body.clone(),
    })
}

#[tonic::async_trait]
impl pb::telemedicine_server::Telemedicine for TelemedicineGrpc {
    async fn get_appointment(
        &self,
        request: Request<pb::GetAppointmentRequest>,
    ) -> Result<Response<pb::AppointmentRecord>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().appointment_id;
        let result = async {
            authorize(&caller, Action::Read, "Appointment")?;
            valid(&id, "appointment_id")?;
            let store = self.booking.platform.store();
            let v = reveal(
                &caller,
                "Appointment",
                &id,
                store.read("Appointment", &id).await,
            )?;
            Ok((record(&v)?, Touched::of(&[v])))
        }
        .await;
        self.call(&caller, GET)
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn list_practitioner_day(
        &self,
        request: Request<pb::ListPractitionerDayRequest>,
    ) -> Result<Response<pb::PractitionerDay>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            authorize(&caller, Action::Read, "Appointment")?;
            valid(&r.practitioner_id, "practitioner_id")?;
            let day = chrono::NaiveDate::parse_from_str(&r.date, "%Y-%m-%d")
                .map_err(|_| Error::invalid("date", "a day is YYYY-MM-DD"))?;
            let [from, to] = calendar::day_search(day);
            let mut q = SearchQuery::new(
                "Appointment",
                vec![
                    (
                        "practitioner".into(),
                        format!("Practitioner/{}", r.practitioner_id),
                    ),
                    ("date".into(), from),
                    ("date".into(), to),
                    ("_sort".into(), "date".into()),
                    ("_count".into(), "500".into()),
                ],
            );
            q.compartment = caller.principal.compartment().map(str::to_owned);
            let found = self.booking.platform.store().search(&q).await?.matches;
            let shown: Vec<Version> = found.into_iter().filter(|v| visible(&caller, v)).collect();
            let appointments = shown.iter().map(record).collect::<Result<Vec<_>, _>>()?;
            Ok((
                pb::PractitionerDay {
                    practitioner_id: r.practitioner_id.clone(),
                    date: r.date.clone(),
                    appointments,
                },
                Touched::of(&shown),
            ))
        }
        .await;
        self.call(&caller, DAY)
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn book_appointment(
        &self,
        request: Request<pb::BookAppointmentRequest>,
    ) -> Result<Response<pb::AppointmentRecord>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let ask = Ask {
            slot: nonempty(r.slot_id),
            patient: nonempty(r.patient_id),
            reason: nonempty(r.reason),
            appointment: None,
            mode: nonempty(r.mode),
        };
        let result = async {
            let (v, touched) = self.booking.book(&caller, &ask).await?;
            Ok((record(&v)?, touched))
        }
        .await;
        self.call(&caller, BOOK)
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn confirm_payment(
        &self,
        request: Request<pb::ConfirmPaymentRequest>,
    ) -> Result<Response<pb::AppointmentRecord>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            if caller.principal.role != Role::Service {
                return Err(Error::new(
                    codes::ROLE_FORBIDS,
                    "payments are confirmed by the billing service",
                ));
            }
            valid(&r.appointment_id, "appointment_id")?;
            valid(&r.invoice_id, "invoice_id")?;
            let bill = self.booking.payments.get(&r.invoice_id).await?;
            if bill.status != "balanced" {
                return Err(Error::new(
                    codes::BUSINESS_RULE,
                    format!("Invoice/{} is {}, not paid", r.invoice_id, bill.status),
                ));
            }
            let v = self
                .booking
                .confirm_paid(&r.appointment_id, &r.invoice_id)
                .await?;
            Ok((record(&v)?, Touched::of(std::slice::from_ref(&v))))
        }
        .await;
        self.call(&caller, CONFIRM)
            .audited(result)
            .await
            .map(Response::new)
    }
}
