//! What the doctor records during a video visit, saved to its Encounter and signed: the
//! findings (an Observation), the diagnosis in ICD-10 (a Condition) and the prescription (a
//! MedicationRequest), in one transaction through the records service's own rules (every
//! process runs every owner's rules), each signed by the doctor with a Provenance.
//!
//! Remote treatment is allowed only for the conditions of Circular 30/2023
//! (`data/circular-30-2023.csv`): a prescription for a diagnosis outside that list is refused
//! with the flag until the doctor acknowledges it (advice given remotely, treatment to follow
//! in person), and the acknowledgement is kept on the prescription.

use crate::appointment::ext;
use crate::visit::{ENCOUNTER, Visits, participant_of};
use hospital_core::rules::Checks;
use hospital_core::{Error, Touched, codes};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
/// On a MedicationRequest: the doctor acknowledged the diagnosis is outside Circular 30/2023.
pub const OUTSIDE_CIRCULAR_30: &str = "urn:hospital:telemedicine:outside-circular-30";

const LIST: &str = include_str!("../data/circular-30-2023.csv");

/// The ICD-10 categories (and subcategories) remote treatment is allowed for.
pub fn remote_treatable() -> &'static BTreeMap<String, String> {
    static T: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    T.get_or_init(|| {
        LIST.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("icd10,") && !l.trim().is_empty())
            .filter_map(|l| l.split_once(','))
            .map(|(c, n)| (c.trim().to_owned(), n.trim().to_owned()))
            .collect()
    })
}

/// Whether `code` (an ICD-10 code such as `E11.9`) falls under the list: its subcategory or
/// its category is listed.
pub fn may_treat_remotely(code: &str) -> bool {
    let list = remote_treatable();
    list.contains_key(code) || list.contains_key(code.get(..3).unwrap_or(code))
}

/// An ICD-10 code: a letter, two digits, optionally a dot and 1–4 more.
pub fn is_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_digit() || !b[2].is_ascii_digit()
    {
        return false;
    }
    match &code[3..] {
        "" => true,
        rest => {
            rest.starts_with('.')
                && (2..=5).contains(&rest.len())
                && rest[1..].bytes().all(|c| c.is_ascii_alphanumeric())
        }
    }
}

/// What the doctor saves.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Notes {
    pub findings: Option<String>,
    pub icd10: Option<String>,
    pub diagnosis: Option<String>,
    pub medication: Option<String>,
    pub dosage: Option<String>,
    /// The doctor saw the Circular 30 flag and saves anyway.
    #[serde(default)]
    pub acknowledge: bool,
}

fn text(s: &Option<String>, name: &str, max: usize) -> Result<Option<String>, Error> {
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > max => {
            Err(Error::invalid(name, format!("at most {max} characters")))
        }
        Some(t) => Ok(Some(t.to_owned())),
    }
}

