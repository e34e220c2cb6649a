//! Discharge papers: a discharge summary (Composition, LOINC 18842-5) with its sections, the
//! diagnoses in ICD-10, signed by the discharging doctor, read back as a FHIR document; what is
//! not a discharge summary is refused with the element named, and nothing is kept.

use crate::common::*;
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    a_signed_discharge_summary_is_read_as_a_document_by_its_patient_and_staff,
    a_discharge_summary_missing_what_it_needs_is_refused_and_nothing_kept,
);

struct Stay {
    patient: String,
    doctor: String,
    encounter: String,
    diagnosis: String,
    procedure: String,
    medication: String,
}

async fn stay(app: &TestApp, national_id: &str) -> Stay {
    let patient = app.create(patient_an(national_id)).await;
    let doctor = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê", "given": ["Văn", "Hùng"]}]}))
        .await;
    let subject = json!({"reference": format!("Patient/{patient}")});
    let encounter = app
        .create(json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": subject, "period": {"start": "2026-11-20T08:00:00+07:00", "end": "2026-11-27T10:00:00+07:00"},
            "participant": [{"individual": {"reference": format!("Practitioner/{doctor}")}}]}))
        .await;
    let diagnosis = app
        .create(json!({"resourceType": "Condition", "subject": subject,
            "encounter": {"reference": format!("Encounter/{encounter}")},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J18.9",
                "display": "Viêm phổi, không đặc hiệu"}]}}))
        .await;
    let procedure = app
        .create(
            json!({"resourceType": "Procedure", "status": "completed", "subject": subject,
            "code": {"text": "Chụp X-quang ngực thẳng"}}),
        )
        .await;
    let medication = app
        .create(json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": subject, "medicationCodeableConcept": {"text": "Amoxicillin 500mg, 7 ngày"}}))
        .await;
    Stay {
        patient,
        doctor,
        encounter,
        diagnosis,
        procedure,
        medication,
    }
}

