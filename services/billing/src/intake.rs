//! The webhook endpoints bank feeds call (no bearer token: each is authenticated by its
//! provider's signature, checked before anything else is read). They only translate: the
//! ledger ([`ledger::receive`], [`ledger::receive_vnpay`]) decides and keeps.
//!
//! - `POST /webhooks/sepay`, `POST /webhooks/casso`, `POST /webhooks/payos` — answer
//!   `{"success": true}` once the credit is in the ledger (or was already); a refusal answers
//!   `{"success": false, "error": <what is wrong>, "code": <code of docs/errors.md>}` with its
//!   status: 401 when the signature fails (`BL_01`), 422 when a signed body is not one the
//!   provider sends (`BL_02`) or credits another account (`BL_03`), 400 for an amount that is
//!   no payment;
//! - `GET /webhooks/vnpay` — VNPay's IPN, answered in VNPay's protocol (`RspCode`,
//!   `Message`): checksum (97), order (01), amount (04), already confirmed (02), then 00.
//!
//! A provider whose secret is not configured answers 404: its door does not exist. Every
//! verified delivery is kept as received (`bank_deliveries`) before it is answered, and every
//! delivery, accepted or refused, leaves one audit line; one that fails verification leaves
//! nothing else. Failed signatures count against their client like failed sign-ins: slowed,
//! then 429, their audit records bounded.

use crate::ledger::{self, Delivery};
use crate::webhooks::{self, Credit, Provider, Refusal, SepayAuth, VnpayAnswer};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
    /// Told when a payment settles a visit's prepayment.
    prepaid: crate::prepaid::Prepaid,
}

pub fn routes(
    platform: Platform,
    secrets: Secrets,
    hospital: String,
    account: String,
    prepaid: crate::prepaid::Prepaid,
) -> Router {
    Router::new()
        .route("/webhooks/vnpay", axum::routing::get(vnpay))
        .route("/webhooks/{provider}", axum::routing::post(deliver))
        .with_state(Intake {
            platform,
            secrets,
            hospital,
            account,
            prepaid,
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
    hospital_host::metrics::WEBHOOK_SIGNATURE_FAILURES
        .inc(&[target.strip_prefix("webhooks/").unwrap_or(target)]);
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

/// A refusal in the bank feeds' JSON: what is wrong, and its stable code.
fn refused(e: &Error) -> Response {
    let status = StatusCode::from_u16(hospital_core::error::outcome_status(e.kind()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer(
        status,
        json!({"success": false, "error": e.message, "code": e.code.id}),
    )
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
    let parsed = Provider::parse(&provider);
    let verified: Option<Result<Credit, Refusal>> = match parsed {
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
    let (Some(verified), Some(provider)) = (verified, parsed) else {
        audit(&i, &headers, addr, &target, 404).await;
        return answer(
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "no such webhook"}),
        );
    };
    let from = hospital_web::anonymous(&i.platform, &headers, Some(addr.ip()));
    let delivery = Delivery {
        provider,
        raw: &raw,
        from: &from,
    };
    let credit = match verified {
        Ok(c) => c,
        // Signed by the provider, but not a body it sends: kept, never credited.
        Err(Refusal::Malformed(why)) => {
            return refused(&ledger::refuse_malformed(&i.platform, &delivery, &why).await);
        }
        Err(r) => {
            let e = r.error();
            let status = hospital_core::error::outcome_status(e.kind());
            if failed(&i, &headers, addr, &target, status).await {
                return answer(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"success": false, "error": "too many failed deliveries from this client; try again later"}),
                );
            }
            return refused(&e);
        }
    };
    let received = ledger::receive(
        &i.platform,
        &i.hospital,
        &i.account,
        &delivery,
        &credit,
        &i.prepaid,
    )
    .await;
    match received {
        Ok(_) => answer(StatusCode::OK, json!({"success": true})),
        Err(e) => refused(&e),
    }
}

fn vnpay_answer(a: VnpayAnswer) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        a.body(),
    )
        .into_response()
}

/// VNPay's IPN: the checksum, then the ledger's checks in VNPay's order.
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
    let Ok(ipn) = webhooks::vnpay(secret, &query) else {
        if failed(&i, &headers, addr, target, 401).await {
            return (StatusCode::TOO_MANY_REQUESTS, "too many failed deliveries").into_response();
        }
        return vnpay_answer(VnpayAnswer::InvalidChecksum);
    };
    let from = hospital_web::anonymous(&i.platform, &headers, Some(addr.ip()));
    let delivery = Delivery {
        provider: Provider::Vnpay,
        raw: query.as_bytes(),
        from: &from,
    };
    let received = ledger::receive_vnpay(
        &i.platform,
        &i.hospital,
        &i.account,
        &delivery,
        &ipn,
        &i.prepaid,
    )
    .await;
    match received {
        Ok(a) => vnpay_answer(a),
        // Kept and audited by the ledger when it could be: VNPay tries again.
        Err(_) => vnpay_answer(VnpayAnswer::Failed),
    }
}
