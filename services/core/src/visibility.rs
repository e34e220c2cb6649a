//! What a caller may see, by the compartment rule: a patient only their own compartment, and
//! anything else "not known".

use crate::caller::Caller;
use crate::compartment::{patients_of, standing_patients};
use crate::error::Error;
use crate::touched::Touched;
use hospital_auth::is_patient_data;
use hospital_store::{Store, Version};

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

/// A version as a caller may see it: `Ok` with what the access touched (the patients of the
/// version and of the resource now), or "not known" with the same for the refusal's record.
pub async fn reveal_version(
    store: &Store,
    caller: &Caller,
    read: Result<Version, hospital_store::StoreError>,
    resource_type: &str,
    id: &str,
) -> Result<(Version, Touched), (Error, Touched)> {
    let mut touched = Touched::target(&format!("{resource_type}/{id}"));
    let now = match standing_patients(store, resource_type, id).await {
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
