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

/// The patients a resource belongs to now: by its current version, or — deleted — by its
/// last version before the deletion. A resource's old versions belong to the same patients
/// as the resource: a misfiled entry corrected to another patient is no longer the first
/// patient's, through any door.
pub async fn standing_patients(
    platform: &crate::Platform,
    resource_type: &str,
    id: &str,
) -> Result<Vec<String>, Error> {
    Ok(platform
        .store()
        .standing_version(resource_type, id)
        .await?
        .map(|v| patients_of(&v))
        .unwrap_or_default())
}

/// A version as a caller may see it: `Ok` with what the access touched (the patients of the
/// version and of the resource now), or "not known" with the same for the refusal's record.
pub async fn reveal_version(
    platform: &crate::Platform,
    caller: &Caller,
    read: Result<Version, hospital_store::StoreError>,
    resource_type: &str,
    id: &str,
) -> Result<(Version, crate::Touched), (Error, crate::Touched)> {
    let mut touched = crate::Touched::target(&format!("{resource_type}/{id}"));
    let now = match standing_patients(platform, resource_type, id).await {
        Ok(p) => p,
        Err(e) => return Err((e, touched)),
    };
    for p in &now {
        touched.patient(p);
    }
    if let Ok(v) = &read {
        for p in patients_of(v) {
            touched.patient(&p);
        }
    }
    let confined = caller
        .principal
        .compartment()
        .filter(|_| is_patient_data(resource_type));
    let hidden = || Error::not_found(format!("{resource_type}/{id} is not known"));
    match (read, confined) {
        (Ok(v), None) => Ok((v, touched)),
        (Ok(v), Some(pid)) if now.iter().any(|p| p == pid) => Ok((v, touched)),
        (Ok(_), Some(_)) => Err((hidden(), touched)),
        (Err(_), Some(pid)) if !now.iter().any(|p| p == pid) => Err((hidden(), touched)),
        (Err(e), _) => Err((e.into(), touched)),
    }
}
