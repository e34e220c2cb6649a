//! The architecture's dependency rules, read off the workspace manifests: service crates never
//! depend on each other, and only the platform crate depends on the record store (its write
//! key is how raw writes stay inside the platform).

use std::path::Path;

const SERVICES: &[&str] = &[
    "hospital-records",
    "hospital-telemedicine",
    "hospital-billing",
];

/// The names in a manifest's `[dependencies]` and `[build-dependencies]` (not dev).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = matches!(line, "[dependencies]" | "[build-dependencies]");
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['=', '.']) {
            let name = name.trim().trim_matches('"');
            if !name.is_empty() && !name.starts_with('#') {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// Every rule the manifests `(crate name, manifest text)` break.
fn violations(manifests: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in manifests {
        let deps = dependencies(text);
        if SERVICES.contains(&name.as_str()) {
            for d in &deps {
                if SERVICES.contains(&d.as_str()) && d != name {
                    out.push(format!("service crate {name} depends on service crate {d}"));
                }
            }
        }
        if name != "hospital-core" && deps.iter().any(|d| d == "hospital-store") {
            out.push(format!(
                "{name} depends on hospital-store; only hospital-core may (raw writes stay in the platform)"
            ));
        }
    }
    out
}

fn workspace_manifests() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![(
        "hospital".to_owned(),
        std::fs::read_to_string(root.join("Cargo.toml")).unwrap(),
    )];
    for entry in std::fs::read_dir(root.join("services")).unwrap() {
        let path = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
            .unwrap();
        out.push((name, text));
    }
    out
}

#[test]
fn no_service_crate_depends_on_another_and_only_the_platform_on_the_store() {
    let manifests = workspace_manifests();
    assert!(
        manifests.len() >= 10,
        "found the crates: {}",
        manifests.len()
    );
    assert_eq!(violations(&manifests), Vec::<String>::new());
}

#[test]
fn the_dependency_check_catches_a_service_depending_on_another() {
    let billing = "[package]\nname = \"hospital-billing\"\n\n[dependencies]\nhospital-core.workspace = true\nhospital-records.workspace = true\n\n[dev-dependencies]\nhospital-store.workspace = true\n";
    let found = violations(&[("hospital-billing".into(), billing.into())]);
    assert_eq!(
        found,
        vec!["service crate hospital-billing depends on service crate hospital-records"]
    );
    let sneaky = "[dependencies]\nhospital-store = { path = \"../store\" }\n";
    assert_eq!(
        violations(&[("hospital-fhir-http".into(), sneaky.into())]).len(),
        1
    );
}
