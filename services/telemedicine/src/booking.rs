//! Booking: holding a slot, booking it (with prepayment for a direct-to-patient video visit),
//! cancelling, rescheduling, and the sweep that keeps appointments honest as time passes.
//! Every door (the FHIR operations, gRPC) comes here; every write goes through the
//! Appointment's rule ([`crate::appointment`]), which is what makes double booking impossible.
//!
//! Who books: a patient for themselves (a patient token), staff for anyone (clinicians, and
//! cashiers working at reception), services.
//!
//! Prepayment: a video visit a patient books is self-pay; it is `pending` (its slot
//! `busy-tentative`) until billing reports its invoice paid, and released with the invoice
//! cancelled if the payment window closes first. In-person visits and staff bookings are
//! prepaid only if configured. Billing is asked over gRPC ([`Payments`]); its payment status is
//! learned by watching the invoice, and, surviving restarts and replicas, by the sweep asking.

use crate::appointment::{self, BOOKED_BY, EXPIRES, INVOICE, PAYMENT_PAGE, set_ext};
use crate::calendar;
use crate::schedule::{self, Mode};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use hospital_core::auth::Role;
use hospital_core::store::{SearchQuery, Version, is_valid_id};
use hospital_core::{Caller, Error, Platform, Touched, Tx, codes};
use serde_json::{Value, json};
use std::sync::Arc;

/// An invoice as telemedicine needs to know it.
#[derive(Debug, Clone)]
pub struct Bill {
    pub id: String,
    /// draft | issued | balanced | cancelled
    pub status: String,
    /// The patient's payment page.
    pub page: String,
}

/// The billing service, as booking needs it.
#[async_trait::async_trait]
pub trait Payments: Send + Sync {
    /// The invoice of a prepaid visit's fee (Appointment `appointment`): `code` of the price
    /// list on `day`, self-pay. Once per `key`.
    async fn invoice(
        &self,
        key: &str,
        appointment: &str,
        patient: &str,
        code: &str,
        day: NaiveDate,
    ) -> Result<Bill, Error>;
    /// The invoice now.
    async fn get(&self, invoice: &str) -> Result<Bill, Error>;
    /// Cancels an unpaid invoice; refused (`PC_03`) once a payment was recorded against it.
    async fn cancel(&self, invoice: &str, reason: &str) -> Result<Bill, Error>;
    /// Releases a paid prepayment whose visit will not take place: its money goes to the
    /// cashier's queue to be refunded or carried to a rebooking.
    async fn release(&self, invoice: &str, reason: &str) -> Result<Bill, Error>;
    /// Waits until the invoice is final (paid or cancelled), or gives up with an error.
    async fn wait_final(&self, invoice: &str) -> Result<Bill, Error>;
}

/// What booking is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hold: Duration,
    pub payment_window: Duration,
    pub prepay_in_person: bool,
    pub prepay_staff: bool,
    /// The price-list code of a video consultation.
    pub video_code: String,
    /// Appointments the sweep reads per page.
    pub sweep_page: usize,
    /// Appointments one pass of the sweep looks at, at most, for each kind of work; the next
    /// pass goes on after them.
    pub sweep_batch: usize,
}

#[derive(Clone)]
pub struct Booking {
    pub platform: Platform,
    pub settings: Settings,
    pub payments: Arc<dyn Payments>,
    /// Where the sweep's next pass goes on from.
    pub places: Arc<SweepPlaces>,
}

/// Where the sweep stopped in each list it works through: a pass looks at a bounded batch,
/// and the next pass goes on after it (from the start again once a list is done), so an
/// appointment far down a long list waits a few passes, never for ever.
#[derive(Debug, Default)]
pub struct SweepPlaces {
    /// Pending appointments whose hold or payment window has closed.
    lapsed: std::sync::Mutex<Option<String>>,
    /// Pending appointments still inside their window: a prepaid one may have been paid.
    waiting: std::sync::Mutex<Option<String>>,
    /// Booked video visits that have begun: ended with nobody joining, they are no-shows.
    begun: std::sync::Mutex<Option<String>>,
}

