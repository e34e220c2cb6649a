//! The search parameters of the types the records service owns. FHIR's own, every one it
//! defines for these types, are generated from HL7's definitions into `fhir_search_params.rs`;
//! the hospital's own parameters, if any, are declared here. Each declaration drives index
//! extraction, query parsing and the CapabilityStatement, and every process installs all of
//! them (with every other service's), so every process indexes alike.

use hospital_core::store::params::SearchParam;

/// FHIR's and the hospital's own, as the service declares them.
pub static ALL: &[&[SearchParam]] = &[SEARCH_PARAMS, crate::fhir_search_params::FHIR_SEARCH_PARAMS];

/// The hospital's own search parameters of the records service's types (none yet).
pub static SEARCH_PARAMS: &[SearchParam] = &[];

#[cfg(test)]
mod tests {
    use hospital_core::store::extract::extract;
    use serde_json::json;

    #[test]
    fn a_patient_yields_identifier_name_birthdate_and_phone_rows() {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": "123"}],
            "name": [{"family": "Nguyễn", "given": ["Văn", "An"]}],
            "telecom": [{"system": "phone", "value": "0905123456"}, {"system": "email", "value": "a@b.vn"}],
            "birthDate": "1985-03-12"
        });
        hospital_core::store::params::install(
            &[
                super::SEARCH_PARAMS,
                crate::fhir_search_params::FHIR_SEARCH_PARAMS,
            ],
            &[],
        )
        .unwrap();
        let rows = extract("Patient", &p);
        assert!(
            rows.tokens
                .contains(&("identifier", "urn:x".into(), "123".into()))
        );
        assert!(
            rows.tokens
                .contains(&("phone", "phone".into(), "0905123456".into()))
        );
        assert!(
            !rows
                .tokens
                .iter()
                .any(|t| t.0 == "phone" && t.2 == "a@b.vn")
        );
        assert!(
            rows.strings
                .iter()
                .any(|s| s.0 == "name" && s.1 == "nguyen van an")
        );
        assert!(
            rows.strings
                .iter()
                .any(|s| s.0 == "family" && s.1 == "nguyen" && s.2 == "Nguyễn")
        );
        assert_eq!(rows.dates.len(), 1);
    }
}
