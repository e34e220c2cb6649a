//! The ledger of payments: every credit the hospital learns of is one `PaymentNotice`,
//! written by billing alone (never accepted from a client), appended and never edited. An
//! Invoice's balance is derived from the notices that name it; when they cover what it owes,
//! billing marks it `balanced`.
//!
//! One credit is recorded in one transaction, under a lock on the Invoice it pays, so that two
//! payments racing for one bill (two transfers, a transfer and cash at the desk) are both
//! recorded and each sees the other: the second is classed against what is left. A replay of
//! the same provider transaction is refused by the store's unique identifier (provider,
//! transaction id) and answered as already recorded.
//!
//! Matching: the memo (ignoring case, spaces, punctuation and marks) is searched for a payment
//! code (`VP` + 8), or the provider's order reference is a bill number (VNPay's `vnp_TxnRef`);
//! the receiving account must be the hospital's; then the amount against what is left:
//! exact → paid, less → partial (the bill stays open), more → paid with a credit to refund.
//! No code, an unknown code, a bill already paid or cancelled → an unmatched credit for the
//! cashier. Nothing is ever refunded automatically.

use crate::invoice::{BILL_NUMBER, PAYMENT_CODE, identifier, paid_of, set_paid};
use crate::payment_qr::owed;
use crate::prepaid::Prepaid;
use crate::webhooks::{Credit, Provider, VnpayAnswer, memo_key};
use hospital_core::store::SearchQuery;
use hospital_core::{AuditAction, Caller, Error, Interaction, Platform, Touched, codes};
use serde_json::{Value, json};

/// The identifier system of a provider's transaction ids.
pub fn transaction_system(p: Provider) -> &'static str {
    match p {
        Provider::Sepay => "urn:hospital:bank-transaction:sepay",
        Provider::Casso => "urn:hospital:bank-transaction:casso",
        Provider::Payos => "urn:hospital:bank-transaction:payos",
        Provider::Vnpay => "urn:hospital:bank-transaction:vnpay",
        Provider::Cash => "urn:hospital:bank-transaction:cash",
        Provider::Card => "urn:hospital:bank-transaction:card",
    }
}

/// The channel a provider's credits come by: `vietqr-<provider>`, `cash`, `card`.
pub fn channel_of(p: Provider) -> String {
    match p {
        Provider::Cash | Provider::Card => p.as_str().to_owned(),
        p => format!("vietqr-{}", p.as_str()),
    }
}

/// Extension URLs of a notice.
pub const OUTCOME: &str = "urn:hospital:payment:outcome";
pub const MEMO: &str = "urn:hospital:payment:memo";
pub const BANK_REFERENCE: &str = "urn:hospital:payment:bank-reference";
pub const CHANNEL: &str = "urn:hospital:payment:channel";
pub const TO_REFUND: &str = "urn:hospital:payment:to-refund";
/// The kept delivery (`bank_deliveries` id) a bank feed's credit came in.
pub const DELIVERY: &str = "urn:hospital:payment:delivery";
pub const REASON: &str = "urn:hospital:payment:unmatched-reason";
/// The patient whose bill a payment went to: what puts it in their compartment.
pub const PATIENT: &str = "urn:hospital:payment:patient";

/// The largest credit believed (10¹² đồng); more is a malformed delivery.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// How a credit was classed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The bill is paid by it.
    Paid { invoice: String },
    /// Less than what is left: the bill stays open.
    Partial { invoice: String, left: i64 },
    /// More than what was left: paid, and `to_refund` waits for a cashier.
    Overpaid { invoice: String, to_refund: i64 },
    /// In the cashier's queue, with the reason.
    Unmatched { reason: String },
    /// This provider transaction was recorded before.
    Duplicate,
    /// Money out of the account: not a payment.
    Ignored,
}

