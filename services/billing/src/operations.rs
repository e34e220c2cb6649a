//! Billing's FHIR operations besides `$payment-qr` and `$pay-cash`: each only reads its
//! `Parameters` and calls the rule it names.
//!
//! | operation | who | rule |
//! |---|---|---|
//! | `POST Invoice/$issue` (`encounter`, optionally the `card-number` or `national-id` shown; or `patient` + `deposit`) | cashier | [`Invoicing::issue`] |
//! | `POST Invoice/{id}/$cancel` (`reason`) | cashier | [`Invoicing::cancel`] |
//! | `GET PaymentNotice/$queue` | cashier | [`desk::queue`] |
//! | `POST PaymentNotice/{id}/$assign` (`invoice`) | cashier | [`desk::assign`] |
//! | `POST PaymentNotice/{id}/$refund` (`reason`) | cashier | [`desk::refund`] |
//! | `GET PaymentNotice/$totals?start=&end=` (or `date=`) | cashier, admin | [`desk::totals`] |
//! | `POST PaymentReconciliation/$import` (`provider`, `date`, `statement`) | cashier, admin | [`desk::reconcile`] |

use crate::desk;
use crate::issue::{CoverageKey, Invoicing, Request};
use crate::webhooks::Provider;
use async_trait::async_trait;
use base64::Engine;
use chrono::NaiveDate;
use hospital_core::operation::{parameter, parameter_text};
use hospital_core::{AuditAction, Caller, Error, Operation, Platform, Touched};
use serde_json::{Value, json};

/// The text of an output parameter (`valueString`, `valueCode`), or empty.
pub fn parameter_string(p: &Value, name: &str) -> String {
    parameter_text(p, name).unwrap_or_default().to_owned()
}

fn text<'a>(input: &'a Value, name: &str) -> Result<&'a str, Error> {
    parameter_text(input, name).ok_or_else(|| {
        Error::invalid(
            format!("Parameters.{name}"),
            format!("`{name}` is required"),
        )
    })
}

fn id_of<'a>(reference: &'a str, rtype: &str, name: &str) -> Result<&'a str, Error> {
    let id = reference
        .strip_prefix(rtype)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(reference);
    if hospital_core::store::is_valid_id(id) {
        Ok(id)
    } else {
        Err(Error::invalid(
            format!("Parameters.{name}"),
            format!("`{name}` names a {rtype} (`{rtype}/<id>`)"),
        ))
    }
}

fn day(input: &Value, name: &str) -> Result<Option<NaiveDate>, Error> {
    parameter_text(input, name)
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| Error::invalid(format!("Parameters.{name}"), "a day is YYYY-MM-DD"))
        })
        .transpose()
}

/// `POST Invoice/$issue`.
pub struct Issue(pub Invoicing);

#[async_trait]
impl Operation for Issue {
    fn resource_type(&self) -> &'static str {
        "Invoice"
    }
    fn name(&self) -> &'static str {
        "$issue"
    }
    fn action(&self) -> AuditAction {
        AuditAction::C
    }
    fn posted(&self) -> bool {
        true
    }
    fn on_type(&self) -> bool {
        true
    }
    async fn run(
        &self,
        caller: &Caller,
        _: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let input = input.unwrap_or_default();
        let shown = match (
            parameter_text(&input, "card-number"),
            parameter_text(&input, "national-id"),
        ) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "Parameters",
                    "give the `card-number` or the `national-id` the patient showed, not both",
                ));
            }
            (Some(c), None) => Some(CoverageKey::card(c, "Parameters.card-number")?),
            (None, Some(n)) => Some(CoverageKey::personal_id(n, "Parameters.national-id")?),
            (None, None) => None,
        };
        let request = match parameter_text(&input, "encounter") {
            Some(e) => Request::Encounter {
                encounter: id_of(e, "Encounter", "encounter")?.to_owned(),
                new_charges: Vec::new(),
                shown,
            },
            None if shown.is_some() => {
                return Err(Error::invalid(
                    "Parameters",
                    "a deposit is self-pay: a card or personal ID is looked up only for an `encounter`",
                ));
            }
            None => {
                let patient = id_of(text(&input, "patient")?, "Patient", "patient")?.to_owned();
                let money = parameter(&input, "deposit").and_then(|p| p.get("valueMoney"));
                let amount =
                    crate::invoice::vnd(money, "Parameters.deposit")?.ok_or_else(|| {
                        Error::invalid(
                            "Parameters.deposit",
                            "name an `encounter`, or a `patient` and a `deposit` (valueMoney, VND)",
                        )
                    })?;
                Request::Deposit { patient, amount }
            }
        };
        let (v, touched) = self.0.issue(caller, &request, None).await?;
        let body: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored invoice unreadable"))?;
        Ok((body, touched))
    }
}

/// `POST Invoice/{id}/$cancel`.
pub struct Cancel(pub Invoicing);

#[async_trait]
impl Operation for Cancel {
    fn resource_type(&self) -> &'static str {
        "Invoice"
    }
    fn name(&self) -> &'static str {
        "$cancel"
    }
    fn action(&self) -> AuditAction {
        AuditAction::U
    }
    fn posted(&self) -> bool {
        true
    }
    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let input = input.unwrap_or_default();
        let (v, touched) = self.0.cancel(caller, id, text(&input, "reason")?).await?;
        let body: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored invoice unreadable"))?;
        Ok((body, touched))
    }
}