impl Visits {
    /// Saves and signs `notes` on the visit of Appointment `id`, as its practitioner.
    pub async fn save_notes(
        &self,
        caller: &hospital_core::Caller,
        id: &str,
        notes: &Notes,
    ) -> Result<(Vec<String>, Touched), Error> {
        let v = self.platform.store().read("Appointment", id).await?;
        let a: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored appointment unreadable"))?;
        let p = participant_of(caller, id, &a)?;
        if p.role != "practitioner" {
            return Err(Error::forbidden(
                "the visit's practitioner writes its notes",
            ));
        }
        let encounter = ext(&a, ENCOUNTER)
            .and_then(|e| e.pointer("/valueReference/reference"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::new(codes::WRONG_STATE, "the visit has not begun: join it first")
            })?;
        let patient = crate::appointment::patient_of(&a).unwrap_or_default();
        let findings = text(&notes.findings, "findings", 4000)?;
        let diagnosis = text(&notes.diagnosis, "diagnosis", 200)?;
        let medication = text(&notes.medication, "medication", 200)?;
        let dosage = text(&notes.dosage, "dosage", 500)?;
        let icd = match text(&notes.icd10, "icd10", 10)? {
            Some(c) if is_icd10(&c.to_uppercase()) => Some(c.to_uppercase()),
            Some(c) => {
                return Err(Error::invalid(
                    "icd10",
                    format!("`{c}` is not an ICD-10 code (e.g. I10, E11.9)"),
                ));
            }
            None => None,
        };
        if findings.is_none() && icd.is_none() && medication.is_none() {
            return Err(Error::new(
                codes::MALFORMED_REQUEST,
                "nothing to save: findings, a diagnosis or a prescription",
            ));
        }
        if medication.is_some() && icd.is_none() {
            return Err(Error::invalid(
                "icd10",
                "a prescription needs the diagnosis it treats",
            ));
        }
        let outside = matches!((&icd, &medication), (Some(c), Some(_)) if !may_treat_remotely(c));
        if outside && !notes.acknowledge {
            return Err(Error::new(
                codes::BUSINESS_RULE,
                format!(
                    "{} is not on the list of Circular 30/2023: it may be advised on remotely, not treated; acknowledge to save",
                    icd.clone().unwrap_or_default()
                ),
            )
            .at("icd10"));
        }
        let me = p.reference.clone();
        let subject = json!({"reference": patient});
        let context = json!({"reference": encounter});
        let now = crate::calendar::instant(crate::calendar::now());
        let mut bodies = Vec::new();
        if let Some(f) = findings {
            bodies.push(("Observation", json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "29545-1", "display": "Physical findings"}], "text": "Khám lâm sàng (từ xa)"},
                "subject": subject, "encounter": context, "effectiveDateTime": now,
                "performer": [{"reference": me}], "valueString": f})));
        }
        if let Some(c) = &icd {
            let mut coding = json!({"system": ICD10, "code": c});
            if let Some(d) = &diagnosis {
                coding["display"] = json!(d);
            }
            bodies.push(("Condition", json!({"resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
                "code": {"coding": [coding], "text": diagnosis.clone().unwrap_or_else(|| c.clone())},
                "subject": subject, "encounter": context, "recordedDate": now,
                "recorder": {"reference": me}, "asserter": {"reference": me}})));
        }
        if let Some(m) = &medication {
            let mut rx = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "medicationCodeableConcept": {"text": m},
                "subject": subject, "encounter": context, "authoredOn": now,
                "requester": {"reference": me},
                "reasonCode": [{"coding": [{"system": ICD10, "code": icd.clone().unwrap_or_default()}]}]});
            if let Some(d) = &dosage {
                rx["dosageInstruction"] = json!([{"text": d}]);
            }
            if outside {
                rx["extension"] = json!([{"url": OUTSIDE_CIRCULAR_30, "valueBoolean": true}]);
            }
            bodies.push(("MedicationRequest", rx));
        }
        let signer = hospital_core::signing::signer_of(caller)?;
        let mut tx = self.platform.begin(caller).await?;
        let mut touched = Touched::default();
        let mut ids = Vec::new();
        for (rtype, body) in bodies {
            let w = self
                .platform
                .writer()
                .create(&mut tx, rtype, None, body, Checks::Now)
                .await?;
            let prov = hospital_core::signing::sign_version(
                &self.platform,
                &mut tx,
                &w.version,
                &signer,
                None,
            )
            .await?;
            touched.add(&w.version);
            touched.add(&prov);
            ids.push(format!("{rtype}/{}", w.version.id));
        }
        tx.commit().await?;
        Ok((ids, touched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd10_codes_and_the_circular_list() {
        for ok in ["I10", "E11.9", "F41.2", "S72.001"] {
            assert!(is_icd10(ok), "{ok}");
        }
        for bad in ["i10", "I1", "I10.", "E11.12345", "110", "I10 "] {
            assert!(!is_icd10(bad), "{bad}");
        }
        assert!(may_treat_remotely("I10"));
        assert!(may_treat_remotely("E11.9"), "under its category");
        assert!(may_treat_remotely("F41.2"));
        assert!(
            !may_treat_remotely("F41.1"),
            "only the listed subcategory of F41"
        );
        assert!(!may_treat_remotely("C50.9"), "cancer is treated in person");
    }
}
