//! The demo data set: a provincial hospital in Quảng Ngãi, its doctors, five patients with
//! personal IDs and BHYT cards, encounters, diagnoses and vital signs. Loaded as one FHIR
//! transaction of PUTs at fixed ids, through the owners' rules, so loading it twice changes
//! nothing but versions.

use hospital_core::Caller;
use hospital_core::store::Store;

const DEMO: &str = include_str!("../seed/demo.json");

/// Loads the demo data set; returns how many resources it wrote.
pub async fn demo(cfg: &crate::Config, store: &Store) -> anyhow::Result<usize> {
    let registry = hospital_host::registry(&crate::registrations())?;
    let platform = hospital_host::platform(cfg, store, registry, hospital_core::Deployment::all())?;
    let api = hospital_fhir_http::FhirApi {
        platform,
        config: hospital_fhir_http::FhirConfig {
            max_body_bytes: cfg.max_body_bytes,
            base_url: String::new(),
        },
        operations: Vec::new().into(),
    };
    let mut bundle: serde_json::Value = serde_json::from_str(DEMO)?;
    // A demo bill already in the store is left as it is: it may have been paid since, and
    // only the ledger changes a paid bill.
    let mut kept = Vec::new();
    for e in bundle["entry"].as_array().cloned().unwrap_or_default() {
        let url = e["request"]["url"].as_str().unwrap_or("");
        if let Some(id) = url.strip_prefix("Invoice/")
            && store.read("Invoice", id).await.is_ok()
        {
            continue;
        }
        kept.push(e);
    }
    bundle["entry"] = serde_json::Value::Array(kept);
    let (out, _) = hospital_fhir_http::process_bundle(&api, &Caller::system("seed"), bundle)
        .await
        .map_err(|e| anyhow::anyhow!("the demo data set was refused: {e}"))?;
    store.audit_seal().await?;
    Ok(out["entry"].as_array().map_or(0, Vec::len))
}
