//! The patient's payment page, `GET /pay/{token}`: reached by the unguessable link of an
//! Invoice (its payment page token), with no login. Server-rendered HTML, Vietnamese by
//! default (`?lang=en` for English), readable on a phone: the hospital, the amount the
//! Vietnamese way, the bill number, the patient's name masked, the QR, buttons that open common
//! bank apps, the account details for paying by hand, and each line of the bill with its cost,
//! the BHYT fund's share and the patient's, then the totals (kept once paid, and printed with
//! the receipt). Every view is audited (as an anonymous caller holding the link).

use crate::bhyt::vnd as format_vnd;
use crate::invoice::{PAYMENT_PAGE, identifier};
use crate::payment_qr::{Receiving, owed, payment};
use crate::{qr, vietqr};
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hospital_core::store::SearchQuery;
use hospital_core::{AuditAction, Interaction, Platform, Touched};
use hospital_web::{escape, page};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;

/// What the page needs beyond the platform.
#[derive(Clone)]
pub struct PageConfig {
    pub hospital_name: String,
    pub receiving: Receiving,
    pub account_name: String,
    /// Live status streams this process keeps open at most; past it, 429.
    pub max_streams: usize,
    /// Streams end when the process stops.
    pub stopping: hospital_host::Stopping,
}

#[derive(Clone)]
struct PageState {
    platform: Platform,
    config: PageConfig,
    streams: std::sync::Arc<tokio::sync::Semaphore>,
}

pub fn routes(platform: Platform, config: PageConfig) -> Router {
    let streams = std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_streams.max(1)));
    Router::new()
        .route("/pay/{token}", axum::routing::get(show))
        .route("/pay/{token}/events", axum::routing::get(events))
        .with_state(PageState {
            platform,
            config,
            streams,
        })
}

/// The page's live status: server-sent events from `events`, applied without a reload.
const LIVE_SCRIPT: &str = r#"(function(){if(!window.EventSource)return;var es=new EventSource(location.pathname+'/events');es.addEventListener('status',function(e){var d=JSON.parse(e.data);var st=document.getElementById('status');if(d.status==='balanced'){st.dataset.status='balanced';st.textContent='__PAID__';var p=document.getElementById('pay');if(p)p.remove();es.close();}var ul=document.getElementById('receipts');ul.replaceChildren.apply(ul,d.receipts.map(function(x){var li=document.createElement('li');li.textContent=x;return li;}));document.getElementById('receipt').hidden=d.receipts.length===0;});})();"#;

/// One payment's receipt, as the page lists it.
pub struct Receipt {
    pub number: String,
    pub amount: i64,
    pub at: String,
}

impl Receipt {
    fn line(&self) -> String {
        format!(
            "{} · {} · {}",
            self.number,
            format_vnd(Decimal::from(self.amount)),
            self.at
        )
    }
}

/// The receipts of the payments the ledger credited to `invoice`, oldest first.
pub async fn receipts_of(platform: &Platform, invoice: &str) -> Vec<Receipt> {
    let q = SearchQuery::new(
        "PaymentNotice",
        vec![
            ("request".into(), format!("Invoice/{invoice}")),
            ("_count".into(), "100".into()),
        ],
    );
    let mut out: Vec<Receipt> = platform
        .store()
        .search(&q)
        .await
        .map(|r| r.matches)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| serde_json::from_str::<Value>(&v.body).ok())
        .map(|n| Receipt {
            number: identifier(&n, crate::invoice::RECEIPT_NUMBER)
                .unwrap_or("")
                .to_owned(),
            amount: n
                .pointer("/amount/value")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            at: crate::invoice::vietnam_time(
                n.get("created").and_then(Value::as_str).unwrap_or(""),
            ),
        })
        .collect();
    out.sort_by(|a, b| a.number.cmp(&b.number));
    out
}

/// How long one page's live status stream lasts, and how often it looks.
const STREAM_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

