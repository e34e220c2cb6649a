//! The signalling channel of a video visit: a WebSocket per participant
//! (`GET /visit/{appointment}/ws?token=<join token>`), over the store's signalling bus, so the
//! two participants may be connected to different replicas.
//!
//! Messages are JSON objects with a `type`:
//!
//! | from a browser | what |
//! |---|---|
//! | `offer`, `answer`, `ice` (`data`: the SDP or candidate) | relayed to the other side |
//! | `chat` (`data`: `{"text": ...}`, 1–2,000 characters) | kept for the visit and relayed |
//! | `admit` (the practitioner) | lets the patient in from the waiting room |
//! | `hangup` | says so to the other side |
//!
//! The server sends `welcome` first (who is here, whether the patient was admitted, the chat
//! so far: what a participant who reconnects needs), then `presence` (`data.state`: `joined`,
//! `left`) and every other participant's message with its `from` (`patient`,
//! `practitioner`), and `ended` when the practitioner ends the visit.
//!
//! The waiting room is the server's: until the practitioner admits the patient, the patient's
//! `offer`, `answer` and `ice` are refused (`not-admitted`); chat and `hangup` pass.
//!
//! A message refused is answered with `error` (`code`, `message`), and is neither stored nor
//! relayed: `wrong-room` (its `room` is another visit's), `malformed` (not a JSON object, not
//! text, a chat of no or too many characters, an offer or answer without its description),
//! `unknown-type`, `forbidden` (the patient admitting), `not-admitted`, and `too-large` (over
//! [`MAX_MESSAGE`]). A message over [`MAX_FRAME`] is not kept even to be checked: it is
//! answered `too-large`, then the connection is closed with WebSocket status 1009 (message too
//! big); the browser joins again. One frame over [`MAX_FRAME_READ`] is not read at all: the
//! connection is cut.

use crate::visit::{Participant, Visits};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use hospital_core::store::signals::Signal;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest message a participant may send (an SDP offer is a few KiB).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// The largest message the WebSocket keeps; past it the connection is closed (after the
/// reason, when the frame was read).
pub const MAX_FRAME: usize = 4 * MAX_MESSAGE;
/// The largest frame read to its end (so that the reason and the close reach the sender: a
/// socket closed with bytes unread is reset, and what was sent before is lost).
pub const MAX_FRAME_READ: usize = 4 * MAX_FRAME;
/// Chat messages a participant who (re)joins is sent.
const CHAT_HISTORY: i64 = 200;

const RELAYED: &[&str] = &["offer", "answer", "ice", "chat", "admit", "hangup"];

/// The signalling side of one process: its connections, bounded.
#[derive(Clone)]
pub struct Signalling {
    pub visits: Visits,
    pub open: Arc<AtomicUsize>,
    pub max: usize,
}

/// The codes of the `error` messages (listed in `docs/errors.md`).
pub const ERROR_CODES: &[&str] = &[
    "wrong-room",
    "malformed",
    "unknown-type",
    "forbidden",
    "not-admitted",
    "too-large",
    "unavailable",
];

/// One error for the sender.
fn error(code: &str, message: &str) -> String {
    debug_assert!(ERROR_CODES.contains(&code), "{code} is not in ERROR_CODES");
    json!({"type": "error", "code": code, "message": message}).to_string()
}

/// What a participant said, checked: the kind and its body (JSON text), or the error to
/// answer. Nothing refused is stored or relayed. `admitted`: whether the practitioner has let
/// the patient in.
pub fn check_message(
    text: &str,
    room: &str,
    p: &Participant,
    admitted: bool,
) -> Result<(String, String), String> {
    if text.len() > MAX_MESSAGE {
        return Err(error(
            "too-large",
            &format!("a signalling message is at most {MAX_MESSAGE} bytes"),
        ));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|_| error("malformed", "a signalling message is a JSON object"))?;
    let Some(obj) = v.as_object() else {
        return Err(error("malformed", "a signalling message is a JSON object"));
    };
    if let Some(r) = obj.get("room")
        && r.as_str() != Some(room)
    {
        return Err(error("wrong-room", "this connection is for another visit"));
    }
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    if !RELAYED.contains(&kind) {
        return Err(error(
            "unknown-type",
            "the type is offer, answer, ice, chat, admit or hangup",
        ));
    }
    let data = obj.get("data").cloned().unwrap_or(Value::Null);
    match kind {
        "admit" if p.role != "practitioner" => {
            return Err(error(
                "forbidden",
                "only the practitioner admits the patient",
            ));
        }
        "offer" | "answer" | "ice" if p.role == "patient" && !admitted => {
            return Err(error(
                "not-admitted",
                "the doctor has not let you in yet: wait in the waiting room",
            ));
        }
        "chat" => {
            let t = data.get("text").and_then(Value::as_str).unwrap_or("");
            let n = t.chars().count();
            if n == 0 || n > 2000 {
                return Err(error(
                    "malformed",
                    "a chat message is 1 to 2,000 characters",
                ));
            }
            return Ok((kind.to_owned(), json!({"text": t}).to_string()));
        }
        "offer" | "answer" if !data.is_object() => {
            return Err(error(
                "malformed",
                "an offer or answer carries its description",
            ));
        }
        _ => {}
    }
    Ok((kind.to_owned(), data.to_string()))
}

