//! `POST /fhir/Invoice/{id}/$pay-cash` with `Parameters` (`amount`: valueMoney in VND;
//! `method`: `cash`, the default, or `card` for the desk's card terminal): a cashier records
//! money taken at the desk. It goes into the same ledger as the bank feeds,
//! under the same lock on the bill: the answer names the receipt; cash for a bill already paid,
//! or more than it has left, is refused (409) and nothing is recorded.

use crate::invoice::{BILL_NUMBER, RECEIPT_NUMBER, identifier, vnd};
use crate::ledger::{self, Outcome};
use crate::webhooks::{Credit, Provider};
use async_trait::async_trait;
use hospital_core::auth::{Action, Role};
use hospital_core::store::SearchQuery;
use hospital_core::{AuditAction, Caller, Error, Operation, Platform, Touched, authorize};
use serde_json::{Value, json};

pub struct PayCash {
    pub platform: Platform,
    pub hospital: String,
    pub account: String,
    pub prepaid: crate::prepaid::Prepaid,
}

#[async_trait]
impl Operation for PayCash {
    fn resource_type(&self) -> &'static str {
        "Invoice"
    }

    fn name(&self) -> &'static str {
        "$pay-cash"
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
        if !matches!(caller.principal.role, Role::Cashier | Role::Service) {
            return Err(Error::forbidden("cash is taken by a cashier"));
        }
        authorize(caller, Action::Write, "PaymentNotice")?;
        let input = input.unwrap_or_default();
        let money = input["parameter"]
            .as_array()
            .and_then(|p| p.iter().find(|x| x["name"] == "amount"))
            .map(|x| x["valueMoney"].clone());
        let amount = vnd(money.as_ref(), "Parameters.amount")?.ok_or_else(|| {
            Error::invalid("Parameters.amount", "say how much cash (valueMoney, VND)")
        })?;
        let provider = match hospital_core::operation::parameter_text(&input, "method") {
            None | Some("cash") => Provider::Cash,
            Some("card") => Provider::Card,
            Some(other) => {
                return Err(Error::invalid(
                    "Parameters.method",
                    format!("`{other}` is not a way to pay at the desk (cash, card)"),
                ));
            }
        };
        self.take(caller, id, amount, provider).await
    }
}

impl PayCash {
    /// Takes `amount` đồng for the invoice `id` at the desk (cash or card), as `caller`: the
    /// outcome, the receipt, the notice — as `Parameters`.
    pub async fn take(
        &self,
        caller: &Caller,
        id: &str,
        amount: i64,
        provider: Provider,
    ) -> Result<(Value, Touched), Error> {
        let (platform, hospital, account) = (&self.platform, &self.hospital, &self.account);
        let prepaid = &self.prepaid;
        if !matches!(caller.principal.role, Role::Cashier | Role::Service) {
            return Err(Error::forbidden("cash is taken by a cashier"));
        }
        authorize(caller, Action::Write, "PaymentNotice")?;
        let v = platform.store().read("Invoice", id).await?;
        let invoice: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored invoice unreadable"))?;
        let bill = identifier(&invoice, BILL_NUMBER).unwrap_or("").to_owned();
        let credit = Credit {
            provider,
            transaction_id: uuid::Uuid::new_v4().to_string(),
            incoming: true,
            account: account.to_owned(),
            amount,
            memo: format!(
                "{} at the desk, {}",
                provider.as_str(),
                caller.principal.audit_name()
            ),
            bank_reference: String::new(),
            at: String::new(),
            order: Some(bill),
        };
        let outcome =
            ledger::record_at_desk(platform, hospital, account, &credit, caller, prepaid).await?;
        let q = SearchQuery::new(
            "PaymentNotice",
            vec![(
                "identifier".into(),
                format!(
                    "{}|{}",
                    ledger::transaction_system(provider),
                    credit.transaction_id
                ),
            )],
        );
        let notice = platform
            .store()
            .search(&q)
            .await?
            .matches
            .into_iter()
            .next();
        let receipt = notice
            .as_ref()
            .and_then(|n| serde_json::from_str::<Value>(&n.body).ok())
            .and_then(|n| identifier(&n, RECEIPT_NUMBER).map(str::to_owned))
            .unwrap_or_default();
        let outcome = match outcome {
            Outcome::Paid { .. } => "paid",
            Outcome::Partial { .. } => "partial",
            _ => "recorded",
        };
        let mut touched = Touched::of(std::slice::from_ref(&v));
        touched.audited = true;
        Ok((
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "outcome", "valueCode": outcome},
                {"name": "receipt", "valueString": receipt},
                {"name": "notice", "valueReference": {"reference": notice.map(|n| format!("PaymentNotice/{}", n.id)).unwrap_or_default()}},
            ]}),
            touched,
        ))
    }
}
