//! Signed clinical entries: `$sign`, `$verify`, `$amend`, and what a signature forbids.

use crate::common::*;
use hospital_core::auth::Role;
use hospital_store::signing::{KeyStore, LocalKeyStore, digest_of, unb64};
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    a_signed_observation_edited_in_the_database_fails_verify,
    an_amendment_keeps_both_versions_and_both_signatures_valid,
    only_the_author_or_a_named_practitioner_signs_and_only_clinical_entries,
);

pub(crate) struct Ward {
    pub(crate) app: TestApp,
    doctor: String,
    clinician: reqwest::Client,
    observation: String,
}

pub(crate) async fn ward(b: Backend) -> Ward {
    let app = spawn_app(b).await;
    let doctor = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê", "given": ["Văn", "Hùng"]}]}))
        .await;
    let clinician = app.client_for(Role::Clinician, None, Some(&doctor));
    let patient = app.create(patient_an("051085000501")).await;
    let r = clinician
        .post(app.url("Observation"))
        .header("content-type", FHIR)
        .body(
            json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "subject": {"reference": format!("Patient/{patient}")},
                "valueQuantity": {"value": 145, "unit": "mm[Hg]"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    // Every entry shows who wrote it and when.
    let author = created["meta"]["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == hospital_store::RECORDED_BY)
        .unwrap()["valueString"]
        .clone();
    assert_eq!(author, "clinician:clinician");
    assert!(created["meta"]["lastUpdated"].is_string());
    Ward {
        observation: created["id"].as_str().unwrap().to_owned(),
        app,
        doctor,
        clinician,
    }
}

pub(crate) async fn verify(w: &Ward) -> (bool, String) {
    let p: Value = w
        .clinician
        .get(w.app.url(&format!("Observation/{}/$verify", w.observation)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let valid = p["parameter"][0]["valueBoolean"].as_bool().unwrap();
    (
        valid,
        p["parameter"][1]["valueString"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

pub(crate) async fn sign(w: &Ward) -> Value {
    let r = w
        .clinician
        .post(w.app.url(&format!("Observation/{}/$sign", w.observation)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn a_signed_observation_edited_in_the_database_fails_verify(b: Backend) {
    let w = ward(b).await;
    assert!(!verify(&w).await.0, "not signed yet");
    let prov = sign(&w).await;
    assert_eq!(prov["resourceType"], "Provenance");
    assert_eq!(
        prov["target"][0]["reference"],
        format!("Observation/{}/_history/1", w.observation)
    );
    assert_eq!(
        prov["signature"][0]["who"]["reference"],
        format!("Practitioner/{}", w.doctor)
    );
    assert_eq!(
        verify(&w).await,
        (true, "the content matches its signature".into())
    );

    // Only a clinician who names their Practitioner signs; nobody writes Provenance directly.
    let r = w
        .app
        .http
        .post(w.app.url(&format!("Observation/{}/$sign", w.observation)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (s, _, _) = w.app.post("Provenance", &prov).await;
    assert_eq!(s, 405);

    // A relabelling straight in the database: the labels of `meta` are signed content too.
    let original: String = sqlx::query_scalar(&format!(
        "SELECT body FROM resources WHERE resource_id = '{}'",
        w.observation
    ))
    .fetch_one(w.app.store.pool())
    .await
    .unwrap();
    assert!(original.contains("\"meta\":{"), "{original}");
    let relabelled = original.replacen(
        "\"meta\":{",
        "\"meta\":{\"security\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-Confidentiality\",\"code\":\"N\"}],",
        1,
    );
    let set_body = |body: String| {
        let pool = w.app.store.pool().clone();
        let sql = w.app.store.dialect().sql(&format!(
            "UPDATE resources SET body = $1 WHERE resource_id = '{}'",
            w.observation
        ));
        async move { sqlx::query(&sql).bind(body).execute(&pool).await.unwrap() }
    };
    set_body(relabelled).await;
    let (valid, why) = verify(&w).await;
    assert!(!valid, "a relabelled entry still verifies: {why}");
    set_body(original).await;
    assert!(verify(&w).await.0, "the original content verifies again");

    // An edit straight in the database, around every rule of the API.
    sqlx::query(&format!(
        "UPDATE resources SET body = REPLACE(body, '\"value\":145', '\"value\":120') WHERE resource_id = '{}'",
        w.observation
    ))
    .execute(w.app.store.pool())
    .await
    .unwrap();
    let (s, body) = w
        .app
        .get_json(&format!("Observation/{}", w.observation))
        .await;
    assert_eq!(
        (s, body["valueQuantity"]["value"].clone()),
        (200, json!(120))
    );
    let (valid, why) = verify(&w).await;
    assert!(!valid, "{why}");
    assert!(why.contains("changed"), "{why}");
    w.app.stop().await;
}

async fn an_amendment_keeps_both_versions_and_both_signatures_valid(b: Backend) {
    let w = ward(b).await;
    let first = sign(&w).await;
    let path = format!("Observation/{}", w.observation);
    let (_, mut current) = w.app.get_json(&path).await;
    current["valueQuantity"]["value"] = json!(140);

    // A signed entry is not edited or deleted in place.
    let r = w
        .clinician
        .put(w.app.url(&path))
        .header("content-type", FHIR)
        .body(current.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        w.clinician
            .delete(w.app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    let amend = |reason: Option<&str>| {
        let mut params = vec![json!({"name": "resource", "resource": current.clone()})];
        if let Some(r) = reason {
            params.push(json!({"name": "reason", "valueString": r}));
        }
        json!({"resourceType": "Parameters", "parameter": params})
    };
    let r = w
        .clinician
        .post(w.app.url(&format!("{path}/$amend")))
        .header("content-type", FHIR)
        .body(amend(None).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an amendment needs a reason");
    let r = w
        .clinician
        .post(w.app.url(&format!("{path}/$amend")))
        .header("content-type", FHIR)
        .body(amend(Some("Đo lại sau 5 phút nghỉ")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second_prov = r.headers()["x-provenance"].to_str().unwrap().to_owned();
    let amended: Value = r.json().await.unwrap();
    assert_eq!(amended["meta"]["versionId"], "2");
    assert_eq!(
        verify(&w).await,
        (true, "the content matches its signature".into())
    );

    // Both versions readable, both signatures valid over their own content.
    let (_, v1) = w.app.get_json(&format!("{path}/_history/1")).await;
    assert_eq!(v1["valueQuantity"]["value"], 145);
    let (_, prov2) = w.app.get_json(&second_prov).await;
    assert_eq!(prov2["reason"][0]["text"], "Đo lại sau 5 phút nghỉ");
    for (version, prov) in [(1, first), (2, prov2)] {
        let v = w
            .app
            .store
            .vread("Observation", &w.observation, version)
            .await
            .unwrap();
        let digest = hex::decode(digest_of(&v.body).unwrap()).unwrap();
        let sig = unb64(prov["signature"][0]["data"].as_str().unwrap()).unwrap();
        let signer = format!("Practitioner/{}", w.doctor);
        assert!(
            LocalKeyStore
                .verify(&w.app.store, &signer, &digest, &sig)
                .await
                .unwrap(),
            "signature of version {version}"
        );
    }
    w.app.stop().await;
}

async fn only_the_author_or_a_named_practitioner_signs_and_only_clinical_entries(b: Backend) {
    let w = ward(b).await;
    let app = &w.app;
    let other = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Phạm", "given": ["Minh"]}]}))
        .await;
    let second = client_with(&mint(Role::Clinician, "bs-minh", None, Some(&other), None));
    let post = |c: &reqwest::Client, path: String| {
        let c = c.clone();
        let url = app.url(&path);
        async move { c.post(url).send().await.unwrap() }
    };
    let r = post(&second, format!("Observation/{}/$sign", w.observation)).await;
    assert_eq!(r.status(), 403, "another doctor's Observation");
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "AZ_03");
    // An entry that names the second doctor as its performer is theirs to sign.
    let (_, obs) = app
        .get_json(&format!("Observation/{}", w.observation))
        .await;
    let patient = obs["subject"]["reference"].as_str().unwrap().to_owned();
    let performed = app
        .create(json!({"resourceType": "Observation", "status": "final", "code": {"text": "Mạch"},
            "subject": {"reference": patient}, "performer": [{"reference": format!("Practitioner/{other}")}]}))
        .await;
    assert_eq!(
        post(&second, format!("Observation/{performed}/$sign"))
            .await
            .status(),
        201
    );
    // Registration is never signed, so reception can always correct it.
    let pid = patient.trim_start_matches("Patient/").to_owned();
    let r = post(&w.clinician, format!("Patient/{pid}/$sign")).await;
    assert_eq!(r.status(), 422);
    let (_, mut p) = app.get_json(&format!("Patient/{pid}")).await;
    p["telecom"] = json!([{"system": "phone", "value": "0905000111"}]);
    let cashier = app.client_for(Role::Cashier, None, None);
    let r = cashier
        .put(app.url(&format!("Patient/{pid}")))
        .header("content-type", FHIR)
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "reception corrects the registration");
    // The author still signs their own.
    sign(&w).await;
    w.app.stop().await;
}
