//! The FHIR REST API and the record store behind it, through HTTP, on SQLite and PostgreSQL.

use crate::common::*;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    create_read_update_delete_keep_every_version,
    a_stale_if_match_is_refused_with_412_and_changes_nothing,
    a_put_to_a_new_id_creates_the_resource,
    twenty_identical_conditional_creates_store_one_patient,
    a_second_patient_with_the_same_personal_id_is_refused_with_409,
    an_update_reindexes_what_changed_and_frees_the_identifiers_it_drops,
    concurrent_patients_with_one_personal_id_store_only_one,
    personal_ids_are_checked_against_birth_date_and_gender,
    every_patient_gets_a_facility_code,
    a_reference_to_a_missing_patient_is_refused_and_names_it,
    name_search_ignores_case_and_diacritics,
    token_date_and_quantity_searches_follow_the_spec,
    next_links_stay_correct_while_resources_are_inserted,
    sort_include_revinclude_and_counts_work,
    unknown_or_malformed_search_parameters_are_400_unless_lenient,
    a_transaction_is_all_or_nothing_and_resolves_urn_uuids,
    a_duplicate_in_a_large_transaction_names_its_entry_and_stores_nothing,
    a_batch_reports_each_entry_on_its_own,
    conditional_create_inside_a_transaction_reuses_the_match,
    bad_input_never_changes_stored_data,
    patient_everything_returns_the_compartment,
    the_capability_statement_lists_what_works,
    history_pages_and_since_work,
    the_demo_data_set_loads_twice_without_duplicates,
    one_request_cannot_ask_for_unbounded_work,
    a_long_read_only_transaction_does_not_hold_the_writer,
);

