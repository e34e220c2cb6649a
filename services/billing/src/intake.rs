//! The webhook endpoints bank feeds call (no bearer token: each is authenticated by its
//! provider's signature, checked before anything else is read):
//!
//! - `POST /webhooks/sepay`, `POST /webhooks/casso`, `POST /webhooks/payos` — answer
//!   `{"success": true}` once the credit is in the ledger (or was already), 401 when the
//!   signature fails, 422 when a signed delivery is not a credit to the hospital;
//! - `GET /webhooks/vnpay` — VNPay's IPN, answered in VNPay's protocol (`RspCode`,
//!   `Message`): checksum (97), order (01), amount (04), already confirmed (02), then 00.
//!
//! A provider whose secret is not configured answers 404: its door does not exist. Every
//! delivery, accepted or refused, leaves an audit record; a refused one stores nothing else.
//! Failed signatures count against their client like failed sign-ins: slowed, then 429, their
//! audit records bounded.

use crate::ledger::{self, Outcome};
use crate::payment_qr::owed;
use crate::webhooks::{self, Credit, Provider, Refusal, SepayAuth};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hospital_core::store::SearchQuery;
use hospital_core::{AuditAction, Error, Interaction, Platform, Touched};
use serde_json::json;
use std::net::SocketAddr;

/// The providers' secrets and where credits must land.
#[derive(Clone, Default)]
pub struct Secrets {
    pub sepay: Option<SepayAuth>,
    pub casso: Option<String>,
    pub payos: Option<String>,
    pub vnpay: Option<String>,
}

#[derive(Clone)]
struct Intake {
    platform: Platform,
    secrets: Secrets,
    hospital: String,
    account: String,
}

pub fn routes(platform: Platform, secrets: Secrets, hospital: String, account: String) -> Router {
    Router::new()
        .route("/webhooks/vnpay", axum::routing::get(vnpay))
        .route("/webhooks/{provider}", axum::routing::post(deliver))
        .with_state(Intake {
            platform,
            secrets,
            hospital,
            account,
        })
}

fn now_secs() -> i64 {
    hospital_core::store::dates::now_micros() / 1_000_000
}

async fn audit(i: &Intake, headers: &HeaderMap, addr: SocketAddr, target: &str, status: u16) {
    let caller = hospital_web::anonymous(&i.platform, headers, Some(addr.ip()));
    let _ = i
        .platform
        .audit(
            &caller,
            Interaction::Call("webhook", AuditAction::C),
            "PaymentNotice",
            &Touched::target(target),
            status,
        )
        .await;
}

/// A delivery whose signature fails: throttled and audited like a failed sign-in
/// ([`Platform::anonymous_failure`]); `true` when the client is locked out.
async fn failed(
    i: &Intake,
    headers: &HeaderMap,
    addr: SocketAddr,
    target: &str,
    status: u16,
) -> bool {
    let caller = hospital_web::anonymous(&i.platform, headers, Some(addr.ip()));
    i.platform
        .anonymous_failure(
            &caller,
            Interaction::Call("webhook", AuditAction::C),
            "PaymentNotice",
            target,
            status,
        )
        .await
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn deliver(
    State(i): State<Intake>,
    Path(provider): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let target = format!("webhooks/{provider}");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let verified: Option<Result<Credit, Refusal>> = match Provider::parse(&provider) {
        Some(Provider::Sepay) => i
            .secrets
            .sepay
            .as_ref()
            .map(|auth| webhooks::sepay(auth, &header, &raw, now_secs())),
        Some(Provider::Casso) => i.secrets.casso.as_ref().map(|key| {
            webhooks::casso(
                key,
                header("x-casso-signature").as_deref(),
                &raw,
                now_secs(),
            )
        }),
        Some(Provider::Payos) => i
            .secrets
            .payos
            .as_ref()
            .map(|key| webhooks::payos(key, &raw)),
        _ => None,
    };
    let Some(verified) = verified else {
        audit(&i, &headers, addr, &target, 404).await;
        return answer(
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "no such webhook"}),
        );
    };
    let credit = match verified {
        Ok(c) => c,
        Err(r) => {
            let status = match r {
                Refusal::Malformed(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::UNAUTHORIZED,
            };
            if failed(&i, &headers, addr, &target, status.as_u16()).await {
                return answer(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"success": false, "error": "too many failed deliveries from this client; try again later"}),
                );
            }
            return answer(status, json!({"success": false, "error": r.to_string()}));
        }
    };
    match ledger::record(&i.platform, &i.hospital, &i.account, &credit, &raw).await {
        Ok(outcome) => {
            if matches!(outcome, Outcome::Duplicate | Outcome::Ignored) {
                audit(&i, &headers, addr, &target, 200).await;
            }
            answer(StatusCode::OK, json!({"success": true}))
        }
        Err(e) => {
            let status = hospital_core::error::outcome_status(e.kind());
            audit(&i, &headers, addr, &target, status).await;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            answer(status, json!({"success": false, "error": e.message}))
        }
    }
}

