//! Telling telemedicine that a visit's prepayment arrived: whenever a payment settles an
//! invoice that prepays an Appointment ([`crate::invoice::PREPAYS`]) — through any door of
//! the ledger: a bank feed, VNPay's IPN, cash or card at the desk, a cashier assigning a
//! queued transfer — billing calls `Telemedicine.ConfirmPayment` at once, within that request
//! (so the payment and the booking it confirms are one trace). The call is safe to repeat
//! (telemedicine confirms once); when it fails, the payment stands and telemedicine's watch
//! of the invoice or its sweep confirms the visit instead.

use hospital_core::Platform;
use hospital_grpc::outbound::{Idempotency, Outbound};
use hospital_proto::telemedicine::v1 as tm;

/// Who is told when a payment settles a visit's prepayment: telemedicine's gRPC, or nobody
/// (a process that runs no service, such as the seed).
#[derive(Clone, Default)]
pub struct Prepaid(Option<Outbound>);

impl Prepaid {
    pub fn telling(telemedicine: Outbound) -> Prepaid {
        Prepaid(Some(telemedicine))
    }

    /// `invoice` is settled: tells telemedicine, when it prepays an appointment.
    pub async fn settled(&self, platform: &Platform, invoice: &str) {
        if let Some(t) = &self.0 {
            tell_paid(platform, t, invoice).await;
        }
    }
}

async fn tell_paid(platform: &Platform, telemedicine: &Outbound, invoice: &str) {
    let Ok(v) = platform.store().read("Invoice", invoice).await else {
        return;
    };
    let Ok(body) = serde_json::from_str::<serde_json::Value>(&v.body) else {
        return;
    };
    let Some(appointment) = crate::invoice::prepays_of(&body) else {
        return;
    };
    let msg = tm::ConfirmPaymentRequest {
        appointment_id: appointment.to_owned(),
        invoice_id: invoice.to_owned(),
    };
    let told = telemedicine
        .call(msg, None, Idempotency::Safe, |ch, req| async move {
            tm::telemedicine_client::TelemedicineClient::new(ch)
                .confirm_payment(req)
                .await
        })
        .await;
    if let Err(s) = told {
        tracing::warn!(
            invoice,
            appointment,
            code = ?s.code(),
            "telling telemedicine the visit is paid failed; its watch or sweep confirms it"
        );
    }
}
