//! The demo data set: a provincial hospital in Quảng Ngãi, its doctors, five patients with
//! personal IDs and BHYT cards, encounters, diagnoses and vital signs, the hospital's price list
//! and the charges of An's visit. Loaded as one FHIR transaction of PUTs at fixed ids, through
//! the owners' rules, so loading it twice changes nothing but versions. Then An's visit is
//! invoiced, with the BHYT split, once (the invoice is issued under a fixed idempotency key),
//! and the doctors' schedules (video and in person) make their slots for the next 14 days.

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
    // Demo charges already in the store are left as they are: they may be on an invoice,
    // and only billing changes a billed charge.
    let mut kept = Vec::new();
    for e in bundle["entry"].as_array().cloned().unwrap_or_default() {
        let url = e["request"]["url"].as_str().unwrap_or("");
        if let Some(id) = url.strip_prefix("ChargeItem/")
            && store.read("ChargeItem", id).await.is_ok()
        {
            continue;
        }
        kept.push(e);
    }
    bundle["entry"] = serde_json::Value::Array(kept);
    let seed = Caller::system("seed");
    let (out, _) = hospital_fhir_http::process_bundle(&api, &seed, bundle)
        .await
        .map_err(|e| anyhow::anyhow!("the demo data set was refused: {e}"))?;
    // An's visit, invoiced by billing's own rule; the coverage is read with the records
    // service's rule in process, as the services are not running.
    let invoicing = hospital_billing::invoicing_with(
        api.platform.clone(),
        std::sync::Arc::new(InProcessCoverage(api.platform.clone())),
        &cfg.facility_level,
    );
    let request = hospital_billing::issue::Request::Encounter {
        encounter: "enc-an-1".into(),
        new_charges: Vec::new(),
        shown: None,
    };
    invoicing
        .issue(&seed, &request, Some(DEMO_INVOICE_KEY))
        .await
        .map_err(|e| anyhow::anyhow!("the demo invoice was refused: {e}"))?;
    // The doctors' slots over the next 14 days, as telemedicine keeps them generated.
    let slots = hospital_telemedicine::keep_slots_generated(&api.platform, None)
        .await
        .map_err(|e| anyhow::anyhow!("the demo slots were refused: {e}"))?;
    store.refresh_statistics().await?;
    store.audit_seal().await?;
    Ok(out["entry"].as_array().map_or(0, Vec::len) + 1 + slots)
}

/// The idempotency key of the demo invoice (An's visit of 20 November).
pub const DEMO_INVOICE_KEY: &str = "demo:enc-an-1";

/// The demo invoice, once seeded.
pub async fn demo_invoice(store: &Store) -> Option<hospital_core::store::Version> {
    let q = hospital_core::store::SearchQuery::new(
        "Invoice",
        vec![(
            "identifier".into(),
            format!(
                "{}|{DEMO_INVOICE_KEY}",
                hospital_billing::invoice::IDEMPOTENCY_KEY
            ),
        )],
    );
    store.search(&q).await.ok()?.matches.into_iter().next()
}

/// Coverage read in process with the records service's rule.
struct InProcessCoverage(hospital_core::Platform);

#[async_trait::async_trait]
impl hospital_billing::issue::CoverageSource for InProcessCoverage {
    async fn latest(
        &self,
        key: &hospital_billing::issue::CoverageKey,
        on: chrono::NaiveDate,
    ) -> Result<Option<hospital_billing::issue::Covered>, hospital_core::Error> {
        use hospital_billing::issue::CoverageKey as Shown;
        use hospital_records::coverage::{CoverageKey, WhenNoneInForce, coverage_on};
        let key = match key {
            Shown::Patient(p) => CoverageKey::Patient(p.clone()),
            Shown::Card(c) => CoverageKey::Card(c.clone()),
            Shown::PersonalId(n) => CoverageKey::NationalId(n.clone()),
        };
        let caller = Caller::system("seed");
        match coverage_on(&self.0, &caller, &key, on, WhenNoneInForce::LatestExpired).await {
            Ok((c, _)) => Ok(Some(hospital_billing::issue::covered(
                &c.version.id,
                &c.patient_id,
                &c.card_number,
                &c.valid_from,
                &c.valid_to,
                c.in_force,
            ))),
            Err(e) if e.kind() == hospital_core::error::Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
