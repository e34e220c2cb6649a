//! Discharge papers (giấy ra viện): a `Composition` of type discharge summary (LOINC
//! 18842-5), for an encounter of its patient, written by the discharging doctor, with its
//! sections — the reason for admission, the course, the diagnoses on discharge (Conditions of
//! the patient coded in ICD-10), the procedures, the medications on discharge and the
//! follow-up. It is signed like any clinical entry (`$sign` by its author), and
//! `GET /fhir/Composition/{id}/$document` returns it as a FHIR document: a Bundle of the
//! Composition and everything it names (<https://hl7.org/fhir/R4B/documents.html>).

use async_trait::async_trait;
use hospital_core::auth::Action;
use hospital_core::tx::Tx;
use hospital_core::{AuditAction, Caller, Error, Operation, Platform, Touched, authorize, reveal};
use serde_json::{Value, json};

pub const LOINC: &str = "http://loinc.org";
/// The type of a discharge summary.
pub const DISCHARGE_SUMMARY: &str = "18842-5";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";

/// The sections a discharge summary has (LOINC code, its title in Vietnamese), and the types
/// its entries may be.
pub const SECTIONS: &[(&str, &str, &[&str])] = &[
    ("29299-5", "Lý do vào viện", &[]),
    ("8648-8", "Quá trình bệnh lý và diễn biến lâm sàng", &[]),
    ("11535-2", "Chẩn đoán ra viện", &["Condition"]),
    ("47519-4", "Thủ thuật, phẫu thuật", &["Procedure"]),
    ("10183-2", "Thuốc khi ra viện", &["MedicationRequest"]),
    ("8653-8", "Hướng dẫn điều trị tiếp, tái khám", &[]),
];

/// The diagnoses section: each entry a Condition of the patient coded in ICD-10.
const DIAGNOSES: &str = "11535-2";

fn codes<'a>(concept: Option<&'a Value>, system: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |c| c.get("system").and_then(Value::as_str) == Some(system))
        .filter_map(|c| c.get("code").and_then(Value::as_str))
}

/// Whether `composition` is a discharge summary.
pub fn is_discharge_summary(composition: &Value) -> bool {
    codes(composition.get("type"), LOINC).any(|c| c == DISCHARGE_SUMMARY)
}

fn reference(v: Option<&Value>) -> Option<(&str, &str)> {
    v.and_then(|r| r.get("reference"))
        .and_then(Value::as_str)
        .and_then(hospital_core::store::extract::split_reference)
}

/// A discharge summary's rule, checked after the transaction's writes (its diagnoses may be
/// written in the same Bundle): a patient and an encounter of that patient, a practitioner
/// among its authors, every section, diagnoses coded in ICD-10 and of the same patient.
pub async fn check(tx: &mut Tx, body: &Value) -> Result<(), Error> {
    if !is_discharge_summary(body) {
        return Ok(());
    }
    let patient = match reference(body.get("subject")) {
        Some(("Patient", id)) => id.to_owned(),
        _ => {
            return Err(Error::invalid(
                "Composition.subject",
                "a discharge summary is of a Patient",
            ));
        }
    };
    let Some(("Encounter", encounter)) = reference(body.get("encounter")) else {
        return Err(Error::invalid(
            "Composition.encounter",
            "a discharge summary names the encounter it ends",
        ));
    };
    let stay: Value = serde_json::from_str(&tx.read("Encounter", encounter).await?.body)
        .map_err(|_| Error::internal("stored encounter unreadable"))?;
    if reference(stay.get("subject")) != Some(("Patient", patient.as_str())) {
        return Err(Error::invalid(
            "Composition.encounter",
            "the encounter is another patient's",
        ));
    }
    let authors = body.get("author").and_then(Value::as_array);
    if !authors
        .into_iter()
        .flatten()
        .any(|a| matches!(reference(Some(a)), Some(("Practitioner", _))))
    {
        return Err(Error::invalid(
            "Composition.author",
            "the discharging doctor (a Practitioner) is among the authors",
        ));
    }
    let sections: Vec<&Value> = body
        .get("section")
        .and_then(Value::as_array)
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    for (code, title, types) in SECTIONS {
        let Some((i, section)) = sections
            .iter()
            .enumerate()
            .find(|(_, s)| codes(s.get("code"), LOINC).any(|c| c == *code))
        else {
            return Err(Error::invalid(
                "Composition.section",
                format!("a discharge summary has the section {code} ({title})"),
            ));
        };
        let at = format!("Composition.section[{i}]");
        let entries: Vec<&Value> = section
            .get("entry")
            .and_then(Value::as_array)
            .map(|e| e.iter().collect())
            .unwrap_or_default();
        let said = section.get("text").is_some() || section.get("emptyReason").is_some();
        if entries.is_empty() && !said {
            return Err(Error::invalid(
                at,
                format!("the section {code} ({title}) has entries, a text, or an emptyReason"),
            ));
        }
        for (j, e) in entries.iter().enumerate() {
            let at = format!("{at}.entry[{j}]");
            let Some((t, id)) = reference(Some(e)) else {
                return Err(Error::invalid(
                    at,
                    "a reference to a resource of this server",
                ));
            };
            if !types.is_empty() && !types.contains(&t) {
                return Err(Error::invalid(
                    at,
                    format!("the section {code} ({title}) lists {}", types.join(", ")),
                ));
            }
            let entry: Value = serde_json::from_str(&tx.read(t, id).await?.body)
                .map_err(|_| Error::internal("stored entry unreadable"))?;
            let whose = reference(entry.get("subject").or_else(|| entry.get("patient")));
            if whose != Some(("Patient", patient.as_str())) {
                return Err(Error::invalid(at, "the entry is another patient's"));
            }
            if *code == DIAGNOSES && codes(entry.get("code"), ICD10).next().is_none() {
                return Err(Error::invalid(
                    at,
                    format!("a diagnosis on discharge is coded in ICD-10 ({ICD10})"),
                ));
            }
        }
    }
    Ok(())
}