impl Outcome {
    fn code(&self) -> &'static str {
        match self {
            Outcome::Paid { .. } => "paid",
            Outcome::Partial { .. } => "partial",
            Outcome::Overpaid { .. } => "overpaid",
            Outcome::Unmatched { .. } => "unmatched",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Payment codes a memo may carry: every `VP` followed by 8 letters or digits.
pub fn codes_in(memo: &str) -> Vec<String> {
    let key = memo_key(memo);
    let b = key.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 10 <= b.len() {
        if &b[i..i + 2] == b"VP" {
            out.push(key[i..i + 10].to_owned());
        }
        i += 1;
    }
    out
}

/// Whether `credit` was recorded before, and the Invoice it names, if any (by payment code in
/// the memo, or by its order reference): one key lookup of the unique identifiers for both.
async fn seen_and_invoice(
    platform: &Platform,
    credit: &Credit,
) -> Result<(bool, Option<String>), Error> {
    let mut candidates: Vec<(&str, String)> = codes_in(&credit.memo)
        .into_iter()
        .map(|c| (PAYMENT_CODE, c))
        .collect();
    if let Some(order) = &credit.order {
        candidates.push((BILL_NUMBER, order.clone()));
        candidates.push((PAYMENT_CODE, order.clone()));
    }
    candidates.retain(|(_, v)| !v.is_empty() && v.len() <= 64);
    candidates.truncate(50);
    let mut keys: Vec<(&str, &str, &str)> = vec![(
        "PaymentNotice",
        transaction_system(credit.provider),
        credit.transaction_id.as_str(),
    )];
    keys.extend(candidates.iter().map(|(s, v)| ("Invoice", *s, v.as_str())));
    let found = platform.store().by_unique_identifiers(&keys).await?;
    let seen = found.first().is_some_and(Option::is_some);
    let invoice = found.into_iter().skip(1).flatten().next().map(|v| v.id);
    Ok((seen, invoice))
}

/// How `amount` pays a bill with `left` to pay: `paid`, `partial`, or `overpaid` with the
/// excess; `None` when the bill has nothing left.
pub fn classify(amount: i64, left: i64) -> Option<(&'static str, i64)> {
    if left <= 0 {
        None
    } else if amount == left {
        Some(("paid", 0))
    } else if amount < left {
        Some(("partial", 0))
    } else {
        Some(("overpaid", amount - left))
    }
}

/// Whole đồng of a notice's amount.
pub fn notice_amount(notice: &Value) -> i64 {
    amount_of(notice)
}

fn amount_of(notice: &Value) -> i64 {
    notice
        .pointer("/amount/value")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// A bank feed's delivery whose signature verified: kept as received, with what became of
/// it, before it is answered (`bank_deliveries`, through [`hospital_core::Tx::record_delivery`]).
pub struct Delivery<'a> {
    pub provider: Provider,
    /// The bytes as received: the body, or VNPay's query string.
    pub raw: &'a [u8],
    /// Who delivered it: its address and agent go on the audit line.
    pub from: &'a Caller,
}

impl Delivery<'_> {
    /// Billing's own caller for what the delivery causes, carrying the deliverer's address.
    fn caller(&self) -> Caller {
        let mut c = Caller::system(&format!("billing:{}", self.provider.as_str()));
        c.client = self.from.client.clone();
        c.user_agent = self.from.user_agent.clone();
        c
    }
}

/// The audit line of a bank feed's delivery (one per delivery, whatever became of it).
pub const DELIVERED: Interaction = Interaction::Call("webhook", AuditAction::C);

/// How a kept delivery's transaction id is written: the provider's, when it names one that
/// fits.
fn kept_id(id: &str) -> Option<&str> {
    Some(id).filter(|t| !t.is_empty() && t.len() <= 128)
}

/// Keeps a delivery that credits nothing (a replay, money out, a refusal) with its audit
/// line, in one transaction. `status` is the outcome as HTTP says it (a refusal's 4xx).
async fn keep(
    platform: &Platform,
    delivery: &Delivery<'_>,
    transaction_id: Option<&str>,
    outcome: &str,
    status: u16,
) -> Result<(), Error> {
    let mut tx = platform.begin(&delivery.caller()).await?;
    tx.record_delivery(
        delivery.provider.as_str(),
        transaction_id.and_then(kept_id),
        outcome,
        delivery.raw,
    )
    .await?;
    tx.commit_audited(
        DELIVERED,
        "PaymentNotice",
        Touched::target(&format!("webhooks/{}", delivery.provider.as_str())),
        status,
    )
    .await?;
    Ok(())
}

/// Receives a verified delivery's `credit` into `account`'s ledger: the credit, the bytes it
/// came in and the audit line in one transaction; a replay or money out is kept and audited
/// too. A credit refused (wrong account, an amount that is no payment) is kept with the code
/// that refused it, audited, and the error returned.
pub async fn receive(
    platform: &Platform,
    hospital: &str,
    account: &str,
    delivery: &Delivery<'_>,
    credit: &Credit,
    prepaid: &Prepaid,
) -> Result<Outcome, Error> {
    let id = Some(credit.transaction_id.as_str());
    match record_as(
        platform,
        hospital,
        account,
        credit,
        Door::Feed(delivery),
        prepaid,
    )
    .await
    {
        Ok(o @ (Outcome::Duplicate | Outcome::Ignored)) => {
            keep(platform, delivery, id, o.code(), 200).await?;
            Ok(o)
        }
        Ok(o) => Ok(o),
        Err(e) => {
            let status = hospital_core::error::outcome_status(e.kind());
            keep(
                platform,
                delivery,
                id,
                &format!("refused:{}", e.code.id),
                status,
            )
            .await?;
            Err(e)
        }
    }
}

/// A verified delivery whose body is not one its provider sends: kept as received and
/// audited, nothing credited. Returns the error to answer with (`BL_02`).
pub async fn refuse_malformed(platform: &Platform, delivery: &Delivery<'_>, why: &str) -> Error {
    let refusal = crate::webhooks::Refusal::Malformed(why.to_owned()).error();
    let status = hospital_core::error::outcome_status(refusal.kind());
    match keep(platform, delivery, None, "malformed", status).await {
        Ok(()) => refusal,
        Err(e) => e,
    }
}

/// VNPay's IPN, verified: its checks in VNPay's order once the checksum holds — the order
/// (`vnp_TxnRef`, a bill number or payment code), then `vnp_Amount` against the bill's amount
/// (or, for a bill part paid, what is left of it), then whether the bill is already paid or
/// cancelled — then the ledger. Money VNPay reports for a bill already paid or cancelled is
/// never lost: it is credited as an unmatched credit in the cashier's queue, and VNPay is
/// answered `02`. Every IPN is kept and audited once; a refused one's audit line carries the
/// HTTP status its refusal means (404 no order, 422 wrong amount), the IPN itself is answered
/// 200 in VNPay's protocol.
pub async fn receive_vnpay(
    platform: &Platform,
    hospital: &str,
    account: &str,
    delivery: &Delivery<'_>,
    ipn: &crate::webhooks::VnpayIpn,
    prepaid: &Prepaid,
) -> Result<VnpayAnswer, Error> {
    let id = Some(ipn.transaction_no.as_str());
    let order = if ipn.txn_ref.is_empty() || ipn.txn_ref.len() > 64 {
        None
    } else {
        let keys = [
            ("Invoice", BILL_NUMBER, ipn.txn_ref.as_str()),
            ("Invoice", PAYMENT_CODE, ipn.txn_ref.as_str()),
        ];
        platform
            .store()
            .by_unique_identifiers(&keys)
            .await?
            .into_iter()
            .flatten()
            .next()
    };
    let Some(v) = order else {
        keep(platform, delivery, id, "refused:order-not-found", 404).await?;
        return Ok(VnpayAnswer::OrderNotFound);
    };
    let inv: Value =
        serde_json::from_str(&v.body).map_err(|_| Error::internal("stored invoice unreadable"))?;
    let open = inv.get("status").and_then(Value::as_str) == Some("issued");
    let bill = crate::invoice::amount_due(&inv)?;
    let left = if open {
        bill - match paid_of(&inv) {
            Some(p) => p,
            None => paid(platform, &v.id).await?,
        }
    } else {
        bill
    };
    if !ipn.amount.is_some_and(|a| a == bill || (open && a == left)) {
        keep(platform, delivery, id, "refused:wrong-amount", 422).await?;
        return Ok(VnpayAnswer::InvalidAmount);
    }
    if !ipn.paid {
        // A payment that failed at VNPay: nothing to credit; noted.
        keep(
            platform,
            delivery,
            id,
            "not-paid",
            if open { 200 } else { 409 },
        )
        .await?;
        return Ok(if open {
            VnpayAnswer::Confirmed
        } else {
            VnpayAnswer::AlreadyConfirmed
        });
    }
    let credit = Credit {
        provider: Provider::Vnpay,
        transaction_id: ipn.transaction_no.clone(),
        incoming: true,
        account: account.to_owned(),
        amount: ipn.amount.unwrap_or(0),
        memo: ipn.order_info.clone(),
        bank_reference: ipn.bank_reference.clone(),
        at: ipn.pay_date.clone(),
        order: Some(ipn.txn_ref.clone()),
    };
    Ok(
        match receive(platform, hospital, account, delivery, &credit, prepaid).await? {
            Outcome::Paid { .. } | Outcome::Partial { .. } | Outcome::Overpaid { .. } => {
                VnpayAnswer::Confirmed
            }
            Outcome::Unmatched { .. } | Outcome::Duplicate | Outcome::Ignored => {
                VnpayAnswer::AlreadyConfirmed
            }
        },
    )
}

/// [`receive`] for money taken at the desk by `cashier`: what a bank feed would queue for the
/// cashier (no open bill, more than is left) is refused instead — the cashier hands the cash
/// back — so a desk payment racing a transfer never marks a bill paid twice.
pub async fn record_at_desk(
    platform: &Platform,
    hospital: &str,
    account: &str,
    credit: &Credit,
    cashier: &Caller,
    prepaid: &Prepaid,
) -> Result<Outcome, Error> {
    record_as(
        platform,
        hospital,
        account,
        credit,
        Door::Desk(cashier),
        prepaid,
    )
    .await
}

/// Where a credit comes in.
enum Door<'a, 'b> {
    /// A bank feed's verified delivery, kept with the credit.
    Feed(&'a Delivery<'b>),
    /// Money taken at the desk by this cashier.
    Desk(&'a Caller),
}

async fn record_as(
    platform: &Platform,
    hospital: &str,
    account: &str,
    credit: &Credit,
    door: Door<'_, '_>,
    prepaid: &Prepaid,
) -> Result<Outcome, Error> {
    let outcome = record(platform, hospital, account, credit, door).await;
    let counted = match &outcome {
        Ok(Outcome::Paid { .. } | Outcome::Partial { .. } | Outcome::Overpaid { .. }) => {
            Some("matched")
        }
        Ok(Outcome::Unmatched { .. }) => Some("unmatched"),
        _ => None,
    };
    if let Some(c) = counted {
        hospital_host::metrics::PAYMENTS.inc(&[c]);
    }
    if let Ok(Outcome::Paid { invoice } | Outcome::Overpaid { invoice, .. }) = &outcome {
        prepaid.settled(platform, invoice).await;
    }
    outcome
}

/// [`record_as`] without what follows a committed outcome (the count, telling telemedicine).
async fn record(
    platform: &Platform,
    hospital: &str,
    account: &str,
    credit: &Credit,
    door: Door<'_, '_>,
) -> Result<Outcome, Error> {
    let desk = match door {
        Door::Desk(c) => Some(c),
        Door::Feed(_) => None,
    };
    if credit.amount <= 0 || credit.amount > MAX_AMOUNT {
        return Err(Error::invalid(
            "amount",
            format!(
                "a credit of {} đồng is not a payment (1 to 10¹² đồng)",
                credit.amount
            ),
        ));
    }
    if !credit.incoming {
        return Ok(Outcome::Ignored);
    }
    if credit.account != account {
        return Err(Error::new(
            crate::codes::NOT_OUR_ACCOUNT,
            "the credited account is not the hospital's receiving account",
        ));
    }
    if credit.transaction_id.is_empty() || credit.transaction_id.len() > 128 {
        return Err(Error::invalid(
            "transaction id",
            "a credit names its provider's transaction id (1 to 128 characters)",
        ));
    }
    let system = transaction_system(credit.provider);
    // A replay is answered without a lock or a write (a concurrent one is caught by the claim).
    let (seen, invoice_id) = seen_and_invoice(platform, credit).await?;
    if seen {
        return Ok(Outcome::Duplicate);
    }
    let caller = match &door {
        Door::Desk(c) => (*c).clone(),
        Door::Feed(d) => d.caller(),
    };
    let mut tx = platform.begin(&caller).await?;
    let mut touched = Touched::default();
    let mut receipt_n: Option<i64> = None;
    let mut paid_before: i64 = 0;
    // Against what is left of the bill, under its lock.
    let (outcome, invoice) = match &invoice_id {
        None => (
            Outcome::Unmatched {
                reason: match codes_in(&credit.memo).first() {
                    Some(code) => format!("the payment code {code} in the memo names no bill"),
                    None => "no payment code in the memo".into(),
                },
            },
            None,
        ),
        Some(id) => {
            // The bill's lock and a receipt number in one round trip (a bank feed's credit is
            // always recorded, so the number is used).
            if desk.is_none() {
                receipt_n = Some(
                    tx.lock_and_count(&format!("Invoice/{id}"), "receipt-number")
                        .await?,
                );
            } else {
                tx.lock(&format!("Invoice/{id}")).await?;
            }
            let v = tx.read_for_update("Invoice", id).await?;
            touched.add(&v);
            let inv: Value = serde_json::from_str(&v.body)
                .map_err(|_| Error::internal("stored invoice unreadable"))?;
            let status = inv.get("status").and_then(Value::as_str).unwrap_or("");
            let bill = identifier(&inv, BILL_NUMBER)
                .unwrap_or("the bill")
                .to_owned();
            paid_before = paid_so_far(&mut tx, id, &inv).await?;
            let outcome = match (status, owed(&inv)) {
                ("cancelled", _) => Outcome::Unmatched {
                    reason: format!("{bill} was cancelled"),
                },
                ("balanced", _) => Outcome::Unmatched {
                    reason: format!("{bill} was already paid"),
                },
                ("issued", Ok(o)) => {
                    let left = o.amount - paid_before;
                    let invoice = id.clone();
                    match classify(credit.amount, left) {
                        None => Outcome::Unmatched {
                            reason: format!("{bill} was already paid"),
                        },
                        Some(("paid", _)) => Outcome::Paid { invoice },
                        Some(("partial", _)) => Outcome::Partial {
                            invoice,
                            left: left - credit.amount,
                        },
                        Some((_, excess)) => Outcome::Overpaid {
                            invoice,
                            to_refund: excess,
                        },
                    }
                }
                _ => Outcome::Unmatched {
                    reason: format!("{bill} is not open for payment"),
                },
            };
            (outcome, Some((v, inv)))
        }
    };
    if desk.is_some() {
        match &outcome {
            Outcome::Unmatched { reason } => {
                return Err(Error::new(
                    codes::STATE_CONFLICT,
                    format!("no cash is taken for this bill: {reason}"),
                ));
            }
            Outcome::Overpaid { to_refund, .. } => {
                return Err(Error::new(
                    codes::STATE_CONFLICT,
                    format!("that is {to_refund} đồng more than the bill has left to pay"),
                ));
            }
            _ => {}
        }
    }
    let channel = channel_of(credit.provider);
    let mut extension = vec![
        json!({"url": OUTCOME, "valueCode": outcome.code()}),
        json!({"url": CHANNEL, "valueCode": channel}),
        json!({"url": MEMO, "valueString": credit.memo.chars().take(500).collect::<String>()}),
    ];
    if let Door::Feed(d) = &door {
        // The bytes it came in, kept beside the ledger in this transaction.
        let kept = tx
            .record_delivery(
                d.provider.as_str(),
                Some(credit.transaction_id.as_str()),
                outcome.code(),
                d.raw,
            )
            .await?;
        extension.push(json!({"url": DELIVERY, "valueString": kept.to_string()}));
    }
    if !credit.bank_reference.is_empty() {
        extension.push(json!({"url": BANK_REFERENCE, "valueString": credit.bank_reference}));
    }
    match &outcome {
        Outcome::Overpaid { to_refund, .. } => extension
            .push(json!({"url": TO_REFUND, "valueMoney": {"value": to_refund, "currency": "VND"}})),
        Outcome::Unmatched { reason } => {
            extension.push(json!({"url": REASON, "valueString": reason}))
        }
        _ => {}
    }
    let year = crate::invoice::vietnam_now().format("%Y").to_string();
    let n = match receipt_n {
        Some(n) => n,
        None => tx.next_counter("receipt-number").await?,
    };
    let receipt = format!("PT{year}{n:06}");
    let mut notice = json!({
        "resourceType": "PaymentNotice",
        "status": "active",
        "identifier": [{"system": system, "value": credit.transaction_id},
            {"system": crate::invoice::RECEIPT_NUMBER, "value": receipt}],
        "created": hospital_core::store::dates::format_instant(hospital_core::store::dates::now_micros()),
        "payment": {"display": match credit.provider {
            Provider::Cash => "cash at the desk".to_owned(),
            Provider::Card => "card at the desk".to_owned(),
            p => format!("VietQR transfer ({})", p.as_str()),
        }},
        "recipient": {"display": hospital},
        "amount": {"value": credit.amount, "currency": "VND"},
        "paymentStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/paymentstatus", "code": "paid"}]},
        "extension": extension,
    });
    let matched = matches!(
        outcome,
        Outcome::Paid { .. } | Outcome::Partial { .. } | Outcome::Overpaid { .. }
    );
    if let (true, Some((v, inv))) = (matched, &invoice) {
        notice["request"] = json!({"reference": format!("Invoice/{}", v.id)});
        if let (Some(p), Some(e)) = (
            inv.pointer("/subject/reference").and_then(Value::as_str),
            notice["extension"].as_array_mut(),
        ) {
            e.push(json!({"url": PATIENT, "valueReference": {"reference": p}}));
        }
    }
    let written = platform
        .writer()
        .create_by_service(&mut tx, "PaymentNotice", notice)
        .await;
    let written = match written {
        Ok(w) => w,
        // The same provider transaction, recorded concurrently: once is enough.
        Err(e) if e.code == codes::DUPLICATE_IDENTIFIER => return Ok(Outcome::Duplicate),
        Err(e) => return Err(e),
    };
    touched.add(&written.version);
    if let (true, Some((v, mut inv))) = (matched, invoice) {
        // The bill's running total moves with the ledger, in the same transaction.
        set_paid(&mut inv, paid_before + credit.amount);
        if !matches!(outcome, Outcome::Partial { .. }) {
            inv["status"] = json!("balanced");
        }
        let out = platform
            .writer()
            .update_by_service(&mut tx, "Invoice", &v.id, inv, Some(v.version_id))
            .await?;
        touched.add(&out.version);
    }
    let interaction = match door {
        Door::Feed(_) => DELIVERED,
        Door::Desk(_) => Interaction::Call("payment", AuditAction::C),
    };
    tx.commit_audited(interaction, "PaymentNotice", touched, 201)
        .await?;
    Ok(outcome)
}

