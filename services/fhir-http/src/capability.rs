//! The CapabilityStatement, generated from the same declarations that drive the server
//! (supported types, owners, search parameters), so it claims nothing the server cannot do.

use crate::FhirApi;
use hospital_core::store::params;
use serde_json::{Value, json};

pub fn statement(api: &FhirApi) -> Value {
    let deployment = api.platform.deployment();
    let resources: Vec<Value> = hospital_fhir_model::SUPPORTED_TYPES
        .iter()
        .map(|t| {
            let mut interactions = vec!["read", "vread", "history-instance", "history-type", "search-type"];
            // Exactly what this process writes: the types of the services it runs.
            let writable = deployment.writes(t);
            if writable {
                interactions.extend(["create", "update", "patch", "delete"]);
            }
            let mut search: Vec<Value> = vec![
                json!({"name": "_id", "type": "token"}),
                json!({"name": "_lastUpdated", "type": "date"}),
            ];
            search.extend(params::of_type(t).map(|p| {
                json!({"name": p.name, "type": p.kind.fhir_name()})
            }));
            let references: Vec<String> = params::of_type(t)
                .filter(|p| p.kind == params::ParamKind::Reference)
                .map(|p| format!("{t}:{}", p.name))
                .collect();
            let revs: Vec<String> = params::all()
                .filter(|p| p.kind == params::ParamKind::Reference && (p.targets.is_empty() || p.targets.contains(t)))
                .map(|p| format!("{}:{}", p.resource_type, p.name))
                .collect();
            let mut r = json!({
                "type": t,
                "interaction": interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": writable,
                "conditionalCreate": writable,
                "conditionalUpdate": writable,
                "conditionalDelete": "not-supported",
                "searchParam": search,
            });
            if !references.is_empty() {
                r["searchInclude"] = json!(references);
            }
            if !revs.is_empty() {
                r["searchRevInclude"] = json!(revs);
            }
            let mut ops: Vec<Value> = Vec::new();
            if *t == "Patient" {
                ops.push(json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}));
            }
            // A write tried and rolled back: where this process makes the write.
            if writable {
                ops.push(json!({"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}));
            }
            // The operations the services this process runs define on the type.
            for o in api.operations.iter().filter(|o| o.resource_type() == *t) {
                let name = o.name().trim_start_matches('$');
                ops.push(json!({"name": name,
                    "definition": format!("urn:hospital:operation:{}-{name}", o.resource_type())}));
            }
            if !ops.is_empty() {
                r["operation"] = Value::Array(ops);
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-27",
        "kind": "instance",
        "software": {"name": "hospital", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": format!("Hospital platform FHIR server ({})", deployment.name()),
            "url": api.config.base_url
        },
        "fhirVersion": "4.3.0",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read, vread and search take _summary (true, text, data, count on a search, false) and _elements (top-level elements); the resources returned are tagged SUBSETTED. PATCH takes JSON Patch (application/json-patch+json). A search across types (GET [base]?_type=...) takes _id, _lastUpdated, the parameters every listed type has, _sort by _id or _lastUpdated, and pages of at most 100.",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "search-system"},
                {"code": "history-system"}
            ],
            "searchParam": [
                {"name": "_id", "type": "token"},
                {"name": "_lastUpdated", "type": "date"},
                {"name": "_type", "type": "token"}
            ],
        }]
    })
}
