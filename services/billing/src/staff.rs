//! The cashier's page, `GET /staff/billing`, for a signed-in cashier or admin (the session of
//! `/signin`): open invoices with money taken at the desk, the queue of unmatched credits and
//! refunds, the day's totals by channel, the cashless indicator for a period, and a printable
//! receipt of every payment (`/staff/billing/receipts/{notice}`). Server-rendered HTML; its
//! forms carry the session's CSRF token and go through the same rules as the API
//! ([`desk`], [`cash::take`]). Each view is audited.

use crate::bhyt::vnd as format_vnd;
use crate::invoice::{BILL_NUMBER, identifier};
use crate::webhooks::Provider;
use crate::{cash, desk};
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{Datelike, NaiveDate};
use hospital_core::auth::Role;
use hospital_core::store::SearchQuery;
use hospital_core::{AuditAction, Caller, Error, Interaction, Platform, Touched};
use hospital_web::{check_csrf, escape, page, signed_in};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Clone)]
struct Staff {
    platform: Platform,
    hospital: String,
    account: String,
    prepaid: crate::prepaid::Prepaid,
}

pub fn routes(
    platform: Platform,
    hospital: String,
    account: String,
    prepaid: crate::prepaid::Prepaid,
) -> Router {
    Router::new()
        .route("/staff/billing", get(show))
        .route("/staff/billing/pay", post(pay))
        .route("/staff/billing/assign", post(assign))
        .route("/staff/billing/refund", post(refund))
        .route("/staff/billing/receipts/{id}", get(receipt))
        .with_state(Staff {
            platform,
            hospital,
            account,
            prepaid,
        })
}

fn vnd(amount: i64) -> String {
    escape(&format_vnd(Decimal::from(amount)))
}

fn refused(status: StatusCode, message: &str) -> Response {
    (
        status,
        page(
            "Thu ngân / Cashier",
            &format!("<p class=\"err\">{}</p>", escape(message)),
        ),
    )
        .into_response()
}

fn error_response(e: &Error) -> Response {
    let status = StatusCode::from_u16(hospital_core::error::outcome_status(e.kind()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    refused(status, &e.message)
}

/// The signed-in cashier or admin, or the answer to give instead.
async fn staff(
    s: &Staff,
    headers: &HeaderMap,
    addr: SocketAddr,
    path: &str,
) -> Result<(Caller, hospital_core::session::Session), Response> {
    let (caller, session) = signed_in(&s.platform, headers, Some(addr.ip()), path).await?;
    if !matches!(caller.principal.role, Role::Cashier | Role::Admin) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "Trang này dành cho thu ngân và quản trị / for cashiers and administrators",
        ));
    }
    Ok((caller, session))
}

/// The signed-in cashier or admin posting a form with their session's CSRF token, or the
/// answer to give instead.
async fn form_caller(
    s: &Staff,
    headers: &HeaderMap,
    addr: SocketAddr,
    csrf: &str,
) -> Result<Caller, Response> {
    let (caller, session) = staff(s, headers, addr, "/staff/billing").await?;
    check_csrf(&session, csrf).map_err(|e| error_response(&e))?;
    Ok(caller)
}

fn back(msg: &str) -> Response {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("msg", msg)
        .finish();
    Redirect::to(&format!("/staff/billing?{q}")).into_response()
}

