//! The payment page in a real browser: Debian's `chromium`, driven by playwright-core from
//! npm (both installed by `.ci/run`; without them this test fails, it never skips). The
//! browser opens the page on a phone-sized screen, sees the amount, the QR and each line with
//! its BHYT share and the patient's, and takes a screenshot; a Casso delivery signed as Casso
//! signs it arrives; the page turns to paid without a reload within 2 seconds of the webhook
//! being posted, and shows the receipt, which prints. And the cashier's page: sign in, assign
//! a transfer that matched no bill, print its receipt.

use crate::billing::{casso, issued, post_sepay};
use crate::common::*;
use std::process::Command;

#[tokio::test]
async fn the_payment_page_turns_to_paid_in_a_real_browser_when_the_bank_feed_arrives() {
    let app = spawn_app(Backend::Sqlite).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let (invoice, stored) = crate::invoicing::bill_with_lines(&app, "051085000961").await;
    let id = |system: &str| {
        stored["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["system"] == system)
            .and_then(|i| i["value"].as_str())
            .unwrap()
            .to_owned()
    };
    let (token, code) = (
        id("urn:hospital:payment-page"),
        id("urn:hospital:payment-code"),
    );
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let (body, signature) = casso(7001, 167_320, &format!("MBVCB.99.{code}.CT"), &account);
    let dir = std::env::temp_dir().join(format!("hospital-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body_file = dir.join("casso.json");
    std::fs::write(&body_file, &body).unwrap();
    // What the page must show: the amount, and each line with the fund's and the patient's share.
    let expected = serde_json::json!({
        "amount": "167.320 ₫",
        "lines": [
            {"name": "Khám bệnh", "total": "50.600 ₫", "bhyt": "40.480 ₫", "patient": "10.120 ₫"},
            {"name": "Chụp CT sọ não", "total": "536.000 ₫", "bhyt": "428.800 ₫", "patient": "107.200 ₫"},
            {"name": "Vitamin C 500mg × 10", "total": "50.000 ₫", "bhyt": "0 ₫", "patient": "50.000 ₫"},
        ],
        "paidWithinMs": 2000,
    });
    let expected_file = dir.join("expected.json");
    std::fs::write(&expected_file, expected.to_string()).unwrap();

    let page = format!("{site}/pay/{token}");
    let hook = format!("{site}/webhooks/casso");
    let (ok, stdout, stderr) = run_browser(
        "payment.mjs",
        vec![
            page.into(),
            hook.into(),
            signature.into(),
            body_file.into(),
            expected_file.into(),
            dir.into(),
        ],
    )
    .await;
    assert!(ok, "the browser test failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    let (_, paid) = app.get_json(&format!("Invoice/{invoice}")).await;
    assert_eq!(paid["status"], "balanced");
    app.stop().await;
}

/// Runs `tests/browser/<script>` with Node.js (playwright-core from `HOSPITAL_NODE_DIR`, as
/// `.ci/run` installs it): whether it passed, and what it printed.
async fn run_browser(
    script: &'static str,
    args: Vec<std::ffi::OsString>,
) -> (bool, String, String) {
    let node_dir = std::env::var("HOSPITAL_NODE_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/hospital-node",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let path = format!("{}/tests/browser/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .env("HOSPITAL_NODE_DIR", node_dir)
            .arg(path)
            .args(args)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs (install Node.js, playwright-core and chromium as .ci/run does)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_cashier_assigns_an_unmatched_transfer_and_prints_its_receipt_in_a_real_browser() {
    let app = spawn_app(Backend::Sqlite).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000990")).await;
    let (invoice, _, bill) = issued(&app, &an, 180_000).await;
    assert_eq!(
        post_sepay(&app, 9901, 180_000, "chuyen khoan vien phi", &account).await,
        200
    );
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let dir = std::env::temp_dir().join(format!("hospital-cashier-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, stdout, stderr) = run_browser(
        "cashier.mjs",
        vec![site.into(), bill.clone().into(), dir.into()],
    )
    .await;
    assert!(ok, "the browser test failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    let (_, paid) = app.get_json(&format!("Invoice/{invoice}")).await;
    assert_eq!(paid["status"], "balanced");
    app.stop().await;
}

/// The demo data, and a video visit of Nguyễn Văn An with BS. Trần Thị Mai starting in a
/// minute (inside the join window, and on today's list unless it is 23:59 in Vietnam), booked
/// by the doctor: its appointment id.
async fn demo_visit(app: &TestApp) -> String {
    hospital::seed::demo(&hospital::Config::for_tests("unused"), &app.store)
        .await
        .unwrap();
    let at = |m: i64| crate::telemedicine::from_now(m);
    let slot = app
        .create(crate::telemedicine::slot(
            "lich-bs-mai-video",
            &at(1),
            &at(31),
        ))
        .await;
    let doctor = app.client_for(
        hospital_core::auth::Role::Clinician,
        None,
        Some("bs-tran-thi-mai"),
    );
    let (s, visit) = crate::telemedicine::op(
        &doctor,
        app,
        "Appointment/$book",
        &crate::telemedicine::parameters(serde_json::json!([
            {"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}},
            {"name": "patient", "valueReference": {"reference": "Patient/nguyen-van-an"}},
            {"name": "reason", "valueString": "Tái khám tăng huyết áp"}])),
    )
    .await;
    assert_eq!(
        (s, visit["status"].as_str()),
        (200, Some("booked")),
        "{visit}"
    );
    visit["id"].as_str().unwrap().to_owned()
}

/// After the browser's visit: the appointment fulfilled, its Encounter (class VR) opened by
/// the first join and closed by the doctor ending the visit.
async fn the_visit_was_recorded(app: &TestApp, id: &str) {
    let (_, a) = app.get_json(&format!("Appointment/{id}")).await;
    assert_eq!(a["status"], "fulfilled", "{a}");
    let encounters = app
        .search_ids(&format!("Encounter?appointment=Appointment/{id}"))
        .await;
    assert_eq!(
        encounters.len(),
        1,
        "one encounter, however often they joined"
    );
    let (_, e) = app.get_json(&format!("Encounter/{}", encounters[0])).await;
    assert_eq!(e["class"]["code"], "VR");
    assert_eq!(e["status"], "finished");
    // The doctor's notes, on the encounter and signed.
    for rtype in ["Observation", "Condition", "MedicationRequest"] {
        let ids = app
            .search_ids(&format!("{rtype}?encounter=Encounter/{}", encounters[0]))
            .await;
        assert_eq!(ids.len(), 1, "{rtype}");
        let (s, v) = app.get_json(&format!("{rtype}/{}/$verify", ids[0])).await;
        assert_eq!(s, 200, "{v}");
        let valid = v["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "valid");
        assert_eq!(
            valid.map(|p| &p["valueBoolean"]),
            Some(&serde_json::json!(true)),
            "{rtype} is signed: {v}"
        );
        assert!(
            v.to_string().contains("Practitioner/bs-tran-thi-mai"),
            "signed by the doctor: {v}"
        );
    }
}

#[tokio::test]
async fn a_video_visit_connects_two_browsers_with_chat_and_a_rejoin() {
    let app = spawn_app(Backend::Sqlite).await;
    let id = demo_visit(&app).await;
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let dir = std::env::temp_dir().join(format!("hospital-visit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, stdout, stderr) = run_browser(
        "visit.mjs",
        vec![
            site.clone().into(),
            site.into(),
            id.clone().into(),
            dir.clone().into(),
        ],
    )
    .await;
    assert!(ok, "the browser test failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    for shot in ["visit-patient.png", "visit-doctor.png"] {
        assert!(dir.join(shot).exists(), "{shot} was taken");
    }
    the_visit_was_recorded(&app, &id).await;
    app.stop().await;
}

/// Refused in a real browser, never shown the call: another patient and a doctor who is not
/// the visit's, while the visit can be joined; and, once it has ended, its own patient (the
/// page says it has ended, and the join door refuses), while its doctor keeps the notes panel.
#[tokio::test]
async fn strangers_and_an_ended_visit_get_a_refusal_never_the_call_in_a_real_browser() {
    let app = spawn_app(Backend::Sqlite).await;
    let id = demo_visit(&app).await;
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let dir = std::env::temp_dir().join(format!("hospital-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let phase = |name: &'static str| {
        run_browser(
            "refusals.mjs",
            vec![
                site.clone().into(),
                id.clone().into(),
                name.into(),
                dir.clone().into(),
            ],
        )
    };
    let (ok, stdout, stderr) = phase("strangers").await;
    assert!(ok, "the browser test failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    let (_, a) = app.get_json(&format!("Appointment/{id}")).await;
    assert_eq!(a["status"], "booked", "the strangers changed nothing");
    // The visit takes place and ends.
    let doctor = app.client_for(
        hospital_core::auth::Role::Clinician,
        None,
        Some("bs-tran-thi-mai"),
    );
    let none = crate::telemedicine::parameters(serde_json::json!([]));
    for step in ["$join", "$end"] {
        let (s, v) =
            crate::telemedicine::op(&doctor, &app, &format!("Appointment/{id}/{step}"), &none)
                .await;
        assert_eq!(s, 200, "{step}: {v}");
    }
    let (ok, stdout, stderr) = phase("ended").await;
    assert!(ok, "the browser test failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    for shot in [
        "refused-another-patient.png",
        "refused-another-doctor.png",
        "visit-ended.png",
    ] {
        assert!(dir.join(shot).exists(), "{shot} was taken");
    }
    let (_, a) = app.get_json(&format!("Appointment/{id}")).await;
    assert_eq!(a["status"], "fulfilled");
    assert!(
        app.search_ids(&format!("Consent?data=Appointment/{id}"))
            .await
            .is_empty(),
        "the patient never joined: no consent was recorded"
    );
    app.stop().await;
}

/// A second `hospital` process on the same database, killed when dropped: its site.
struct Replica {
    child: std::process::Child,
    site: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(database_url: &str) -> Replica {
    use std::io::BufRead;
    let secrets = std::env::temp_dir().join(format!("hospital-replica-{}", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_hospital"))
        .args([
            "all",
            "--http-addr",
            "127.0.0.1:0",
            "--records-grpc-addr",
            "127.0.0.1:0",
            "--telemedicine-grpc-addr",
            "127.0.0.1:0",
            "--billing-grpc-addr",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", database_url)
        .env("HOSPITAL_JWT_SECRET", hospital::config::TEST_SECRET)
        .env("HOSPITAL_SECRET_FILE", secrets)
        .env("HOSPITAL_METRICS_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the hospital binary starts");
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let site = loop {
        let line = lines
            .next()
            .expect("the replica says where it listens")
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix("FHIR REST") {
            let url = rest.split_whitespace().next().unwrap();
            break url.trim_end_matches("/fhir").to_owned();
        }
    };
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Replica { child, site }
}

#[tokio::test]
async fn a_video_visit_connects_across_two_server_processes_on_one_postgresql() {
    let app = spawn_app(Backend::Postgres).await;
    let id = demo_visit(&app).await;
    let url = app
        .running
        .as_ref()
        .unwrap()
        .context
        .config
        .database_url
        .clone();
    let other = replica(&url);
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let dir = std::env::temp_dir().join(format!("hospital-visit-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The patient on this process, the doctor on the other.
    let (ok, stdout, stderr) = run_browser(
        "visit.mjs",
        vec![
            site.into(),
            other.site.clone().into(),
            id.clone().into(),
            dir.into(),
        ],
    )
    .await;
    assert!(ok, "the browser test failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    the_visit_was_recorded(&app, &id).await;
    drop(other);
    app.stop().await;
}
