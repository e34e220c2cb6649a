//! A full flow with a known patient, with every log line of the system captured at the most
//! verbose level our crates have: none of the patient's identifying strings, no token and no
//! secret may appear.

use crate::common::*;
use hospital_proto::records::v1 as pb;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every log line of this test process, at the most verbose level our crates have.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was logged so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Starts capturing the process's logs (once per process: every test that asks shares the
/// capture; each looks for what it wrote, by ids no other test uses).
pub(crate) fn capture() -> Captured {
    static CAPTURE: OnceLock<Captured> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let logs = Captured::default();
            let sink = logs.clone();
            tracing_subscriber::fmt()
                .with_env_filter(
                    "trace,hyper=info,hyper_util=info,h2=info,reqwest=info,tower=info,rustls=info",
                )
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .init();
            logs
        })
        .clone()
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_name_personal_id_card_phone_or_token_reaches_the_logs() {
    let logs = capture();

    let app = spawn_app(Backend::Sqlite).await;
    let name = ("Phùng", "Thị", "Xuân");
    let (nid, card, phone) = ("051195004321", "HN2519876543210", "0912345678");
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [
            {"system": NATIONAL_ID, "value": nid},
            {"system": INSURANCE, "value": card}
        ],
        "name": [{"family": name.0, "given": [name.1, name.2]}],
        "gender": "female", "birthDate": "1995-06-01",
        "telecom": [{"system": "phone", "value": phone}]
    });
    let id = app.create(patient.clone()).await;
    for q in [
        format!("Patient?identifier={NATIONAL_ID}|{nid}"),
        format!("Patient?name={} {} {}", name.0, name.1, name.2),
        format!("Patient?phone={phone}"),
        format!("Coverage?identifier={card}"),
        format!("Patient/{id}"),
    ] {
        let (s, _) = app.get_json(&q).await;
        assert_eq!(s, 200, "{q}");
    }
    // Failures log too: a duplicate personal ID, a bad one, a bad token.
    let (s, _, _) = app.post("Patient", &patient).await;
    assert_eq!(s, 409);
    let mut bad = patient.clone();
    bad["identifier"][0]["value"] = json!("051195004329X");
    let (s, _, _) = app.post("Patient", &bad).await;
    assert_eq!(s, 400);
    let r = app
        .anonymous
        .get(app.url("Patient"))
        .bearer_auth("forged.token.value")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // And over gRPC.
    let channel = tonic::transport::Endpoint::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = pb::records_client::RecordsClient::new(channel);
    let mut req = tonic::Request::new(pb::FindPatientByIdentifierRequest {
        system: NATIONAL_ID.into(),
        value: nid.into(),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token).parse().unwrap(),
    );
    assert_eq!(
        grpc.find_patient_by_identifier(req)
            .await
            .unwrap()
            .into_inner()
            .id,
        id
    );
    let token = app.token.clone();
    app.stop().await;

    let text = logs.text();
    assert!(
        text.lines().count() > 50,
        "the flow was logged at all: {} lines",
        text.lines().count()
    );
    assert!(text.contains("sqlx"), "database statements were logged");
    for secret in [
        name.0,
        "Phung",
        name.2,
        "Xuan",
        nid,
        card,
        phone,
        token_signature(&token),
        hospital::config::TEST_SECRET,
        "forged.token.value",
    ] {
        assert!(!text.contains(secret), "`{secret}` appeared in the logs");
    }
}

/// The signature part of a token: the part only its holder knows.
fn token_signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or(token)
}

/// The default reminder sender writes the reminder's key, the appointment id, the channel and
/// the time, and nothing else: not the patient's name, phone, personal ID or record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_sender_writes_a_reminders_key_appointment_channel_and_time_only() {
    use crate::telemedicine::{doctor, from_now, op, parameters, schedule, slot};
    let logs = capture();
    let app = spawn_app_with(Backend::Sqlite, |c| c.sweep_ms = 3_600_000).await;
    let (nid, phone) = ("051085004417", "0987654321");
    let mut p = patient_an(nid);
    p["name"] = json!([{"family": "Khổng", "given": ["Minh", "Quyết"]}]);
    p["telecom"] = json!([{"system": "phone", "value": phone}]);
    let patient = app.create(p).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let s = app.create(slot(&sched, &from_now(30), &from_now(45))).await;
    let desk = app.client_for(hospital_core::auth::Role::Cashier, None, None);
    let (code, visit) = op(
        &desk,
        &app,
        "Appointment/$book",
        &parameters(json!([
            {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}},
            {"name": "patient", "valueReference": {"reference": format!("Patient/{patient}")}},
            {"name": "reason", "valueString": "Đau thắt ngực khi gắng sức"}])),
    )
    .await;
    assert_eq!(code, 200, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let sent = hospital_telemedicine::reminders::deliver(
        &app.store,
        &hospital_telemedicine::reminders::LogSender,
        "replica-log",
    )
    .await
    .unwrap();
    assert_eq!(sent, 1);
    app.stop().await;
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("visit reminder") && l.contains(&id))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields: Vec<(&str, &str)> = lines[0]
        .split_once("visit reminder ")
        .unwrap()
        .1
        .split_whitespace()
        .map(|f| f.split_once('=').unwrap())
        .collect();
    let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        ["key", "appointment", "channel", "at"],
        "{}",
        lines[0]
    );
    let value = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == k)
            .unwrap()
            .1
            .trim_matches('"')
    };
    assert_eq!(value("appointment"), id);
    assert_eq!(value("channel"), "sms");
    assert_eq!(value("at"), visit["start"].as_str().unwrap());
    assert!(value("key").starts_with(&format!("reminder:{id}:")));
    for personal in [
        "Khổng",
        "Khong",
        "Quyết",
        "Quyet",
        nid,
        phone,
        &patient,
        "thắt ngực",
        "Trần",
    ] {
        assert!(!lines[0].contains(personal), "`{personal}` in {}", lines[0]);
    }
}
