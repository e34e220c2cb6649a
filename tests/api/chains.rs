//! Chained (`subject.name`, `subject:Patient.identifier`) and reverse-chained
//! (`_has:Observation:patient:code`) search: each one SQL query, and a patient's search is
//! confined inside the chain too, so that a chain never tells a patient about another patient.

use crate::common::*;
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    chains_follow_references_forwards_and_backwards,
    a_patient_learns_nothing_about_other_patients_through_a_chain,
    bad_or_unbounded_chains_are_refused,
    iterated_includes_follow_references_round_after_round,
);

fn binh() -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": NATIONAL_ID, "value": "051190001234"}],
        "name": [{"family": "Trần", "given": ["Thị", "Bình"]}],
        "gender": "female", "birthDate": "1990-04-02"})
}

fn blood_pressure(patient: &str, performer: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "performer": [{"reference": format!("Practitioner/{performer}")}],
        "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
}

fn heart_rate(patient: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

struct Ward {
    an: String,
    binh: String,
    dr_hung: String,
    dr_mai: String,
    an_bp: String,
    binh_bp: String,
    binh_hr: String,
}

async fn ward(app: &TestApp) -> Ward {
    let an = app.create(patient_an("051085000123")).await;
    let binh = app.create(binh()).await;
    let dr_hung = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê", "given": ["Văn", "Hùng"]}]}))
        .await;
    let dr_mai = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Trần", "given": ["Thị", "Mai"]}]}))
        .await;
    let an_bp = app.create(blood_pressure(&an, &dr_hung)).await;
    let binh_bp = app.create(blood_pressure(&binh, &dr_mai)).await;
    let binh_hr = app.create(heart_rate(&binh)).await;
    Ward {
        an,
        binh,
        dr_hung,
        dr_mai,
        an_bp,
        binh_bp,
        binh_hr,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn chains_follow_references_forwards_and_backwards(b: Backend) {
    let app = spawn_app(b).await;
    let w = ward(&app).await;
    // Forwards: by the subject's name (any type `subject` may name that has `name`), by a
    // named type's identifier, two links deep.
    assert_eq!(
        sorted(
            app.search_ids("Observation?subject.name=tran%20thi%20binh")
                .await
        ),
        sorted(vec![w.binh_bp.clone(), w.binh_hr.clone()])
    );
    assert_eq!(
        app.search_ids(&format!(
            "Observation?subject:Patient.identifier={NATIONAL_ID}|051085000123"
        ))
        .await,
        vec![w.an_bp.clone()]
    );
    assert_eq!(
        app.search_ids("Observation?performer:Practitioner.family=Tr%E1%BA%A7n&code=8480-6")
            .await,
        vec![w.binh_bp.clone()]
    );
    assert_eq!(
        app.search_ids("Observation?subject:Patient.gender=male&subject:Patient.birthdate=1985")
            .await,
        vec![w.an_bp.clone()]
    );
    // Backwards: patients with a blood pressure reading; practitioners who took one of a
    // patient named Bình (a reverse chain whose link is itself a chain).
    assert_eq!(
        sorted(
            app.search_ids("Patient?_has:Observation:patient:code=http://loinc.org|8480-6")
                .await
        ),
        sorted(vec![w.an.clone(), w.binh.clone()])
    );
    assert_eq!(
        app.search_ids("Patient?_has:Observation:patient:code=8867-4")
            .await,
        vec![w.binh.clone()]
    );
    assert_eq!(
        app.search_ids("Practitioner?_has:Observation:performer:subject:Patient.name=binh")
            .await,
        vec![w.dr_mai.clone()]
    );
    // With the rest of a search: a chain is one more condition, and counts and pages alike.
    let (_, counted) = app
        .get_json("Observation?subject.name=binh&_summary=count")
        .await;
    assert_eq!(counted["total"], 2);
    let page = app
        .search_ids("Observation?subject.name=binh&_count=1&_sort=_lastUpdated")
        .await;
    assert_eq!(page.len(), 1);
    let _ = w.dr_hung;
}

async fn a_patient_learns_nothing_about_other_patients_through_a_chain(b: Backend) {
    let app = spawn_app(b).await;
    let w = ward(&app).await;
    let an = app.client_for(Role::Patient, Some(&w.an), None);
    let ids = |r: Value| -> Vec<String> {
        r["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |q: &str| {
        let an = an.clone();
        let url = app.url(q);
        let q = q.to_owned();
        async move {
            let r = an.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{q}");
            r.json::<Value>().await.unwrap()
        }
    };
    // His own observations through a chain; Bình's never, whatever the chain says.
    assert_eq!(
        ids(get("Observation?subject.name=nguyen").await),
        vec![w.an_bp.clone()]
    );
    assert!(ids(get("Observation?subject.name=binh").await).is_empty());
    // The directory is his to read, but what it is linked to is confined: which doctor took
    // another patient's blood pressure is not his to learn.
    assert_eq!(
        ids(get("Practitioner?_has:Observation:performer:code=8480-6").await),
        vec![w.dr_hung.clone()],
        "only the doctor of his own reading"
    );
    assert!(
        ids(get("Practitioner?_has:Observation:performer:subject:Patient.name=binh").await)
            .is_empty()
    );
    assert!(ids(get("Patient?_has:Observation:patient:code=8867-4").await).is_empty());
    // A clinician sees both.
    let doc = app.client_for(Role::Clinician, None, None);
    let r: Value = doc
        .get(app.url("Practitioner?_has:Observation:performer:code=8480-6"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sorted(ids(r)),
        sorted(vec![w.dr_hung.clone(), w.dr_mai.clone()])
    );
}

async fn bad_or_unbounded_chains_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let w = ward(&app).await;
    for (q, says) in [
        ("Observation?subject.nosuch=1", "nosuch"),
        ("Observation?code.name=1", "not a reference"),
        ("Observation?subject:Encounter.status=x", "never points at"),
        ("Condition?evidence-detail.name=x", "name one"),
        (
            "Patient?_has:Observation:code:status=final",
            "not a reference",
        ),
        ("Patient?_has:Observation=1", "reverse chain"),
        (
            "Observation?subject:Patient.organization.partof.partof.name=x",
            "at most 3",
        ),
    ] {
        let (s, v) = app.get_json(q).await;
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["resourceType"], "OperationOutcome", "{q}");
        let text = v["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(text.contains(says), "{q}: {v}");
    }
    let _ = w;
}

/// `_include:iterate` follows what the last round included (a panel's members' members);
/// `_revinclude:iterate` what points at it (a patient's encounters' observations).
async fn iterated_includes_follow_references_round_after_round(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000123")).await;
    let enc = app
        .create(json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{an}")}}))
        .await;
    let obs = |members: Vec<String>| {
        let mut o = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "panel"}, "subject": {"reference": format!("Patient/{an}")},
            "encounter": {"reference": format!("Encounter/{enc}")}});
        if !members.is_empty() {
            o["hasMember"] = members
                .iter()
                .map(|m| json!({"reference": format!("Observation/{m}")}))
                .collect();
        }
        o
    };
    let c = app.create(obs(vec![])).await;
    let bb = app.create(obs(vec![c.clone()])).await;
    let a = app.create(obs(vec![bb.clone()])).await;
    let included = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] == "include")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (_, once) = app
        .get_json(&format!(
            "Observation?_id={a}&_include=Observation:has-member"
        ))
        .await;
    assert_eq!(included(&once), vec![bb.clone()]);
    let (_, all) = app
        .get_json(&format!(
            "Observation?_id={a}&_include:iterate=Observation:has-member"
        ))
        .await;
    assert_eq!(included(&all), sorted(vec![bb.clone(), c.clone()]));
    let (_, down) = app
        .get_json(&format!(
            "Patient?_id={an}&_revinclude=Encounter:patient&_revinclude:iterate=Observation:encounter"
        ))
        .await;
    assert_eq!(
        included(&down),
        sorted(vec![enc.clone(), a.clone(), bb.clone(), c.clone()])
    );
    let (s, v) = app
        .get_json("Observation?_include:recurse=Observation:has-member")
        .await;
    assert_eq!(s, 400, "{v}");
}