/// A signal as a participant's browser receives it.
fn delivered(s: &Signal) -> String {
    let data: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
    json!({"type": s.kind, "from": s.role, "data": data, "id": s.id}).to_string()
}

/// Who is in the room now, whether the patient was admitted, whether the visit ended, and
/// the chat so far; and whether the patient was admitted.
async fn welcome(
    s: &Signalling,
    room: &str,
    me: &str,
    p: &Participant,
) -> Result<(String, bool), String> {
    let store = s.visits.platform.store();
    let state = store
        .signals_of(room, &["presence", "admit", "ended"], 1000)
        .await
        .map_err(|e| e.to_string())?;
    let mut last: std::collections::BTreeMap<String, (String, bool)> = Default::default();
    let (mut admitted, mut ended) = (false, false);
    for x in &state {
        match x.kind.as_str() {
            "presence" => {
                let joined = x.body.contains("\"joined\"");
                last.insert(x.sender.clone(), (x.role.clone(), joined));
            }
            "admit" => admitted = true,
            "ended" => ended = true,
            _ => {}
        }
    }
    let present: std::collections::BTreeSet<String> = last
        .iter()
        .filter(|(sender, (_, joined))| *joined && sender.as_str() != me)
        .map(|(_, (role, _))| role.clone())
        .collect();
    let chat: Vec<Value> = store
        .signals_of(room, &["chat"], CHAT_HISTORY)
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|c| {
            json!({"from": c.role, "data": serde_json::from_str::<Value>(&c.body).unwrap_or(Value::Null), "id": c.id})
        })
        .collect();
    Ok((
        json!({"type": "welcome", "role": p.role, "room": room, "present": present,
        "admitted": admitted, "ended": ended, "chat": chat})
        .to_string(),
        admitted,
    ))
}

/// Upgrades to the signalling WebSocket of `room` for the bearer of `token`.
pub async fn upgrade(
    s: Signalling,
    room: String,
    token: &str,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let p = match s.visits.check_token(&room, token) {
        Ok(p) => p,
        Err(e) => {
            let status =
                axum::http::StatusCode::from_u16(hospital_core::error::outcome_status(e.kind()))
                    .unwrap_or(axum::http::StatusCode::FORBIDDEN);
            return (status, e.message).into_response();
        }
    };
    if s.open.fetch_add(1, Ordering::SeqCst) >= s.max {
        s.open.fetch_sub(1, Ordering::SeqCst);
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "this server holds as many visit connections as it may; try again",
        )
            .into_response();
    }
    let open = s.open.clone();
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME_READ)
        .on_upgrade(move |socket| async move {
            hospital_host::metrics::SIGNALLING_SESSIONS_TOTAL.inc(&[]);
            hospital_host::metrics::SIGNALLING_SESSIONS.add(&[], 1);
            run(&s, &room, &p, socket).await;
            hospital_host::metrics::SIGNALLING_SESSIONS.add(&[], -1);
            open.fetch_sub(1, Ordering::SeqCst);
        })
}

/// Whether a read failed because the message is over [`MAX_FRAME`].
fn too_long(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|t| matches!(t, tungstenite::Error::Capacity(_)))
}

