//! The cashier's work on the ledger, and the figures read from it. Every door — the FHIR
//! operations below, the staff page, gRPC — comes here.
//!
//! - **The queue**: unmatched credits (no code, an unknown one, a bill already paid or
//!   cancelled) and overpayments' excess, each waiting until one entry settles it.
//! - **Assigning** an unmatched credit to an invoice appends a notice that pays the invoice
//!   (classed against what it has left, like a bank feed's) and names the credit it settles.
//! - **Refunding** appends a `refund` notice, with the reason and the cashier's name, for the
//!   credit's amount (an unmatched one) or its excess (an overpaid one). The money is handed
//!   back by the cashier; nothing is ever refunded automatically.
//!
//! A credit is settled once: the settling entry carries the identifier
//! `urn:hospital:settles|<notice id>`, which names one notice only (the store enforces it under
//! concurrency), so two cashiers cannot both assign, or refund, the same credit.
//!
//! Figures count money in once: a settling entry moves a credit, it is not new money. "A day"
//! is a calendar day in Vietnam (UTC+7).

use crate::invoice::{RECEIPT_NUMBER, SETTLES, identifier};
use crate::ledger::{
    self, CHANNEL, MEMO, OUTCOME, PATIENT, REASON, TO_REFUND, classify, notice_amount,
};
use crate::payment_qr::owed;
use chrono::{Duration, NaiveDate};
use hospital_core::auth::{Action, Role};
use hospital_core::store::{SearchQuery, Version};
use hospital_core::{AuditAction, Caller, Error, Interaction, Platform, Touched, authorize, codes};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const SETTLED_BY: &str = "urn:hospital:payment:settles";
pub const CASHIER: &str = "urn:hospital:payment:cashier";

/// At most this many notices are read for one figure (about 3 months of a large hospital's
/// payments); a longer period is refused rather than read without bound.
pub const MAX_NOTICES: usize = 200_000;

fn ext<'a>(notice: &'a Value, url: &str) -> Option<&'a Value> {
    notice
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

fn ext_str<'a>(notice: &'a Value, url: &str, key: &str) -> Option<&'a str> {
    ext(notice, url)?.get(key)?.as_str()
}

pub fn outcome_of(notice: &Value) -> &str {
    ext_str(notice, OUTCOME, "valueCode").unwrap_or("")
}

pub fn channel_of(notice: &Value) -> &str {
    ext_str(notice, CHANNEL, "valueCode").unwrap_or("")
}

pub fn memo_of(notice: &Value) -> &str {
    ext_str(notice, MEMO, "valueString").unwrap_or("")
}

/// Whether a notice is new money (not an entry moving or refunding an earlier credit).
pub fn is_fresh(notice: &Value) -> bool {
    ext(notice, SETTLED_BY).is_none()
}

