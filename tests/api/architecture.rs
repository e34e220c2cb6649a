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

/// The modules of a crate (`src/a.rs`, `src/a/b.rs` → `a`, `a::b`) and the sibling modules
/// each one names through `crate::` or `super::` (tests and doc comments aside).
fn module_graph(src: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut texts = std::collections::BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let name = rel.to_string_lossy().replace("/mod", "").replace('/', "::");
        if name == "lib" || name == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        texts.insert(name, code);
    }
    let names: Vec<String> = texts.keys().cloned().collect();
    texts
        .iter()
        .map(|(name, code)| {
            let parent = name.rsplit_once("::").map(|(p, _)| p.to_owned());
            let deps = names
                .iter()
                .filter(|other| *other != name)
                .filter(|other| {
                    let top = other.split("::").next().unwrap();
                    let by_crate = code.contains(&format!("crate::{other}"))
                        || (!other.contains("::") && code.contains(&format!("crate::{top}::")))
                        || code.contains(&format!("crate::{{{top}"))
                        || code.contains(&format!("crate::{top}}}"))
                        || code.contains(&format!("crate::{top};"));
                    let by_super = parent.as_ref().is_some_and(|p| {
                        other.strip_prefix(&format!("{p}::")).is_some_and(|leaf| {
                            code.contains(&format!("super::{leaf}"))
                                || code.contains(&format!("super::{{{leaf}"))
                        })
                    });
                    by_crate || by_super
                })
                .cloned()
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

/// A cycle of module imports, if the graph has one.
fn a_cycle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::HashSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = std::collections::HashSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut crates = vec![root.join("src")];
    for entry in std::fs::read_dir(root.join("services")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            crates.push(src);
        }
    }
    for src in crates {
        let graph = module_graph(&src);
        assert_eq!(a_cycle(&graph), None, "{}", src.display());
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let g = [
        ("rest", vec!["bundle"]),
        ("bundle", vec!["rest"]),
        ("error", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert!(a_cycle(&g).is_some());
    // And the graph is read off the sources: the REST routes use the Bundle module.
    let fhir_http =
        module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("services/fhir-http/src"));
    assert!(
        fhir_http["rest"].contains(&"bundle".to_owned()),
        "{fhir_http:?}"
    );
    assert!(
        fhir_http["bundle"].contains(&"request".to_owned()),
        "{fhir_http:?}"
    );
    let store = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("services/store/src"));
    assert!(
        store["search::execute"].contains(&"search::compile".to_owned()),
        "{store:?}"
    );
}
