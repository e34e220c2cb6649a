//! The billing service's rules on its types, one door for each: every write of them, by REST,
//! Bundle or gRPC, comes through [`BillingRules`].

use async_trait::async_trait;
use hospital_core::rules::check_references;
use hospital_core::{Error, Origin, ResourceRules, Tx, Write};
use serde_json::Value;

pub struct BillingRules;

#[async_trait]
impl ResourceRules for BillingRules {
    async fn prepare(&self, tx: &mut Tx, w: &Write<'_>, body: &mut Value) -> Result<(), Error> {
        match w.resource_type {
            "Invoice" => crate::invoice::prepare_invoice(tx, w, body).await?,
            "ChargeItemDefinition" => crate::prices::prepare(tx, w.id, body).await?,
            "ChargeItem" => crate::charges::prepare(tx, w, body).await?,
            "PaymentNotice" | "PaymentReconciliation" if w.origin != Origin::Service => {
                return Err(Error::not_supported(format!(
                    "{} is written by billing from its ledger of payments, never by a client",
                    w.resource_type
                )));
            }
            _ => {}
        }
        Ok(())
    }

    async fn check(&self, tx: &mut Tx, _resource_type: &str, body: &Value) -> Result<(), Error> {
        check_references(tx, body).await
    }
}
