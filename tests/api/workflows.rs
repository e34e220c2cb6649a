//! A hospital's systems played against this server by a test suite written by others:
//! sekmet-fhir (PyPI, the `sekmet` command, installed by `.ci/run`; without it this test
//! fails, it never skips). Its admission-transfer-discharge, merge, clinical documentation,
//! laboratory, pharmacy and radiology workflows must pass against the demo hospital, and its
//! REST conformance smoke test with two known exceptions.

use crate::common::*;
use serde_json::Value;

hospital_test_kit::on_both_backends!(the_micro_his_workflows_pass_against_the_demo_hospital);

const WORKFLOWS: &[&str] = &[
    "adt_admit_transfer_discharge",
    "adt_merge_update",
    "clinical_documentation",
    "lab_order_to_result",
    "medication_order_dispense",
    "rad_order_imaging_report",
];

fn sekmet() -> String {
    std::env::var("HOSPITAL_SEKMET").unwrap_or_else(|_| {
        format!(
            "{}/.cache/sekmet-venv/bin/sekmet",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

async fn the_micro_his_workflows_pass_against_the_demo_hospital(b: Backend) {
    let app = spawn_app(b).await;
    let config = app.running.as_ref().unwrap().context.config.clone();
    hospital::seed::demo(&config, &app.store).await.unwrap();
    let dir = std::env::temp_dir().join(format!("hospital-sekmet-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("settings.yaml"),
        format!(
            "peers:\n  hospital:\n    base_url: {}\n    auth: {{type: bearer, token: \"{}\"}}\n",
            app.base, app.token
        ),
    )
    .unwrap();
    let readback = format!(
        "{}/tests/fixtures/sekmet/conformance_readback.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut args: Vec<String> = vec!["scenario".into(), "run".into()];
    args.extend(WORKFLOWS.iter().map(|s| (*s).to_owned()));
    args.extend(["conformance_smoke".into(), readback]);
    args.extend(
        [
            "--peer",
            "hospital",
            "--no-serve",
            "--report-dir",
            "reports",
        ]
        .map(str::to_owned),
    );
    let run_dir = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(sekmet())
            .args(&args)
            .current_dir(&run_dir)
            .env("SEKMET_CONFIG", run_dir.join("settings.yaml"))
            .output()
    })
    .await
    .unwrap()
    .expect("sekmet runs (install sekmet-fhir as .ci/run does)");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = std::fs::read_dir(dir.join("reports"))
        .unwrap_or_else(|e| panic!("no reports ({e}): {printed}"))
        .next()
        .expect("a report")
        .unwrap()
        .path()
        .join("results.json");
    let results: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    let results = results.as_array().expect("one result per scenario");
    assert_eq!(results.len(), WORKFLOWS.len() + 2, "{printed}");
    for r in results {
        let file = r["file"].as_str().unwrap_or_default();
        let failed: Vec<(&str, &str)> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !matches!(s["status"].as_str(), Some("passed" | "skipped")))
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or_default(),
                    s["message"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        if file.ends_with("conformance_smoke.yaml") {
            // The two known exceptions, and the steps that read what the second one would have
            // saved (sekmet saves a step's response only when its checks pass; our own scenario,
            // conformance_readback.yaml, runs those steps with a fair read-back check).
            for (name, message) in &failed {
                let known = (*name == "CapabilityStatement"
                    && message.contains("fhirVersion.startsWith('4.0')"))
                    || (*name == "Read Patient" && message.contains("Patient.identifier.value"))
                    || message.contains("'read' not found")
                    || (*name == "Instance history" && message.contains("count() >= 2"));
                assert!(known, "conformance_smoke: {name}: {message}\n{printed}");
            }
            assert!(
                failed.len() <= 6,
                "conformance_smoke failed more than the known steps: {failed:?}"
            );
        } else {
            assert_eq!(
                r["status"], "passed",
                "{}: {failed:?}\n{printed}",
                r["name"]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