/// The search for the notices credited to `invoice`.
fn notices_of(invoice: &str) -> SearchQuery {
    SearchQuery::new(
        "PaymentNotice",
        vec![
            ("request".into(), format!("Invoice/{invoice}")),
            ("_count".into(), "1000".into()),
        ],
    )
}

/// The đồng that `notices` credit.
fn total_of(notices: &[hospital_core::store::Version]) -> i64 {
    notices
        .iter()
        .filter_map(|n| serde_json::from_str::<Value>(&n.body).ok())
        .map(|n| amount_of(&n))
        .sum()
}

/// What the stored `invoice` (read under its lock) has been paid: its projection, or for an
/// invoice from before the projection, the sum of its notices.
pub async fn paid_so_far(
    tx: &mut hospital_core::Tx,
    id: &str,
    invoice: &Value,
) -> Result<i64, Error> {
    match paid_of(invoice) {
        Some(p) => Ok(p),
        None => paid_in(tx, id).await,
    }
}

/// What an Invoice has been paid, read inside `tx` (under the invoice's lock, the answer
/// stands until the transaction ends).
pub async fn paid_in(tx: &mut hospital_core::Tx, invoice: &str) -> Result<i64, Error> {
    Ok(total_of(&tx.search(&notices_of(invoice)).await?.matches))
}

/// What an Invoice has been paid, from the ledger.
pub async fn paid(platform: &Platform, invoice: &str) -> Result<i64, Error> {
    Ok(total_of(
        &platform.store().search(&notices_of(invoice)).await?.matches,
    ))
}

/// Whether `body`'s identifier of `system` is `value` (for tests and the cashier's queue).
pub fn has_identifier(body: &Value, system: &str, value: &str) -> bool {
    identifier(body, system) == Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_codes_are_found_in_what_banks_make_of_the_memo() {
        assert_eq!(
            codes_in("MBVCB.3278907687.vp12ab34cd.CT tu 0123"),
            vec!["VP12AB34CD"]
        );
        assert_eq!(
            codes_in("Thanh toán viện phí VP 12AB-34CD"),
            vec!["VP12AB34CD"]
        );
        assert!(codes_in("chuyen tien an trua").is_empty());
    }
}
