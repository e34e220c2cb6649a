//! The rules of an Invoice. It gets, on create, the three
//! identifiers a payment needs — kept from the stored version on every update:
//!
//! - its **bill number** (`HD` + year of issue + a count that runs on: `HD2026000123`), VietQR
//!   tag 62.01;
//! - its **payment code** (`VP` + 8 base-36 characters), the short memo code a patient's
//!   transfer carries (62.08) and bank feeds are matched on; anyone who sees the transfer can
//!   read it, so it opens nothing;
//! - its **payment page token**, 128 random bits: the unguessable link of the page that shows
//!   the bill without a login.
//!
//! Amounts are VND in whole đồng. Each identifier names one Invoice only (the store enforces
//! it under concurrency).

use hospital_core::{Error, Origin, Tx, Write, WriteKind, codes};
use serde_json::{Value, json};

pub const BILL_NUMBER: &str = "urn:hospital:bill-number";
pub const PAYMENT_CODE: &str = "urn:hospital:payment-code";
pub const PAYMENT_PAGE: &str = "urn:hospital:payment-page";
pub const RECEIPT_NUMBER: &str = "urn:hospital:receipt-number";
/// The key a service's retried call is recognised by (gRPC `CreateInvoice`).
pub const IDEMPOTENCY_KEY: &str = "urn:hospital:idempotency-key";
/// The credit a settling entry of the ledger (an assignment, a refund) settles, once.
pub const SETTLES: &str = "urn:hospital:settles";

/// Vietnam's time (UTC+7, no daylight saving): "a day" in billing is a calendar day there.
pub fn vietnam_now() -> chrono::NaiveDateTime {
    let micros = hospital_core::store::dates::now_micros() + 7 * 3_600 * 1_000_000;
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .naive_utc()
}

/// `dd/mm/yyyy HH:MM` in Vietnam of a FHIR instant.
pub fn vietnam_time(instant: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(instant)
        .map(|t| {
            (t.with_timezone(&chrono::Utc) + chrono::Duration::hours(7))
                .format("%d/%m/%Y %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// `(type, system)` pairs that name one resource only.
pub const UNIQUE_IDENTIFIERS: &[(&str, &str)] = &[
    ("Invoice", BILL_NUMBER),
    ("Invoice", PAYMENT_CODE),
    ("Invoice", PAYMENT_PAGE),
    ("Invoice", IDEMPOTENCY_KEY),
    ("PaymentNotice", "urn:hospital:bank-transaction:sepay"),
    ("PaymentNotice", "urn:hospital:bank-transaction:casso"),
    ("PaymentNotice", "urn:hospital:bank-transaction:payos"),
    ("PaymentNotice", "urn:hospital:bank-transaction:vnpay"),
    ("PaymentNotice", "urn:hospital:bank-transaction:cash"),
    ("PaymentNotice", "urn:hospital:bank-transaction:card"),
    ("PaymentNotice", RECEIPT_NUMBER),
    ("PaymentNotice", SETTLES),
];

const BASE36: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A new payment code: `VP` and 8 random base-36 characters (2.8 × 10¹² codes).
pub fn new_payment_code() -> String {
    let mut code = String::from("VP");
    for _ in 0..8 {
        code.push(char::from(BASE36[rand::random_range(0..BASE36.len())]));
    }
    code
}

/// A new payment page token: 128 random bits, URL-safe base64 (22 characters).
pub fn new_page_token() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of `body`'s identifier of `system`.
pub fn identifier<'a>(body: &'a Value, system: &str) -> Option<&'a str> {
    body.get("identifier")?
        .as_array()?
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(system))?
        .get("value")?
        .as_str()
}

/// The extension of an Invoice that carries what the ledger has credited to it: a
/// projection of the ledger, kept in step with it in the same transaction by billing alone
/// (so a payment under the bill's lock needs no search of its notices).
pub const PAID: &str = "urn:hospital:invoice:paid";

/// What the projection on `invoice` says was paid, if it carries one.
pub fn paid_of(invoice: &Value) -> Option<i64> {
    invoice
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(PAID))?
        .pointer("/valueMoney/value")?
        .as_i64()
}