async fn run(s: &Signalling, room: &str, p: &Participant, mut socket: WebSocket) {
    let store = s.visits.platform.store().clone();
    let me = uuid::Uuid::new_v4().to_string();
    // Subscribe before saying we are here, so nothing said in between is missed.
    let mut feed = match store.signal_feed().await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "the signalling bus is unavailable");
            let _ = socket
                .send(Message::Text(error("unavailable", "try again").into()))
                .await;
            return;
        }
    };
    let (greeting, mut admitted) = match welcome(s, room, &me, p).await {
        Ok(w) => w,
        Err(_) => (error("unavailable", "try again"), false),
    };
    if socket.send(Message::Text(greeting.into())).await.is_err() {
        return;
    }
    if store
        .signal_append(room, &me, p.role, "presence", r#"{"state":"joined"}"#)
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        let _ = socket.send(Message::Text(error("malformed", "messages are JSON text").into())).await;
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Err(e)) if too_long(&e) => {
                        // The frame was not read: say why, then close (1009, too big).
                        let why = format!("a signalling message is at most {MAX_MESSAGE} bytes");
                        let _ = socket.send(Message::Text(error("too-large", &why).into())).await;
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code: close_code::SIZE,
                                reason: why.into(),
                            })))
                            .await;
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                };
                match check_message(&text, room, p, admitted) {
                    Ok((kind, body)) => {
                        if store.signal_append(room, &me, p.role, &kind, &body).await.is_err() {
                            let _ = socket.send(Message::Text(error("unavailable", "not delivered; send again").into())).await;
                        }
                    }
                    Err(reply) => {
                        if socket.send(Message::Text(reply.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            heard = feed.recv() => {
                match heard {
                    Ok(sig) if sig.room == room && sig.sender != me => {
                        admitted |= sig.kind == "admit";
                        if socket.send(Message::Text(delivered(&sig).into())).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    }
    let _ = store
        .signal_append(room, &me, p.role, "presence", r#"{"state":"left"}"#)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Participant {
        Participant {
            role: "patient",
            reference: "Patient/an".into(),
        }
    }

    #[test]
    fn every_error_code_is_in_the_catalogue() {
        let doc = include_str!("../../../docs/errors.md");
        for code in ERROR_CODES {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "docs/errors.md lacks {code}"
            );
        }
    }

    #[test]
    fn bad_messages_are_answered_and_go_nowhere() {
        let p = patient();
        let code = |r: Result<(String, String), String>| {
            serde_json::from_str::<Value>(&r.unwrap_err()).unwrap()["code"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(code(check_message("not json", "a1", &p, true)), "malformed");
        assert_eq!(code(check_message("[1]", "a1", &p, true)), "malformed");
        assert_eq!(
            code(check_message(
                r#"{"type":"chat","room":"a2","data":{"text":"hi"}}"#,
                "a1",
                &p,
                true
            )),
            "wrong-room"
        );
        assert_eq!(
            code(check_message(r#"{"type":"shout"}"#, "a1", &p, true)),
            "unknown-type"
        );
        assert_eq!(
            code(check_message(r#"{"type":"admit"}"#, "a1", &p, true)),
            "forbidden"
        );
        assert_eq!(
            code(check_message(
                r#"{"type":"offer","data":"x"}"#,
                "a1",
                &p,
                true
            )),
            "malformed"
        );
        let big = format!(
            r#"{{"type":"chat","data":{{"text":"{}"}}}}"#,
            "x".repeat(MAX_MESSAGE)
        );
        assert_eq!(code(check_message(&big, "a1", &p, true)), "too-large");
        // The waiting room: the patient's media wait for the doctor; chat does not.
        for kind in ["offer", "answer", "ice"] {
            let m = format!(r#"{{"type":"{kind}","data":{{"sdp":"v=0"}}}}"#);
            assert_eq!(code(check_message(&m, "a1", &p, false)), "not-admitted");
            assert!(check_message(&m, "a1", &p, true).is_ok());
        }
        let doctor = Participant {
            role: "practitioner",
            reference: "Practitioner/mai".into(),
        };
        assert!(
            check_message(
                r#"{"type":"offer","data":{"sdp":"v=0"}}"#,
                "a1",
                &doctor,
                false
            )
            .is_ok()
        );
        assert!(
            check_message(
                r#"{"type":"chat","data":{"text":"Tôi đã vào"}}"#,
                "a1",
                &p,
                false
            )
            .is_ok()
        );
        let (kind, body) = check_message(
            r#"{"type":"chat","room":"a1","data":{"text":"Chào bác sĩ","x":1}}"#,
            "a1",
            &p,
            true,
        )
        .unwrap();
        assert_eq!(
            (kind.as_str(), body.as_str()),
            ("chat", r#"{"text":"Chào bác sĩ"}"#)
        );
    }
}