async fn create_read_update_delete_keep_every_version(b: Backend) {
    let app = spawn_app(b).await;
    let (s, h, body) = app.post("Patient", &patient_an("051085000123")).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(h["etag"], "W/\"1\"");
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/Patient/{id}/_history/1"))
    );
    assert_eq!(body["meta"]["versionId"], "1");

    let r = app.get(&format!("Patient/{id}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["name"][0]["family"], "Nguyễn");

    let mut changed = read.clone();
    changed["telecom"][0]["value"] = json!("0905999888");
    let r = app
        .http
        .put(app.url(&format!("Patient/{id}")))
        .header("content-type", FHIR)
        .header("if-match", "W/\"1\"")
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");

    let (s, v1) = app.get_json(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(s, 200);
    assert_eq!(v1["telecom"][0]["value"], "0905123456");

    let r = app
        .http
        .delete(app.url(&format!("Patient/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, oo) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(s, 410);
    assert_eq!(oo["resourceType"], "OperationOutcome");

    let (s, hist) = app.get_json(&format!("Patient/{id}/_history")).await;
    assert_eq!(s, 200);
    let entries = hist["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{hist}");
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[2]["resource"]["meta"]["versionId"], "1");
    // The old versions stay readable after the delete.
    let (s, _) = app.get_json(&format!("Patient/{id}/_history/2")).await;
    assert_eq!(s, 200);
    app.stop().await;
}

async fn a_stale_if_match_is_refused_with_412_and_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000124")).await;
    let (_, current) = app.get_json(&format!("Patient/{id}")).await;
    let before = app.versions().await;
    let r = app
        .http
        .put(app.url(&format!("Patient/{id}")))
        .header("content-type", FHIR)
        .header("if-match", "W/\"7\"")
        .body(current.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(app.versions().await, before);
    app.stop().await;
}

async fn a_put_to_a_new_id_creates_the_resource(b: Backend) {
    let app = spawn_app(b).await;
    let mut p = patient_an("051085000125");
    p["id"] = json!("migrated-0001");
    let (s, h, body) = app.put("Patient/migrated-0001", &p).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(h["etag"], "W/\"1\"");
    let (s, h, _) = app.put("Patient/migrated-0001", &p).await;
    assert_eq!(s, 200);
    assert_eq!(h["etag"], "W/\"2\"");
    app.stop().await;
}

async fn twenty_identical_conditional_creates_store_one_patient(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": "urn:test:license", "value": "CCHN-0001"}],
        "name": [{"family": "Lê", "given": ["Văn", "Hùng"]}]
    });
    let statuses = app
        .post_concurrently(
            20,
            "Practitioner",
            &body,
            &[("if-none-exist", "identifier=urn:test:license|CCHN-0001")],
        )
        .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        19,
        "{statuses:?}"
    );
    let ids = app
        .search_ids("Practitioner?identifier=urn:test:license|CCHN-0001")
        .await;
    assert_eq!(ids.len(), 1);
    app.stop().await;
}

async fn a_second_patient_with_the_same_personal_id_is_refused_with_409(b: Backend) {
    let app = spawn_app(b).await;
    let first = app.create(patient_an("051085000126")).await;
    let before = app.versions().await;
    let (s, _, oo) = app.post("Patient", &patient_an("051085000126")).await;
    assert_eq!(s, 409, "{oo}");
    let msg = oo["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        msg.contains(&format!("Patient/{first}")),
        "names the existing patient: {msg}"
    );
    assert!(
        !msg.contains("051085000126"),
        "does not echo the personal ID"
    );
    assert_eq!(app.versions().await, before);
    app.stop().await;
}

/// An update rewrites only the index rows and identifier claims that changed (PostgreSQL's
/// write path diffs them): what it keeps is still found, what it drops is freed.
async fn an_update_reindexes_what_changed_and_frees_the_identifiers_it_drops(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000130")).await;
    let (_, mut p) = app.get_json(&format!("Patient/{id}")).await;
    p["name"] = json!([{"family": "Trần", "given": ["Văn", "An"]}]);
    let (s, _, _) = app.put(&format!("Patient/{id}"), &p).await;
    assert_eq!(s, 200);
    assert_eq!(
        app.search_ids("Patient?identifier=051085000130").await,
        vec![id.clone()]
    );
    assert_eq!(
        app.search_ids("Patient?family=tran").await,
        vec![id.clone()]
    );
    assert!(app.search_ids("Patient?family=nguyen").await.is_empty());
    assert_eq!(
        app.search_ids("Patient?birthdate=1985-03-12").await,
        vec![id.clone()]
    );
    // A second patient still cannot take the kept personal ID.
    let (s, _, _) = app.post("Patient", &patient_an("051085000130")).await;
    assert_eq!(s, 409);
    // Corrected to another personal ID: the old one is free, the new one claimed.
    let (_, mut p) = app.get_json(&format!("Patient/{id}")).await;
    p["identifier"][0]["value"] = json!("051085000131");
    let (s, _, o) = app.put(&format!("Patient/{id}"), &p).await;
    assert_eq!(s, 200, "{o}");
    assert!(
        app.search_ids("Patient?identifier=051085000130")
            .await
            .is_empty()
    );
    assert_eq!(
        app.search_ids("Patient?identifier=051085000131").await,
        vec![id.clone()]
    );
    let other = app.create(patient_an("051085000130")).await;
    assert_ne!(other, id);
    let (s, _, _) = app.post("Patient", &patient_an("051085000131")).await;
    assert_eq!(s, 409);
    app.stop().await;
}

async fn concurrent_patients_with_one_personal_id_store_only_one(b: Backend) {
    let app = spawn_app(b).await;
    let statuses = app
        .post_concurrently(10, "Patient", &patient_an("051085000127"), &[])
        .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let ids = app
        .search_ids(&format!("Patient?identifier={NATIONAL_ID}|051085000127"))
        .await;
    assert_eq!(ids.len(), 1);
    app.stop().await;
}

async fn personal_ids_are_checked_against_birth_date_and_gender(b: Backend) {
    let app = spawn_app(b).await;
    let before = app.versions().await;
    for (nid, why) in [
        ("05108500012", "11 digits"),
        ("05108500012X", "a letter"),
        ("003085000123", "003 is no province"),
        ("051095000123", "born 1995, not 1985"),
        ("051185000123", "the digit says female"),
        ("051285000123", "the digit says 2085"),
    ] {
        let (s, _, oo) = app.post("Patient", &patient_an(nid)).await;
        assert_eq!(s, 400, "{why}: {oo}");
        assert_eq!(
            oo["issue"][0]["expression"][0], "Patient.identifier[0].value",
            "{why}"
        );
    }
    let mut card = patient_an("051085000128");
    card["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": INSURANCE, "value": "DN9510123456789"}));
    let (s, _, _) = app.post("Patient", &card).await;
    assert_eq!(s, 400, "benefit digit 9 does not exist");
    assert_eq!(app.versions().await, before);
    app.stop().await;
}

