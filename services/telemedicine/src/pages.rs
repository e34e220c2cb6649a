//! The visit pages, for a signed-in patient or practitioner (a browser session; Vietnamese by
//! default, `?lang=en`), server-rendered with one small script (`assets/visit.js`):
//!
//! - `GET /visit` — the practitioner's visits of today (a Vietnamese calendar day; `?day=`
//!   another day);
//! - `GET /visit/{appointment}` — the visit: camera and microphone check, the waiting room,
//!   the call, chat; the practitioner's page adds the patient's summary (allergies, active
//!   conditions, recent observations), the notes panel, and ends the visit. A visit that is
//!   over or cancelled says so instead of offering the check and the call; someone who is not
//!   the visit's patient or practitioner gets a refusal page (404 for another patient, 403 for
//!   another clinician), never the call;
//! - `POST /visit/{appointment}/join`, `POST /visit/{appointment}/end` — the session's CSRF
//!   token in `x-csrf-token`; the rules are [`Visits::join`] and [`Visits::end`];
//! - `GET /visit/{appointment}/ws?token=` — the signalling WebSocket ([`crate::signalling`]).
//!
//! Every page view is audited with what it showed.

use crate::calendar;
use crate::signalling::Signalling;
use crate::visit::{Visits, participant_of};
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hospital_core::auth::Role;
use hospital_core::store::{SearchQuery, Version};
use hospital_core::{AuditAction, Caller, Error, Interaction, Touched};
use hospital_web::{check_csrf, escape, signed_in};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;

const SCRIPT: &str = include_str!("../assets/visit.js");

#[derive(Clone)]
struct Pages {
    visits: Visits,
    signalling: Signalling,
    hospital: String,
}

pub fn routes(visits: Visits, signalling: Signalling, hospital: String) -> Router {
    Router::new()
        .route("/visit", get(today))
        .route("/visit/assets/visit.js", get(script))
        .route("/visit/{id}", get(show))
        .route("/visit/{id}/join", post(join))
        .route("/visit/{id}/end", post(end))
        .route("/visit/{id}/notes", post(notes))
        .route("/visit/{id}/ws", get(ws))
        .with_state(Pages {
            visits,
            signalling,
            hospital,
        })
}

fn english(q: &HashMap<String, String>) -> bool {
    q.get("lang").map(String::as_str) == Some("en")
}

fn frame(title: &str, en: bool, body: &str) -> Response {
    frame_with(title, en, "", body)
}

