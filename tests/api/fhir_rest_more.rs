//! The rest of the REST API that clinical UIs and integrations expect: `_summary` and
//! `_elements`, PATCH with JSON Patch, `$validate`, and the search and history across types —
//! through HTTP, on SQLite and PostgreSQL, for a patient's token too.

use crate::common::*;
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    summary_and_elements_cut_reads_and_searches_and_tag_them_subsetted,
    a_json_patch_is_an_update_through_the_owners_rules_or_changes_nothing,
    validate_answers_what_a_write_would_and_writes_nothing,
    a_search_across_types_pages_every_match_once_in_one_order,
    the_history_of_every_type_pages_newest_first,
    the_capability_statement_claims_patch_validate_and_the_searches_across_types,
    a_patient_token_stays_in_its_compartment_through_subsets_patch_validate_and_searches_across_types,
);

const SUBSETTED: &str = "SUBSETTED";

fn tags(resource: &Value) -> Vec<String> {
    resource["meta"]["tag"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn keys(resource: &Value) -> Vec<String> {
    let mut k: Vec<String> = resource
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn code_of(outcome: &Value) -> &str {
    outcome["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

/// Every page of a search or history from `first`, followed through its `next` links.
async fn every_page(client: &reqwest::Client, first: String) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut url = Some(first);
    while let Some(u) = url {
        let r = client.get(&u).send().await.unwrap();
        assert_eq!(r.status(), 200, "{u}");
        let page: Value = r.json().await.unwrap();
        url = next_link(&page);
        pages.push(page);
        assert!(pages.len() < 100, "the pages never end");
    }
    pages
}

fn entries(pages: &[Value]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|p| p["entry"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn observation(patient: &str, value: f64) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Mạch"},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": value, "unit": "/min"},
        "note": [{"text": "đo lúc nghỉ"}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Mạch</div>"}})
}

async fn patch(
    client: &reqwest::Client,
    url: String,
    media: &str,
    body: &Value,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut req = client
        .patch(url)
        .header("content-type", media)
        .body(body.to_string());
    if let Some(v) = if_match {
        req = req.header("if-match", v);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

const JSON_PATCH: &str = "application/json-patch+json";

async fn summary_and_elements_cut_reads_and_searches_and_tag_them_subsetted(b: Backend) {
    let app = spawn_app(b).await;
    let mut an = patient_an("051085000701");
    an["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">An</div>"});
    an["maritalStatus"] = json!({"text": "Đã kết hôn"});
    an["photo"] = json!([{"contentType": "image/png", "data": "iVBORw0KGgo="}]);
    an["contact"] = json!([{"name": {"family": "Trần", "given": ["Thị", "Bình"]}}]);
    let id = app.create(an).await;
    for v in [72.0, 80.0, 91.0] {
        app.create(observation(&id, v)).await;
    }

    // A plain read is the stored resource, whole and untagged.
    let (_, whole) = app.get_json(&format!("Patient/{id}")).await;
    assert!(whole.get("text").is_some() && whole.get("contact").is_some());
    assert!(!tags(&whole).contains(&SUBSETTED.to_owned()));

    let (s, summary) = app.get_json(&format!("Patient/{id}?_summary=true")).await;
    assert_eq!(s, 200, "{summary}");
    for kept in [
        "id",
        "meta",
        "identifier",
        "name",
        "gender",
        "birthDate",
        "telecom",
    ] {
        assert!(summary.get(kept).is_some(), "{kept}: {summary}");
    }
    for dropped in ["text", "maritalStatus", "photo", "contact"] {
        assert!(summary.get(dropped).is_none(), "{dropped}: {summary}");
    }
    assert!(tags(&summary).contains(&SUBSETTED.to_owned()));
    assert_eq!(summary["meta"]["versionId"], "1");

    let (_, text) = app.get_json(&format!("Patient/{id}?_summary=text")).await;
    assert_eq!(keys(&text), ["id", "meta", "resourceType", "text"]);
    let (_, data) = app.get_json(&format!("Patient/{id}?_summary=data")).await;
    assert!(data.get("text").is_none() && data.get("contact").is_some());
    assert!(tags(&data).contains(&SUBSETTED.to_owned()));
    let (_, elements) = app
        .get_json(&format!("Patient/{id}?_elements=birthDate,gender"))
        .await;
    assert_eq!(
        keys(&elements),
        ["birthDate", "gender", "id", "meta", "resourceType"]
    );
    let (s, old) = app
        .get_json(&format!("Patient/{id}/_history/1?_elements=name"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(keys(&old), ["id", "meta", "name", "resourceType"]);

    // A search cuts each entry, and its links keep asking for the same cut.
    let (s, page) = app
        .get_json(&format!(
            "Observation?subject=Patient/{id}&_elements=value&_count=2"
        ))
        .await;
    assert_eq!(s, 200, "{page}");
    let first = &page["entry"][0]["resource"];
    // `status` and `code` are mandatory: FHIR has a server return them whatever is asked.
    assert_eq!(
        keys(first),
        [
            "code",
            "id",
            "meta",
            "resourceType",
            "status",
            "valueQuantity"
        ]
    );
    assert!(tags(first).contains(&SUBSETTED.to_owned()));
    let pages = every_page(
        &app.http,
        app.url(&format!(
            "Observation?subject=Patient/{id}&_elements=value&_count=2"
        )),
    )
    .await;
    let all = entries(&pages);
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|e| e["resource"].get("note").is_none()));
    assert!(
        next_link(&pages[0]).unwrap().contains("_elements=value"),
        "the next link asks for the same elements"
    );
    let (_, summaries) = app
        .get_json(&format!(
            "Observation?subject=Patient/{id}&_summary=true&_include=Observation:subject"
        ))
        .await;
    let included = summaries["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "include")
        .unwrap();
    assert!(
        included["resource"].get("contact").is_none(),
        "includes are cut too"
    );
    let (_, counted) = app
        .get_json(&format!("Observation?subject=Patient/{id}&_summary=count"))
        .await;
    assert_eq!(counted["total"], 3);
    assert!(counted.get("entry").is_none());

    // Bad subsets are 400 with the search code, whether read or searched.
    let before = app.versions().await;
    for q in [
        format!("Patient/{id}?_summary=maybe"),
        format!("Patient/{id}?_summary=count"),
        format!("Patient/{id}?_elements=shoeSize"),
        format!("Patient/{id}?_elements=name.family"),
        format!("Patient/{id}?_summary=true&_elements=name"),
        "Observation?_elements=birthDate".to_owned(),
        "Observation?_summary=true&_summary=false".to_owned(),
    ] {
        let (s, oo) = app.get_json(&q).await;
        assert_eq!((s, code_of(&oo)), (400, "IR_03"), "{q}: {oo}");
    }
    assert_eq!(app.versions().await, before);
    app.stop().await;
}

async fn a_json_patch_is_an_update_through_the_owners_rules_or_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.create(patient_an("051085000711")).await;
    let url = app.url(&format!("Patient/{id}"));

    let ok = json!([
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/telecom/-", "value": {"system": "email", "value": "an@example.vn"}},
        {"op": "replace", "path": "/name/0/given/1", "value": "Ân"},
        {"op": "copy", "from": "/name/0", "path": "/name/-"},
        {"op": "move", "from": "/name/1", "path": "/name/0"},
        {"op": "remove", "path": "/name/1"}
    ]);
    let r = app
        .http
        .patch(&url)
        .header("content-type", JSON_PATCH)
        .header("if-match", "W/\"1\"")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(patched["telecom"][1]["value"], "an@example.vn");
    assert_eq!(patched["name"].as_array().unwrap().len(), 1);
    assert_eq!(patched["name"][0]["given"][1], "Ân");
    // The owner's rules ran as on a PUT: the facility code is kept.
    let codes = |p: &Value| {
        p["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["system"] == MA_BN)
            .count()
    };
    assert_eq!(codes(&patched), 1);
    let (_, read) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(read["telecom"][1]["value"], "an@example.vn");
    let (_, v1) = app.get_json(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(
        v1["telecom"].as_array().unwrap().len(),
        1,
        "version 1 is kept"
    );

    // Every refusal leaves the resource as it was.
    let before = app.versions().await;
    let cases: Vec<(&str, Value, Option<&str>, u16, &str)> = vec![
        // The owner's rule: the personal ID says male.
        (
            JSON_PATCH,
            json!([{"op": "replace", "path": "/gender", "value": "female"}]),
            None,
            400,
            "IR_01",
        ),
        (
            JSON_PATCH,
            json!([{"op": "test", "path": "/gender", "value": "female"}]),
            None,
            409,
            "CF_07",
        ),
        (
            JSON_PATCH,
            json!([{"op": "remove", "path": "/deceasedBoolean"}]),
            None,
            409,
            "CF_07",
        ),
        (
            JSON_PATCH,
            json!([{"op": "replace", "path": "/active", "value": true}]),
            None,
            409,
            "CF_07",
        ),
        (
            JSON_PATCH,
            json!({"op": "remove", "path": "/gender"}),
            None,
            400,
            "IR_06",
        ),
        (
            JSON_PATCH,
            json!([{"op": "delete", "path": "/gender"}]),
            None,
            400,
            "IR_06",
        ),
        (
            JSON_PATCH,
            json!([{"op": "add", "path": "gender", "value": "male"}]),
            None,
            400,
            "IR_06",
        ),
        (
            JSON_PATCH,
            json!([{"op": "replace", "path": "/resourceType", "value": "Practitioner"}]),
            None,
            400,
            "IR_01",
        ),
        (
            JSON_PATCH,
            json!([{"op": "replace", "path": "/id", "value": "someone-else"}]),
            None,
            400,
            "IR_01",
        ),
        (
            JSON_PATCH,
            json!([{"op": "add", "path": "/shoeSize", "value": 42}]),
            None,
            400,
            "IR_01",
        ),
        (
            JSON_PATCH,
            json!([{"op": "add", "path": "/active", "value": true}]),
            Some("W/\"1\""),
            412,
            "PC_01",
        ),
        (
            FHIR,
            json!([{"op": "add", "path": "/active", "value": true}]),
            None,
            415,
            "MT_01",
        ),
    ];
    for (media, body, if_match, status, code) in cases {
        let (s, oo) = patch(&app.http, url.clone(), media, &body, if_match).await;
        assert_eq!((s, code_of(&oo)), (status, code), "{body}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    let (s, oo) = patch(
        &app.http,
        app.url("Patient/nobody"),
        JSON_PATCH,
        &json!([{"op": "add", "path": "/active", "value": true}]),
        None,
    )
    .await;
    assert_eq!((s, code_of(&oo)), (404, "NF_01"));
    assert_eq!(app.versions().await, before);
    let (_, still) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(still, read);

    // A signed entry is refused as a PUT is.
    let doctor = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê"}]}))
        .await;
    let clinician = app.client_for(Role::Clinician, None, Some(&doctor));
    let obs = clinician
        .post(app.url("Observation"))
        .header("content-type", FHIR)
        .body(observation(&id, 72.0).to_string())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = clinician
        .post(app.url(&format!("Observation/{obs}/$sign")))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 201);
    let (s, oo) = patch(
        &clinician,
        app.url(&format!("Observation/{obs}")),
        JSON_PATCH,
        &json!([{"op": "replace", "path": "/valueQuantity/value", "value": 60}]),
        None,
    )
    .await;
    assert_eq!((s, code_of(&oo)), (409, "CF_03"), "{oo}");

    // The patch is audited as one, under the patient it touched.
    let trail = app.audit_events(&format!("patient={id}&action=U")).await;
    assert!(
        trail
            .iter()
            .any(|e| e["subtype"][0]["code"] == "patch" && e["outcomeDesc"] == "HTTP 200"),
        "{trail:?}"
    );
    app.stop().await;
}

async fn validate_answers_what_a_write_would_and_writes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let existing = app.create(patient_an("051085000721")).await;
    let before = app.versions().await;
    let validate = |path: &str, body: Value| {
        let url = app.url(path);
        let c = app.http.clone();
        async move {
            let r = c
                .post(url)
                .header("content-type", FHIR)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let (s, ok) = validate("Patient/$validate", patient_an("051085000722")).await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!(ok["resourceType"], "OperationOutcome");
    assert_eq!(ok["issue"][0]["severity"], "information");

    // The owner's rule refuses a personal ID that says female for a man: the outcome is the
    // one the create answers, with 200 for a validation that was made.
    let wrong = patient_an("051185000723");
    let (s, refused) = validate("Patient/$validate", wrong.clone()).await;
    assert_eq!(s, 200);
    let (_, _, written) = app.post("Patient", &wrong).await;
    assert_eq!(refused["issue"][0]["severity"], "error");
    assert_eq!(code_of(&refused), "IR_01");
    assert_eq!(
        refused["issue"][0]["expression"],
        written["issue"][0]["expression"]
    );
    assert_eq!(
        refused["issue"][0]["diagnostics"],
        written["issue"][0]["diagnostics"]
    );

    // The same in a Parameters; a personal ID already held is the create's 409 outcome.
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient_an("051085000721")},
        {"name": "mode", "valueCode": "create"}]});
    let (s, held) = validate("Patient/$validate", params).await;
    assert_eq!((s, code_of(&held)), (200, "CF_01"), "{held}");

    // At an instance: an update, as PUT takes it (the id in the body), or a deletion.
    let mut update = patient_an("051085000721");
    let (_, missing_id) = validate(&format!("Patient/{existing}/$validate"), update.clone()).await;
    assert_eq!(code_of(&missing_id), "IR_01");
    update["id"] = json!(existing);
    let (s, fine) = validate(&format!("Patient/{existing}/$validate"), update).await;
    assert_eq!(
        (s, fine["issue"][0]["severity"].as_str()),
        (200, Some("information")),
        "{fine}"
    );
    let r = app
        .http
        .post(app.url(&format!("Patient/{existing}/$validate?mode=delete")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // What cannot be validated is a 4xx, and nothing was kept of any of it.
    for (path, body, status, code) in [
        (
            "Patient/$validate",
            json!({"resourceType": "Observation"}),
            400,
            "IR_01",
        ),
        (
            "Patient/$validate?mode=delete",
            patient_an("051085000724"),
            400,
            "IR_02",
        ),
        (
            "Patient/$validate",
            json!({"resourceType": "Parameters", "parameter": [{"name": "profile", "valueUri": "http://example.org/p"}]}),
            400,
            "IR_02",
        ),
        (
            "Shoe/$validate",
            json!({"resourceType": "Shoe"}),
            404,
            "NF_03",
        ),
        (
            "Patient/nobody/$validate?mode=delete",
            json!({"resourceType": "Parameters"}),
            404,
            "NF_01",
        ),
    ] {
        let (s, oo) = validate(path, body).await;
        assert_eq!((s, code_of(&oo)), (status, code), "{path}: {oo}");
    }
    assert_eq!(app.versions().await, before, "a validation writes nothing");
    let trail = app.audit_events("action=E").await;
    assert!(trail.iter().any(|e| e["subtype"][0]["code"] == "validate"));
    app.stop().await;
}

async fn a_search_across_types_pages_every_match_once_in_one_order(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000731")).await;
    let mut want = vec![format!("Patient/{an}")];
    for v in [60.0, 70.0, 80.0, 90.0] {
        want.push(format!(
            "Observation/{}",
            app.create(observation(&an, v)).await
        ));
    }
    let org = app
        .create(json!({"resourceType": "Organization", "name": "Bệnh viện Đà Nẵng"}))
        .await;
    want.sort();

    let pages = every_page(&app.http, app.url("?_type=Patient,Observation&_count=2")).await;
    assert_eq!(pages.len(), 3);
    let mut got: Vec<String> = entries(&pages)
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, want, "every match once, across pages");
    assert!(
        next_link(&pages[0])
            .unwrap()
            .contains("_type=Patient%2CObservation")
    );

    // Newest first by _lastUpdated, and from a time on.
    let (_, newest) = app
        .get_json("?_type=Patient,Observation,Organization&_sort=-_lastUpdated&_count=100")
        .await;
    let stamps: Vec<String> = newest["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["meta"]["lastUpdated"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(stamps.len(), 6);
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{stamps:?}");
    assert_eq!(newest["entry"][0]["resource"]["id"], org.as_str());
    let since = &stamps[2];
    let (_, recent) = app
        .get_json(&format!(
            "?_type=Observation,Organization&_lastUpdated=ge{}",
            since.replace('+', "%2B")
        ))
        .await;
    assert_eq!(recent["entry"].as_array().unwrap().len(), 3);

    // Without _type: every type the caller reads; the parameters every listed type has.
    let (_, all) = app.get_json("?_total=accurate&_count=1").await;
    assert_eq!(all["total"], 6);
    let (_, by_subject) = app
        .get_json(&format!(
            "?_type=Observation&subject=Patient/{an}&_elements=value"
        ))
        .await;
    assert_eq!(by_subject["entry"].as_array().unwrap().len(), 4);
    assert!(by_subject["entry"][0]["resource"].get("note").is_none());
    for q in [
        "?_type=Shoe",
        "?_type=Patient,Organization&birthdate=1985",
        "?_type=Observation&_include=Observation:subject",
        "?_type=Observation&_sort=date",
        "?_type=Patient&_type=Observation",
        "?_elements=shoeSize",
    ] {
        let (s, oo) = app.get_json(q).await;
        assert_eq!((s, code_of(&oo)), (400, "IR_03"), "{q}: {oo}");
    }
    let cashier = app.client_for(Role::Cashier, None, None);
    let r = cashier
        .get(app.url("?_type=Observation"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a cashier reads no clinical data");
    let patients: Value = cashier
        .get(app.url("?_type=Patient"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patients["entry"].as_array().unwrap().len(), 1);
    let trail = app.audit_events(&format!("patient={an}&action=R")).await;
    assert!(
        trail
            .iter()
            .any(|e| e["subtype"][0]["code"] == "search-system")
    );
    app.stop().await;
}

async fn the_history_of_every_type_pages_newest_first(b: Backend) {
    let app = spawn_app(b).await;
    let mut p = patient_an("051085000741");
    let id = app.create(p.clone()).await;
    p["id"] = json!(id);
    p["telecom"][0]["value"] = json!("0905000741");
    assert_eq!(app.put(&format!("Patient/{id}"), &p).await.0, 200);
    let obs = app.create(observation(&id, 75.0)).await;
    let org = app
        .create(json!({"resourceType": "Organization", "name": "Trạm y tế"}))
        .await;

    let pages = every_page(&app.http, app.url("_history?_count=2")).await;
    assert_eq!(pages.len(), 2);
    assert!(pages.iter().all(|p| p["type"] == "history"));
    let seen: Vec<String> = entries(&pages)
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["meta"]["versionId"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        seen,
        ["Organization/1", "Observation/1", "Patient/2", "Patient/1"]
    );
    let first = &entries(&pages)[0];
    assert_eq!(first["resource"]["id"], org.as_str());
    assert_eq!(first["request"]["method"], "POST");
    let (_, none) = app.get_json("_history?_since=2999-01-01").await;
    assert!(none.get("entry").is_none());
    let (s, oo) = app.get_json("_history?_since=soon").await;
    assert_eq!((s, code_of(&oo)), (400, "IR_02"));
    let (s, _) = app.get_json("_history?_at=2026").await;
    assert_eq!(s, 400);
    // A cashier's history holds no clinical entry.
    let cashier = app.client_for(Role::Cashier, None, None);
    let theirs: Value = cashier
        .get(app.url("_history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = theirs.to_string();
    assert!(!text.contains(&obs) && text.contains(&id));
    app.stop().await;
}

async fn the_capability_statement_claims_patch_validate_and_the_searches_across_types(b: Backend) {
    let app = spawn_app(b).await;
    let (_, cs) = app.get_json("metadata").await;
    let rest = &cs["rest"][0];
    let codes: Vec<&str> = rest["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"search-system") && codes.contains(&"history-system"));
    for r in rest["resource"].as_array().unwrap() {
        let interactions: Vec<&str> = r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        let ops: Vec<&str> = r["operation"]
            .as_array()
            .map(|a| a.iter().map(|o| o["name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(
            interactions.contains(&"patch"),
            interactions.contains(&"update"),
            "{}",
            r["type"]
        );
        assert_eq!(ops.contains(&"validate"), interactions.contains(&"update"));
    }
    // What it claims works: each of them answers.
    let id = app.create(patient_an("051085000751")).await;
    assert_eq!(app.get_json("?_type=Patient&_summary=true").await.0, 200);
    assert_eq!(app.get_json("_history").await.0, 200);
    let (s, _) = patch(
        &app.http,
        app.url(&format!("Patient/{id}")),
        JSON_PATCH,
        &json!([{"op": "add", "path": "/active", "value": true}]),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = app
        .post("Patient/$validate", &patient_an("051085000752"))
        .await;
    assert_eq!(s, 200);
    // A process that does not write a type claims neither patch nor validate for it.
    let records = spawn(
        &hospital::registrations(),
        hospital_core::Deployment::only(hospital_core::ServiceName::Records),
        b,
        |_| {},
    )
    .await;
    let (_, cs) = records.get_json("metadata").await;
    let invoice = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Invoice")
        .unwrap()
        .clone();
    assert!(
        !invoice.to_string().contains("\"patch\"") && !invoice.to_string().contains("validate")
    );
    let (s, _, oo) = records
        .post(
            "Invoice/$validate",
            &json!({"resourceType": "Invoice", "status": "draft"}),
        )
        .await;
    assert_eq!((s, code_of(&oo)), (405, "OW_01"));
    records.stop().await;
    app.stop().await;
}

async fn a_patient_token_stays_in_its_compartment_through_subsets_patch_validate_and_searches_across_types(
    b: Backend,
) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000761")).await;
    let binh = app.create(patient_an("051085000762")).await;
    let mine = app.create(observation(&an, 70.0)).await;
    let theirs = app.create(observation(&binh, 90.0)).await;
    let mut b2 = patient_an("051085000762");
    b2["id"] = json!(binh);
    b2["active"] = json!(true);
    assert_eq!(app.put(&format!("Patient/{binh}"), &b2).await.0, 200);
    app.create(json!({"resourceType": "Organization", "name": "Bệnh viện"}))
        .await;
    let c = app.client_for(Role::Patient, Some(&an), None);
    let leaked = |v: &Value| {
        let text = v.get("entry").map(Value::to_string).unwrap_or_default();
        text.contains(&binh) || text.contains(&theirs)
    };

    for first in [
        "?_type=Patient,Observation&_count=1",
        "?_count=1",
        "?_count=1&_sort=-_lastUpdated&_summary=true",
        "?_type=Observation&_elements=subject",
        "_history?_count=1",
        "Patient?_summary=true",
        "Observation?_elements=status&_count=1",
    ] {
        let pages = every_page(&c, app.url(first)).await;
        for p in &pages {
            assert!(!leaked(p), "{first}: {p}");
        }
        let all = entries(&pages)
            .iter()
            .map(Value::to_string)
            .collect::<String>();
        assert!(
            all.contains(&an) || all.contains(&mine),
            "{first}: their own is there"
        );
    }
    let every: Value = c
        .get(app.url("?_count=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = every["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.len(),
        3,
        "their Patient, their Observation, the Organization: {types:?}"
    );

    // Another patient's resource is not known, however it is asked for.
    for d in [
        format!("Patient/{binh}?_summary=true"),
        format!("Patient/{binh}?_elements=name"),
        format!("Observation/{theirs}/_history/1?_elements=status"),
        format!("?_type=Observation&_id={theirs}"),
    ] {
        let r = c.get(app.url(&d)).send().await.unwrap();
        let s = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(s == 404 || (s == 200 && !leaked(&body)), "{d}: {s} {body}");
    }
    // Writes, patches and validations are not a patient's, whoever they concern.
    let before = app.versions().await;
    for target in [format!("Patient/{an}"), format!("Patient/{binh}")] {
        let (s, oo) = patch(
            &c,
            app.url(&target),
            JSON_PATCH,
            &json!([{"op": "add", "path": "/active", "value": false}]),
            None,
        )
        .await;
        assert_eq!((s, code_of(&oo)), (403, "AZ_01"), "{target}");
        let r = c
            .post(app.url(&format!("{target}/$validate?mode=delete")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{target}");
    }
    let r = c
        .post(app.url("Patient/$validate"))
        .header("content-type", FHIR)
        .body(patient_an("051085000762").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a patient cannot ask whose a personal ID is"
    );
    assert_eq!(app.versions().await, before);
    let r = c.get(app.url("?_type=AuditEvent")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}
