//! The demo data set: a provincial hospital in Quảng Ngãi, its doctors, five patients with
//! personal IDs and BHYT cards, encounters, diagnoses and vital signs. Loaded as one FHIR
//! transaction of PUTs at fixed ids, through the owners' rules, so loading it twice changes
//! nothing but versions.

use hospital_fhir_http::{FhirApi, FhirConfig, Owners};
use hospital_store::Store;

const DEMO: &str = include_str!("../seed/demo.json");

/// Loads the demo data set; returns how many resources it wrote.
pub async fn demo(store: &Store) -> anyhow::Result<usize> {
    let mut owners = Owners::default();
    hospital_records::register(&mut owners);
    let api = FhirApi {
        store: store.clone(),
        owners,
        config: FhirConfig {
            max_body_bytes: usize::MAX,
            base_url: String::new(),
        },
    };
    let bundle: serde_json::Value = serde_json::from_str(DEMO)?;
    let out = hospital_fhir_http::process_bundle(&api, bundle)
        .await
        .map_err(|e| anyhow::anyhow!("the demo data set was refused: {e}"))?;
    Ok(out["entry"].as_array().map_or(0, Vec::len))
}