fn frame_with(title: &str, en: bool, attrs: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>\
         *{{box-sizing:border-box}}[hidden]{{display:none!important}}body{{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#1a1a1a}}\
         header{{display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap}}\
         .videos{{display:grid;grid-template-columns:1fr 1fr;gap:.5rem}}@media(max-width:40rem){{.videos{{grid-template-columns:1fr}}}}\
         video{{width:100%;background:#222;border-radius:.5rem;aspect-ratio:4/3}}\
         button{{font-size:1.05rem;padding:.6rem 1rem;margin:.3rem 0;border-radius:.4rem;border:1px solid #0b5;background:#0b5;color:#fff}}\
         button[disabled]{{opacity:.5}}#end{{background:#b00020;border-color:#b00020}}\
         #status{{font-weight:600;margin:.5rem 0}}#messages{{list-style:none;padding:0;max-height:12rem;overflow:auto}}\
         form#chat{{display:flex;gap:.4rem}}form#chat input{{flex:1;padding:.5rem;font-size:1rem}}\
         aside{{border:1px solid #ddd;border-radius:.5rem;padding:.5rem 1rem;margin-top:1rem}}\
         table{{border-collapse:collapse;width:100%}}td,th{{text-align:left;padding:.3rem;border-bottom:1px solid #eee}}\
         #notes-form label{{display:block;margin:.5rem 0}}#notes-form input:not([type=checkbox]),#notes-form textarea{{display:block;width:100%;padding:.45rem;font-size:1rem}}\
         .err{{color:#b00020}}</style></head><body{}>{body}</body></html>",
        if en { "en" } else { "vi" },
        escape(title),
        attrs,
    );
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::response::Html(html),
    )
        .into_response()
}

/// A refusal page: what it means for the reader, in their language, then the reason.
fn refused(e: &Error, en: bool) -> Response {
    let status = StatusCode::from_u16(hospital_core::error::outcome_status(e.kind()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = if en { "Video visit" } else { "Khám từ xa" };
    let lead = match (status, en) {
        (StatusCode::NOT_FOUND, false) => "Không tìm thấy buổi khám này.",
        (StatusCode::NOT_FOUND, true) => "This visit was not found.",
        (StatusCode::FORBIDDEN, false) => "Bạn không phải bác sĩ hoặc bệnh nhân của buổi khám này.",
        (StatusCode::FORBIDDEN, true) => "You are not this visit's doctor or patient.",
        (_, false) => "Không mở được trang này.",
        (_, true) => "This page cannot be opened.",
    };
    let mut r = frame(
        title,
        en,
        &format!(
            "<header><h1>{title}</h1></header><p class=\"err\" id=\"refused\"><strong>{lead}</strong> {}</p>",
            escape(&e.message)
        ),
    );
    *r.status_mut() = status;
    r
}

fn json_error(e: &Error) -> Response {
    let status = StatusCode::from_u16(hospital_core::error::outcome_status(e.kind()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"code": e.code.id, "message": e.message})),
    )
        .into_response()
}

async fn audit(s: &Pages, caller: &Caller, touched: &Touched) -> Result<(), Error> {
    s.visits
        .platform
        .audit(caller, Interaction::Read, "Appointment", touched, 200)
        .await
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

fn time_of(a: &Value, key: &str) -> String {
    a.get(key)
        .and_then(Value::as_str)
        .and_then(calendar::parse_instant)
        .map(|t| {
            t.with_timezone(&calendar::vietnam())
                .format("%H:%M %d/%m/%Y")
                .to_string()
        })
        .unwrap_or_default()
}

async fn search(s: &Pages, rtype: &str, params: &[(&str, String)]) -> Result<Vec<Version>, Error> {
    let q = SearchQuery::new(
        rtype,
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    );
    Ok(s.visits.platform.store().search(&q).await?.matches)
}

/// A person's name as written (`text`, or the given names after the family name).
fn name_of(v: &Version) -> String {
    let b: Value = serde_json::from_str(&v.body).unwrap_or(Value::Null);
    let n = &b["name"][0];
    if let Some(t) = n["text"].as_str() {
        return t.to_owned();
    }
    let mut parts = vec![n["family"].as_str().unwrap_or("").to_owned()];
    for g in n["given"].as_array().into_iter().flatten() {
        parts.push(g.as_str().unwrap_or("").to_owned());
    }
    parts.join(" ").trim().to_owned()
}

fn display(v: &Version, path: &str) -> String {
    let b: Value = serde_json::from_str(&v.body).unwrap_or(Value::Null);
    let code = b.pointer(path);
    let text = code
        .and_then(|c| c.get("text").and_then(Value::as_str))
        .or_else(|| {
            code.and_then(|c| c.pointer("/coding/0/display"))
                .and_then(Value::as_str)
        })
        .or_else(|| {
            code.and_then(|c| c.pointer("/coding/0/code"))
                .and_then(Value::as_str)
        })
        .unwrap_or("—");
    let value = b
        .pointer("/valueQuantity/value")
        .map(|v| {
            format!(
                " {v} {}",
                b.pointer("/valueQuantity/unit")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )
        })
        .unwrap_or_default();
    escape(&format!("{text}{value}"))
}

/// The patient's summary for the practitioner: allergies, active conditions, recent
/// observations (what was shown is audited).
async fn summary(
    s: &Pages,
    patient: &str,
    en: bool,
    touched: &mut Touched,
) -> Result<String, Error> {
    let p = vec![("patient", patient.to_owned())];
    let allergies = search(s, "AllergyIntolerance", &p).await?;
    let mut c = p.clone();
    c.push(("clinical-status", "active".into()));
    let conditions = search(s, "Condition", &c).await?;
    let mut o = p.clone();
    o.push(("_sort", "-date".into()));
    o.push(("_count", "8".into()));
    let observations = search(s, "Observation", &o).await?;
    let list = |items: &[Version], path: &str, none: &str| {
        if items.is_empty() {
            format!("<li>{none}</li>")
        } else {
            items
                .iter()
                .map(|v| format!("<li>{}</li>", display(v, path)))
                .collect()
        }
    };
    for v in allergies.iter().chain(&conditions).chain(&observations) {
        touched.add(v);
    }
    let (h, a, cd, ob, none) = if en {
        (
            "Patient summary",
            "Allergies",
            "Active conditions",
            "Recent observations",
            "none recorded",
        )
    } else {
        (
            "Tóm tắt bệnh nhân",
            "Dị ứng",
            "Bệnh đang điều trị",
            "Chỉ số gần đây",
            "chưa ghi nhận",
        )
    };
    Ok(format!(
        "<aside id=\"summary\"><h2>{h}</h2><h3>{a}</h3><ul id=\"allergies\">{}</ul>\
         <h3>{cd}</h3><ul id=\"conditions\">{}</ul><h3>{ob}</h3><ul id=\"observations\">{}</ul></aside>",
        list(&allergies, "/code", none),
        list(&conditions, "/code", none),
        list(&observations, "/code", none),
    ))
}

async fn show(
    State(s): State<Pages>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let en = english(&q);
    let (caller, session) = match signed_in(
        &s.visits.platform,
        &headers,
        Some(addr.ip()),
        &format!("/visit/{id}"),
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let v = match s.visits.platform.store().read("Appointment", &id).await {
        Ok(v) if !v.deleted => v,
        _ => {
            return refused(
                &Error::not_found(format!("Appointment/{id} is not known")),
                en,
            );
        }
    };
    let a: Value = serde_json::from_str(&v.body).unwrap_or(Value::Null);
    let p = match participant_of(&caller, &id, &a) {
        Ok(p) => p,
        Err(e) => return refused(&e, en),
    };
    let mut touched = Touched::of(std::slice::from_ref(&v));
    let doctor = p.role == "practitioner";
    let patient_ref = crate::appointment::patient_of(&a).unwrap_or_default();
    let aside = if doctor {
        match summary(&s, &patient_ref, en, &mut touched).await {
            Ok(x) => x,
            Err(e) => return refused(&e, en),
        }
    } else {
        String::new()
    };
    let (title, check, join, admit, end, chat, send, waiting) = if en {
        (
            "Video visit",
            "Camera and microphone check",
            "Join",
            "Let the patient in",
            "End the visit",
            "Chat",
            "Send",
            "Nothing is recorded.",
        )
    } else {
        (
            "Khám từ xa",
            "Kiểm tra camera và micro",
            "Vào phòng khám",
            "Mời bệnh nhân vào",
            "Kết thúc buổi khám",
            "Trò chuyện",
            "Gửi",
            "Buổi khám không được ghi hình.",
        )
    };
    // Whom the visit is with: the patient's name for the doctor, the doctor's for the patient.
    let other = if doctor {
        patient_ref.clone()
    } else {
        crate::appointment::actors(&a, "Practitioner")
            .first()
            .cloned()
            .unwrap_or_default()
    };
    let who = match other.split_once('/') {
        Some((t, oid)) => match s.visits.platform.store().read(t, oid).await {
            Ok(v) if !v.deleted => {
                touched.add(&v);
                escape(&name_of(&v))
            }
            _ => escape(oid),
        },
        None => String::new(),
    };
    if let Err(e) = audit(&s, &caller, &touched).await {
        return refused(&e, en);
    }
    let notes_panel = if doctor {
        let (h, f, code, dx, med, dose, save, ack) = if en {
            (
                "Notes",
                "Findings",
                "ICD-10 code",
                "Diagnosis",
                "Prescription",
                "Dosage",
                "Save and sign",
                "Advice only: the condition is outside Circular 30/2023, save anyway",
            )
        } else {
            (
                "Ghi chép",
                "Triệu chứng, khám",
                "Mã ICD-10",
                "Chẩn đoán",
                "Đơn thuốc",
                "Cách dùng",
                "Lưu và ký",
                "Chỉ tư vấn: bệnh ngoài danh mục Thông tư 30/2023, vẫn lưu",
            )
        };
        format!(
            "<aside id=\"notes\"><h2>{h}</h2><form id=\"notes-form\">\
             <label>{f}<textarea name=\"findings\" rows=\"3\" maxlength=\"4000\"></textarea></label>\
             <label>{code}<input name=\"icd10\" maxlength=\"10\" placeholder=\"I10\"></label>\
             <label>{dx}<input name=\"diagnosis\" maxlength=\"200\"></label>\
             <label>{med}<input name=\"medication\" maxlength=\"200\"></label>\
             <label>{dose}<input name=\"dosage\" maxlength=\"500\"></label>\
             <p id=\"flag\" class=\"err\" hidden></p><label id=\"ack-row\" hidden><input type=\"checkbox\" name=\"acknowledge\"> {ack}</label>\
             <button id=\"save-notes\">{save}</button><p id=\"notes-status\"></p></form></aside>"
        )
    } else {
        String::new()
    };
    let consent_box = if doctor {
        String::new()
    } else if en {
        "<label><input type=\"checkbox\" id=\"consent\"> I agree to be examined remotely by video; the visit is not recorded.</label>".to_owned()
    } else {
        "<label><input type=\"checkbox\" id=\"consent\"> Tôi đồng ý khám bệnh từ xa qua video; buổi khám không được ghi hình.</label>".to_owned()
    };
    let doctor_controls = if doctor {
        format!("<button id=\"admit\" hidden>{admit}</button> <button id=\"end\">{end}</button>")
    } else {
        "<button id=\"admit\" hidden></button>".to_owned()
    };
    // A visit that is over (or was called off) is not joined: the page says so, and offers
    // neither the camera check nor the call (its doctor still finishes the notes).
    let over = match a.get("status").and_then(Value::as_str).unwrap_or("") {
        "fulfilled" | "noshow" | "entered-in-error" => Some(if en {
            "This visit has ended."
        } else {
            "Buổi khám đã kết thúc."
        }),
        "cancelled" => Some(if en {
            "This visit was cancelled."
        } else {
            "Lịch khám này đã bị hủy."
        }),
        _ => None,
    };
    let call = match over {
        Some(why) => format!("<p id=\"status\" class=\"err\" data-over>{why}</p>"),
        None => format!(
            "<p id=\"status\"></p>\
             <section id=\"precall\"><h2>{check}</h2><p id=\"check\"></p>{consent_box}<button id=\"join\" disabled>{join}</button><p>{waiting}</p></section>\
             <section class=\"videos\"><video id=\"local\" autoplay muted playsinline></video><video id=\"remote\" autoplay playsinline></video></section>\
             <section id=\"call\" hidden>{doctor_controls}<h2>{chat}</h2><ul id=\"messages\"></ul>\
             <form id=\"chat\"><input id=\"text\" maxlength=\"2000\" autocomplete=\"off\"><button>{send}</button></form></section>"
        ),
    };
    let body = format!(
        "<header><h1>{title}</h1><span>{hospital}</span></header>\
         <p>{when} · <span id=\"with\">{who}</span> · <a href=\"?lang={other}\">{other_name}</a></p>\
         {call}{notes_panel}{aside}\
         <script src=\"/visit/assets/visit.js\" defer></script>",
        hospital = escape(&s.hospital),
        when = escape(&format!(
            "{} – {}",
            time_of(&a, "start"),
            time_of(&a, "end")
        )),
        other = if en { "vi" } else { "en" },
        other_name = if en { "Tiếng Việt" } else { "English" },
    );
    // The page's settings for the script.
    let attrs = format!(
        " data-room=\"{}\" data-role=\"{}\" data-csrf=\"{}\" data-lang=\"{}\"",
        escape(&id),
        p.role,
        escape(&session.csrf),
        if en { "en" } else { "vi" }
    );
    frame_with(title, en, &attrs, &body)
}

/// The signed-in caller of a JSON action, with the session's CSRF token checked.
async fn actor(
    s: &Pages,
    headers: &HeaderMap,
    addr: SocketAddr,
    id: &str,
) -> Result<Caller, Response> {
    let (caller, session) = signed_in(
        &s.visits.platform,
        headers,
        Some(addr.ip()),
        &format!("/visit/{id}"),
    )
    .await
    .map_err(|_| {
        json_error(&Error::new(
            hospital_core::codes::NO_CREDENTIALS,
            "sign in first",
        ))
    })?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    check_csrf(&session, sent).map_err(|e| json_error(&e))?;
    Ok(caller)
}

async fn join(
    State(s): State<Pages>,
    Path(id): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let caller = match actor(&s, &headers, addr, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let interaction = Interaction::Call("$join", AuditAction::E);
    let consent = q.get("consent").map(String::as_str) == Some("yes");
    match s.visits.join(&caller, &id, consent).await {
        Ok((j, touched)) => {
            if let Err(e) = s
                .visits
                .platform
                .audit(&caller, interaction, "Appointment", &touched, 200)
                .await
            {
                return json_error(&e);
            }
            axum::Json(
                json!({"token": j.token, "expires": j.expires, "role": j.participant.role,
                "iceServers": j.ice_servers, "status": j.appointment["status"]}),
            )
            .into_response()
        }
        Err(e) => {
            let _ = s
                .visits
                .platform
                .audit(
                    &caller,
                    interaction,
                    "Appointment",
                    &Touched::default(),
                    hospital_core::error::outcome_status(e.kind()),
                )
                .await;
            json_error(&e)
        }
    }
}

async fn end(
    State(s): State<Pages>,
    Path(id): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let caller = match actor(&s, &headers, addr, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match s.visits.end(&caller, &id).await {
        Ok((a, touched)) => {
            let _ = s
                .visits
                .platform
                .audit(
                    &caller,
                    Interaction::Call("$end", AuditAction::U),
                    "Appointment",
                    &touched,
                    200,
                )
                .await;
            axum::Json(json!({"status": a["status"]})).into_response()
        }
        Err(e) => json_error(&e),
    }
}

async fn notes(
    State(s): State<Pages>,
    Path(id): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let caller = match actor(&s, &headers, addr, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if body.len() > 64 * 1024 {
        return json_error(&Error::new(
            hospital_core::codes::BODY_TOO_LARGE,
            "notes are at most 64 KiB",
        ));
    }
    let notes: crate::notes::Notes = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(_) => {
            return json_error(&Error::new(
                hospital_core::codes::MALFORMED_REQUEST,
                "the notes are a JSON object: findings, icd10, diagnosis, medication, dosage, acknowledge",
            ));
        }
    };
    let interaction = Interaction::Call("$notes", AuditAction::C);
    match s.visits.save_notes(&caller, &id, &notes).await {
        Ok((ids, touched)) => {
            if let Err(e) = s
                .visits
                .platform
                .audit(&caller, interaction, "Appointment", &touched, 201)
                .await
            {
                return json_error(&e);
            }
            (
                StatusCode::CREATED,
                axum::Json(json!({"saved": ids, "signed": true})),
            )
                .into_response()
        }
        Err(e) => json_error(&e),
    }
}

async fn ws(
    State(s): State<Pages>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let token = q.get("token").cloned().unwrap_or_default();
    crate::signalling::upgrade(s.signalling.clone(), id, &token, upgrade).await
}

/// The practitioner's visits of today.
async fn today(
    State(s): State<Pages>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let en = english(&q);
    let (caller, _) = match signed_in(&s.visits.platform, &headers, Some(addr.ip()), "/visit").await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(me) = caller
        .principal
        .practitioner
        .clone()
        .filter(|_| caller.principal.role == Role::Clinician)
    else {
        return refused(
            &Error::forbidden("the list of visits is a practitioner's"),
            en,
        );
    };
    // Today, or the day asked for (a doctor planning tomorrow).
    let day = match q.get("day") {
        None => calendar::today(),
        Some(d) => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => return refused(&Error::invalid("day", "a day is YYYY-MM-DD"), en),
        },
    };
    let [from, to] = calendar::day_search(day);
    let found = match search(
        &s,
        "Appointment",
        &[
            ("practitioner", format!("Practitioner/{me}")),
            ("date", from),
            ("date", to),
            ("_sort", "date".into()),
            ("_count", "200".into()),
        ],
    )
    .await
    {
        Ok(f) => f,
        Err(e) => return refused(&e, en),
    };
    let touched = Touched::of(&found);
    if let Err(e) = audit(&s, &caller, &touched).await {
        return refused(&e, en);
    }
    let rows: String = found
        .iter()
        .map(|v| {
            let a: Value = serde_json::from_str(&v.body).unwrap_or(Value::Null);
            let mode = crate::schedule::mode_of(&a).map_or("", |m| m.as_str());
            let patient = crate::appointment::patient_of(&a).unwrap_or_default();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/visit/{}\">{}</a></td></tr>",
                escape(&time_of(&a, "start")),
                escape(patient.trim_start_matches("Patient/")),
                escape(mode),
                escape(a["status"].as_str().unwrap_or("")),
                escape(&v.id),
                if en { "Open" } else { "Mở" }
            )
        })
        .collect();
    let (title, cols) = if en {
        (
            "Today's visits",
            "<th>Time</th><th>Patient</th><th>Mode</th><th>Status</th><th></th>",
        )
    } else {
        (
            "Lịch khám hôm nay",
            "<th>Giờ</th><th>Bệnh nhân</th><th>Hình thức</th><th>Trạng thái</th><th></th>",
        )
    };
    frame(
        title,
        en,
        &format!(
            "<header><h1>{title}</h1><span>{}</span></header><p>{day}</p><table id=\"visits\"><tr>{cols}</tr>{rows}</table>",
            escape(&s.hospital)
        ),
    )
}