/// Every relative reference in `v`, outside contained resources.
fn references(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                if k == "contained" {
                    continue;
                }
                if k == "reference"
                    && let Some((t, id)) = child
                        .as_str()
                        .and_then(hospital_core::store::extract::split_reference)
                {
                    let r = (t.to_owned(), id.to_owned());
                    if !out.contains(&r) {
                        out.push(r);
                    }
                    continue;
                }
                references(child, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| references(c, out)),
        _ => {}
    }
}

/// `GET /fhir/Composition/{id}/$document`: the Composition and every resource it references,
/// as a document Bundle, for a caller who may read them all (a patient their own papers).
pub struct Document {
    pub platform: Platform,
    /// The FHIR base URL, for the entries' `fullUrl`s.
    pub base: String,
}

#[async_trait]
impl Operation for Document {
    fn resource_type(&self) -> &'static str {
        "Composition"
    }

    fn name(&self) -> &'static str {
        "$document"
    }

    fn action(&self) -> AuditAction {
        AuditAction::R
    }

    async fn run(
        &self,
        caller: &Caller,
        id: &str,
        _input: Option<Value>,
    ) -> Result<(Value, Touched), Error> {
        authorize(caller, Action::Read, "Composition")?;
        let store = self.platform.store();
        let composition = reveal(
            caller,
            "Composition",
            id,
            store.read("Composition", id).await,
        )?;
        let body: Value = serde_json::from_str(&composition.body)
            .map_err(|_| Error::internal("stored composition unreadable"))?;
        let mut named = Vec::new();
        references(&body, &mut named);
        let mut versions = vec![composition.clone()];
        for (t, rid) in &named {
            authorize(caller, Action::Read, t)?;
            let v = reveal(caller, t, rid, store.read(t, rid).await).map_err(|_| {
                Error::new(
                    hospital_core::codes::BUSINESS_RULE,
                    format!("the document names {t}/{rid}, which is not there to include"),
                )
            })?;
            versions.push(v);
        }
        let base = self.base.trim_end_matches('/');
        let mut entries = Vec::new();
        for v in &versions {
            let resource: Value = serde_json::from_str(&v.body)
                .map_err(|_| Error::internal("stored resource unreadable"))?;
            entries.push(json!({
                "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
                "resource": resource,
            }));
        }
        // The same version of the same Composition is the same document.
        let identity = format!(
            "{base}/Composition/{id}/_history/{}",
            composition.version_id
        );
        let bundle = json!({
            "resourceType": "Bundle",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": identity},
            "type": "document",
            "timestamp": hospital_core::store::dates::format_instant(composition.last_updated),
            "entry": entries,
        });
        Ok((bundle, Touched::of(&versions)))
    }
}