fn to_refund(notice: &Value) -> i64 {
    ext(notice, TO_REFUND)
        .and_then(|e| e.pointer("/valueMoney/value"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn may_work_the_desk(caller: &Caller) -> Result<(), Error> {
    if !matches!(caller.principal.role, Role::Cashier | Role::Service) {
        return Err(Error::forbidden("this is the cashier's work"));
    }
    authorize(caller, Action::Write, "PaymentNotice")
}

/// Every notice `params` find, page after page, up to [`MAX_NOTICES`].
pub async fn all_notices(
    platform: &Platform,
    params: Vec<(String, String)>,
) -> Result<Vec<Version>, Error> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut p = params.clone();
        p.push(("_count".into(), "1000".into()));
        if let Some(c) = &cursor {
            p.push(("_cursor".into(), c.clone()));
        }
        let r = platform
            .store()
            .search(&SearchQuery::new("PaymentNotice", p))
            .await?;
        out.extend(r.matches);
        if out.len() > MAX_NOTICES {
            return Err(Error::new(
                codes::BOUND_EXCEEDED,
                format!("more than {MAX_NOTICES} payments: ask for a shorter period"),
            ));
        }
        match r.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// One waiting credit of the queue.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub notice: Version,
    pub body: Value,
    /// What is waiting: the whole credit (unmatched) or the excess (overpaid).
    pub amount: i64,
    pub reason: String,
}

/// The cashier's queue: unmatched credits and refunds to make, oldest first.
pub struct Queue {
    pub unmatched: Vec<Waiting>,
    pub to_refund: Vec<Waiting>,
}

/// The credits waiting for a cashier.
pub async fn queue(platform: &Platform, caller: &Caller) -> Result<(Queue, Touched), Error> {
    may_work_the_desk(caller)?;
    let waiting = all_notices(
        platform,
        vec![("outcome".into(), "unmatched,overpaid,released".into())],
    )
    .await?;
    // Which of them a settling entry names: key lookups of `urn:hospital:settles|<id>`, a
    // hundred at a time, rather than reading every settlement ever made.
    let mut settled = std::collections::HashSet::new();
    for chunk in waiting.chunks(100) {
        let keys: Vec<(&str, &str, &str)> = chunk
            .iter()
            .map(|v| ("PaymentNotice", SETTLES, v.id.as_str()))
            .collect();
        let found = platform.store().by_unique_identifiers(&keys).await?;
        for (v, f) in chunk.iter().zip(found) {
            if f.is_some() {
                settled.insert(format!("PaymentNotice/{}", v.id));
            }
        }
    }
    let mut q = Queue {
        unmatched: Vec::new(),
        to_refund: Vec::new(),
    };
    let mut touched = Touched::default();
    for v in waiting {
        if settled.contains(&format!("PaymentNotice/{}", v.id)) {
            continue;
        }
        let Ok(body) = serde_json::from_str::<Value>(&v.body) else {
            continue;
        };
        touched.add(&v);
        match outcome_of(&body) {
            "unmatched" => {
                let reason = ext_str(&body, REASON, "valueString")
                    .unwrap_or("")
                    .to_owned();
                let amount = notice_amount(&body);
                q.unmatched.push(Waiting {
                    notice: v,
                    body,
                    amount,
                    reason,
                });
            }
            "overpaid" if to_refund(&body) > 0 => {
                let amount = to_refund(&body);
                q.to_refund.push(Waiting {
                    notice: v,
                    body,
                    amount,
                    reason: "paid more than the bill".into(),
                });
            }
            "released" => {
                let amount = to_refund(&body);
                let why = ext_str(&body, REASON, "valueString")
                    .unwrap_or("")
                    .to_owned();
                q.to_refund.push(Waiting {
                    notice: v,
                    body,
                    amount,
                    reason: format!("paid for a service not given: {why}"),
                });
            }
            _ => {}
        }
    }
    q.unmatched.sort_by_key(|w| w.notice.last_updated);
    q.to_refund.sort_by_key(|w| w.notice.last_updated);
    Ok((q, touched))
}

/// The entry settling `notice`, with what it carries besides.
fn settling_entry(
    original: &Value,
    notice_id: &str,
    outcome: &str,
    amount: i64,
    receipt: &str,
    cashier: &Caller,
    extra: Vec<Value>,
) -> Value {
    let mut extension = vec![
        json!({"url": OUTCOME, "valueCode": outcome}),
        json!({"url": CHANNEL, "valueCode": channel_of(original)}),
        json!({"url": MEMO, "valueString": ext_str(original, MEMO, "valueString").unwrap_or("")}),
        json!({"url": SETTLED_BY, "valueReference": {"reference": format!("PaymentNotice/{notice_id}")}}),
        json!({"url": CASHIER, "valueString": cashier.principal.audit_name()}),
    ];
    extension.extend(extra);
    json!({
        "resourceType": "PaymentNotice",
        "status": "active",
        "identifier": [{"system": SETTLES, "value": notice_id},
            {"system": RECEIPT_NUMBER, "value": receipt}],
        "created": hospital_core::store::dates::format_instant(hospital_core::store::dates::now_micros()),
        "payment": original.get("payment").cloned().unwrap_or(json!({"display": "credit"})),
        "recipient": original.get("recipient").cloned().unwrap_or(json!({"display": "hospital"})),
        "amount": {"value": amount, "currency": "VND"},
        "paymentStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/paymentstatus", "code": "paid"}]},
        "extension": extension,
    })
}

