//! The billing gRPC server (`hospital.billing.v1.Billing`). It only translates prost messages to
//! billing's rules ([`Invoicing`], [`desk`]) and back; authentication is the shared layer
//! ([`hospital_grpc::Authenticated`]), writes go through the same [`hospital_core::Writer`] as
//! REST.

use crate::desk;
use crate::invoice::{BILL_NUMBER, PAYMENT_CODE, PAYMENT_PAGE, identifier, vnd};
use crate::issue::{CoverageKey, Invoicing, Request as Issue};
use futures::Stream;
use hospital_core::auth::Action;
use hospital_core::store::Version;
use hospital_core::{AuditAction, Caller, Error, Interaction, Touched, authorize, reveal};
use hospital_grpc::{Call, caller, status};
use hospital_proto::billing::v1 as pb;
use hospital_proto::billing::v1::create_invoice_request::Shown;
use serde_json::{Value, json};
use std::pin::Pin;
use std::time::Duration;
use tonic::{Request, Response, Status};

const CREATE_INVOICE: Interaction = Interaction::Call("CreateInvoice", AuditAction::C);
const GET_INVOICE: Interaction = Interaction::Call("GetInvoice", AuditAction::R);
const WATCH_INVOICE: Interaction = Interaction::Call("WatchInvoice", AuditAction::R);
const CANCEL_INVOICE: Interaction = Interaction::Call("CancelInvoice", AuditAction::U);
const RELEASE_INVOICE: Interaction = Interaction::Call("ReleaseInvoice", AuditAction::U);
const DAY_TOTALS: Interaction = Interaction::Call("GetDayTotals", AuditAction::R);

/// How often a watched invoice is looked at, and for how long at most.
const WATCH_EVERY: Duration = Duration::from_millis(500);
const WATCH_AT_MOST: Duration = Duration::from_secs(3600);

pub struct BillingGrpc {
    invoicing: Invoicing,
    /// The base of payment page links.
    page_base: String,
    /// Watches end when the process stops (the watcher asks a replica that runs).
    stopping: hospital_host::Stopping,
}

impl BillingGrpc {
    pub fn new(invoicing: Invoicing, page_base: String, stopping: hospital_host::Stopping) -> Self {
        BillingGrpc {
            invoicing,
            page_base,
            stopping,
        }
    }

    pub fn into_server(self) -> pb::billing_server::BillingServer<BillingGrpc> {
        pb::billing_server::BillingServer::new(self)
    }

    fn call<'a>(&'a self, caller: &'a Caller, interaction: Interaction) -> Call<'a> {
        Call {
            platform: &self.invoicing.platform,
            caller,
            interaction,
            resource_type: "Invoice",
        }
    }

    fn record(&self, v: &Version) -> Result<pb::InvoiceRecord, Error> {
        let body: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored invoice unreadable"))?;
        let id = |s: &str| identifier(&body, s).unwrap_or_default().to_owned();
        let token = id(PAYMENT_PAGE);
        Ok(pb::InvoiceRecord {
            id: v.id.clone(),
            version_id: v.version_id,
            status: body["status"].as_str().unwrap_or_default().to_owned(),
            bill_number: id(BILL_NUMBER),
            payment_code: id(PAYMENT_CODE),
            total_gross: vnd(body.get("totalGross"), "totalGross")?.unwrap_or(0),
            total_net: vnd(body.get("totalNet"), "totalNet")?.unwrap_or(0),
            payment_page_url: if token.is_empty() {
                String::new()
            } else {
                format!("{}/pay/{token}", self.page_base.trim_end_matches('/'))
            },
            resource_json: v.body.clone(),
        })
    }

    async fn read(&self, caller: &Caller, id: &str) -> Result<Version, Error> {
        authorize(caller, Action::Read, "Invoice")?;
        if !hospital_core::store::is_valid_id(id) {
            return Err(Error::invalid(
                "invoice_id",
                "invoice_id is not a valid FHIR id",
            ));
        }
        let store = self.invoicing.platform.store();
        reveal(caller, "Invoice", id, store.read("Invoice", id).await)
    }

