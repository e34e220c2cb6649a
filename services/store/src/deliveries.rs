//! The bank feeds' deliveries as received (`bank_deliveries`): every delivery whose signature
//! verified, its raw bytes kept before it is answered — in the transaction of the ledger's
//! credit when there is one ([`Tx::record_delivery`]), so a credit never exists without the
//! bytes it came in, nor the bytes of a credit that rolled back. Append-only: both databases
//! refuse UPDATE and DELETE. A delivery that fails verification is never kept here.

use crate::{Result, Store, Tx, dates};
use sqlx::Row;

/// One kept delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    /// `sepay`, `casso`, `payos`, `vnpay`.
    pub provider: String,
    /// The provider's id of the transaction, when the body names one.
    pub transaction_id: Option<String>,
    /// µs since the epoch.
    pub received_at: i64,
    /// What became of it: `paid`, `partial`, `overpaid`, `unmatched`, `duplicate`, `ignored`,
    /// `not-paid`, `malformed`, or `refused:<error code>`.
    pub outcome: String,
    /// The bytes as received (the body; VNPay's query string).
    pub raw: Vec<u8>,
}

/// The raw bytes may carry a payer's name and account: never printed.
impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("transaction_id", &self.transaction_id)
            .field("received_at", &self.received_at)
            .field("outcome", &self.outcome)
            .field("raw", &format_args!("{} bytes", self.raw.len()))
            .finish()
    }
}

impl Tx {
    /// Keeps a delivery in this transaction: it exists if and only if the transaction
    /// commits. Returns its id.
    pub async fn record_delivery(
        &mut self,
        provider: &str,
        transaction_id: Option<&str>,
        outcome: &str,
        raw: &[u8],
    ) -> Result<i64> {
        let d = self.dialect();
        let row = sqlx::query(&d.sql(
            "INSERT INTO bank_deliveries (provider, transaction_id, received_at, outcome, raw) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        ))
        .bind(provider)
        .bind(transaction_id.map(str::to_owned))
        .bind(dates::now_micros())
        .bind(outcome)
        .bind(raw.to_vec())
        .fetch_one(self.conn().await?)
        .await?;
        Ok(row.try_get(0)?)
    }
}

impl Store {
    /// The last `limit` deliveries of `provider` (every provider when `None`), newest first.
    pub async fn deliveries(&self, provider: Option<&str>, limit: i64) -> Result<Vec<Delivery>> {
        let d = self.dialect();
        let rows = sqlx::query(&d.sql(
            "SELECT id, provider, transaction_id, received_at, outcome, raw FROM bank_deliveries \
             WHERE ($1 = '' OR provider = $1) ORDER BY id DESC LIMIT $2",
        ))
        .bind(provider.unwrap_or("").to_owned())
        .bind(limit)
        .fetch_all(&self.inner.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.try_get(0)?,
                    provider: r.try_get(1)?,
                    transaction_id: r.try_get(2)?,
                    received_at: r.try_get(3)?,
                    outcome: r.try_get(4)?,
                    raw: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// How many deliveries are kept.
    pub async fn count_deliveries(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM bank_deliveries")
            .fetch_one(&self.inner.reader)
            .await?;
        Ok(row.try_get(0)?)
    }
}