async fn new_receipt(tx: &mut hospital_core::Tx) -> Result<String, Error> {
    let year = crate::invoice::vietnam_now().format("%Y").to_string();
    let n = tx.next_counter("receipt-number").await?;
    Ok(format!("PT{year}{n:06}"))
}

fn already_settled(e: Error) -> Error {
    if e.code == codes::DUPLICATE_IDENTIFIER {
        Error::new(
            codes::STATE_CONFLICT,
            "this credit was already settled (assigned or refunded)",
        )
    } else {
        e
    }
}

/// Assigns the unmatched credit `notice_id` to the invoice `invoice_id`: the classed outcome
/// (`paid`, `partial`, `overpaid`) and the settling entry written.
pub async fn assign(
    platform: &Platform,
    caller: &Caller,
    notice_id: &str,
    invoice_id: &str,
    prepaid: &crate::prepaid::Prepaid,
) -> Result<(Value, Touched), Error> {
    may_work_the_desk(caller)?;
    let mut tx = platform.begin(caller).await?;
    tx.lock(&format!("Invoice/{invoice_id}")).await?;
    let nv = tx.read("PaymentNotice", notice_id).await?;
    let original: Value =
        serde_json::from_str(&nv.body).map_err(|_| Error::internal("stored notice unreadable"))?;
    if outcome_of(&original) != "unmatched" {
        return Err(Error::new(
            codes::STATE_CONFLICT,
            "only an unmatched credit is assigned to a bill",
        ));
    }
    let iv = tx
        .read("Invoice", invoice_id)
        .await
        .map_err(|_| Error::invalid("invoice", format!("Invoice/{invoice_id} is not known")))?;
    let mut touched = Touched::of(&[nv.clone(), iv.clone()]);
    let mut inv: Value =
        serde_json::from_str(&iv.body).map_err(|_| Error::internal("stored invoice unreadable"))?;
    let owed = owed(&inv).map_err(|e| Error::new(codes::STATE_CONFLICT, e.message))?;
    let paid = ledger::paid_so_far(&mut tx, invoice_id, &inv).await?;
    let left = owed.amount - paid;
    let amount = notice_amount(&original);
    let (outcome, excess) = classify(amount, left)
        .ok_or_else(|| Error::new(codes::STATE_CONFLICT, "the bill has nothing left to pay"))?;
    let receipt = new_receipt(&mut tx).await?;
    let mut extra = Vec::new();
    if excess > 0 {
        extra.push(json!({"url": TO_REFUND, "valueMoney": {"value": excess, "currency": "VND"}}));
    }
    if let Some(p) = inv.pointer("/subject/reference").and_then(Value::as_str) {
        extra.push(json!({"url": PATIENT, "valueReference": {"reference": p}}));
    }
    let mut entry = settling_entry(
        &original, notice_id, outcome, amount, &receipt, caller, extra,
    );
    entry["request"] = json!({"reference": format!("Invoice/{invoice_id}")});
    let w = platform
        .writer()
        .create_by_service(&mut tx, "PaymentNotice", entry)
        .await
        .map_err(already_settled)?;
    touched.add(&w.version);
    crate::invoice::set_paid(&mut inv, paid + amount);
    if outcome != "partial" {
        inv["status"] = json!("balanced");
    }
    {
        let out = platform
            .writer()
            .update_by_service(&mut tx, "Invoice", invoice_id, inv, Some(iv.version_id))
            .await?;
        touched.add(&out.version);
    }
    let first = json!({"name": "outcome", "valueCode": outcome});
    let answer = settled(tx, "$assign", touched, first, &receipt, &w.version.id).await?;
    if outcome != "partial" {
        prepaid.settled(platform, invoice_id).await;
    }
    Ok(answer)
}