async fn every_patient_gets_a_facility_code(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000129")).await;
    let (_, p) = app.get_json(&format!("Patient/{id}")).await;
    let code = facility_code(&p).expect("MA_BN assigned");
    assert!(code.starts_with("BN"));
    // An update that omits it keeps it.
    let mut again = patient_an("051085000129");
    again["id"] = json!(id);
    let (s, _, updated) = app.put(&format!("Patient/{id}"), &again).await;
    assert_eq!(s, 200);
    assert!(
        updated["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["value"] == code.as_str())
    );
    let second = app.create(patient_an("051085000130")).await;
    let (_, p2) = app.get_json(&format!("Patient/{second}")).await;
    assert!(
        p2["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["system"] == MA_BN && i["value"] != code.as_str())
    );
    app.stop().await;
}

async fn a_reference_to_a_missing_patient_is_refused_and_names_it(b: Backend) {
    let app = spawn_app(b).await;
    let before = app.versions().await;
    let obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/does-not-exist"},
        "valueQuantity": {"value": 80, "unit": "/min"}
    });
    let (s, _, oo) = app.post("Observation", &obs).await;
    assert_eq!(s, 400, "{oo}");
    assert_eq!(
        oo["issue"][0]["expression"][0],
        "Observation.subject.reference"
    );
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Patient/does-not-exist")
    );
    assert_eq!(app.versions().await, before);
    // Absolute and contained references are not checked.
    let mut external = obs.clone();
    external["subject"] = json!({"reference": "http://other.example/fhir/Patient/1"});
    let (s, _, _) = app.post("Observation", &external).await;
    assert_eq!(s, 201);
    app.stop().await;
}

async fn name_search_ignores_case_and_diacritics(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000131")).await;
    let dao = app
        .create(json!({"resourceType": "Patient", "name": [{"family": "Đặng", "given": ["Thị", "Đào"]}], "gender": "female"}))
        .await;
    for q in ["nguyen van an", "NGUYỄN", "nguy", "An", "van an"] {
        let ids = app.search_ids(&format!("Patient?name={q}")).await;
        assert_eq!(ids, vec![an.clone()], "name={q}");
    }
    assert_eq!(
        app.search_ids("Patient?family=dang").await,
        vec![dao.clone()]
    );
    assert_eq!(app.search_ids("Patient?given=dao").await, vec![dao.clone()]);
    assert_eq!(
        app.search_ids("Patient?name:exact=Nguyễn").await,
        vec![an.clone()]
    );
    assert!(app.search_ids("Patient?name:exact=nguyen").await.is_empty());
    assert_eq!(
        app.search_ids("Patient?name:contains=uye").await,
        vec![an.clone()]
    );
    assert_eq!(
        app.search_ids("Patient?phone=0905123456").await,
        vec![an.clone()]
    );
    app.stop().await;
}

async fn token_date_and_quantity_searches_follow_the_spec(b: Backend) {
    let app = spawn_app(b).await;
    let p = app.create(patient_an("051085000132")).await;
    let mk = |code: &str, when: &str, value: f64| {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{p}")},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
        })
    };
    let a = app
        .create(mk("8480-6", "2026-03-01T08:00:00+07:00", 145.0))
        .await;
    let c = app.create(mk("8462-4", "2026-05-15", 90.0)).await;
    let mut sorted = vec![a.clone(), c.clone()];
    sorted.sort();
    let q = |s: &str| {
        let app = &app;
        let s = s.to_owned();
        async move {
            let mut v = app.search_ids(&s).await;
            v.sort();
            v
        }
    };
    assert_eq!(q("Observation?code=8480-6").await, vec![a.clone()]);
    assert_eq!(
        q("Observation?code=http://loinc.org|8480-6").await,
        vec![a.clone()]
    );
    assert_eq!(q("Observation?code=|8480-6").await, Vec::<String>::new());
    assert_eq!(q("Observation?code=8480-6,8462-4").await, sorted);
    assert_eq!(q("Observation?code:not=8480-6").await, vec![c.clone()]);
    assert_eq!(q("Observation?date=2026-03").await, vec![a.clone()]);
    assert_eq!(q("Observation?date=2026").await, sorted);
    assert_eq!(q("Observation?date=gt2026-04-01").await, vec![c.clone()]);
    assert_eq!(q("Observation?date=lt2026-04-01").await, vec![a.clone()]);
    assert_eq!(q("Observation?date=ge2026-05-15").await, vec![c.clone()]);
    assert_eq!(q("Observation?date=le2026-03-01").await, vec![a.clone()]);
    assert_eq!(
        q("Observation?date=ge2026-03-01&date=le2026-05-15").await,
        sorted
    );
    assert_eq!(q("Observation?date=sa2026-03-01").await, vec![c.clone()]);
    assert_eq!(q("Observation?date=eb2026-05-15").await, vec![a.clone()]);
    assert_eq!(q("Observation?date=ne2026-03").await, vec![c.clone()]);
    assert_eq!(q("Observation?value-quantity=gt100").await, vec![a.clone()]);
    assert_eq!(q("Observation?value-quantity=145").await, vec![a.clone()]);
    assert_eq!(
        q("Observation?value-quantity=le90|http://unitsofmeasure.org|mm[Hg]").await,
        vec![c.clone()]
    );
    assert_eq!(q(&format!("Observation?patient=Patient/{p}")).await, sorted);
    assert_eq!(q(&format!("Observation?subject={p}")).await, sorted);
    assert_eq!(q("Observation?encounter:missing=true").await, sorted);
    assert_eq!(
        q("Observation?encounter:missing=false").await,
        Vec::<String>::new()
    );
    assert_eq!(q(&format!("Observation?_id={a}")).await, vec![a.clone()]);
    assert_eq!(q("Patient?birthdate=1985-03-12").await, vec![p.clone()]);
    assert_eq!(q("Patient?birthdate=ge1990").await, Vec::<String>::new());
    assert_eq!(q("Patient?gender=male").await, vec![p.clone()]);
    assert_eq!(q("Observation?_lastUpdated=gt2000-01-01").await, sorted);
    app.stop().await;
}

