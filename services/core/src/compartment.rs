//! The one rule of what belongs to a patient: FHIR's CompartmentDefinition for Patient
//! (<https://hl7.org/fhir/R4B/compartmentdefinition-patient.html>), declared once in
//! [`hospital_store::params::PATIENT_COMPARTMENT`]. The same declaration confines searches in
//! SQL, decides what a patient may read by id, and names the patients of every audit record.

use crate::caller::Caller;
use crate::error::Error;
use hospital_auth::is_patient_data;
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
    hospital_store::params::compartment_patients(resource_type, id, body)
}

/// Whether the caller may see this version: a confined caller (a patient) sees only their own
/// compartment; types that hold no patient's data are visible to everyone allowed to read them.
pub fn visible(caller: &Caller, v: &Version) -> bool {
    let Some(pid) = caller.principal.compartment() else {
        return true;
    };
    if !is_patient_data(&v.resource_type) {
        return true;
    }
    patients_of(v).iter().any(|p| p == pid)
}

/// The answer to a caller who addressed `rtype/id` directly: the version read, unless the
/// caller is confined to a compartment it is not in. Then it is "not known" — never 403 or
/// 410 — so that a patient cannot learn that someone else's resource exists or was deleted.
pub fn reveal(
    caller: &Caller,
    rtype: &str,
    id: &str,
    read: Result<Version, hospital_store::StoreError>,
) -> Result<Version, Error> {
    let hidden = || Error::not_found(format!("{rtype}/{id} is not known"));
    match read {
        Ok(v) if visible(caller, &v) => Ok(v),
        Ok(_) => Err(hidden()),
        Err(hospital_store::StoreError::Gone(_)) if caller.principal.compartment().is_some() => {
            Err(hidden())
        }
        Err(e) => Err(e.into()),
    }
}
