//! `hospital simulate-payment VP...`: what a bank feed does when a patient pays, for trying the
//! system without a bank. It finds the open bill with that payment code, and posts to the
//! running system's Casso webhook a delivery signed exactly as Casso signs it (HMAC-SHA512 of
//! the timestamp and the sorted body), with a memo written the way banks write them.

use anyhow::Context as _;
use hospital_core::store::SearchQuery;
use serde_json::{Value, json};

/// Posts the payment of the bill with `code` (its amount owed unless `amount` is given) to
/// `base` (the running system, default `http://HTTP_ADDR`). Returns the webhook's answer.
pub async fn simulate_payment(
    cfg: &crate::Config,
    code: &str,
    amount: Option<i64>,
    base: Option<&str>,
) -> anyhow::Result<String> {
    let key = cfg
        .casso_key
        .clone()
        .or_else(|| hospital_host::embedded_casso_key(cfg))
        .context("no Casso key: set HOSPITAL_CASSO_KEY (the embedded mode derives one)")?;
    let code = code.trim().to_ascii_uppercase();
    let amount = match amount {
        Some(a) => a,
        None => {
            let store = crate::open_store(cfg).await?;
            let owed = owed_by_code(&store, &code).await;
            store.close().await;
            owed?
        }
    };
    let id: u32 = rand::random();
    let body = json!({"error": 0, "data": {
        "id": id, "reference": format!("FT{id}"),
        "description": format!("MBVCB.{id}.{code}.CT tu 0123456789 NGUYEN VAN AN"),
        "amount": amount, "runningBalance": 0,
        "transactionDateTime": crate::simulate::now_text(),
        "accountNumber": cfg.bank_account, "bankName": "", "bankAbbreviation": "",
        "virtualAccountNumber": "", "virtualAccountName": "",
        "counterAccountName": "NGUYEN VAN AN", "counterAccountNumber": "0123456789",
        "counterAccountBankId": "970436", "counterAccountBankName": "Vietcombank"}});
    let t = hospital_core::store::dates::now_micros() / 1000;
    let signed = format!("{t}.{}", hospital_core::store::sorted_json(&body));
    let v1 = hospital_billing::webhooks::hmac_sha512_hex(key.as_bytes(), signed.as_bytes());
    let base = base
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http://{}", cfg.http_addr));
    let url = format!("{}/webhooks/casso", base.trim_end_matches('/'));
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-casso-signature", format!("t={t},v1={v1}"))
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach {url}: is the system running?"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the webhook answered {status}: {text}");
    }
    Ok(format!("paid {amount} đồng to {code}: {text}"))
}

/// What the open bill with payment `code` owes, from the store.
pub async fn owed_by_code(store: &hospital_core::store::Store, code: &str) -> anyhow::Result<i64> {
    let found = store
        .search(&SearchQuery::new(
            "Invoice",
            vec![(
                "identifier".into(),
                format!("{}|{code}", hospital_billing::invoice::PAYMENT_CODE),
            )],
        ))
        .await?;
    let v = found
        .matches
        .into_iter()
        .next()
        .with_context(|| format!("no bill has the payment code {code}"))?;
    let invoice: Value = serde_json::from_str(&v.body)?;
    Ok(hospital_billing::payment_qr::owed(&invoice)
        .map_err(|e| anyhow::anyhow!("{code}: {e}"))?
        .amount)
}

fn now_text() -> String {
    hospital_billing::invoice::vietnam_now()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