/// Sets the projection of what was paid on `invoice`.
pub fn set_paid(invoice: &mut Value, amount: i64) {
    let ext = json!({"url": PAID, "valueMoney": {"value": amount, "currency": "VND"}});
    match invoice.get_mut("extension").and_then(Value::as_array_mut) {
        Some(list) => {
            list.retain(|e| e.get("url").and_then(Value::as_str) != Some(PAID));
            list.push(ext);
        }
        None => invoice["extension"] = json!([ext]),
    }
}

/// The extension of a prepayment Invoice naming the telemedicine Appointment it prepays.
pub const PREPAYS: &str = "urn:hospital:invoice:prepays";

/// Names on `invoice` the Appointment `id` it prepays.
pub fn set_prepays(invoice: &mut Value, id: &str) {
    let ext = json!({"url": PREPAYS, "valueReference": {"reference": format!("Appointment/{id}")}});
    match invoice.get_mut("extension").and_then(Value::as_array_mut) {
        Some(list) => list.push(ext),
        None => invoice["extension"] = json!([ext]),
    }
}

/// The Appointment (its id) `invoice` prepays, if it names one.
pub fn prepays_of(invoice: &Value) -> Option<&str> {
    invoice
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(PREPAYS))?
        .pointer("/valueReference/reference")?
        .as_str()?
        .strip_prefix("Appointment/")
}

/// What `invoice` asks the patient to pay in all, whatever its status: its `totalNet` (what
/// is left once the BHYT fund's share is taken off), or `totalGross` when it has no net.
pub fn amount_due(invoice: &Value) -> Result<i64, Error> {
    Ok(match vnd(invoice.get("totalNet"), "Invoice.totalNet")? {
        Some(a) => a,
        None => vnd(invoice.get("totalGross"), "Invoice.totalGross")?.unwrap_or(0),
    })
}

/// Whole đồng of a `Money` that must be VND.
pub fn vnd(money: Option<&Value>, path: &str) -> Result<Option<i64>, Error> {
    let Some(m) = money else {
        return Ok(None);
    };
    if m.get("currency").and_then(Value::as_str) != Some("VND") {
        return Err(Error::invalid(path, "amounts are in VND (`currency: VND`)"));
    }
    match m.get("value").and_then(Value::as_f64) {
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v < 1e13 => Ok(Some(v as i64)),
        _ => Err(Error::invalid(
            format!("{path}.value"),
            "an amount is a whole, non-negative number of đồng below 10¹³",
        )),
    }
}

/// The amounts of `components` whose `type` is `kind`, summed.
fn sum_of(components: Option<&Value>, kind: &str, path: &str) -> Result<i64, Error> {
    let mut sum = 0i64;
    for c in components.and_then(Value::as_array).into_iter().flatten() {
        if c.get("type").and_then(Value::as_str) == Some(kind) {
            sum += vnd(c.get("amount"), path)?.unwrap_or(0);
        }
    }
    Ok(sum)
}

/// Line totals and invoice totals agree: `totalGross` is the sum of the lines' `base`
/// amounts, and `totalNet` that less the lines' `deduction`s (the BHYT fund's share).
pub fn check_totals(body: &Value) -> Result<(), Error> {
    let Some(lines) = body.get("lineItem").and_then(Value::as_array) else {
        return Ok(());
    };
    let path = "Invoice.lineItem.priceComponent.amount";
    let mut gross = 0i64;
    let mut deductions = 0i64;
    for l in lines {
        gross += sum_of(l.get("priceComponent"), "base", path)?;
        deductions += sum_of(l.get("priceComponent"), "deduction", path)?;
    }
    let total_gross = vnd(body.get("totalGross"), "Invoice.totalGross")?;
    let total_net = vnd(body.get("totalNet"), "Invoice.totalNet")?;
    if total_gross.is_some_and(|g| g != gross) {
        return Err(Error::invalid(
            "Invoice.totalGross",
            format!("totalGross is the sum of the lines' base amounts, {gross} đồng"),
        ));
    }
    if total_net.is_some_and(|n| n != gross - deductions) {
        return Err(Error::invalid(
            "Invoice.totalNet",
            format!(
                "totalNet is totalGross less the lines' deductions, {} đồng",
                gross - deductions
            ),
        ));
    }
    Ok(())
}

