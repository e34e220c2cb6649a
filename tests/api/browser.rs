//! The payment page in a real browser: Debian's `chromium`, driven by playwright-core from
//! npm (both installed by `.ci/run`; without them this test fails, it never skips). The
//! browser opens the page, sees the amount and the QR and takes a screenshot; a Casso delivery
//! signed as Casso signs it arrives; the page turns to paid without a reload and shows the
//! printable receipt. And the cashier's page: sign in, assign a transfer that matched no bill,
//! print its receipt.

use crate::billing::{casso, issued, post_sepay};
use crate::common::*;
use std::process::Command;

#[tokio::test]
async fn the_payment_page_turns_to_paid_in_a_real_browser_when_the_bank_feed_arrives() {
    let app = spawn_app(Backend::Sqlite).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000980")).await;
    let (invoice, code, _) = issued(&app, &an, 250_000).await;
    let (_, stored) = app.get_json(&format!("Invoice/{invoice}")).await;
    let token = stored["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "urn:hospital:payment-page")
        .and_then(|i| i["value"].as_str())
        .unwrap()
        .to_owned();
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let (body, signature) = casso(7001, 250_000, &format!("MBVCB.99.{code}.CT"), &account);
    let dir = std::env::temp_dir().join(format!("hospital-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body_file = dir.join("casso.json");
    std::fs::write(&body_file, &body).unwrap();

    let page = format!("{site}/pay/{token}");
    let hook = format!("{site}/webhooks/casso");
    let (ok, stdout, stderr) = run_browser(
        "payment.mjs",
        vec![
            page.into(),
            hook.into(),
            signature.into(),
            body_file.into(),
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