/// What a booking operation is asked.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub slot: Option<String>,
    pub patient: Option<String>,
    pub reason: Option<String>,
    /// A held appointment to book.
    pub appointment: Option<String>,
    /// `video` or `in-person`: what the booker wants (must be what the slot offers).
    pub mode: Option<String>,
}

/// Whom a caller may book for.
enum Booker {
    /// A patient, for themselves.
    Patient(String),
    /// Staff or a service, for anyone.
    Staff,
}

fn booker(caller: &Caller) -> Result<Booker, Error> {
    match caller.principal.role {
        Role::Patient => caller
            .principal
            .patient
            .clone()
            .map(Booker::Patient)
            .ok_or_else(|| Error::forbidden("the patient token names no patient")),
        Role::Clinician | Role::Cashier | Role::Service => Ok(Booker::Staff),
        Role::Admin => Err(Error::new(
            codes::ROLE_FORBIDS,
            "appointments are booked by patients for themselves, or by clinical and reception staff",
        )),
    }
}

fn id_param(value: &Option<String>, name: &str, rtype: &str) -> Result<Option<String>, Error> {
    let Some(v) = value else { return Ok(None) };
    let id = v.strip_prefix(&format!("{rtype}/")).unwrap_or(v);
    if !is_valid_id(id) {
        return Err(Error::new(
            codes::MALFORMED_REQUEST,
            format!("`{name}` is not a {rtype} reference"),
        )
        .at(name));
    }
    Ok(Some(id.to_owned()))
}

fn body_of(v: &Version) -> Result<Value, Error> {
    serde_json::from_str(&v.body).map_err(|_| Error::internal("stored resource unreadable"))
}

/// The patient a caller books for: a patient's own (a patient naming another is refused as if
/// that patient did not exist), or the one staff names.
fn patient_for(caller: &Caller, asked: Option<String>) -> Result<String, Error> {
    match (booker(caller)?, asked) {
        (Booker::Patient(own), None) => Ok(own),
        (Booker::Patient(own), Some(p)) if p == own => Ok(own),
        (Booker::Patient(_), Some(p)) => Err(Error::not_found(format!("Patient/{p} is not known"))),
        (Booker::Staff, Some(p)) => Ok(p),
        (Booker::Staff, None) => Err(Error::new(
            codes::MALFORMED_REQUEST,
            "`patient` is required: whom is the appointment for?",
        )
        .at("patient")),
    }
}

/// Whether `caller` may act on the stored appointment `body` (its patient, or staff); another
/// patient's appointment is not known to them.
fn may_manage(caller: &Caller, id: &str, body: &Value) -> Result<(), Error> {
    match booker(caller)? {
        Booker::Staff => Ok(()),
        Booker::Patient(own) => {
            if appointment::patient_of(body).as_deref() == Some(&format!("Patient/{own}")) {
                Ok(())
            } else {
                Err(Error::not_found(format!("Appointment/{id} is not known")))
            }
        }
    }
}

/// Commits `tx`, naming the consequences its rules wrote (the slots) in `touched`.
async fn finish(tx: Tx, mut touched: Touched) -> Result<Touched, Error> {
    for v in tx.consequences() {
        touched.add(v);
    }
    tx.commit().await?;
    Ok(touched)
}

impl Booking {
    fn prepaid(&self, caller: &Caller, mode: Mode) -> bool {
        let staff = !matches!(caller.principal.role, Role::Patient);
        let by_mode = mode == Mode::Video || self.settings.prepay_in_person;
        by_mode && (!staff || self.settings.prepay_staff)
    }