/// The queue as `Parameters`: one `unmatched` or `to-refund` part per waiting credit.
pub fn queue_parameters(q: &desk::Queue) -> Value {
    let item = |name: &str, w: &desk::Waiting| {
        json!({"name": name, "part": [
            {"name": "notice", "valueReference": {"reference": format!("PaymentNotice/{}", w.notice.id)}},
            {"name": "amount", "valueMoney": {"value": w.amount, "currency": "VND"}},
            {"name": "channel", "valueCode": desk::channel_of(&w.body)},
            {"name": "received", "valueDateTime": w.body.get("created").cloned().unwrap_or(json!(""))},
            {"name": "memo", "valueString": crate::desk::memo_of(&w.body)},
            {"name": "reason", "valueString": w.reason},
        ]})
    };
    let mut parameter: Vec<Value> = q.unmatched.iter().map(|w| item("unmatched", w)).collect();
    parameter.extend(q.to_refund.iter().map(|w| item("to-refund", w)));
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// `GET PaymentNotice/$queue`.
pub struct Queue(pub Platform);

#[async_trait]
impl Operation for Queue {
    fn resource_type(&self) -> &'static str {
        "PaymentNotice"
    }
    fn name(&self) -> &'static str {
        "$queue"
    }
    fn action(&self) -> AuditAction {
        AuditAction::R
    }
    fn on_type(&self) -> bool {
        true
    }
    async fn run(
        &self,
        caller: &Caller,
        _: &str,
        _: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let (q, touched) = desk::queue(&self.0, caller).await?;
        Ok((queue_parameters(&q), touched))
    }
}

/// `POST PaymentNotice/{id}/$assign`.
pub struct Assign(pub Platform, pub crate::prepaid::Prepaid);

#[async_trait]
impl Operation for Assign {
    fn resource_type(&self) -> &'static str {
        "PaymentNotice"
    }
    fn name(&self) -> &'static str {
        "$assign"
    }
    fn action(&self) -> AuditAction {
        AuditAction::C
    }
    fn posted(&self) -> bool {
        true
    }
    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let input = input.unwrap_or_default();
        let invoice = id_of(text(&input, "invoice")?, "Invoice", "invoice")?.to_owned();
        desk::assign(&self.0, caller, id, &invoice, &self.1).await
    }
}

/// `POST PaymentNotice/{id}/$refund`.
pub struct Refund(pub Platform);

#[async_trait]
impl Operation for Refund {
    fn resource_type(&self) -> &'static str {
        "PaymentNotice"
    }
    fn name(&self) -> &'static str {
        "$refund"
    }
    fn action(&self) -> AuditAction {
        AuditAction::C
    }
    fn posted(&self) -> bool {
        true
    }
    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let input = input.unwrap_or_default();
        desk::refund(&self.0, caller, id, text(&input, "reason")?).await
    }
}

/// `GET PaymentNotice/$totals?date=` (one day) or `?start=&end=` (a period, the cashless
/// indicator's).
pub struct Totals(pub Platform);

#[async_trait]
impl Operation for Totals {
    fn resource_type(&self) -> &'static str {
        "PaymentNotice"
    }
    fn name(&self) -> &'static str {
        "$totals"
    }
    fn action(&self) -> AuditAction {
        AuditAction::R
    }
    fn on_type(&self) -> bool {
        true
    }
    async fn run(
        &self,
        caller: &Caller,
        _: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let input = input.unwrap_or_default();
        let today = crate::invoice::vietnam_now().date();
        let (from, to) = match day(&input, "date")? {
            Some(d) => (d, d),
            None => {
                let from = day(&input, "start")?.unwrap_or(today);
                (from, day(&input, "end")?.unwrap_or(from))
            }
        };
        let (t, touched) = desk::totals(&self.0, caller, from, to).await?;
        Ok((desk::totals_parameters(&t), touched))
    }
}

/// `POST PaymentReconciliation/$import`: `provider` (sepay, casso, payos, vnpay), `date`, and
/// `statement` — the CSV as a `valueString`, or a `valueAttachment` with base64 `data`.
pub struct Import(pub Platform);

#[async_trait]
impl Operation for Import {
    fn resource_type(&self) -> &'static str {
        "PaymentReconciliation"
    }
    fn name(&self) -> &'static str {
        "$import"
    }
    fn action(&self) -> AuditAction {
        AuditAction::C
    }
    fn posted(&self) -> bool {
        true
    }
    fn on_type(&self) -> bool {
        true
    }
    async fn run(
        &self,
        caller: &Caller,
        _: &str,
        input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        let input = input.unwrap_or_default();
        let provider = text(&input, "provider")?;
        let provider = Provider::parse(provider).ok_or_else(|| {
            Error::invalid(
                "Parameters.provider",
                format!("`{provider}` is not a bank feed (sepay, casso, payos, vnpay)"),
            )
        })?;
        let date = day(&input, "date")?
            .ok_or_else(|| Error::invalid("Parameters.date", "`date` is required"))?;
        let statement = parameter(&input, "statement").ok_or_else(|| {
            Error::invalid("Parameters.statement", "`statement` (the CSV) is required")
        })?;
        let csv = match (
            statement.get("valueString").and_then(Value::as_str),
            statement
                .pointer("/valueAttachment/data")
                .and_then(Value::as_str),
        ) {
            (Some(s), _) => s.to_owned(),
            (None, Some(b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| {
                        Error::invalid("Parameters.statement", "the attachment is not base64")
                    })?;
                String::from_utf8(bytes).map_err(|_| {
                    Error::invalid("Parameters.statement", "the statement is not UTF-8")
                })?
            }
            _ => {
                return Err(Error::invalid(
                    "Parameters.statement",
                    "the statement is a valueString or a valueAttachment",
                ));
            }
        };
        let (v, touched) = desk::reconcile(&self.0, caller, provider, date, &csv).await?;
        let body: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored report unreadable"))?;
        Ok((body, touched))
    }
}
