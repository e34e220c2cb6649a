//! The one rule of what belongs to a patient: FHIR's CompartmentDefinition for Patient
//! (<https://hl7.org/fhir/R4B/compartmentdefinition-patient.html>), declared once in
//! [`hospital_store::params::PATIENT_COMPARTMENT`]. The same declaration confines searches in
//! SQL, decides what a patient may read by id, and names the patients of every audit record.

use crate::error::Error;
use hospital_store::Version;
use serde_json::Value;

/// The patients a stored version belongs to: the Patient itself, and every Patient its
/// compartment parameters reference.
pub fn patients_of(v: &Version) -> Vec<String> {
    if v.deleted || v.body.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(&v.body) {
        Ok(body) => patients_of_body(&v.resource_type, &v.id, &body),
        Err(_) => Vec::new(),
    }
}

/// [`patients_of`] for a parsed body.
pub fn patients_of_body(resource_type: &str, id: &str, body: &Value) -> Vec<String> {
    hospital_store::extract::compartment_patients(resource_type, id, body)
}

/// The patients a resource belongs to now: by its current version, or — deleted — by its
/// last version before the deletion. A resource's old versions belong to the same patients
/// as the resource: a misfiled entry corrected to another patient is no longer the first
/// patient's, through any door.
pub async fn standing_patients(
    store: &hospital_store::Store,
    resource_type: &str,
    id: &str,
) -> Result<Vec<String>, Error> {
    Ok(store
        .standing_version(resource_type, id)
        .await?
        .map(|v| patients_of(&v))
        .unwrap_or_default())
}