async fn invoice_by_token(
    platform: &Platform,
    token: &str,
) -> Option<hospital_core::store::Version> {
    let well_formed = token.len() == 22
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return None;
    }
    let query = SearchQuery::new(
        "Invoice",
        vec![("identifier".into(), format!("{PAYMENT_PAGE}|{token}"))],
    );
    let v = platform
        .store()
        .search(&query)
        .await
        .ok()?
        .matches
        .into_iter()
        .next()?;
    let body: Value = serde_json::from_str(&v.body).ok()?;
    (identifier(&body, PAYMENT_PAGE) == Some(token)).then_some(v)
}

/// `GET /pay/{token}/events`: an `status` event now and whenever the bill's status or its
/// receipts change (the ledger may be written by any replica: the stream looks at the store
/// twice a second), for at most 15 minutes, ending once the bill is paid or cancelled.
async fn events(
    State(s): State<PageState>,
    Path(token): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    if invoice_by_token(&s.platform, &token).await.is_none() {
        let caller = hospital_web::anonymous(&s.platform, &headers, Some(addr.ip()));
        let interaction = Interaction::Call("payment-page", AuditAction::R);
        let locked = s
            .platform
            .anonymous_failure(&caller, interaction, "Invoice", "pay", 404)
            .await;
        let status = if locked {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::NOT_FOUND
        };
        return status.into_response();
    }
    // Each open stream looks at the store twice a second: their number is bounded.
    let Ok(place) = s.streams.clone().try_acquire_owned() else {
        let why = format!(
            "too many live payment pages open ({} at most); reload later",
            s.config.max_streams
        );
        return (StatusCode::TOO_MANY_REQUESTS, why).into_response();
    };
    let until = tokio::time::Instant::now() + STREAM_FOR;
    let state = (s.platform.clone(), token, String::new(), false, place);
    let stream = futures::stream::unfold(
        state,
        move |(platform, token, last, done, place)| async move {
            if done {
                return None;
            }
            loop {
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                let v = invoice_by_token(&platform, &token).await?;
                let body: Value = serde_json::from_str(&v.body).ok()?;
                let status = body
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let receipts: Vec<String> = receipts_of(&platform, &v.id)
                    .await
                    .iter()
                    .map(Receipt::line)
                    .collect();
                let data = serde_json::json!({"status": status, "receipts": receipts}).to_string();
                if data != last {
                    let end = status == "balanced" || status == "cancelled";
                    let event = Event::default().event("status").data(data.clone());
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (platform, token, data, end, place),
                    ));
                }
                tokio::time::sleep(LOOK_EVERY).await;
            }
        },
    );
    // A process that stops ends its streams (the browser's EventSource reconnects).
    let stream = futures::StreamExt::take_until(stream, s.config.stopping.clone().wait());
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    res.headers_mut()
        .insert("cache-control", "no-store".parse().expect("header"));
    res
}

/// `Nguyễn Văn An` → `Nguyễn V. A.`: the family name, then initials.
pub fn mask_name(full: &str) -> String {
    let mut words = full.split_whitespace();
    let Some(family) = words.next() else {
        return String::new();
    };
    let initials: Vec<String> = words
        .filter_map(|w| w.chars().next())
        .map(|c| format!("{c}."))
        .collect();
    if initials.is_empty() {
        family.to_owned()
    } else {
        format!("{family} {}", initials.join(" "))
    }
}

/// A Patient's name as written: its `text`, or the family name then the given names.
pub(crate) fn patient_name(patient: &Value) -> String {
    let name = patient.pointer("/name/0");
    name.and_then(|n| n.get("text").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            let n = name?;
            let family = n.get("family").and_then(Value::as_str).unwrap_or("");
            let given: Vec<&str> = n
                .get("given")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(format!("{family} {}", given.join(" ")))
        })
        .unwrap_or_default()
}

/// The bank apps the page offers buttons for: (label, vietqr.io app id).
const APPS: &[(&str, &str)] = &[
    ("Vietcombank", "vcb"),
    ("VietinBank iPay", "icb"),
    ("BIDV", "bidv"),
    ("MB Bank", "mb"),
    ("Techcombank", "tcb"),
    ("Agribank", "vba"),
];

/// The short code of the bank of `bin`, from `banks.csv`.
fn bank_code(bin: &str) -> Option<&'static str> {
    include_str!("../data/banks.csv")
        .lines()
        .skip(1)
        .find(|l| l.split(',').next() == Some(bin))
        .and_then(|l| l.split(',').nth(1))
}