    async fn create(
        &self,
        caller: &Caller,
        r: pb::CreateInvoiceRequest,
    ) -> Result<(pb::InvoiceRecord, Touched), Error> {
        if r.idempotency_key.is_empty() {
            return Err(Error::invalid(
                "idempotency_key",
                "idempotency_key is required: a retried call must not charge twice",
            ));
        }
        let prepayment = matches!(
            r.subject,
            Some(pb::create_invoice_request::Subject::PatientId(_))
        ) && !r.charges.is_empty();
        if !r.prepaid_appointment_id.is_empty() && !prepayment {
            return Err(Error::invalid(
                "prepaid_appointment_id",
                "an appointment is prepaid by a prepayment: a patient_id with charges",
            ));
        }
        let request = match r.subject {
            Some(pb::create_invoice_request::Subject::EncounterId(e)) => {
                if !hospital_core::store::is_valid_id(&e) {
                    return Err(Error::invalid("encounter_id", "not a valid FHIR id"));
                }
                let mut new_charges = Vec::with_capacity(r.charges.len());
                if r.charges.len() > 1000 {
                    return Err(Error::invalid("charges", "at most 1,000 charges a call"));
                }
                for c in r.charges {
                    let mut body = json!({
                        "status": "billable",
                        "code": {"coding": [{"system": crate::prices::SERVICE_CODE, "code": c.code}]},
                        "occurrenceDateTime": c.date,
                        "quantity": {"value": c.quantity},
                    });
                    if c.on_request {
                        body["extension"] =
                            json!([{"url": crate::charges::ON_REQUEST, "valueBoolean": true}]);
                    }
                    new_charges.push(body);
                }
                Issue::Encounter {
                    encounter: e,
                    new_charges,
                    shown: match r.shown {
                        Some(Shown::CardNumber(c)) => Some(CoverageKey::card(&c, "card_number")?),
                        Some(Shown::NationalId(n)) => {
                            Some(CoverageKey::personal_id(&n, "national_id")?)
                        }
                        None => None,
                    },
                }
            }
            Some(pb::create_invoice_request::Subject::PatientId(p)) => {
                if !hospital_core::store::is_valid_id(&p) {
                    return Err(Error::invalid("patient_id", "not a valid FHIR id"));
                }
                if r.shown.is_some() {
                    return Err(Error::invalid(
                        "shown",
                        "a deposit or prepayment is self-pay: a card or personal ID is looked up only for an encounter_id",
                    ));
                }
                if r.charges.is_empty() {
                    Issue::Deposit {
                        patient: p,
                        amount: r.deposit_amount,
                    }
                } else {
                    let mut items = Vec::with_capacity(r.charges.len());
                    for (i, c) in r.charges.iter().enumerate() {
                        let day = chrono::NaiveDate::parse_from_str(&c.date, "%Y-%m-%d").map_err(
                            |_| Error::invalid(format!("charges[{i}].date"), "a date, YYYY-MM-DD"),
                        )?;
                        items.push((c.code.clone(), c.quantity, day));
                    }
                    let appointment = match r.prepaid_appointment_id.as_str() {
                        "" => None,
                        a if hospital_core::store::is_valid_id(a) => Some(a.to_owned()),
                        _ => {
                            return Err(Error::invalid(
                                "prepaid_appointment_id",
                                "not a valid FHIR id",
                            ));
                        }
                    };
                    Issue::Prepaid {
                        patient: p,
                        items,
                        appointment,
                    }
                }
            }
            None => {
                return Err(Error::invalid(
                    "subject",
                    "name the encounter_id invoiced, or the patient_id of a deposit",
                ));
            }
        };
        let (v, touched) = self
            .invoicing
            .issue(caller, &request, Some(&r.idempotency_key))
            .await?;
        Ok((self.record(&v)?, touched))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::InvoiceStatus, Status>> + Send>>;

/// The status of a stored invoice, with what the ledger has credited to it.
async fn status_now(inv: &Invoicing, id: &str) -> Result<pb::InvoiceStatus, Error> {
    let v = inv.platform.store().read("Invoice", id).await?;
    let body: Value =
        serde_json::from_str(&v.body).map_err(|_| Error::internal("stored invoice unreadable"))?;
    let status = body["status"].as_str().unwrap_or_default().to_owned();
    Ok(pb::InvoiceStatus {
        invoice_id: id.to_owned(),
        // The bill's own running total (looked at twice a second per watcher: no search),
        // or for an invoice from before it, its notices.
        paid: match crate::invoice::paid_of(&body) {
            Some(p) => p,
            None => crate::ledger::paid(&inv.platform, id).await?,
        },
        r#final: matches!(status.as_str(), "balanced" | "cancelled"),
        status,
    })
}

#[tonic::async_trait]
impl pb::billing_server::Billing for BillingGrpc {
    async fn create_invoice(
        &self,
        request: Request<pb::CreateInvoiceRequest>,
    ) -> Result<Response<pb::InvoiceRecord>, Status> {
        let caller = caller(&request)?;
        let result = self.create(&caller, request.into_inner()).await;
        self.call(&caller, CREATE_INVOICE)
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Result<Response<pb::InvoiceRecord>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().invoice_id;
        let result = async {
            let v = self.read(&caller, &id).await?;
            Ok((self.record(&v)?, Touched::of(&[v])))
        }
        .await;
        self.call(&caller, GET_INVOICE)
            .audited(result)
            .await
            .map(Response::new)
    }

    type WatchInvoiceStream = WatchStream;

    async fn watch_invoice(
        &self,
        request: Request<pb::WatchInvoiceRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().invoice_id;
        let result = async {
            let v = self.read(&caller, &id).await?;
            Ok(((), Touched::of(&[v])))
        }
        .await;
        self.call(&caller, WATCH_INVOICE).audited(result).await?;
        let inv = self.invoicing.clone();
        let started = tokio::time::Instant::now();
        // (last status sent, finished)
        let stream = futures::stream::unfold(
            (inv, id, None::<pb::InvoiceStatus>, false),
            move |(inv, id, last, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if last.is_some() {
                        tokio::time::sleep(WATCH_EVERY).await;
                    }
                    if started.elapsed() > WATCH_AT_MOST {
                        let s = Status::deadline_exceeded("watched for an hour: watch again");
                        return Some((Err(s), (inv, id, last, true)));
                    }
                    match status_now(&inv, &id).await {
                        Ok(now) if last.as_ref() != Some(&now) => {
                            let done = now.r#final;
                            return Some((Ok(now.clone()), (inv, id, Some(now), done)));
                        }
                        Ok(_) => continue,
                        Err(e) => return Some((Err(status(e)), (inv, id, last, true))),
                    }
                }
            },
        );
        // A process that stops ends its watches: shutting down never waits for them.
        let stream = futures::StreamExt::take_until(stream, self.stopping.clone().wait());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_invoice(
        &self,
        request: Request<pb::CancelInvoiceRequest>,
    ) -> Result<Response<pb::InvoiceRecord>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let v = self.read(&caller, &r.invoice_id).await?;
            let body: Value = serde_json::from_str(&v.body)
                .map_err(|_| Error::internal("stored invoice unreadable"))?;
            if body["status"] == "cancelled" {
                return Ok((self.record(&v)?, Touched::of(&[v])));
            }
            // Not cancellable in its state (paid): a failed precondition, as the contract says.
            let (v, touched) = self
                .invoicing
                .cancel(&caller, &r.invoice_id, &r.reason)
                .await
                .map_err(|e| {
                    if e.code == hospital_core::codes::STATE_CONFLICT {
                        Error::new(hospital_core::codes::WRONG_STATE, e.message)
                    } else {
                        e
                    }
                })?;
            Ok((self.record(&v)?, touched))
        }
        .await;
        self.call(&caller, CANCEL_INVOICE)
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn release_invoice(
        &self,
        request: Request<pb::CancelInvoiceRequest>,
    ) -> Result<Response<pb::InvoiceRecord>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            if !hospital_core::store::is_valid_id(&r.invoice_id) {
                return Err(Error::invalid(
                    "invoice_id",
                    "invoice_id is not a valid FHIR id",
                ));
            }
            let (v, touched) =
                desk::release(&self.invoicing.platform, &caller, &r.invoice_id, &r.reason).await?;
            Ok((self.record(&v)?, touched))
        }
        .await;
        self.call(&caller, RELEASE_INVOICE)
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn get_day_totals(
        &self,
        request: Request<pb::GetDayTotalsRequest>,
    ) -> Result<Response<pb::DayTotals>, Status> {
        let caller = caller(&request)?;
        let date = request.into_inner().date;
        let result = async {
            let day = if date.is_empty() {
                crate::invoice::vietnam_now().date()
            } else {
                chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                    .map_err(|_| Error::invalid("date", "date must be YYYY-MM-DD"))?
            };
            let (t, touched) = desk::totals(&self.invoicing.platform, &caller, day, day).await?;
            let mut channels: Vec<&String> = t.received.keys().chain(t.refunded.keys()).collect();
            channels.sort();
            channels.dedup();
            let all = t.received_total();
            let cashless = t.cashless();
            let out = pb::DayTotals {
                date: day.to_string(),
                channels: channels
                    .into_iter()
                    .map(|c| {
                        let r = t.received.get(c).cloned().unwrap_or_default();
                        let o = t.refunded.get(c).cloned().unwrap_or_default();
                        pb::ChannelTotal {
                            channel: c.clone(),
                            received_count: r.count,
                            received: r.amount,
                            refunded_count: o.count,
                            refunded: o.amount,
                        }
                    })
                    .collect(),
                received_count: all.count,
                received: all.amount,
                cashless_count: cashless.count,
                cashless: cashless.amount,
            };
            Ok((out, touched))
        }
        .await;
        self.call(&caller, DAY_TOTALS)
            .audited(result)
            .await
            .map(Response::new)
    }
}