fn day_param(q: &HashMap<String, String>, key: &str) -> Option<NaiveDate> {
    q.get(key)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

/// The full name of the patient an invoice is for (staff see it unmasked).
async fn patient_name(platform: &Platform, invoice: &Value) -> String {
    let Some(pid) = invoice
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
    else {
        return String::new();
    };
    match platform.store().read("Patient", pid).await {
        Ok(p) => crate::page::patient_name(&serde_json::from_str(&p.body).unwrap_or_default())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    }
}

fn totals_table(t: &desk::Totals) -> String {
    let mut out = String::from(
        "<table class=\"grid\"><tr><th>Kênh / Channel</th><th>Số GD / Count</th><th>Thu / In</th><th>Hoàn / Refunded</th></tr>",
    );
    let mut channels: Vec<&String> = t.received.keys().chain(t.refunded.keys()).collect();
    channels.sort();
    channels.dedup();
    for c in channels {
        let r = t.received.get(c).cloned().unwrap_or_default();
        let o = t.refunded.get(c).cloned().unwrap_or_default();
        out.push_str(&format!(
            "<tr data-channel=\"{c}\"><td>{c}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.count,
            vnd(r.amount),
            vnd(o.amount),
            c = escape(c)
        ));
    }
    let all = t.received_total();
    let cashless = t.cashless();
    let pct = |a: i64, b: i64| {
        if b == 0 {
            "—".to_owned()
        } else {
            format!("{:.1} %", a as f64 * 100.0 / b as f64)
        }
    };
    out.push_str(&format!(
        "<tr><th>Tổng / Total</th><th>{}</th><th>{}</th><th></th></tr></table>\
         <p id=\"cashless\">Không dùng tiền mặt / Cashless: {} ({} theo số GD / by count), {} ({} theo giá trị / by value)</p>",
        all.count,
        vnd(all.amount),
        cashless.count,
        pct(cashless.count, all.count),
        vnd(cashless.amount),
        pct(cashless.amount, all.amount)
    ));
    out
}

async fn show(
    State(s): State<Staff>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (caller, session) = match staff(&s, &headers, addr, "/staff/billing").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let csrf = escape(&session.csrf);
    let today = crate::invoice::vietnam_now().date();
    let day = day_param(&q, "date").unwrap_or(today);
    let mut touched = Touched::target("Invoice");
    let mut body = format!(
        "<style>body{{max-width:60rem}}table.grid{{border-collapse:collapse;width:100%}}\
         .grid td,.grid th{{border:1px solid #ccc;padding:.3rem;text-align:left}}\
         table.grid{{display:block;overflow-x:auto}}\
         form.inline{{display:flex;flex-wrap:wrap;gap:.3rem}}form.inline input,form.inline button,form.inline select{{width:auto;min-width:6rem;margin:0}}</style>\
         <p>{}</p><h1>Thu ngân <small>/ Cashier</small></h1><p>{} ({})</p>",
        escape(&s.hospital),
        escape(&caller.principal.subject),
        caller.principal.role.as_str()
    );
    if let Some(m) = q.get("msg") {
        body.push_str(&format!(
            "<p id=\"msg\" class=\"msg\"><b>{}</b></p>",
            escape(m)
        ));
    }
    if caller.principal.role == Role::Cashier {
        // Open invoices, with money taken at the desk.
        let open = SearchQuery::new(
            "Invoice",
            vec![
                ("status".into(), "issued".into()),
                ("_sort".into(), "-_lastUpdated".into()),
                ("_count".into(), "50".into()),
            ],
        );
        let open = s
            .platform
            .store()
            .search(&open)
            .await
            .map(|r| r.matches)
            .unwrap_or_default();
        body.push_str("<h2>Hóa đơn chờ thanh toán <small>/ Open invoices</small></h2><table class=\"grid\" id=\"open\"><tr><th>Số HĐ / Bill</th><th>Người bệnh / Patient</th><th>Phải trả / Owed</th><th>Đã trả / Paid</th><th>Thu tại quầy / Take at the desk</th></tr>");
        for v in &open {
            touched.add(v);
            let inv: Value = serde_json::from_str(&v.body).unwrap_or_default();
            let owed = crate::payment_qr::owed(&inv).map(|o| o.amount).unwrap_or(0);
            // The bill's own running total (an invoice from before it: its notices).
            let paid = match crate::invoice::paid_of(&inv) {
                Some(p) => p,
                None => crate::ledger::paid(&s.platform, &v.id).await.unwrap_or(0),
            };
            body.push_str(&format!(
                "<tr><td>{bill}</td><td>{name}</td><td>{owed}</td><td>{paid}</td><td>\
                 <form class=\"inline\" method=\"post\" action=\"/staff/billing/pay\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"invoice\" value=\"{id}\">\
                 <input name=\"amount\" inputmode=\"numeric\" value=\"{left}\" aria-label=\"amount\">\
                 <select name=\"method\"><option value=\"cash\">Tiền mặt / Cash</option><option value=\"card\">Thẻ / Card</option></select>\
                 <button type=\"submit\">Thu / Take</button></form></td></tr>",
                bill = escape(identifier(&inv, BILL_NUMBER).unwrap_or("")),
                name = escape(&patient_name(&s.platform, &inv).await),
                owed = vnd(owed),
                paid = vnd(paid),
                id = escape(&v.id),
                left = (owed - paid).max(0),
            ));
        }
        body.push_str("</table>");
        // The queue.
        match desk::queue(&s.platform, &caller).await {
            Ok((queue, t)) => {
                for e in t.entities {
                    touched.entities.push(e);
                }
                body.push_str("<h2>Tiền chưa khớp <small>/ Unmatched credits</small></h2><table class=\"grid\" id=\"unmatched\"><tr><th>Số tiền / Amount</th><th>Kênh / Channel</th><th>Nội dung / Memo</th><th>Lý do / Why</th><th>Gán vào HĐ / Assign to a bill</th><th>Hoàn tiền / Refund</th></tr>");
                for w in &queue.unmatched {
                    body.push_str(&format!(
                        "<tr><td>{amount}</td><td>{channel}</td><td>{memo}</td><td>{reason}</td><td>\
                         <form class=\"inline\" method=\"post\" action=\"/staff/billing/assign\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                         <input type=\"hidden\" name=\"notice\" value=\"{id}\"><input name=\"bill\" placeholder=\"HD…\" aria-label=\"bill\"><button type=\"submit\">Gán / Assign</button></form></td><td>\
                         <form class=\"inline\" method=\"post\" action=\"/staff/billing/refund\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                         <input type=\"hidden\" name=\"notice\" value=\"{id}\"><input name=\"reason\" placeholder=\"lý do / reason\" aria-label=\"reason\"><button type=\"submit\">Đã hoàn / Refunded</button></form></td></tr>",
                        amount = vnd(w.amount),
                        channel = escape(desk::channel_of(&w.body)),
                        memo = escape(desk::memo_of(&w.body)),
                        reason = escape(&w.reason),
                        id = escape(&w.notice.id),
                    ));
                }
                body.push_str("</table><h2>Cần hoàn tiền <small>/ Refunds to make</small></h2><table class=\"grid\" id=\"to-refund\"><tr><th>Số tiền / Amount</th><th>Kênh / Channel</th><th>Nội dung / Memo</th><th>Hoàn tiền / Refund</th></tr>");
                for w in &queue.to_refund {
                    body.push_str(&format!(
                        "<tr><td>{amount}</td><td>{channel}</td><td>{memo}</td><td>\
                         <form class=\"inline\" method=\"post\" action=\"/staff/billing/refund\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                         <input type=\"hidden\" name=\"notice\" value=\"{id}\"><input name=\"reason\" placeholder=\"lý do / reason\" aria-label=\"reason\"><button type=\"submit\">Đã hoàn / Refunded</button></form></td></tr>",
                        amount = vnd(w.amount),
                        channel = escape(desk::channel_of(&w.body)),
                        memo = escape(desk::memo_of(&w.body)),
                        id = escape(&w.notice.id),
                    ));
                }
                body.push_str("</table>");
            }
            Err(e) => body.push_str(&format!("<p class=\"err\">{}</p>", escape(&e.message))),
        }
    }
    // The day's totals, and its payments' receipts.
    body.push_str(&format!(
        "<h2>Tổng trong ngày <small>/ The day's totals</small></h2>\
         <form method=\"get\" class=\"inline\"><input type=\"date\" name=\"date\" value=\"{day}\"><button type=\"submit\">Xem / Show</button></form>"
    ));
    match desk::totals(&s.platform, &caller, day, day).await {
        Ok((t, _)) => body.push_str(&totals_table(&t)),
        Err(e) => body.push_str(&format!("<p class=\"err\">{}</p>", escape(&e.message))),
    }
    let start = day_param(&q, "start").unwrap_or(today.with_day0(0).unwrap_or(today));
    let end = day_param(&q, "end").unwrap_or(today);
    body.push_str(&format!(
        "<h2>Chỉ số thanh toán không dùng tiền mặt <small>/ Cashless indicator</small></h2>\
         <form method=\"get\" class=\"inline\"><input type=\"date\" name=\"start\" value=\"{start}\"><input type=\"date\" name=\"end\" value=\"{end}\"><button type=\"submit\">Xem / Show</button></form><div id=\"indicator\">"
    ));
    match desk::totals(&s.platform, &caller, start, end).await {
        Ok((t, _)) => body.push_str(&totals_table(&t)),
        Err(e) => body.push_str(&format!("<p class=\"err\">{}</p>", escape(&e.message))),
    }
    body.push_str("</div>");
    if let Ok(notices) = desk::all_notices(
        &s.platform,
        vec![
            (
                "created".into(),
                format!("ge{}", desk::vietnam_midnight(day)),
            ),
            (
                "created".into(),
                format!(
                    "lt{}",
                    desk::vietnam_midnight(day + chrono::Duration::days(1))
                ),
            ),
        ],
    )
    .await
    {
        body.push_str("<h2>Biên lai <small>/ Receipts</small></h2><ul id=\"receipts\">");
        for v in notices.iter().rev().take(200) {
            let n: Value = serde_json::from_str(&v.body).unwrap_or_default();
            body.push_str(&format!(
                "<li><a href=\"/staff/billing/receipts/{}\">{}</a> · {} · {} · {}</li>",
                escape(&v.id),
                escape(desk::receipt_of(&n)),
                vnd(crate::ledger::notice_amount(&n)),
                escape(desk::channel_of(&n)),
                escape(desk::outcome_of(&n)),
            ));
        }
        body.push_str("</ul>");
    }
    if s.platform
        .audit(
            &caller,
            Interaction::Call("staff-billing", AuditAction::R),
            "Invoice",
            &touched,
            200,
        )
        .await
        .is_err()
    {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "audit unavailable");
    }
    let mut res = page("Thu ngân / Cashier", &body).into_response();
    res.headers_mut()
        .insert("cache-control", "no-store".parse().expect("header"));
    res
}