async fn next_links_stay_correct_while_resources_are_inserted(b: Backend) {
    let app = spawn_app(b).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            app.create(
                json!({"resourceType": "Organization", "name": format!("Trạm y tế xã {i}")}),
            )
            .await,
        );
    }
    let mut seen = Vec::new();
    let mut next = Some(app.url("Organization?name=tram&_count=3"));
    let mut pages = 0;
    while let Some(url) = next {
        let page: Value = app
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for e in page["entry"].as_array().into_iter().flatten() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        if pages == 1 {
            // Inserted while the client pages: must not shift or repeat anything.
            created.push(
                app.create(json!({"resourceType": "Organization", "name": "Trạm y tế xã mới"}))
                    .await,
            );
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, created, "every resource once, in order");
    assert_eq!(pages, 3);
    app.stop().await;
}

async fn sort_include_revinclude_and_counts_work(b: Backend) {
    let app = spawn_app(b).await;
    let p = app.create(patient_an("051085000133")).await;
    let mut obs = Vec::new();
    for day in ["2026-01-03", "2026-01-01", "2026-01-02"] {
        obs.push(
            app.create(json!({
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": format!("Patient/{p}")},
                "effectiveDateTime": day
            }))
            .await,
        );
    }
    let ids = app.search_ids("Observation?_sort=date").await;
    assert_eq!(ids, vec![obs[1].clone(), obs[2].clone(), obs[0].clone()]);
    let ids = app.search_ids("Observation?_sort=-date").await;
    assert_eq!(ids, vec![obs[0].clone(), obs[2].clone(), obs[1].clone()]);
    let ids = app.search_ids("Observation?_sort=-_lastUpdated").await;
    assert_eq!(ids, vec![obs[2].clone(), obs[1].clone(), obs[0].clone()]);
    // Paging through a sorted result keeps the order.
    let (_, page) = app.get_json("Observation?_sort=date&_count=2").await;
    let next = page["link"][1]["url"].as_str().unwrap().to_owned();
    let page2: Value = app
        .http
        .get(next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2["entry"][0]["resource"]["id"], obs[0].as_str());

    let (_, b1) = app
        .get_json("Observation?_include=Observation:patient")
        .await;
    let entries = b1["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .count(),
        1
    );
    let (_, b2) = app
        .get_json(&format!("Patient?_id={p}&_revinclude=Observation:patient"))
        .await;
    assert_eq!(b2["entry"].as_array().unwrap().len(), 4);

    let (_, c) = app.get_json("Observation?_summary=count").await;
    assert_eq!(c["total"], 3);
    assert!(c.get("entry").is_none());
    let (_, t) = app.get_json("Observation?_total=accurate&_count=1").await;
    assert_eq!(t["total"], 3);
    assert_eq!(t["entry"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn unknown_or_malformed_search_parameters_are_400_unless_lenient(b: Backend) {
    let app = spawn_app(b).await;
    app.create(patient_an("051085000134")).await;
    for q in [
        "Patient?shoe-size=42",
        "Patient?birthdate=yesterday",
        "Patient?birthdate=2026-13-45",
        "Observation?value-quantity=lots",
        "Patient?_count=many",
        "Patient?identifier:fuzzy=1",
        "Patient?_sort=shoe-size",
        "Patient?_include=Patient:shoe",
        "Patient?organization=Organization/bad%20id",
        "Patient?name=",
        "Patient?_cursor=forged",
    ] {
        let (s, oo) = app.get_json(q).await;
        assert_eq!(s, 400, "{q}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome", "{q}");
    }
    let r = app
        .http
        .get(app.url("Patient?shoe-size=42&gender=male"))
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bundle: Value = r.json().await.unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .count(),
        1
    );
    let outcome = entries
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("reported");
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("shoe-size")
    );
    assert!(
        !bundle["link"][0]["url"]
            .as_str()
            .unwrap()
            .contains("shoe-size")
    );
    app.stop().await;
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

async fn a_transaction_is_all_or_nothing_and_resolves_urn_uuids(b: Backend) {
    let app = spawn_app(b).await;
    let pat = "urn:uuid:6f1c2f0e-8a43-4d5e-9b8f-000000000001";
    let mut patient = patient_an("051085000135");
    patient["id"] = json!("ignored");
    let good = transaction(vec![
        json!({"fullUrl": "urn:uuid:6f1c2f0e-8a43-4d5e-9b8f-000000000002", "resource": {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": pat}}, "request": {"method": "POST", "url": "Encounter"}}),
        json!({"fullUrl": pat, "resource": patient, "request": {"method": "POST", "url": "Patient"}}),
    ]);
    let (s, _, resp) = app.post("", &good).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["type"], "transaction-response");
    let loc = resp["entry"][1]["response"]["location"].as_str().unwrap();
    let pid = loc.split('/').nth(1).unwrap();
    let enc_loc = resp["entry"][0]["response"]["location"].as_str().unwrap();
    let (_, enc) = app
        .get_json(enc_loc.split("/_history").next().unwrap())
        .await;
    assert_eq!(enc["subject"]["reference"], format!("Patient/{pid}"));

    let before = app.versions().await;
    let bad = transaction(vec![
        json!({"resource": {"resourceType": "Organization", "name": "Phòng khám A"}, "request": {"method": "POST", "url": "Organization"}}),
        json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/nobody"}}, "request": {"method": "POST", "url": "Observation"}}),
    ]);
    let (s, _, oo) = app.post("", &bad).await;
    assert_eq!(s, 400, "{oo}");
    assert_eq!(
        app.versions().await,
        before,
        "nothing of a failed transaction stays"
    );
    assert!(
        app.search_ids("Organization?name=phong kham a")
            .await
            .is_empty()
    );
    app.stop().await;
}

/// A transaction's writes may reach the database together, after every entry is prepared
/// (SQLite's write-behind): a write refused there is still reported at its own entry, whether
/// it clashes with a stored resource or with another entry, in the first hop of writes or a
/// later one, and nothing of the transaction is kept.
async fn a_duplicate_in_a_large_transaction_names_its_entry_and_stores_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let stored = app.create(patient_an("051085000140")).await;
    let before = app.versions().await;
    let organizations = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|k| {
                json!({"resource": {"resourceType": "Organization", "name": format!("Khoa {k}")},
                "request": {"method": "POST", "url": "Organization"}})
            })
            .collect()
    };
    let patient = |id: &str| json!({"resource": patient_an(id), "request": {"method": "POST", "url": "Patient"}});
    let cases = [
        // (entries, the entry refused, who holds the identifier)
        (
            [
                organizations(40),
                vec![patient("051085000140")],
                organizations(10),
            ]
            .concat(),
            40,
            Some(format!("Patient/{stored}")),
        ),
        (
            [
                organizations(5),
                vec![patient("051085000141")],
                organizations(260),
                vec![patient("051085000141")],
            ]
            .concat(),
            266,
            None,
        ),
    ];
    for (entries, refused, holder) in cases {
        let (s, _, oo) = app.post("", &transaction(entries)).await;
        assert_eq!(s, 409, "{oo}");
        let msg = oo["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("Bundle.entry[{refused}]: ")),
            "names the entry: {msg}"
        );
        if let Some(h) = holder {
            assert!(msg.contains(&h), "names the holder: {msg}");
        }
        assert_eq!(app.versions().await, before, "nothing of it is kept");
    }
    assert!(app.search_ids("Organization?name=khoa").await.is_empty());
    app.stop().await;
}

async fn a_batch_reports_each_entry_on_its_own(b: Backend) {
    let app = spawn_app(b).await;
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Organization", "name": "Trạm y tế Nghĩa Hành"}, "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Organization", "name": 42}, "request": {"method": "POST", "url": "Organization"}},
        {"request": {"method": "GET", "url": "Organization?name=tram y te nghia"}}
    ]});
    let (s, _, resp) = app.post("", &batch).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(resp["entry"][1]["response"]["status"], "400");
    assert_eq!(
        resp["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(
        resp["entry"][2]["resource"]["entry"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

async fn conditional_create_inside_a_transaction_reuses_the_match(b: Backend) {
    let app = spawn_app(b).await;
    let existing = app.create(patient_an("051085000136")).await;
    let pat = "urn:uuid:0a0a0a0a-0000-4000-8000-000000000001";
    let t = transaction(vec![
        json!({"fullUrl": pat, "resource": patient_an("051085000136"), "request": {"method": "POST", "url": "Patient",
            "ifNoneExist": format!("identifier={NATIONAL_ID}|051085000136")}}),
        json!({"resource": {"resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
            "subject": {"reference": pat}}, "request": {"method": "POST", "url": "Condition"}}),
    ]);
    let (s, _, resp) = app.post("", &t).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK");
    let ids = app
        .search_ids(&format!("Condition?patient={existing}"))
        .await;
    assert_eq!(ids.len(), 1);
    assert_eq!(app.search_ids("Patient?name=an").await, vec![existing]);
    app.stop().await;
}

async fn bad_input_never_changes_stored_data(b: Backend) {
    let app = spawn_app_with(b, |c| c.max_body_bytes = 64 * 1024).await;
    let id = app.create(patient_an("051085000137")).await;
    let (_, stored) = app.get_json(&format!("Patient/{id}")).await;
    let before = app.versions().await;
    let raw = |method: reqwest::Method, path: &str, ct: &str, body: String| {
        let req = app
            .http
            .request(method, app.url(path))
            .header("content-type", ct)
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            let b: Value = r.json().await.unwrap_or(Value::Null);
            (s, b)
        }
    };
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;
    let mut wrong_type = stored.clone();
    wrong_type["resourceType"] = json!("Practitioner");
    let mut wrong_id = stored.clone();
    wrong_id["id"] = json!("someone-else");
    let mut wrong_datatype = stored.clone();
    wrong_datatype["birthDate"] = json!(19850312);
    let mut unknown = stored.clone();
    unknown["favouriteColour"] = json!("blue");
    let mut bad_date = stored.clone();
    bad_date["birthDate"] = json!("1985-02-30");
    let huge =
        json!({"resourceType": "Patient", "id": id, "name": [{"text": "x".repeat(100_000)}]});
    let cases: Vec<(&str, reqwest::Method, String, &str, String, u16)> = vec![
        (
            "malformed JSON",
            put.clone(),
            format!("Patient/{id}"),
            FHIR,
            "{\"resourceType\": \"Patient\",".into(),
            400,
        ),
        (
            "not an object",
            post.clone(),
            "Patient".into(),
            FHIR,
            "[1,2,3]".into(),
            400,
        ),
        (
            "resourceType differs from URL",
            put.clone(),
            format!("Patient/{id}"),
            FHIR,
            wrong_type.to_string(),
            400,
        ),
        (
            "id differs from URL",
            put.clone(),
            format!("Patient/{id}"),
            FHIR,
            wrong_id.to_string(),
            400,
        ),
        (
            "wrong datatype",
            put.clone(),
            format!("Patient/{id}"),
            FHIR,
            wrong_datatype.to_string(),
            400,
        ),
        (
            "unknown element",
            put.clone(),
            format!("Patient/{id}"),
            FHIR,
            unknown.to_string(),
            400,
        ),
        (
            "impossible date",
            put.clone(),
            format!("Patient/{id}"),
            FHIR,
            bad_date.to_string(),
            400,
        ),
        (
            "oversized body",
            put.clone(),
            format!("Patient/{id}"),
            FHIR,
            huge.to_string(),
            413,
        ),
        (
            "unsupported media type",
            put.clone(),
            format!("Patient/{id}"),
            "application/xml",
            "<Patient/>".into(),
            415,
        ),
        (
            "form instead of JSON",
            post.clone(),
            "Patient".into(),
            "application/x-www-form-urlencoded",
            "a=b".into(),
            415,
        ),
        (
            "unsupported type",
            post.clone(),
            "Spaceship".into(),
            FHIR,
            "{\"resourceType\":\"Spaceship\"}".into(),
            404,
        ),
        (
            "bad id in URL",
            put.clone(),
            "Patient/bad%20id%27--".into(),
            FHIR,
            "{\"resourceType\":\"Patient\",\"id\":\"bad id'--\"}".into(),
            400,
        ),
        (
            "a Bundle of the wrong type",
            post.clone(),
            "".into(),
            FHIR,
            "{\"resourceType\":\"Bundle\",\"type\":\"collection\"}".into(),
            400,
        ),
    ];
    for (why, method, path, ct, body, want) in cases {
        let (s, oo) = raw(method, &path, ct, body).await;
        assert_eq!(s, want, "{why}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome", "{why}");
    }
    // Hostile strings are data, never SQL.
    let hostile = [
        "Robert'); DROP TABLE resources;--",
        "\" OR 1=1 --",
        "%_\\",
        "𝔑𝔤𝔲𝔶𝔢̂̃𝔫 \u{202e}\u{0000}",
        &"ấ".repeat(5000),
    ];
    for h in hostile {
        let q = format!("Patient?name={}", urlencode(h));
        let (s, body) = app.get_json(&q).await;
        assert!(s == 200 || s == 400, "{h}: {s}");
        if s == 200 {
            assert!(body.get("entry").is_none(), "{h} matched something");
        }
        let q = format!("Patient?identifier={}", urlencode(h));
        let (s, body) = app.get_json(&q).await;
        assert!(s == 200 || s == 400, "{h}: {s}");
        assert!(body.get("entry").is_none(), "{h} matched something");
        let (s, _) = app.get_json(&format!("Patient/{}", urlencode(h))).await;
        assert!(s == 404 || s == 400, "{s}");
    }
    let (s, _) = app.get_json("Patient?_format=xml").await;
    assert_eq!(s, 406);
    assert_eq!(
        app.versions().await,
        before,
        "no bad request changed the store"
    );
    let (_, after) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(after, stored);
    assert_eq!(app.search_ids("Patient").await.len(), 1);
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn patient_everything_returns_the_compartment(b: Backend) {
    let app = spawn_app(b).await;
    let p = app.create(patient_an("051085000138")).await;
    let other = app.create(patient_an("051085000139")).await;
    for pid in [&p, &other] {
        app.create(json!({"resourceType": "AllergyIntolerance", "patient": {"reference": format!("Patient/{pid}")},
            "code": {"text": "Penicillin"}}))
            .await;
    }
    let (s, b1) = app.get_json(&format!("Patient/{p}/$everything")).await;
    assert_eq!(s, 200);
    let entries = b1["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["resource"]["id"] == p.as_str()
        || e["resource"]["patient"]["reference"] == format!("Patient/{p}")));
    let (s, _) = app.get_json("Patient/nobody/$everything").await;
    assert_eq!(s, 404);
    app.stop().await;
}

async fn the_capability_statement_lists_what_works(b: Backend) {
    let app = spawn_app(b).await;
    let (s, cs) = app.get_json("metadata").await;
    assert_eq!(s, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.3.0");
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in [
        "identifier",
        "name",
        "family",
        "given",
        "birthdate",
        "gender",
        "telecom",
        "phone",
        "_id",
        "_lastUpdated",
    ] {
        assert!(params.contains(&want), "{want}");
    }
    // Every advertised parameter really works.
    for r in cs["rest"][0]["resource"].as_array().unwrap() {
        let t = r["type"].as_str().unwrap();
        for p in r["searchParam"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let (s, _) = app.get_json(&format!("{t}?{name}:missing=true")).await;
            let (s2, _) = app.get_json(&format!("{t}?{name}=x")).await;
            assert!(s == 200 || s2 == 200 || name.starts_with('_'), "{t}.{name}");
        }
    }
    app.stop().await;
}

async fn history_pages_and_since_work(b: Backend) {
    let app = spawn_app(b).await;
    let mut p = patient_an("051085000140");
    let id = app.create(p.clone()).await;
    p["id"] = json!(id);
    for phone in ["0905000001", "0905000002", "0905000003"] {
        p["telecom"][0]["value"] = json!(phone);
        let (s, _, _) = app.put(&format!("Patient/{id}"), &p).await;
        assert_eq!(s, 200);
    }
    let (_, h) = app
        .get_json(&format!("Patient/{id}/_history?_count=3"))
        .await;
    assert_eq!(h["entry"].as_array().unwrap().len(), 3);
    let next = h["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let h2: Value = app
        .http
        .get(next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h2["entry"].as_array().unwrap().len(), 1);
    assert_eq!(h2["entry"][0]["resource"]["meta"]["versionId"], "1");
    let (_, t) = app.get_json("Patient/_history").await;
    assert_eq!(t["entry"].as_array().unwrap().len(), 4);
    let (_, none) = app.get_json("Patient/_history?_since=2999-01-01").await;
    assert!(none.get("entry").is_none());
    let (s, _) = app.get_json("Patient/_history?_since=soon").await;
    assert_eq!(s, 400);
    app.stop().await;
}

async fn the_demo_data_set_loads_twice_without_duplicates(b: Backend) {
    let app = spawn_app(b).await;
    let n = hospital::seed::demo(&hospital::Config::for_tests("unused"), &app.store)
        .await
        .unwrap();
    assert!(n > 20);
    let patients = app.store.count(Some("Patient")).await.unwrap();
    // The demo doctors' free slots over the next 14 days, video and in person.
    let video = app
        .search_ids("Slot?status=free&mode=video&practitioner=Practitioner/bs-tran-thi-mai")
        .await;
    assert!(!video.is_empty(), "free video slots after seeding");
    let in_person = app
        .search_ids("Slot?status=free&mode=in-person&practitioner=Practitioner/bs-le-van-hung")
        .await;
    assert!(!in_person.is_empty(), "free in-person slots after seeding");
    let slots = app.store.count(Some("Slot")).await.unwrap();
    hospital::seed::demo(&hospital::Config::for_tests("unused"), &app.store)
        .await
        .unwrap();
    assert_eq!(app.store.count(Some("Patient")).await.unwrap(), patients);
    assert_eq!(app.store.count(Some("Slot")).await.unwrap(), slots);
    let ids = app.search_ids("Patient?name=nguyen van an").await;
    assert_eq!(ids, vec!["nguyen-van-an".to_owned()]);
    let ids = app.search_ids("Coverage?identifier=DN4510123456789").await;
    assert_eq!(ids.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_database_scheme_is_refused_loudly() {
    let cfg = hospital::Config::for_tests("mysql://root@127.0.0.1/hospital");
    let err = match hospital::start(&cfg, hospital::Service::All).await {
        Ok(_) => panic!("a MySQL URL must not start the system"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("unsupported DATABASE_URL scheme `mysql`"),
        "{err}"
    );
}

async fn one_request_cannot_ask_for_unbounded_work(b: Backend) {
    let app = spawn_app(b).await;
    let bound = |oo: &Value| {
        (
            oo["issue"][0]["details"]["coding"][0]["code"].clone(),
            oo["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    };
    // The include bomb: `_include` repeated 110 times.
    let bomb = vec!["_include=Observation:subject"; 110].join("&");
    let (s, oo) = app.get_json(&format!("Observation?{bomb}")).await;
    assert_eq!(s, 400, "{oo}");
    let (code, why) = bound(&oo);
    assert_eq!(code, "LM_02");
    assert!(why.contains("at most 10"), "{why}");
    // 20,000 name values, in one parameter and as 20,000 parameters: 400, never 500.
    let many: Vec<String> = (0..20_000).map(|i| format!("n{i}")).collect();
    for body in [
        format!("name={}", many.join(",")),
        many.iter()
            .map(|v| format!("name={v}"))
            .collect::<Vec<_>>()
            .join("&"),
    ] {
        let r = app
            .http
            .post(app.url("Patient/_search"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let oo: Value = r.json().await.unwrap();
        assert_eq!(bound(&oo).0, "LM_02", "{oo}");
    }
    // A Bundle of 2,000 entries.
    let entry = json!({"request": {"method": "GET", "url": "Patient?_count=1"}});
    let bundle =
        json!({"resourceType": "Bundle", "type": "transaction", "entry": vec![entry; 2000]});
    let (s, _, oo) = app.post("", &bundle).await;
    assert_eq!(s, 400);
    let (code, why) = bound(&oo);
    assert_eq!(code, "LM_02");
    assert!(why.contains("at most 1000 entries"), "{why}");
    app.stop().await;
}

/// A patient's long read-only transaction (1,000 searches) must not hold SQLite's single
/// writer: meanwhile a clinician's read, whose audit record needs that writer, completes.
async fn a_long_read_only_transaction_does_not_hold_the_writer(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000901")).await;
    for i in 0..20 {
        app.create(json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("x{i}")},
            "subject": {"reference": format!("Patient/{an}")}}))
            .await;
    }
    let entry = json!({"request": {"method": "GET",
        "url": "Observation?_include=Observation:subject&_revinclude=Provenance:target&_count=50"}});
    let bundle =
        json!({"resourceType": "Bundle", "type": "transaction", "entry": vec![entry; 1000]});
    let patient = client_with(&mint(
        hospital_core::auth::Role::Patient,
        &an,
        Some(&an),
        None,
        None,
    ));
    let url = app.url("");
    let big = tokio::spawn(async move {
        let r = patient
            .post(url)
            .header("content-type", FHIR)
            .body(bundle.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), std::time::Instant::now())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let clinician = app.client_for(hospital_core::auth::Role::Clinician, None, None);
    let r = clinician
        .get(app.url(&format!("Patient/{an}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let read_done = std::time::Instant::now();
    let (status, big_done) = big.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        read_done < big_done,
        "the clinician's read waited for the patient's read-only transaction"
    );
    app.stop().await;
}