    /// `patient`'s pending hold of `slot_id` still in force that has no invoice yet: a
    /// prepaid booking that did not finish.
    async fn unfinished_hold(
        tx: &mut Tx,
        slot_id: &str,
        patient: &str,
    ) -> Result<Option<Version>, Error> {
        let now = calendar::now();
        let pending = tx
            .search(&SearchQuery::new(
                "Appointment",
                vec![
                    ("slot".into(), format!("Slot/{slot_id}")),
                    ("status".into(), "pending".into()),
                    ("patient".into(), format!("Patient/{patient}")),
                ],
            ))
            .await?
            .matches;
        for h in pending {
            let b = body_of(&h)?;
            if appointment::invoice_of(&b).is_none()
                && appointment::expires_of(&b).is_some_and(|x| x > now)
                && appointment::patient_of(&b).as_deref() == Some(&format!("Patient/{patient}"))
            {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// Reads the slot locked for the transaction, and makes it bookable: pending holds on it
    /// that have lapsed are cancelled here, in the booking's own transaction. Refuses a slot
    /// that is taken (409), blocked, or over.
    async fn take_slot(
        &self,
        tx: &mut Tx,
        touched: &mut Touched,
        slot_id: &str,
        keep: Option<&str>,
    ) -> Result<Value, Error> {
        let v = tx.read_for_update("Slot", slot_id).await.map_err(|e| {
            if e.code == codes::NOT_KNOWN || e.code == codes::DELETED {
                Error::new(
                    codes::MALFORMED_REQUEST,
                    format!("Slot/{slot_id} is not known"),
                )
                .at("slot")
            } else {
                e
            }
        })?;
        let slot = body_of(&v)?;
        let end = slot
            .get("end")
            .and_then(Value::as_str)
            .and_then(calendar::parse_instant);
        if end.is_none_or(|e| e <= calendar::now()) {
            return Err(Error::new(
                codes::BUSINESS_RULE,
                format!("Slot/{slot_id} is in the past"),
            )
            .at("slot"));
        }
        match slot.get("status").and_then(Value::as_str).unwrap_or("") {
            "free" => {}
            "busy" | "busy-tentative" => {
                let now = calendar::now();
                let held = tx
                    .search(&SearchQuery::new(
                        "Appointment",
                        vec![
                            ("slot".into(), format!("Slot/{slot_id}")),
                            (
                                "status".into(),
                                "pending,booked,arrived,checked-in,fulfilled".into(),
                            ),
                        ],
                    ))
                    .await?
                    .matches;
                for h in held {
                    if Some(h.id.as_str()) == keep {
                        continue;
                    }
                    let mut b = body_of(&h)?;
                    let lapsed = b.get("status").and_then(Value::as_str) == Some("pending")
                        && appointment::expires_of(&b).is_some_and(|x| x <= now)
                        && appointment::invoice_of(&b).is_none();
                    if !lapsed {
                        return Err(Error::new(
                            codes::TIME_TAKEN,
                            format!("Slot/{slot_id} is no longer available"),
                        ));
                    }
                    b["status"] = json!("cancelled");
                    b["cancelationReason"] = json!({"text": "the hold lapsed"});
                    let w = self
                        .platform
                        .writer()
                        .update_by_service(tx, "Appointment", &h.id, b, Some(h.version_id))
                        .await?;
                    touched.add(&w.version);
                }
            }
            other => {
                return Err(Error::new(
                    codes::TIME_TAKEN,
                    format!("Slot/{slot_id} is not open for booking ({other})"),
                ));
            }
        }
        Ok(slot)
    }

    /// A new appointment on `slot` for `patient`.
    fn new_appointment(
        caller: &Caller,
        slot_id: &str,
        slot: &Value,
        patient: &str,
        ask: &Ask,
        status: &str,
        expires: Option<DateTime<FixedOffset>>,
    ) -> Value {
        let mut a = json!({
            "resourceType": "Appointment",
            "status": status,
            "slot": [{"reference": format!("Slot/{slot_id}")}],
            "start": slot["start"],
            "end": slot["end"],
            "created": calendar::now().format("%Y-%m-%d").to_string(),
            "participant": [
                {"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}
            ],
        });
        for k in ["serviceCategory", "serviceType", "specialty"] {
            if let Some(v) = slot.get(k) {
                a[k] = v.clone();
            }
        }
        if let Some(r) = &ask.reason {
            a["reasonCode"] = json!([{"text": r}]);
        }
        if let Some(m) = &ask.mode {
            set_ext(&mut a, schedule::MODE, Some(json!({"valueCode": m})));
        }
        let by = if matches!(caller.principal.role, Role::Patient) {
            "online"
        } else {
            "staff"
        };
        set_ext(&mut a, BOOKED_BY, Some(json!({"valueCode": by})));
        if let Some(x) = expires {
            set_ext(
                &mut a,
                EXPIRES,
                Some(json!({"valueInstant": calendar::instant(x)})),
            );
        }
        a
    }

    fn check_mode(ask: &Ask) -> Result<(), Error> {
        if let Some(m) = &ask.mode
            && Mode::parse(m).is_none()
        {
            return Err(Error::new(
                codes::MALFORMED_REQUEST,
                format!("`mode` is `video` or `in-person`, not `{m}`"),
            )
            .at("mode"));
        }
        Ok(())
    }

    /// `$hold`: the slot kept for the patient for a few minutes (Appointment `pending`, slot
    /// `busy-tentative`), to be booked with `$book` naming the appointment.
    pub async fn hold(&self, caller: &Caller, ask: &Ask) -> Result<(Version, Touched), Error> {
        Self::check_mode(ask)?;
        let slot_id = id_param(&ask.slot, "slot", "Slot")?
            .ok_or_else(|| Error::new(codes::MALFORMED_REQUEST, "`slot` is required").at("slot"))?;
        let patient = patient_for(caller, id_param(&ask.patient, "patient", "Patient")?)?;
        let mut tx = self.platform.begin(caller).await?;
        let mut touched = Touched::default();
        let slot = self
            .take_slot(&mut tx, &mut touched, &slot_id, None)
            .await?;
        let body = Self::new_appointment(
            caller,
            &slot_id,
            &slot,
            &patient,
            ask,
            "pending",
            Some(calendar::now() + self.settings.hold),
        );
        let w = self
            .platform
            .writer()
            .create_by_service(&mut tx, "Appointment", body)
            .await?;
        touched.add(&w.version);
        let touched = finish(tx, touched).await?;
        Ok((w.version, touched))
    }

    /// `$book`: the slot booked at once (no hold needed), or a held appointment booked. A
    /// prepaid visit comes back `pending`, with its invoice and payment page.
    pub async fn book(&self, caller: &Caller, ask: &Ask) -> Result<(Version, Touched), Error> {
        let booked = self.book_uncounted(caller, ask).await;
        if booked.is_ok() {
            hospital_host::metrics::BOOKINGS.inc(&[]);
        }
        booked
    }

    async fn book_uncounted(
        &self,
        caller: &Caller,
        ask: &Ask,
    ) -> Result<(Version, Touched), Error> {
        Self::check_mode(ask)?;
        let held = id_param(&ask.appointment, "appointment", "Appointment")?;
        let asked_slot = id_param(&ask.slot, "slot", "Slot")?;
        let asked_patient = id_param(&ask.patient, "patient", "Patient")?;
        let mut tx = self.platform.begin(caller).await?;
        let mut touched = Touched::default();
        let (written, prepay) = if let Some(id) = &held {
            let v = tx.read_for_update("Appointment", id).await?;
            let mut a = body_of(&v)?;
            may_manage(caller, id, &a)?;
            let now = calendar::now();
            if a.get("status").and_then(Value::as_str) != Some("pending")
                || appointment::invoice_of(&a).is_some()
                || appointment::expires_of(&a).is_none_or(|x| x <= now)
            {
                return Err(Error::new(
                    codes::WRONG_STATE,
                    format!("Appointment/{id} is not a hold in force: hold the slot again"),
                ));
            }
            if let Some(s) = &asked_slot
                && appointment::slot_of(&a).as_deref() != Some(s.as_str())
            {
                return Err(Error::invalid(
                    "slot",
                    format!("Appointment/{id} holds another slot"),
                ));
            }
            let mode = schedule::mode_of(&a).unwrap_or(Mode::InPerson);
            let prepay = self.prepaid(caller, mode);
            if prepay {
                set_ext(
                    &mut a,
                    EXPIRES,
                    Some(
                        json!({"valueInstant": calendar::instant(now + self.settings.payment_window)}),
                    ),
                );
            } else {
                a["status"] = json!("booked");
            }
            if let Some(r) = &ask.reason {
                a["reasonCode"] = json!([{"text": r}]);
            }
            let w = self
                .platform
                .writer()
                .update_by_service(&mut tx, "Appointment", id, a, Some(v.version_id))
                .await?;
            (w.version, prepay)
        } else {
            let slot_id = asked_slot.ok_or_else(|| {
                Error::new(
                    codes::MALFORMED_REQUEST,
                    "`slot` (or a held `appointment`) is required",
                )
                .at("slot")
            })?;
            let patient = patient_for(caller, asked_patient)?;
            if let Some(own) = Self::unfinished_hold(&mut tx, &slot_id, &patient).await? {
                // This patient's own booking of this slot, cut off between its hold and its
                // invoice (the process that took it died, or its answer was lost and the
                // client asks again): finished now, under the same idempotency key, so
                // billing issues the invoice once.
                tx.rollback().await?;
                touched.add(&own);
                return self.invoice_visit(caller, own, touched).await;
            }
            let slot = self
                .take_slot(&mut tx, &mut touched, &slot_id, None)
                .await?;
            let mode = ask
                .mode
                .as_deref()
                .and_then(Mode::parse)
                .or_else(|| schedule::mode_of(&slot))
                .unwrap_or(Mode::InPerson);
            let prepay = self.prepaid(caller, mode);
            let (status, expires) = if prepay {
                (
                    "pending",
                    Some(calendar::now() + self.settings.payment_window),
                )
            } else {
                ("booked", None)
            };
            let body =
                Self::new_appointment(caller, &slot_id, &slot, &patient, ask, status, expires);
            let w = self
                .platform
                .writer()
                .create_by_service(&mut tx, "Appointment", body)
                .await?;
            (w.version, prepay)
        };
        touched.add(&written);
        let touched = finish(tx, touched).await?;
        if !prepay {
            return Ok((written, touched));
        }
        self.invoice_visit(caller, written, touched).await
    }

    /// Asks billing for the prepaid visit's invoice and records it on the appointment; if
    /// billing cannot issue it, the appointment is released (nothing is left half-booked).
    async fn invoice_visit(
        &self,
        caller: &Caller,
        written: Version,
        mut touched: Touched,
    ) -> Result<(Version, Touched), Error> {
        let a = body_of(&written)?;
        let patient = appointment::patient_of(&a)
            .and_then(|p| p.strip_prefix("Patient/").map(str::to_owned))
            .unwrap_or_default();
        let day = a
            .get("start")
            .and_then(Value::as_str)
            .and_then(calendar::parse_instant)
            .map(calendar::day_of)
            .unwrap_or_else(calendar::today);
        let code = match schedule::mode_of(&a) {
            Some(Mode::Video) | None => self.settings.video_code.clone(),
            Some(Mode::InPerson) => {
                service_code(&a).unwrap_or_else(|| self.settings.video_code.clone())
            }
        };
        let bill = match self
            .payments
            .invoice(
                &format!("appointment:{}", written.id),
                &written.id,
                &patient,
                &code,
                day,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(appointment = %written.id, error = %e, "the prepaid visit's invoice was not issued; releasing the slot");
                let _ = self
                    .release(&written.id, "the visit's invoice could not be issued")
                    .await;
                return Err(e);
            }
        };
        let mut tx = self.platform.begin(caller).await?;
        let v = tx.read_for_update("Appointment", &written.id).await?;
        let mut a = body_of(&v)?;
        set_ext(
            &mut a,
            INVOICE,
            Some(json!({"valueReference": {"reference": format!("Invoice/{}", bill.id)}})),
        );
        set_ext(&mut a, PAYMENT_PAGE, Some(json!({"valueUrl": bill.page})));
        let w = self
            .platform
            .writer()
            .update_by_service(&mut tx, "Appointment", &written.id, a, Some(v.version_id))
            .await?;
        touched.add(&w.version);
        // The invoice billing made under telemedicine's authority is named in the patient's
        // own record of this request: they initiated it.
        if let Ok(inv) = self.platform.store().read("Invoice", &bill.id).await {
            touched.add(&inv);
        }
        let touched = finish(tx, touched).await?;
        // Learn of the payment as soon as billing knows it; the sweep is the path that
        // survives a restart.
        let me = self.clone();
        let (appointment, invoice) = (written.id.clone(), bill.id.clone());
        tokio::spawn(async move {
            if let Ok(b) = me.payments.wait_final(&invoice).await
                && b.status == "balanced"
                && let Err(e) = me.confirm_paid(&appointment, &invoice).await
            {
                tracing::warn!(appointment = %appointment, error = %e, "confirming a paid visit failed; the sweep retries");
            }
        });
        Ok((w.version, touched))
    }

    /// Moves Appointment `id` from `from` to `to` as the service itself (the sweep, billing's
    /// word), under the appointment's row lock and audited; `change` checks or completes it
    /// first. `None` when it is no longer `from` (another replica got there first).
    async fn transition(
        &self,
        id: &str,
        from: &str,
        to: &str,
        change: impl FnOnce(&mut Value) -> Result<(), Error> + Send,
    ) -> Result<Option<Version>, Error> {
        let caller = Caller::system("telemedicine");
        let mut tx = self.platform.begin(&caller).await?;
        let v = tx.read_for_update("Appointment", id).await?;
        let mut a = body_of(&v)?;
        change(&mut a)?;
        if a.get("status").and_then(Value::as_str) != Some(from) {
            return Ok(None);
        }
        a["status"] = json!(to);
        let w = self
            .platform
            .writer()
            .update_by_service(&mut tx, "Appointment", id, a, Some(v.version_id))
            .await?;
        let mut touched = Touched::default();
        touched.add(&w.version);
        tx.commit_audited(
            hospital_core::Interaction::Update,
            "Appointment",
            touched,
            200,
        )
        .await?;
        Ok(Some(w.version))
    }

    /// The visit's invoice is paid: a pending prepaid appointment becomes `booked`. Idempotent;
    /// an appointment already released stays released (the payment waits in billing's queue
    /// as a credit for a cancelled bill, for the cashier to refund or assign).
    pub async fn confirm_paid(&self, id: &str, invoice: &str) -> Result<Version, Error> {
        let moved = self
            .transition(id, "pending", "booked", |a| {
                if appointment::invoice_of(a).as_deref() == Some(invoice) {
                    Ok(())
                } else {
                    Err(Error::new(
                        codes::BUSINESS_RULE,
                        format!("Invoice/{invoice} is not the invoice of Appointment/{id}"),
                    ))
                }
            })
            .await?;
        match moved {
            Some(v) => Ok(v),
            None => Ok(self.platform.store().read("Appointment", id).await?),
        }
    }

    /// Releases a pending appointment (as the service): cancelled with `reason`, its slot free.
    async fn release(&self, id: &str, reason: &str) -> Result<Option<Version>, Error> {
        self.transition(id, "pending", "cancelled", |a| {
            a["cancelationReason"] = json!({"text": reason});
            Ok(())
        })
        .await
    }

    /// `$cancel`: by the patient (their own) or staff, while the visit has not begun. An
    /// unpaid invoice is cancelled with it.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
        reason: Option<&str>,
    ) -> Result<(Version, Touched), Error> {
        let mut tx = self.platform.begin(caller).await?;
        let v = tx.read_for_update("Appointment", id).await?;
        let mut a = body_of(&v)?;
        may_manage(caller, id, &a)?;
        let status = a.get("status").and_then(Value::as_str).unwrap_or("");
        if !matches!(status, "pending" | "booked" | "proposed" | "waitlist") {
            return Err(Error::new(
                codes::WRONG_STATE,
                format!("Appointment/{id} is {status}: only a visit not yet begun is cancelled"),
            ));
        }
        a["status"] = json!("cancelled");
        let by = if matches!(caller.principal.role, Role::Patient) {
            "the patient"
        } else {
            "the hospital"
        };
        a["cancelationReason"] =
            json!({"text": reason.map_or_else(|| format!("cancelled by {by}"), str::to_owned)});
        let w = self
            .platform
            .writer()
            .update_by_service(&mut tx, "Appointment", id, a.clone(), Some(v.version_id))
            .await?;
        let mut touched = Touched::default();
        touched.add(&w.version);
        let touched = finish(tx, touched).await?;
        if let Some(inv) = appointment::invoice_of(&a) {
            // Unpaid: cancelled. Paid: released to the cashier's queue, to refund or rebook.
            let bill = self.payments.get(&inv).await;
            let done = match bill.as_ref().map(|b| b.status.as_str()) {
                Ok("balanced") => {
                    self.payments
                        .release(&inv, &format!("Appointment/{id} cancelled"))
                        .await
                }
                _ => self.payments.cancel(&inv, "the visit was cancelled").await,
            };
            if let Err(e) = done {
                tracing::warn!(appointment = %id, invoice = %inv, error = %e,
                    "the cancelled visit's invoice was not settled; the cashier sees it");
            }
        }
        Ok((w.version, touched))
    }

    /// `$reschedule`: the appointment moved to another free slot in one transaction (its old
    /// slot freed, the new one taken); a taken slot is refused and nothing changes.
    pub async fn reschedule(
        &self,
        caller: &Caller,
        id: &str,
        ask: &Ask,
    ) -> Result<(Version, Touched), Error> {
        let slot_id = id_param(&ask.slot, "slot", "Slot")?.ok_or_else(|| {
            Error::new(codes::MALFORMED_REQUEST, "`slot` is required: the new slot").at("slot")
        })?;
        let mut tx = self.platform.begin(caller).await?;
        let v = tx.read_for_update("Appointment", id).await?;
        let mut a = body_of(&v)?;
        may_manage(caller, id, &a)?;
        let status = a.get("status").and_then(Value::as_str).unwrap_or("");
        if !matches!(status, "pending" | "booked") {
            return Err(Error::new(
                codes::WRONG_STATE,
                format!("Appointment/{id} is {status}: only a visit not yet begun is moved"),
            ));
        }
        if appointment::slot_of(&a).as_deref() == Some(slot_id.as_str()) {
            return Err(Error::invalid(
                "slot",
                "the appointment is on that slot already",
            ));
        }
        let mut touched = Touched::default();
        let slot = self
            .take_slot(&mut tx, &mut touched, &slot_id, Some(id))
            .await?;
        a["slot"] = json!([{"reference": format!("Slot/{slot_id}")}]);
        a["start"] = slot["start"].clone();
        a["end"] = slot["end"].clone();
        for k in ["serviceType", "specialty"] {
            if let Some(x) = slot.get(k) {
                a[k] = x.clone();
            }
        }
        // The practitioner is the new slot's (the rule adds them).
        if let Some(parts) = a.get_mut("participant").and_then(Value::as_array_mut) {
            parts.retain(|p| {
                !p.pointer("/actor/reference")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.starts_with("Practitioner/"))
            });
        }
        let w = self
            .platform
            .writer()
            .update_by_service(&mut tx, "Appointment", id, a, Some(v.version_id))
            .await?;
        touched.add(&w.version);
        let touched = finish(tx, touched).await?;
        Ok((w.version, touched))
    }

    /// The next batch of matches of `params`, going on from `place` (and leaving it where
    /// this batch ends): at most [`Settings::sweep_batch`], read a page at a time.
    async fn next_batch(
        &self,
        place: &std::sync::Mutex<Option<String>>,
        params: Vec<(String, String)>,
    ) -> Result<Vec<Version>, Error> {
        let take =
            |p: &std::sync::Mutex<Option<String>>| p.lock().map(|mut c| c.take()).unwrap_or(None);
        let mut cursor = take(place);
        let mut batch = Vec::new();
        let page = self.settings.sweep_page.max(1);
        let limit = self.settings.sweep_batch.max(1);
        loop {
            let mut q = params.clone();
            q.push(("_count".into(), page.min(limit - batch.len()).to_string()));
            if let Some(c) = &cursor {
                q.push(("_cursor".into(), c.clone()));
            }
            let found = match self
                .platform
                .store()
                .search(&SearchQuery::new("Appointment", q))
                .await
            {
                Ok(f) => f,
                // A cursor of a list that changed shape: start it again.
                Err(e) if cursor.is_some() => {
                    tracing::warn!(error = %e, "the sweep starts a list again");
                    cursor = None;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            batch.extend(found.matches);
            cursor = found.next_cursor;
            if cursor.is_none() || batch.len() >= limit {
                break;
            }
        }
        if let Ok(mut p) = place.lock() {
            *p = cursor;
        }
        Ok(batch)
    }

    /// One pass of the sweep: lapsed holds released, prepaid visits booked once paid or
    /// released (their invoices cancelled) once the payment window closed, visits nobody
    /// joined marked no-show. Safe to run on every replica at once: each change re-reads the
    /// appointment under its lock. Each kind of work looks at a bounded batch per pass and the
    /// next pass goes on after it; one appointment that cannot be settled is logged and left
    /// for the next pass, never stopping the rest.
    pub async fn sweep(&self) -> Result<Swept, Error> {
        let mut swept = Swept::default();
        let now = calendar::now();
        // What is due first, the longest lapsed first: the search names exactly those.
        let lapsed = self
            .next_batch(
                &self.places.lapsed,
                vec![
                    ("status".into(), "pending".into()),
                    ("expires".into(), format!("le{}", calendar::instant(now))),
                    ("_sort".into(), "expires".into()),
                ],
            )
            .await?;
        // Then those still waiting that have an invoice billing may have been paid.
        let waiting = self
            .next_batch(
                &self.places.waiting,
                vec![
                    ("status".into(), "pending".into()),
                    ("expires".into(), format!("gt{}", calendar::instant(now))),
                    ("_sort".into(), "expires".into()),
                ],
            )
            .await?;
        for v in lapsed.iter().chain(&waiting) {
            if let Err(e) = self.settle_pending(v, now, &mut swept).await {
                tracing::warn!(appointment = %v.id, error = %e, "a pending appointment was not settled; the sweep tries again");
            }
        }
        swept.no_shows = self.mark_no_shows(now).await?;
        Ok(swept)
    }

    /// The sweep's look at one pending appointment.
    async fn settle_pending(
        &self,
        v: &Version,
        now: DateTime<FixedOffset>,
        swept: &mut Swept,
    ) -> Result<(), Error> {
        let a = body_of(v)?;
        let lapsed = appointment::expires_of(&a).is_some_and(|x| x <= now);
        let Some(inv) = appointment::invoice_of(&a) else {
            if lapsed && self.release(&v.id, "the hold lapsed").await?.is_some() {
                swept.released += 1;
            }
            return Ok(());
        };
        let bill = self.payments.get(&inv).await?;
        if bill.status == "balanced" {
            self.confirm_paid(&v.id, &inv).await?;
            swept.booked += 1;
        } else if lapsed {
            let b = self
                .payments
                .cancel(&inv, "the payment window closed")
                .await?;
            // Paid in the meantime: booked on the next look.
            if b.status == "cancelled"
                && self
                    .release(&v.id, "the payment window closed")
                    .await?
                    .is_some()
            {
                swept.released += 1;
            }
        }
        Ok(())
    }

    /// Booked video visits whose time ended with nobody joining become `noshow` (their
    /// claims end). In-person visits are the desk's to close.
    async fn mark_no_shows(&self, now: DateTime<FixedOffset>) -> Result<usize, Error> {
        let begun = self
            .next_batch(
                &self.places.begun,
                vec![
                    ("status".into(), "booked".into()),
                    ("mode".into(), "video".into()),
                    ("date".into(), format!("lt{}", calendar::instant(now))),
                    ("_sort".into(), "date".into()),
                ],
            )
            .await?;
        let mut n = 0;
        for v in begun {
            let a = body_of(&v)?;
            let ended = a
                .get("end")
                .and_then(Value::as_str)
                .and_then(calendar::parse_instant)
                .is_some_and(|e| e <= now);
            if !ended {
                continue;
            }
            match self.transition(&v.id, "booked", "noshow", |_| Ok(())).await {
                Ok(Some(_)) => n += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(appointment = %v.id, error = %e, "a no-show was not marked; the sweep tries again")
                }
            }
        }
        Ok(n)
    }
}

/// The price-list code an appointment's service type names (`urn:hospital:service-code`).
fn service_code(a: &Value) -> Option<String> {
    a.get("serviceType")?
        .as_array()?
        .iter()
        .flat_map(|t| {
            t.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|c| c.get("system").and_then(Value::as_str) == Some("urn:hospital:service-code"))?
        .get("code")?
        .as_str()
        .map(str::to_owned)
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub booked: usize,
    pub released: usize,
    pub no_shows: usize,
}