/// The rule on an Invoice's write: its identifiers, its totals, and that an issued one is
/// never edited by a client.
pub async fn prepare_invoice(tx: &mut Tx, w: &Write<'_>, body: &mut Value) -> Result<(), Error> {
    vnd(body.get("totalGross"), "Invoice.totalGross")?;
    vnd(body.get("totalNet"), "Invoice.totalNet")?;
    // Billing's own updates (the ledger marking a bill balanced, a cancellation) start from
    // the stored invoice they read under its lock and keep its identifiers: no second read.
    let service_update = w.origin == Origin::Service && w.kind == WriteKind::Update;
    let stored: Option<Value> = if w.kind == WriteKind::Create || service_update {
        None
    } else {
        tx.read("Invoice", w.id)
            .await
            .ok()
            .and_then(|v| serde_json::from_str(&v.body).ok())
    };
    // Paid is what the ledger says: only billing's own logic marks a bill balanced.
    let status = |v: Option<&Value>| {
        v.and_then(|b| b.get("status"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let was = status(stored.as_ref());
    if w.origin != Origin::Service
        && matches!(was.as_deref(), Some("issued" | "balanced" | "cancelled"))
    {
        return Err(Error::new(
            codes::STATE_CONFLICT,
            format!(
                "an issued invoice is never edited (this one is {}): cancel it ($cancel) and issue a new one",
                was.unwrap_or_default()
            ),
        ));
    }
    check_totals(body)?;
    if service_update {
        return Ok(());
    }
    // What was paid is the ledger's: a client's invoice starts at nothing paid, and an update
    // keeps what is stored.
    let paid = stored.as_ref().and_then(paid_of).unwrap_or(0);
    set_paid(body, paid);
    let now_balanced = status(Some(body)).as_deref() == Some("balanced");
    let was_balanced = status(stored.as_ref()).as_deref() == Some("balanced");
    if w.origin != Origin::Service && now_balanced != was_balanced {
        return Err(Error::new(
            codes::BUSINESS_RULE,
            "an invoice is balanced, or no longer, only by the payments of its ledger",
        ));
    }
    let mut added = Vec::new();
    for system in [BILL_NUMBER, PAYMENT_CODE, PAYMENT_PAGE] {
        let kept = stored
            .as_ref()
            .and_then(|old| identifier(old, system))
            .map(str::to_owned);
        let given = identifier(body, system).map(str::to_owned);
        if let (Some(k), Some(g)) = (&kept, &given)
            && k != g
        {
            return Err(Error::invalid(
                "Invoice.identifier",
                format!("the {system} identifier is assigned by billing and never changes"),
            ));
        }
        if given.is_some() && kept.is_none() && w.kind == WriteKind::Create {
            return Err(Error::invalid(
                "Invoice.identifier",
                format!("the {system} identifier is assigned by billing"),
            ));
        }
        if given.is_some() {
            continue;
        }
        let value = match (kept, system) {
            (Some(k), _) => k,
            (None, BILL_NUMBER) => {
                let year = vietnam_now().format("%Y").to_string();
                let n = tx.next_counter("bill-number").await?;
                format!("HD{year}{n:06}")
            }
            (None, PAYMENT_CODE) => new_payment_code(),
            (None, _) => new_page_token(),
        };
        added.push(json!({"system": system, "value": value}));
    }
    match body.get_mut("identifier").and_then(Value::as_array_mut) {
        Some(list) => list.extend(added),
        None if !added.is_empty() => body["identifier"] = Value::Array(added),
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_tokens_have_their_shapes() {
        let c = new_payment_code();
        assert!(c.len() == 10 && c.starts_with("VP") && c.bytes().all(|b| BASE36.contains(&b)));
        assert_ne!(new_payment_code(), new_payment_code());
        let t = new_page_token();
        assert_eq!(t.len(), 22, "128 bits in URL-safe base64");
        assert_ne!(t, new_page_token());
    }

    #[test]
    fn amounts_are_whole_vnd() {
        assert_eq!(
            vnd(Some(&json!({"value": 250000, "currency": "VND"})), "x").unwrap(),
            Some(250_000)
        );
        for bad in [
            json!({"value": 1.5, "currency": "VND"}),
            json!({"value": -1, "currency": "VND"}),
            json!({"value": 10, "currency": "USD"}),
            json!({"value": 1e15, "currency": "VND"}),
        ] {
            assert!(vnd(Some(&bad), "x").is_err(), "{bad}");
        }
    }
}