#[derive(Deserialize)]
struct PayForm {
    csrf: String,
    invoice: String,
    amount: String,
    method: String,
}

async fn pay(
    State(s): State<Staff>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<PayForm>,
) -> Response {
    let caller = match form_caller(&s, &headers, addr, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let digits: String = f.amount.chars().filter(char::is_ascii_digit).collect();
    let Ok(amount) = digits.parse::<i64>() else {
        return back("Số tiền không hợp lệ / not an amount");
    };
    let provider = if f.method == "card" {
        Provider::Card
    } else {
        Provider::Cash
    };
    let till = cash::PayCash {
        platform: s.platform.clone(),
        hospital: s.hospital.clone(),
        account: s.account.clone(),
        prepaid: s.prepaid.clone(),
    };
    match till.take(&caller, &f.invoice, amount, provider).await {
        Ok((p, _)) => {
            let receipt = crate::operations::parameter_string(&p, "receipt");
            back(&format!(
                "Đã thu / Taken: {} — {receipt}",
                format_vnd(Decimal::from(amount))
            ))
        }
        Err(e) => back(&e.message),
    }
}

#[derive(Deserialize)]
struct AssignForm {
    csrf: String,
    notice: String,
    bill: String,
}

async fn assign(
    State(s): State<Staff>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<AssignForm>,
) -> Response {
    let caller = match form_caller(&s, &headers, addr, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let bill = f.bill.trim().to_uppercase();
    // A bill number names one bill: a key lookup finds it.
    let found = s
        .platform
        .store()
        .by_unique_identifiers(&[("Invoice", BILL_NUMBER, bill.as_str())])
        .await
        .ok()
        .and_then(|mut v| v.pop().flatten());
    let Some(invoice) = found else {
        return back(&format!("Không có hóa đơn / no bill {bill}"));
    };
    match desk::assign(&s.platform, &caller, &f.notice, &invoice.id, &s.prepaid).await {
        Ok((p, _)) => back(&format!(
            "Đã gán / Assigned to {bill}: {}",
            crate::operations::parameter_string(&p, "outcome")
        )),
        Err(e) => back(&e.message),
    }
}

#[derive(Deserialize)]
struct RefundForm {
    csrf: String,
    notice: String,
    reason: String,
}

async fn refund(
    State(s): State<Staff>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<RefundForm>,
) -> Response {
    let caller = match form_caller(&s, &headers, addr, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match desk::refund(&s.platform, &caller, &f.notice, &f.reason).await {
        Ok((p, _)) => back(&format!(
            "Đã hoàn / Refunded — {}",
            crate::operations::parameter_string(&p, "receipt")
        )),
        Err(e) => back(&e.message),
    }
}

/// A printable receipt of one payment.
async fn receipt(
    State(s): State<Staff>,
    Path(id): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/staff/billing/receipts/{id}");
    let (caller, _) = match staff(&s, &headers, addr, &path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !hospital_core::store::is_valid_id(&id) {
        return refused(StatusCode::NOT_FOUND, "no such payment");
    }
    let v = match s.platform.store().read("PaymentNotice", &id).await {
        Ok(v) => v,
        Err(_) => {
            return refused(
                StatusCode::NOT_FOUND,
                "Không có giao dịch / no such payment",
            );
        }
    };
    let n: Value = serde_json::from_str(&v.body).unwrap_or_default();
    let invoice = match n
        .pointer("/request/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Invoice/"))
    {
        Some(i) => s
            .platform
            .store()
            .read("Invoice", i)
            .await
            .ok()
            .and_then(|v| serde_json::from_str::<Value>(&v.body).ok()),
        None => None,
    };
    let (bill, name) = match &invoice {
        Some(inv) => (
            identifier(inv, BILL_NUMBER).unwrap_or("").to_owned(),
            patient_name(&s.platform, inv).await,
        ),
        None => (String::new(), String::new()),
    };
    if s.platform
        .audit(
            &caller,
            Interaction::Call("staff-receipt", AuditAction::R),
            "PaymentNotice",
            &Touched::of(std::slice::from_ref(&v)),
            200,
        )
        .await
        .is_err()
    {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "audit unavailable");
    }
    let refund = desk::outcome_of(&n) == "refund";
    let body = format!(
        "<style>@media print{{button,a{{display:none}}}}</style><p>{hospital}</p>\
         <h1>{title}</h1><table id=\"receipt\">\
         <tr><td>Số biên lai / Receipt</td><td><b>{number}</b></td></tr>\
         <tr><td>Thời gian / Time</td><td>{at}</td></tr>\
         <tr><td>Số hóa đơn / Bill</td><td>{bill}</td></tr>\
         <tr><td>Người bệnh / Patient</td><td>{name}</td></tr>\
         <tr><td>Số tiền / Amount</td><td><b>{amount}</b></td></tr>\
         <tr><td>Hình thức / Channel</td><td>{channel}</td></tr></table>\
         <button onclick=\"window.print()\">In / Print</button> <a href=\"/staff/billing\">← Thu ngân / Cashier</a>",
        hospital = escape(&s.hospital),
        title = if refund {
            "Phiếu chi hoàn tiền <small>/ Refund voucher</small>"
        } else {
            "Biên lai thu tiền <small>/ Receipt</small>"
        },
        number = escape(desk::receipt_of(&n)),
        at = escape(&crate::invoice::vietnam_time(
            n.get("created").and_then(Value::as_str).unwrap_or("")
        )),
        bill = escape(&bill),
        name = escape(&name),
        amount = vnd(crate::ledger::notice_amount(&n)),
        channel = escape(desk::channel_of(&n)),
    );
    page("Biên lai / Receipt", &body).into_response()
}