/// Commits a settling entry with its audit record, and answers with what it was: `first`,
/// the receipt and the new notice.
async fn settled(
    tx: hospital_core::Tx,
    operation: &'static str,
    mut touched: Touched,
    first: Value,
    receipt: &str,
    notice: &str,
) -> Result<(Value, Touched), Error> {
    tx.commit_audited(
        Interaction::Call(operation, AuditAction::C),
        "PaymentNotice",
        touched.clone(),
        200,
    )
    .await?;
    touched.audited = true;
    Ok((
        json!({"resourceType": "Parameters", "parameter": [
            first,
            {"name": "receipt", "valueString": receipt},
            {"name": "notice", "valueReference": {"reference": format!("PaymentNotice/{notice}")}},
        ]}),
        touched,
    ))
}

/// Marks the refund of `notice_id`'s waiting amount as made by `caller`, for `reason`.
pub async fn refund(
    platform: &Platform,
    caller: &Caller,
    notice_id: &str,
    reason: &str,
) -> Result<(Value, Touched), Error> {
    may_work_the_desk(caller)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Error::invalid(
            "reason",
            "say why and how the money was handed back (1 to 500 characters)",
        ));
    }
    let mut tx = platform.begin(caller).await?;
    let nv = tx.read("PaymentNotice", notice_id).await?;
    let mut touched = Touched::of(std::slice::from_ref(&nv));
    let original: Value =
        serde_json::from_str(&nv.body).map_err(|_| Error::internal("stored notice unreadable"))?;
    let amount = match outcome_of(&original) {
        "unmatched" => notice_amount(&original),
        "overpaid" | "released" => to_refund(&original),
        _ => 0,
    };
    if amount <= 0 {
        return Err(Error::new(
            codes::STATE_CONFLICT,
            "nothing of this payment waits to be refunded",
        ));
    }
    let receipt = new_receipt(&mut tx).await?;
    let mut extra = vec![json!({"url": REASON, "valueString": reason})];
    if let Some(p) = ext(&original, PATIENT) {
        extra.push(p.clone());
    }
    let entry = settling_entry(
        &original, notice_id, "refund", amount, &receipt, caller, extra,
    );
    let w = platform
        .writer()
        .create_by_service(&mut tx, "PaymentNotice", entry)
        .await
        .map_err(already_settled)?;
    touched.add(&w.version);
    let first = json!({"name": "amount", "valueMoney": {"value": amount, "currency": "VND"}});
    settled(tx, "$refund", touched, first, &receipt, &w.version.id).await
}

/// Releases a paid prepaid invoice whose service will not be given (a prepaid video visit
/// cancelled by either side): the invoice is cancelled with `reason`, and each payment it
/// received is moved, by a settling entry (`released`, not new money), to the cashier's queue,
/// to be refunded (or assigned to a rebooking's bill) by a person. Nothing is refunded
/// automatically. Releasing a released invoice changes nothing.
pub async fn release(
    platform: &Platform,
    caller: &Caller,
    invoice_id: &str,
    reason: &str,
) -> Result<(Version, Touched), Error> {
    may_work_the_desk(caller)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Error::invalid("reason", "say why (1 to 500 characters)"));
    }
    let mut tx = platform.begin(caller).await?;
    tx.lock(&format!("Invoice/{invoice_id}")).await?;
    let v = tx.read("Invoice", invoice_id).await?;
    let mut touched = Touched::of(std::slice::from_ref(&v));
    let mut inv: Value =
        serde_json::from_str(&v.body).map_err(|_| Error::internal("stored invoice unreadable"))?;
    let status = inv["status"].as_str().unwrap_or("").to_owned();
    if status == "cancelled" {
        return Ok((v, touched));
    }
    if !matches!(crate::issue::kind(&inv), Some("prepaid" | "deposit")) {
        return Err(Error::new(
            codes::BUSINESS_RULE,
            "only a prepayment or a deposit is released; an encounter's bill is corrected by the cashier",
        ));
    }
    let paying = tx
        .search(&SearchQuery::new(
            "PaymentNotice",
            vec![
                ("request".into(), format!("Invoice/{invoice_id}")),
                ("_count".into(), "1000".into()),
            ],
        ))
        .await?
        .matches;
    for n in &paying {
        let body: Value = serde_json::from_str(&n.body)
            .map_err(|_| Error::internal("stored notice unreadable"))?;
        if outcome_of(&body) == "refund" {
            continue;
        }
        let amount = notice_amount(&body);
        let receipt = new_receipt(&mut tx).await?;
        let mut extra = vec![
            json!({"url": REASON, "valueString": reason}),
            json!({"url": TO_REFUND, "valueMoney": {"value": amount, "currency": "VND"}}),
        ];
        if let Some(p) = ext(&body, PATIENT) {
            extra.push(p.clone());
        }
        let entry = settling_entry(&body, &n.id, "released", amount, &receipt, caller, extra);
        let w = platform
            .writer()
            .create_by_service(&mut tx, "PaymentNotice", entry)
            .await
            .map_err(already_settled)?;
        touched.add(n);
        touched.add(&w.version);
    }
    inv["status"] = json!("cancelled");
    inv["cancelledReason"] = json!(reason);
    let out = platform
        .writer()
        .update_by_service(&mut tx, "Invoice", invoice_id, inv, Some(v.version_id))
        .await?;
    touched.add(&out.version);
    tx.commit().await?;
    Ok((out.version, touched))
}

