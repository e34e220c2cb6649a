//! Telling telemedicine that a visit's prepayment arrived: when a bank feed's payment settles
//! an invoice that prepays an Appointment ([`crate::invoice::PREPAYS`]), billing calls
//! `Telemedicine.ConfirmPayment` at once, within the payment's own request (so the payment
//! and the booking it confirms are one trace). The call is safe to repeat (telemedicine
//! confirms once); when it fails, the payment stands and telemedicine's watch of the invoice
//! or its sweep confirms the visit instead.

use hospital_core::Platform;
use hospital_grpc::outbound::{Idempotency, Outbound};
use hospital_proto::telemedicine::v1 as tm;

/// Tells telemedicine that `invoice` was paid, when it prepays an appointment.
pub async fn tell_paid(platform: &Platform, telemedicine: &Outbound, invoice: &str) {
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
