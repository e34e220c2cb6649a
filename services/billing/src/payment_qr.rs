//! `GET /fhir/Invoice/{id}/$payment-qr`: what a patient needs to pay an issued Invoice by
//! VietQR, as FHIR `Parameters` — `payload` (the dynamic VietQR text), `code` (the payment
//! code, in the memo), `amount` (VND), `url` (the payment page), `png` and `svg` (the QR).
//!
//! The amount owed is the Invoice's `totalNet` (what is left for the patient once the BHYT
//! fund's share is taken off), or `totalGross` when it has no net. The receiving bank and
//! account come from the configuration.

use crate::invoice::{BILL_NUMBER, PAYMENT_CODE, PAYMENT_PAGE, identifier};
use crate::{qr, vietqr};
use async_trait::async_trait;
use base64::Engine;
use hospital_core::auth::Action;
use hospital_core::{
    AuditAction, Caller, Error, Operation, Platform, Touched, authorize, codes, reveal,
};
use serde_json::{Value, json};

/// Where payments go, from the configuration.
#[derive(Debug, Clone)]
pub struct Receiving {
    pub bin: String,
    pub account: String,
    /// The base of the payment page links (`https://benhvien.example/pay/...`).
    pub page_base: String,
}

pub struct PaymentQr {
    pub platform: Platform,
    pub receiving: Receiving,
}

/// The payment an issued Invoice asks for, and what it is to be matched on.
pub struct Owed {
    pub amount: i64,
    pub code: String,
    pub bill_number: String,
    pub page_token: String,
}

/// What `invoice` asks the patient to pay; refused unless it is issued and owes something.
pub fn owed(invoice: &Value) -> Result<Owed, Error> {
    let status = invoice.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "issued" {
        return Err(Error::new(
            codes::BUSINESS_RULE,
            format!("only an issued invoice is paid; this one is {status}"),
        ));
    }
    let amount = crate::invoice::amount_due(invoice)?;
    if amount <= 0 {
        return Err(Error::new(
            codes::BUSINESS_RULE,
            "the invoice leaves nothing for the patient to pay",
        ));
    }
    let id = |system: &str| {
        identifier(invoice, system)
            .map(str::to_owned)
            .ok_or_else(|| Error::internal("an issued invoice lacks its payment identifiers"))
    };
    Ok(Owed {
        amount,
        code: id(PAYMENT_CODE)?,
        bill_number: id(BILL_NUMBER)?,
        page_token: id(PAYMENT_PAGE)?,
    })
}

/// The VietQR payment of `owed` into `to`: the code in 62.08, the bill number in 62.01.
pub fn payment(owed: &Owed, to: &Receiving) -> vietqr::Payment {
    vietqr::Payment {
        bin: to.bin.clone(),
        account: to.account.clone(),
        amount: u64::try_from(owed.amount).ok(),
        bill_number: Some(owed.bill_number.clone()),
        purpose: Some(owed.code.clone()),
        ..vietqr::Payment::default()
    }
}

fn attachment(content_type: &str, data: &[u8]) -> Value {
    json!({"contentType": content_type,
        "data": base64::engine::general_purpose::STANDARD.encode(data)})
}

#[async_trait]
impl Operation for PaymentQr {
    fn resource_type(&self) -> &'static str {
        "Invoice"
    }

    fn name(&self) -> &'static str {
        "$payment-qr"
    }

    fn action(&self) -> AuditAction {
        AuditAction::R
    }

    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        _input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        authorize(caller, Action::Read, "Invoice")?;
        let v = reveal(
            caller,
            "Invoice",
            id,
            self.platform.store().read("Invoice", id).await,
        )?;
        let touched = Touched::of(std::slice::from_ref(&v));
        let invoice: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored invoice unreadable"))?;
        let owed = owed(&invoice)?;
        let payload = vietqr::encode(&payment(&owed, &self.receiving)).map_err(|e| {
            tracing::error!(error = %e, "the configured bank account makes no VietQR payload");
            Error::internal("the hospital's receiving account is misconfigured")
        })?;
        let png = qr::png(&payload, 8).map_err(Error::internal)?;
        let svg = qr::svg(&payload).map_err(Error::internal)?;
        let url = format!(
            "{}/pay/{}",
            self.receiving.page_base.trim_end_matches('/'),
            owed.page_token
        );
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "payload", "valueString": payload},
            {"name": "code", "valueString": owed.code},
            {"name": "amount", "valueMoney": {"value": owed.amount, "currency": "VND"}},
            {"name": "url", "valueUrl": url},
            {"name": "png", "valueAttachment": attachment("image/png", &png)},
            {"name": "svg", "valueAttachment": attachment("image/svg+xml", svg.as_bytes())},
        ]});
        Ok((body, touched))
    }
}