/// Count and đồng of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figure {
    pub count: i64,
    pub amount: i64,
}

/// Money in and refunds out by channel, over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub from: NaiveDate,
    /// The last day, inclusive.
    pub to: NaiveDate,
    pub received: BTreeMap<String, Figure>,
    pub refunded: BTreeMap<String, Figure>,
}

impl Totals {
    pub fn received_total(&self) -> Figure {
        sum(self.received.values())
    }

    /// The cashless share: everything but cash.
    pub fn cashless(&self) -> Figure {
        sum(self
            .received
            .iter()
            .filter(|(c, _)| c.as_str() != "cash")
            .map(|(_, f)| f))
    }
}

fn sum<'a>(figures: impl Iterator<Item = &'a Figure>) -> Figure {
    figures.fold(Figure::default(), |a, f| Figure {
        count: a.count + f.count,
        amount: a.amount + f.amount,
    })
}

/// The first instant of a day in Vietnam, as a FHIR instant.
pub fn vietnam_midnight(day: NaiveDate) -> String {
    let utc = day.and_hms_opt(0, 0, 0).unwrap_or_default() - Duration::hours(7);
    format!("{}Z", utc.format("%Y-%m-%dT%H:%M:%S"))
}

/// Money in and out from the first day to the last (inclusive), Vietnamese days.
pub async fn totals(
    platform: &Platform,
    caller: &Caller,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(Totals, Touched), Error> {
    authorize(caller, Action::Read, "PaymentNotice")?;
    if caller.principal.compartment().is_some() || caller.principal.role == Role::Clinician {
        return Err(Error::forbidden(
            "the day's totals are the cashiers' and the administrators'",
        ));
    }
    if to < from || (to - from).num_days() > 366 {
        return Err(Error::invalid(
            "end",
            "a period is 1 to 367 days, its end not before its start",
        ));
    }
    let notices = all_notices(
        platform,
        vec![
            ("created".into(), format!("ge{}", vietnam_midnight(from))),
            (
                "created".into(),
                format!("lt{}", vietnam_midnight(to + Duration::days(1))),
            ),
        ],
    )
    .await?;
    let mut t = Totals {
        from,
        to,
        ..Default::default()
    };
    for v in &notices {
        let Ok(n) = serde_json::from_str::<Value>(&v.body) else {
            continue;
        };
        let channel = channel_of(&n).to_owned();
        let amount = notice_amount(&n);
        let slot = if outcome_of(&n) == "refund" {
            t.refunded.entry(channel).or_default()
        } else if is_fresh(&n) {
            t.received.entry(channel).or_default()
        } else {
            continue;
        };
        slot.count += 1;
        slot.amount += amount;
    }
    // The figures are read from many notices: the audit names the query, not each one.
    Ok((t, Touched::target("PaymentNotice")))
}

/// The figures as FHIR `Parameters`: `from`, `to`, one `channel` part per channel (`received`
/// and `refunded` counts and amounts), and the `cashless` share by count and by value.
pub fn totals_parameters(t: &Totals) -> Value {
    let money = |a: i64| json!({"value": a, "currency": "VND"});
    let mut channels: Vec<&String> = t.received.keys().chain(t.refunded.keys()).collect();
    channels.sort();
    channels.dedup();
    let mut parameter = vec![
        json!({"name": "from", "valueDate": t.from.to_string()}),
        json!({"name": "to", "valueDate": t.to.to_string()}),
    ];
    for c in channels {
        let r = t.received.get(c).cloned().unwrap_or_default();
        let o = t.refunded.get(c).cloned().unwrap_or_default();
        parameter.push(json!({"name": "channel", "part": [
            {"name": "code", "valueCode": c},
            {"name": "received-count", "valueInteger": r.count},
            {"name": "received", "valueMoney": money(r.amount)},
            {"name": "refunded-count", "valueInteger": o.count},
            {"name": "refunded", "valueMoney": money(o.amount)},
        ]}));
    }
    let all = t.received_total();
    let cashless = t.cashless();
    let share = |a: i64, b: i64| {
        if b == 0 {
            0.0
        } else {
            ((a as f64 / b as f64) * 10_000.0).round() / 10_000.0
        }
    };
    parameter.push(json!({"name": "total", "part": [
        {"name": "received-count", "valueInteger": all.count},
        {"name": "received", "valueMoney": money(all.amount)},
    ]}));
    parameter.push(json!({"name": "cashless", "part": [
        {"name": "count", "valueInteger": cashless.count},
        {"name": "amount", "valueMoney": money(cashless.amount)},
        {"name": "share-by-count", "valueDecimal": share(cashless.count, all.count)},
        {"name": "share-by-value", "valueDecimal": share(cashless.amount, all.amount)},
    ]}));
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The receipt number of a notice.
pub fn receipt_of(notice: &Value) -> &str {
    identifier(notice, RECEIPT_NUMBER).unwrap_or("")
}

/// The largest statement accepted (a day of a large hospital is far less).
pub const MAX_STATEMENT_BYTES: usize = 8 * 1024 * 1024;

/// Reconciles `provider`'s statement of `day` (CSV, [`crate::reconcile`]) with the ledger:
/// every difference is reported, and the report is kept as a `PaymentReconciliation`
/// (`outcome` `complete` when there is none, `partial` otherwise; each difference one
/// `detail`, its sentence in `processNote`).
pub async fn reconcile(
    platform: &Platform,
    caller: &Caller,
    provider: crate::webhooks::Provider,
    day: NaiveDate,
    csv: &str,
) -> Result<(Version, Touched), Error> {
    use crate::reconcile::{LedgerRow, compare, parse_statement};
    if !matches!(
        caller.principal.role,
        Role::Cashier | Role::Admin | Role::Service
    ) {
        return Err(Error::forbidden(
            "statements are reconciled by a cashier or an administrator",
        ));
    }
    authorize(caller, Action::Read, "PaymentNotice")?;
    if csv.len() > MAX_STATEMENT_BYTES {
        return Err(Error::new(
            codes::BOUND_EXCEEDED,
            format!("a statement is at most {MAX_STATEMENT_BYTES} bytes"),
        ));
    }
    let statement = parse_statement(csv).map_err(|e| Error::invalid("statement", e))?;
    let system = ledger::transaction_system(provider);
    let channel = ledger::channel_of(provider);
    // The day's credits, and those recorded just before or after midnight that the
    // statement names (a transfer at 23:59 may be recorded at 00:00).
    let around = all_notices(
        platform,
        vec![
            (
                "created".into(),
                format!("ge{}", vietnam_midnight(day - Duration::days(1))),
            ),
            (
                "created".into(),
                format!("lt{}", vietnam_midnight(day + Duration::days(2))),
            ),
            ("channel".into(), channel.clone()),
        ],
    )
    .await?;
    let named: std::collections::HashSet<&str> = statement
        .iter()
        .map(|r| r.transaction_id.as_str())
        .collect();
    let (start, end) = (
        vietnam_midnight(day),
        vietnam_midnight(day + Duration::days(1)),
    );
    let mut rows = Vec::new();
    for v in &around {
        let Ok(n) = serde_json::from_str::<Value>(&v.body) else {
            continue;
        };
        let Some(tid) = identifier(&n, system) else {
            continue;
        };
        let created = n.get("created").and_then(Value::as_str).unwrap_or("");
        let at = |s: &str| hospital_core::store::dates::parse_range(s).map(|r| r.lo);
        let on_the_day = at(created)
            .zip(at(&start))
            .zip(at(&end))
            .is_some_and(|((c, s), e)| s <= c && c < e);
        if on_the_day || named.contains(tid) {
            rows.push(LedgerRow {
                transaction_id: tid.to_owned(),
                amount: notice_amount(&n),
                notice: v.id.clone(),
            });
        }
    }
    let differences = compare(day, &statement, &rows);
    let total: i64 = statement.iter().map(|r| r.amount).sum();
    let details: Vec<Value> = differences
        .iter()
        .map(|d| {
            json!({"identifier": {"system": system, "value": d.transaction_id()},
                "type": {"coding": [{"system": "urn:hospital:reconciliation-difference", "code": d.code()}],
                    "text": d.describe()}})
        })
        .collect();
    let notes: Vec<Value> = differences
        .iter()
        .map(|d| json!({"type": "display", "text": d.describe()}))
        .collect();
    let mut body = json!({
        "resourceType": "PaymentReconciliation",
        "status": "active",
        "created": hospital_core::store::dates::format_instant(hospital_core::store::dates::now_micros()),
        "period": {"start": day.to_string(), "end": day.to_string()},
        "paymentDate": day.to_string(),
        "paymentAmount": {"value": total, "currency": "VND"},
        "paymentIdentifier": {"system": "urn:hospital:statement", "value": format!("{}:{day}", provider.as_str())},
        "outcome": if differences.is_empty() { "complete" } else { "partial" },
        "disposition": format!(
            "{} statement of {day}: {} transactions, {} in the ledger, {} differences",
            provider.as_str(), statement.len(), rows.len(), differences.len()
        ),
        "requestor": {"display": caller.principal.audit_name()},
    });
    if !details.is_empty() {
        body["detail"] = Value::Array(details);
        body["processNote"] = Value::Array(notes);
    }
    let mut tx = platform.begin(caller).await?;
    let w = platform
        .writer()
        .create_by_service(&mut tx, "PaymentReconciliation", body)
        .await?;
    tx.commit().await?;
    let mut touched = Touched::target("PaymentNotice");
    touched.add(&w.version);
    Ok((w.version, touched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vietnamese_day_starts_at_17_utc_the_day_before() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        assert_eq!(vietnam_midnight(d), "2026-12-01T17:00:00Z");
    }

    #[test]
    fn the_cashless_share_leaves_out_cash_only() {
        let mut t = Totals::default();
        t.received.insert(
            "cash".into(),
            Figure {
                count: 1,
                amount: 300,
            },
        );
        t.received.insert(
            "vietqr-casso".into(),
            Figure {
                count: 2,
                amount: 600,
            },
        );
        t.received.insert(
            "card".into(),
            Figure {
                count: 1,
                amount: 100,
            },
        );
        assert_eq!(
            t.cashless(),
            Figure {
                count: 3,
                amount: 700
            }
        );
        let p = totals_parameters(&t);
        let c = p["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "cashless")
            .unwrap();
        assert_eq!(c["part"][2]["valueDecimal"], 0.75);
        assert_eq!(c["part"][3]["valueDecimal"], 0.7);
    }
}