fn vnpay_answer(code: &str, message: &str) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        webhooks::vnpay_answer(code, message),
    )
        .into_response()
}

/// VNPay's IPN: its checks in its order, then the ledger.
async fn vnpay(
    State(i): State<Intake>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let target = "webhooks/vnpay";
    let Some(secret) = &i.secrets.vnpay else {
        audit(&i, &headers, addr, target, 404).await;
        return (StatusCode::NOT_FOUND, "no such webhook").into_response();
    };
    let query = query.unwrap_or_default();
    let ipn = match webhooks::vnpay(secret, &query) {
        Ok(ipn) => ipn,
        Err(_) => {
            if failed(&i, &headers, addr, target, 401).await {
                return (StatusCode::TOO_MANY_REQUESTS, "too many failed deliveries")
                    .into_response();
            }
            return vnpay_answer("97", "Invalid Checksum");
        }
    };
    let result: Result<Response, Error> = async {
        let find = |system: &str| {
            SearchQuery::new(
                "Invoice",
                vec![(
                    "identifier".into(),
                    format!("{system}|{}", ipn.txn_ref.replace(',', "\\,")),
                )],
            )
        };
        let mut found = i
            .platform
            .store()
            .search(&find(crate::invoice::BILL_NUMBER))
            .await?
            .matches;
        if found.is_empty() {
            found = i
                .platform
                .store()
                .search(&find(crate::invoice::PAYMENT_CODE))
                .await?
                .matches;
        }
        let Some(v) = found.into_iter().next() else {
            return Ok(vnpay_answer("01", "Order not Found"));
        };
        let inv: serde_json::Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored invoice unreadable"))?;
        let status = inv.get("status").and_then(|s| s.as_str()).unwrap_or("");
        if status == "balanced" {
            return Ok(vnpay_answer("02", "Order already confirmed"));
        }
        let Ok(o) = owed(&inv) else {
            return Ok(vnpay_answer("01", "Order not Found"));
        };
        if ipn.amount != o.amount - ledger::paid(&i.platform, &v.id).await? {
            return Ok(vnpay_answer("04", "invalid amount"));
        }
        if ipn.paid {
            let credit = Credit {
                provider: Provider::Vnpay,
                transaction_id: ipn.transaction_no.clone(),
                incoming: true,
                account: i.account.clone(),
                amount: ipn.amount,
                memo: ipn.order_info.clone(),
                bank_reference: ipn.bank_reference.clone(),
                at: ipn.pay_date.clone(),
                order: Some(ipn.txn_ref.clone()),
            };
            if ledger::record(
                &i.platform,
                &i.hospital,
                &i.account,
                &credit,
                query.as_bytes(),
            )
            .await?
                == Outcome::Duplicate
            {
                return Ok(vnpay_answer("02", "Order already confirmed"));
            }
        } else {
            audit(&i, &headers, addr, target, 200).await;
        }
        Ok(vnpay_answer("00", "Confirm Success"))
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) => {
            audit(
                &i,
                &headers,
                addr,
                target,
                hospital_core::error::outcome_status(e.kind()),
            )
            .await;
            vnpay_answer("99", "Unknow error")
        }
    }
}