fn section(code: &str, title: &str, entries: &[String], text: &str) -> Value {
    let mut s = json!({"title": title,
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{text}</div>")}});
    if !entries.is_empty() {
        s["entry"] = entries.iter().map(|r| json!({"reference": r})).collect();
    }
    s
}

fn summary(s: &Stay) -> Value {
    json!({"resourceType": "Composition", "status": "final",
    "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
    "subject": {"reference": format!("Patient/{}", s.patient)},
    "encounter": {"reference": format!("Encounter/{}", s.encounter)},
    "date": "2026-11-27T10:00:00+07:00",
    "author": [{"reference": format!("Practitioner/{}", s.doctor)}],
    "title": "Giấy ra viện",
    "section": [
        section("29299-5", "Lý do vào viện", &[], "Sốt, ho có đờm 5 ngày"),
        section("8648-8", "Quá trình bệnh lý và diễn biến lâm sàng", &[], "Điều trị kháng sinh, hết sốt ngày thứ 4"),
        section("11535-2", "Chẩn đoán ra viện", &[format!("Condition/{}", s.diagnosis)], "J18.9 Viêm phổi"),
        section("47519-4", "Thủ thuật, phẫu thuật", &[format!("Procedure/{}", s.procedure)], "X-quang ngực"),
        section("10183-2", "Thuốc khi ra viện", &[format!("MedicationRequest/{}", s.medication)], "Amoxicillin"),
        section("8653-8", "Hướng dẫn điều trị tiếp, tái khám", &[], "Tái khám sau 7 ngày"),
    ]})
}

async fn a_signed_discharge_summary_is_read_as_a_document_by_its_patient_and_staff(b: Backend) {
    let app = spawn_app(b).await;
    let s = stay(&app, "051085000123").await;
    let id = app.create(summary(&s)).await;
    // The discharging doctor signs it; it verifies.
    let doctor = app.client_for(Role::Clinician, None, Some(&s.doctor));
    let r = doctor
        .post(app.url(&format!("Composition/{id}/$sign")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (st, v) = app.get_json(&format!("Composition/{id}/$verify")).await;
    assert_eq!(st, 200, "{v}");
    assert!(v.to_string().contains("valid"), "{v}");
    // The document: the Composition first, then everything it names.
    let (st, doc) = app.get_json(&format!("Composition/{id}/$document")).await;
    assert_eq!(st, 200, "{doc}");
    assert_eq!(doc["resourceType"], "Bundle");
    assert_eq!(doc["type"], "document");
    assert!(
        doc["identifier"]["value"]
            .as_str()
            .unwrap()
            .ends_with("/_history/1")
    );
    let entries = doc["entry"].as_array().unwrap();
    assert_eq!(entries[0]["resource"]["resourceType"], "Composition");
    let mut held: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    held.sort();
    let mut want = vec![
        format!("Composition/{id}"),
        format!("Patient/{}", s.patient),
        format!("Practitioner/{}", s.doctor),
        format!("Encounter/{}", s.encounter),
        format!("Condition/{}", s.diagnosis),
        format!("Procedure/{}", s.procedure),
        format!("MedicationRequest/{}", s.medication),
    ];
    want.sort();
    assert_eq!(held, want);
    assert!(
        entries
            .iter()
            .all(|e| e["fullUrl"].as_str().unwrap().starts_with("http"))
    );
    // The patient reads his own papers; another patient does not learn they exist.
    let an = app.client_for(Role::Patient, Some(&s.patient), None);
    let r = an
        .get(app.url(&format!("Composition/{id}/$document")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let other = stay(&app, "051085000124").await;
    let binh = app.client_for(Role::Patient, Some(&other.patient), None);
    let r = binh
        .get(app.url(&format!("Composition/{id}/$document")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Found as a discharge summary of the patient.
    let found = app
        .search_ids(&format!(
            "Composition?type=http://loinc.org|18842-5&subject=Patient/{}",
            s.patient
        ))
        .await;
    assert_eq!(found, vec![id]);
}

async fn a_discharge_summary_missing_what_it_needs_is_refused_and_nothing_kept(b: Backend) {
    let app = spawn_app(b).await;
    let s = stay(&app, "051085000123").await;
    let other = stay(&app, "051085000124").await;
    let not_icd = app
        .create(json!({"resourceType": "Condition",
            "subject": {"reference": format!("Patient/{}", s.patient)},
            "code": {"text": "viêm phổi"}}))
        .await;
    let before = app.versions().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        {
            let mut c = summary(&s);
            c["section"].as_array_mut().unwrap().remove(2);
            (c, "Composition.section", "11535-2")
        },
        {
            let mut c = summary(&s);
            c["section"][2]["entry"] = json!([{"reference": format!("Condition/{not_icd}")}]);
            (c, "Composition.section[2].entry[0]", "ICD-10")
        },
        {
            let mut c = summary(&s);
            c["section"][2]["entry"] =
                json!([{"reference": format!("Condition/{}", other.diagnosis)}]);
            (c, "Composition.section[2].entry[0]", "another patient")
        },
        {
            let mut c = summary(&s);
            c["encounter"] = json!({"reference": format!("Encounter/{}", other.encounter)});
            (c, "Composition.encounter", "another patient")
        },
        {
            let mut c = summary(&s);
            c["author"] = json!([{"display": "BS. Hùng"}]);
            (c, "Composition.author", "Practitioner")
        },
        {
            let mut c = summary(&s);
            c["section"][4]["entry"] = json!([{"reference": format!("Procedure/{}", s.procedure)}]);
            (c, "Composition.section[4].entry[0]", "MedicationRequest")
        },
    ];
    for (body, path, says) in cases {
        let (st, _, v) = app.post("Composition", &body).await;
        assert!(st == 400 || st == 422, "{path}: {st} {v}");
        assert_eq!(v["issue"][0]["expression"][0], path, "{v}");
        assert!(
            v["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains(says),
            "{v}"
        );
    }
    assert_eq!(app.versions().await, before, "nothing was kept");
}
