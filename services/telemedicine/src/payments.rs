//! The billing service over gRPC (`hospital.billing.v1.Billing`), as booking needs it: the
//! prepaid visit's invoice (under an idempotency key, so a retried call invoices once), its
//! status, cancelling it, and watching it until it is final. Calls run under telemedicine's own
//! service token: the patient who booked is not a cashier, and the visit is the service's doing.

use crate::booking::{Bill, Payments};
use chrono::NaiveDate;
use hospital_core::{Error, codes};
use hospital_grpc::outbound::{Idempotency, Outbound};
use hospital_proto::billing::v1 as pb;
use std::time::Duration;

pub struct BillingPayments {
    pub billing: Outbound,
    /// How long one watch of an invoice lasts at most (the payment window).
    pub watch_for: Duration,
}

/// A billing refusal or failure, as a telemedicine error.
fn from_status(s: tonic::Status) -> Error {
    let what = format!("billing: {}", s.message());
    match s.code() {
        tonic::Code::NotFound => Error::not_found(what),
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            Error::new(codes::BUSINESS_RULE, what)
        }
        tonic::Code::AlreadyExists | tonic::Code::Aborted => {
            Error::new(codes::STATE_CONFLICT, what)
        }
        tonic::Code::PermissionDenied => Error::forbidden(what),
        _ => Error::new(codes::DEPENDENCY_UNAVAILABLE, what),
    }
}

fn bill(r: pb::InvoiceRecord) -> Bill {
    Bill {
        id: r.id,
        status: r.status,
        page: r.payment_page_url,
    }
}

#[async_trait::async_trait]
impl Payments for BillingPayments {
    async fn invoice(
        &self,
        key: &str,
        appointment: &str,
        patient: &str,
        code: &str,
        day: NaiveDate,
    ) -> Result<Bill, Error> {
        let msg = pb::CreateInvoiceRequest {
            idempotency_key: key.to_owned(),
            subject: Some(pb::create_invoice_request::Subject::PatientId(
                patient.to_owned(),
            )),
            charges: vec![pb::Charge {
                code: code.to_owned(),
                quantity: 1,
                date: day.to_string(),
                on_request: false,
            }],
            deposit_amount: 0,
            shown: None,
            // Billing tells telemedicine when it is paid (Telemedicine.ConfirmPayment).
            prepaid_appointment_id: appointment.to_owned(),
        };
        self.billing
            .call(
                msg,
                None,
                Idempotency::Keyed(key.to_owned()),
                |ch, req| async move {
                    pb::billing_client::BillingClient::new(ch)
                        .create_invoice(req)
                        .await
                },
            )
            .await
            .map(bill)
            .map_err(from_status)
    }

    async fn get(&self, invoice: &str) -> Result<Bill, Error> {
        let msg = pb::GetInvoiceRequest {
            invoice_id: invoice.to_owned(),
        };
        self.billing
            .call(msg, None, Idempotency::Safe, |ch, req| async move {
                pb::billing_client::BillingClient::new(ch)
                    .get_invoice(req)
                    .await
            })
            .await
            .map(bill)
            .map_err(from_status)
    }

    async fn cancel(&self, invoice: &str, reason: &str) -> Result<Bill, Error> {
        let msg = pb::CancelInvoiceRequest {
            invoice_id: invoice.to_owned(),
            reason: reason.to_owned(),
        };
        // Cancelling a cancelled invoice returns it unchanged: safe to repeat.
        self.billing
            .call(msg, None, Idempotency::Safe, |ch, req| async move {
                pb::billing_client::BillingClient::new(ch)
                    .cancel_invoice(req)
                    .await
            })
            .await
            .map(bill)
            .map_err(from_status)
    }

    async fn release(&self, invoice: &str, reason: &str) -> Result<Bill, Error> {
        let msg = pb::CancelInvoiceRequest {
            invoice_id: invoice.to_owned(),
            reason: reason.to_owned(),
        };
        // Releasing a released invoice returns it unchanged: safe to repeat.
        self.billing
            .call(msg, None, Idempotency::Safe, |ch, req| async move {
                pb::billing_client::BillingClient::new(ch)
                    .release_invoice(req)
                    .await
            })
            .await
            .map(bill)
            .map_err(from_status)
    }

    async fn wait_final(&self, invoice: &str) -> Result<Bill, Error> {
        let msg = pb::WatchInvoiceRequest {
            invoice_id: invoice.to_owned(),
        };
        let mut req = self
            .billing
            .request(msg, None, &Idempotency::Safe)
            .await
            .map_err(from_status)?;
        req.set_timeout(self.watch_for);
        let mut stream = pb::billing_client::BillingClient::new(self.billing.channel.clone())
            .watch_invoice(req)
            .await
            .map_err(from_status)?
            .into_inner();
        while let Some(status) = stream.message().await.map_err(from_status)? {
            if status.r#final {
                return Ok(Bill {
                    id: status.invoice_id,
                    status: status.status,
                    page: String::new(),
                });
            }
        }
        Err(Error::new(
            codes::DEPENDENCY_UNAVAILABLE,
            "billing ended the watch before the invoice was final",
        ))
    }
}