fn not_found(en: bool) -> Response {
    let (title, text) = if en {
        ("Not found", "This payment link is not valid.")
    } else {
        ("Không tìm thấy", "Đường dẫn thanh toán này không hợp lệ.")
    };
    (
        StatusCode::NOT_FOUND,
        page(title, &format!("<h1>{title}</h1><p>{text}</p>")),
    )
        .into_response()
}

/// One line of a bill as the patient reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    /// The price list's name of the item (or what the line says it is).
    pub name: String,
    pub quantity: Option<i64>,
    /// Its cost, the BHYT fund's share of it, and what the patient pays of it.
    pub total: i64,
    pub fund: i64,
    pub patient: i64,
}

/// The lines of an Invoice, in order: name, quantity, cost, and its split (`urn:hospital:
/// price-kind` components; a line without a fund's share is the patient's in full).
pub fn bill_lines(invoice: &Value) -> Vec<BillLine> {
    let component = |line: &Value, code: &str| {
        line.get("priceComponent")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c.pointer("/code/coding/0/code").and_then(Value::as_str) == Some(code))
            .and_then(|c| c.pointer("/amount/value"))
            .and_then(Value::as_i64)
    };
    let detail = |line: &Value, url: &str| -> Option<Value> {
        line.pointer("/extension/0/extension")?
            .as_array()?
            .iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
            .cloned()
    };
    invoice
        .get("lineItem")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| {
            let total = component(l, "total").unwrap_or(0);
            let fund = component(l, "bhyt-fund").unwrap_or(0);
            BillLine {
                name: detail(l, "title")
                    .and_then(|e| {
                        e.get("valueString")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .or_else(|| {
                        l.pointer("/chargeItemCodeableConcept/coding/0/display")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default(),
                quantity: detail(l, "quantity")
                    .and_then(|e| e.get("valueInteger").and_then(Value::as_i64)),
                total,
                fund,
                patient: total - fund,
            }
        })
        .collect()
}

/// The page's section of the bill's lines and totals, in the patient's language: on a phone
/// each line is its name, then its cost and the two shares one under the other.
fn lines_section(
    invoice: &Value,
    gross: Option<Decimal>,
    net: Option<Decimal>,
    en: bool,
) -> String {
    let t = |vi: &'static str, en_text: &'static str| if en { en_text } else { vi };
    let money = |v: i64| escape(&format_vnd(Decimal::from(v)));
    let lines = bill_lines(invoice);
    if lines.is_empty() && (gross.is_none() || net.is_none()) {
        return String::new();
    }
    let mut out = String::from(
        "<style>#lines ul{list-style:none;padding:0;margin:0}\
         #lines li{border-top:1px solid #ddd;padding:.5rem 0}\
         #lines .name{font-weight:600;overflow-wrap:anywhere}\
         #lines dl{display:grid;grid-template-columns:1fr auto;gap:.1rem 1rem;margin:.3rem 0 0}\
         #lines dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}\
         #lines table{width:100%;border-top:2px solid #888;margin-top:.5rem}\
         #lines td+td{text-align:right}</style>",
    );
    out.push_str(&format!(
        "<section id=\"lines\"><h2>{}</h2>",
        t("Chi tiết viện phí", "What the bill is for")
    ));
    if !lines.is_empty() {
        out.push_str("<ul>");
        for l in &lines {
            let quantity = match l.quantity {
                Some(q) if q != 1 => format!(" × {q}"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "<li class=\"line\"><div class=\"name\">{}{quantity}</div><dl>\
                 <dt>{}</dt><dd class=\"total\">{}</dd>\
                 <dt>{}</dt><dd class=\"bhyt\">{}</dd>\
                 <dt>{}</dt><dd class=\"patient\">{}</dd></dl></li>",
                escape(&l.name),
                t("Thành tiền", "Cost"),
                money(l.total),
                t("BHYT chi trả", "Paid by BHYT"),
                money(l.fund),
                t("Người bệnh trả", "Patient pays"),
                money(l.patient),
            ));
        }
        out.push_str("</ul>");
    }
    if let (Some(g), Some(n)) = (gross, net) {
        out.push_str(&format!(
            "<table id=\"totals\"><tr><td>{}</td><td>{}</td></tr><tr><td>{}</td><td>{}</td></tr>\
             <tr><td>{}</td><td><b>{}</b></td></tr></table>",
            t("Tổng chi phí", "Total cost"),
            escape(&format_vnd(g)),
            t("BHYT chi trả", "Paid by BHYT"),
            escape(&format_vnd(g - n)),
            t("Người bệnh trả", "Patient pays"),
            escape(&format_vnd(n)),
        ));
    }
    out.push_str("</section>");
    out
}

async fn show(
    State(s): State<PageState>,
    Path(token): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let en = q.get("lang").is_some_and(|l| l == "en");
    let caller = hospital_web::anonymous(&s.platform, &headers, Some(addr.ip()));
    let interaction = Interaction::Call("payment-page", AuditAction::R);
    let well_formed = token.len() == 22
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let found = if well_formed {
        let query = SearchQuery::new(
            "Invoice",
            vec![("identifier".into(), format!("{PAYMENT_PAGE}|{token}"))],
        );
        s.platform
            .store()
            .search(&query)
            .await
            .ok()
            .and_then(|r| r.matches.into_iter().next())
    } else {
        None
    };
    let Some(v) = found else {
        // A link that names no bill counts as a failed attempt: guessing links is throttled.
        if s.platform
            .anonymous_failure(&caller, interaction, "Invoice", "pay", 404)
            .await
        {
            let body = "<p>Quá nhiều yêu cầu / Too many requests</p>";
            return (StatusCode::TOO_MANY_REQUESTS, page("429", body)).into_response();
        }
        return not_found(en);
    };
    let touched = Touched::of(std::slice::from_ref(&v));
    if s.platform
        .audit(&caller, interaction, "Invoice", &touched, 200)
        .await
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "audit unavailable").into_response();
    }
    let invoice: Value = serde_json::from_str(&v.body).unwrap_or_default();
    let status = invoice.get("status").and_then(Value::as_str).unwrap_or("");
    let name = match invoice
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
    {
        Some(pid) => match s.platform.store().read("Patient", pid).await {
            Ok(p) => mask_name(&patient_name(
                &serde_json::from_str(&p.body).unwrap_or_default(),
            )),
            Err(_) => String::new(),
        },
        None => String::new(),
    };
    let money = |k: &str| {
        invoice
            .pointer(&format!("/{k}/value"))
            .and_then(Value::as_i64)
            .map(Decimal::from)
    };
    let (gross, net) = (money("totalGross"), money("totalNet"));
    let t = |vi: &'static str, en_text: &'static str| if en { en_text } else { vi };
    let mut body = format!(
        "<p>{}</p><h1>{}</h1>",
        escape(&s.config.hospital_name),
        t("Thanh toán viện phí", "Hospital bill")
    );
    body.push_str(&format!(
        "<p>{}: <b>{}</b></p>",
        t("Người bệnh", "Patient"),
        escape(&name)
    ));
    match (status, owed(&invoice)) {
        ("issued", Ok(o)) => {
            body.push_str(&format!(
                "<p id=\"status\" data-status=\"issued\">{}</p><div id=\"pay\">\
                 <p class=\"amount\" id=\"amount\" style=\"font-size:2rem;font-weight:700\">{}</p>\
                 <p>{}: <b id=\"bill\">{}</b> · {}: <b id=\"code\">{}</b></p>",
                t("Chờ thanh toán", "Awaiting payment"),
                escape(&format_vnd(Decimal::from(o.amount))),
                t("Số hóa đơn", "Bill number"),
                escape(&o.bill_number),
                t("Nội dung chuyển khoản", "Transfer memo"),
                escape(&o.code),
            ));
            let pay = payment(&o, &s.config.receiving);
            if let Ok(payload) = vietqr::encode(&pay)
                && let Ok(svg) = qr::svg(&payload)
            {
                body.push_str(&format!(
                    "<div id=\"qr\" data-payload=\"{}\" style=\"max-width:18rem\">{svg}</div>",
                    escape(&payload)
                ));
            }
            if let Some(bank) = bank_code(&s.config.receiving.bin) {
                body.push_str(&format!(
                    "<p>{}</p><p>",
                    t("Mở ứng dụng ngân hàng:", "Open your bank app:")
                ));
                for (label, app) in APPS {
                    let link = vietqr::deep_link(
                        app,
                        bank,
                        &s.config.receiving.account,
                        o.amount as u64,
                        &o.code,
                    );
                    body.push_str(&format!(
                        "<a class=\"bank\" href=\"{}\" style=\"display:inline-block;margin:.2rem;padding:.4rem .6rem;border:1px solid #888;border-radius:.4rem\">{}</a>",
                        escape(&link),
                        escape(label)
                    ));
                }
                body.push_str("</p>");
            }
            body.push_str(&format!(
                "<p>{}: {} · {}: <b>{}</b> · {}: {} · {}: <b>{}</b></p></div>",
                t("Ngân hàng", "Bank"),
                escape(bank_code(&s.config.receiving.bin).unwrap_or(&s.config.receiving.bin)),
                t("Số tài khoản", "Account"),
                escape(&s.config.receiving.account),
                t("Chủ tài khoản", "Account holder"),
                escape(&s.config.account_name),
                t("Nội dung", "Memo"),
                escape(&o.code),
            ));
        }
        ("balanced", _) => body.push_str(&format!(
            "<p id=\"status\" data-status=\"balanced\">{}</p>",
            t("Đã thanh toán", "Paid")
        )),
        ("cancelled", _) => body.push_str(&format!(
            "<p id=\"status\" data-status=\"cancelled\">{}</p>",
            t("Hóa đơn đã hủy", "This bill was cancelled")
        )),
        _ => body.push_str(&format!(
            "<p id=\"status\" data-status=\"{}\">{}</p>",
            escape(status),
            t("Hóa đơn chưa phát hành", "This bill is not issued yet")
        )),
    }
    // What the bill is for, line by line, with the shares: kept on the page once it is paid,
    // and printed with the receipt.
    body.push_str(&lines_section(&invoice, gross, net, en));
    // The receipts of the payments so far; the live status keeps them current.
    let receipts = receipts_of(&s.platform, &v.id).await;
    // The receipt names its bill, and prints without the page's buttons and links.
    let bill_number = identifier(&invoice, crate::invoice::BILL_NUMBER).unwrap_or("");
    body.push_str(&format!(
        "<style>@media print{{button,a{{display:none}}}}</style>\
         <section id=\"receipt\"{}><h2>{} · {}</h2><ul id=\"receipts\">",
        if receipts.is_empty() { " hidden" } else { "" },
        t("Biên lai", "Receipt"),
        escape(bill_number)
    ));
    for r in &receipts {
        body.push_str(&format!("<li>{}</li>", escape(&r.line())));
    }
    body.push_str(&format!(
        "</ul><button onclick=\"window.print()\">{}</button></section>",
        t("In biên lai", "Print the receipt")
    ));
    body.push_str(&format!(
        "<script>{}</script>",
        LIVE_SCRIPT.replace("__PAID__", t("Đã thanh toán", "Paid"))
    ));
    body.push_str(&format!(
        "<p><a href=\"?lang={}\">{}</a></p>",
        if en { "vi" } else { "en" },
        if en { "Tiếng Việt" } else { "English" }
    ));
    let mut res = page(t("Thanh toán viện phí", "Hospital bill"), &body).into_response();
    // The link is the credential: never cached, never sent on as a referrer.
    let h = res.headers_mut();
    h.insert("cache-control", "no-store".parse().expect("header"));
    h.insert("referrer-policy", "no-referrer".parse().expect("header"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_masked_to_the_family_name_and_initials() {
        assert_eq!(mask_name("Nguyễn Văn An"), "Nguyễn V. A.");
        assert_eq!(mask_name("Đặng Thị Ánh Tuyết"), "Đặng T. Á. T.");
        assert_eq!(mask_name("Lê"), "Lê");
        assert_eq!(bank_code("970415"), Some("ICB"));
    }
}
