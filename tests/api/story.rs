//! The end-to-end story of the product, in one test across the three services with real gRPC
//! between them (the all-in-one process calls each service over loopback gRPC, as separate
//! processes would): a patient registered with their personal ID and BHYT card books and
//! prepays a video visit (the bank's signed feed pays it); the call, at the protocol level
//! (the patient joins from an app with a bearer token, the doctor from the visit page with a
//! signed-in session; both open the signalling WebSocket, the doctor admits the patient from
//! the waiting room, offer, answer, ICE candidates and chat cross); the doctor's notes saved
//! and signed through the page's notes panel; the visit fulfilled, lab charges on an invoice
//! with the BHYT share and its QR, the payment delivered twice and credited once, the patient
//! reading their own record and receipt and nobody else's, and the audit trail holding every
//! access and verifying.

use crate::billing::{casso, post_casso};
use crate::common::*;
use crate::telemedicine::{Peer, from_now, join_token, op, parameters, schedule, slot};
use hospital_billing::prices::{Category, definition};
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(the_whole_story_of_a_telemedicine_patient);

fn ext_value<'a>(v: &'a Value, url: &str) -> &'a Value {
    v["extension"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == url))
        .unwrap_or_else(|| panic!("no {url} on {v}"))
}

fn identifier(v: &Value, system: &str) -> String {
    v["identifier"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["system"] == system))
        .and_then(|i| i["value"].as_str())
        .unwrap_or_else(|| panic!("no {system} on {v}"))
        .to_owned()
}

fn total(invoice: &Value, code: &str) -> i64 {
    invoice["totalPriceComponent"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["code"]["coding"][0]["code"] == code))
        .and_then(|c| c["amount"]["value"].as_i64())
        .unwrap_or_else(|| panic!("no {code} total: {invoice}"))
}

async fn wait_for(app: &TestApp, path: &str, status: &str) {
    for _ in 0..100 {
        let (_, v) = app.get_json(path).await;
        if v["status"] == status {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{path} did not become {status}");
}

async fn the_whole_story_of_a_telemedicine_patient(b: Backend) {
    let app = spawn_app(b).await;
    story(&app, &|url, _| url.to_owned()).await;
}

/// Who opens a signalling connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    Patient,
    Doctor,
}

/// Where `who` opens the visit's signalling WebSocket, given the URL the server gave
/// (separate processes: a chosen replica).
pub(crate) type Place<'a> = &'a (dyn Fn(&str, Who) -> String + Sync);

/// The story, told to `app` (one process, or replicas behind a proxy).
pub(crate) async fn story(app: &TestApp, place: Place<'_>) {
    let account = hospital::Config::for_tests("unused").bank_account;
    let admin = app.client_for(Role::Admin, None, None);
    for (code, title, price, bhyt) in [
        ("KB.TX", "Tư vấn khám bệnh từ xa", 150_000, None),
        ("XN.GLU", "Định lượng Glucose máu", 30_000, Some(21_500)),
        ("XN.HBA1C", "Định lượng HbA1c", 120_000, Some(101_000)),
    ] {
        let (s, d) = op(
            &admin,
            app,
            "ChargeItemDefinition",
            &definition(code, title, Category::Service, price, bhyt, "2026-01-01"),
        )
        .await;
        assert_eq!(s, 201, "{d}");
    }
    // BS. Trần Thị Mai, who signs in to the visit page as `bs.mai` (embedded mode's account).
    let doctor_id = "bs-tran-thi-mai".to_owned();
    let (s, _, d) = app
        .put(
            &format!("Practitioner/{doctor_id}"),
            &json!({"resourceType": "Practitioner", "id": doctor_id,
                "name": [{"family": "Trần", "given": ["Thị", "Mai"]}]}),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    let sched = app.create(schedule(&doctor_id, "video", 30, 1)).await;
    let the_slot = app.create(slot(&sched, &from_now(5), &from_now(35))).await;

    // 1. Registered at the desk with the personal ID and the BHYT card.
    let desk = app.client_for(Role::Cashier, None, None);
    let (s, patient) = op(&desk, app, "Patient", &patient_an("051085000777")).await;
    assert_eq!(s, 201, "{patient}");
    let an = patient["id"].as_str().unwrap().to_owned();
    let (s, cov) = op(&desk, app, "Coverage", &json!({"resourceType": "Coverage", "status": "active",
        "identifier": [{"system": INSURANCE, "value": "DN4510123456789"}],
        "beneficiary": {"reference": format!("Patient/{an}")}, "payor": [{"display": "BHXH Việt Nam"}],
        "period": {"start": "2026-01-01", "end": "2026-12-31"}})).await;
    assert_eq!(s, 201, "{cov}");

    // 2. The patient books a video visit and prepays it; the bank's signed feed pays it.
    let me = app.client_for(Role::Patient, Some(&an), None);
    let (s, visit) = op(
        &me,
        app,
        "Appointment/$book",
        &parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{the_slot}")}},
        {"name": "reason", "valueString": "Theo dõi đường huyết"}])),
    )
    .await;
    assert_eq!(
        (s, visit["status"].as_str()),
        (200, Some("pending")),
        "{visit}"
    );
    let appt = visit["id"].as_str().unwrap().to_owned();
    let fee_invoice =
        ext_value(&visit, "urn:hospital:appointment:invoice")["valueReference"]["reference"]
            .as_str()
            .unwrap()
            .to_owned();
    let (_, fee) = app.get_json(&fee_invoice).await;
    let (body, sig) = casso(
        8_800_001,
        150_000,
        &format!(
            "MBVCB.1.{}.CT",
            identifier(&fee, "urn:hospital:payment-code")
        ),
        &account,
    );
    assert_eq!(post_casso(app, &body, &sig).await.0, 200);
    wait_for(app, &format!("Appointment/{appt}"), "booked").await;

    // 3. The call. The patient joins from their phone's app (a bearer token, consent given);
    // the doctor from the visit page, signed in, with the session's CSRF token. Each opens the
    // signalling WebSocket with their join token.
    let doctor = app.client_for(Role::Clinician, None, Some(&doctor_id));
    let none = parameters(json!([]));
    let (signalling, patient_token) = join_token(&me, app, &appt, true).await;
    let (mut patient_ws, welcome) =
        Peer::open(&place(&signalling, Who::Patient), &patient_token).await;
    assert_eq!(
        (welcome["role"].as_str(), welcome["admitted"].as_bool()),
        (Some("patient"), Some(false)),
        "the patient waits: {welcome}"
    );
    let (web, session, site) = crate::invoicing::signed_in(app, "bs.mai", "mai-demo").await;
    let page = web
        .get(format!("{site}/visit/{appt}"))
        .header(reqwest::header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = html
        .split("data-csrf=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page's CSRF token")
        .to_owned();
    let page_post = |path: String, body: Option<Value>| {
        let mut r = web
            .post(format!("{site}{path}"))
            .header(reqwest::header::COOKIE, &session)
            .header("x-csrf-token", &csrf);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        async move {
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or_default(),
            )
        }
    };
    let (s, joined) = page_post(format!("/visit/{appt}/join"), None).await;
    assert_eq!(
        (s, joined["role"].as_str()),
        (200, Some("practitioner")),
        "{joined}"
    );
    let (mut doctor_ws, welcome) = Peer::open(
        &place(&signalling, Who::Doctor),
        joined["token"].as_str().unwrap(),
    )
    .await;
    // The patient is there, waiting (in the welcome, or announced just after it).
    if welcome["present"] != json!(["patient"]) {
        let p = doctor_ws.next_of("presence").await;
        assert_eq!(
            (p["from"].as_str(), p["data"]["state"].as_str()),
            (Some("patient"), Some("joined"))
        );
    }
    let p = patient_ws.next_of("presence").await;
    assert_eq!(
        (p["from"].as_str(), p["data"]["state"].as_str()),
        (Some("practitioner"), Some("joined"))
    );
    // In the waiting room the patient's media go nowhere; the doctor admits them.
    let candidate = |port: u16| {
        json!({"candidate": format!("candidate:1 1 udp 2122260223 127.0.0.1 {port} typ host"),
        "sdpMid": "0", "sdpMLineIndex": 0})
    };
    patient_ws
        .say(json!({"type": "ice", "room": appt, "data": candidate(50000)}))
        .await;
    assert_eq!(patient_ws.next().await["code"], "not-admitted");
    doctor_ws.say(json!({"type": "admit", "room": appt})).await;
    assert_eq!(patient_ws.next_of("admit").await["from"], "practitioner");
    // Offer, answer and ICE candidates cross; each side receives what the other sent.
    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"});
    let answer = json!({"type": "answer", "sdp": "v=0\r\no=- 1789211200 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"});
    doctor_ws
        .say(json!({"type": "offer", "room": appt, "data": offer}))
        .await;
    let got = patient_ws.next_of("offer").await;
    assert_eq!(
        (got["from"].as_str(), &got["data"]),
        (Some("practitioner"), &offer)
    );
    patient_ws
        .say(json!({"type": "answer", "room": appt, "data": answer}))
        .await;
    let got = doctor_ws.next_of("answer").await;
    assert_eq!(
        (got["from"].as_str(), &got["data"]),
        (Some("patient"), &answer)
    );
    doctor_ws
        .say(json!({"type": "ice", "room": appt, "data": candidate(50001)}))
        .await;
    assert_eq!(patient_ws.next_of("ice").await["data"], candidate(50001));
    patient_ws
        .say(json!({"type": "ice", "room": appt, "data": candidate(50002)}))
        .await;
    assert_eq!(doctor_ws.next_of("ice").await["data"], candidate(50002));
    // Chat, both ways.
    patient_ws
        .say(json!({"type": "chat", "room": appt, "data": {"text": "Chào bác sĩ, em nghe rõ ạ."}}))
        .await;
    let got = doctor_ws.next_of("chat").await;
    assert_eq!(
        (got["from"].as_str(), got["data"]["text"].as_str()),
        (Some("patient"), Some("Chào bác sĩ, em nghe rõ ạ."))
    );
    doctor_ws.say(json!({"type": "chat", "room": appt, "data": {"text": "Chào anh An, anh đo đường huyết sáng nay chưa?"}})).await;
    let got = patient_ws.next_of("chat").await;
    assert_eq!(
        (got["from"].as_str(), got["data"]["text"].as_str()),
        (
            Some("practitioner"),
            Some("Chào anh An, anh đo đường huyết sáng nay chưa?")
        )
    );
    // The first join began the visit: arrived, its VR encounter opened in records over gRPC.
    let (_, arrived) = app.get_json(&format!("Appointment/{appt}")).await;
    assert_eq!(arrived["status"], "arrived");
    let consents = app
        .search_ids(&format!(
            "Consent?data=Appointment/{appt}&patient=Patient/{an}"
        ))
        .await;
    assert_eq!(
        consents.len(),
        1,
        "the patient's consent to this visit is recorded"
    );
    let consent = consents[0].clone();
    let enc =
        ext_value(&arrived, "urn:hospital:appointment:encounter")["valueReference"]["reference"]
            .as_str()
            .unwrap()
            .trim_start_matches("Encounter/")
            .to_owned();
    let (_, e) = app.get_json(&format!("Encounter/{enc}")).await;
    assert_eq!(
        (e["class"]["code"].as_str(), e["status"].as_str()),
        (Some("VR"), Some("in-progress")),
        "{e}"
    );

    // 4. During the call the doctor saves findings, an ICD-10 diagnosis and a prescription
    // from the page's notes panel: on the encounter, each signed by the doctor.
    let (s, saved) = page_post(
        format!("/visit/{appt}/notes"),
        Some(
            json!({"findings": "Đường huyết tại nhà 8,2 mmol/L, không sụt cân.",
            "icd10": "E11.9", "diagnosis": "Đái tháo đường type 2",
            "medication": "Metformin 850 mg", "dosage": "1 viên x 2 lần/ngày",
            "acknowledge": false}),
        ),
    )
    .await;
    assert_eq!((s, saved["signed"].as_bool()), (201, Some(true)), "{saved}");
    let mut record = Vec::new();
    for (saved, rtype) in saved["saved"].as_array().unwrap().iter().zip([
        "Observation",
        "Condition",
        "MedicationRequest",
    ]) {
        let (t, id) = saved.as_str().unwrap().split_once('/').unwrap();
        assert_eq!(t, rtype, "{saved}");
        let (_, v) = app.get_json(&format!("{t}/{id}")).await;
        assert_eq!(
            v["encounter"]["reference"],
            format!("Encounter/{enc}"),
            "{v}"
        );
        let (s, verified) = app.get_json(&format!("{t}/{id}/$verify")).await;
        assert_eq!(s, 200, "{verified}");
        let valid = verified["parameter"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "valid"))
            .map(|p| p["valueBoolean"].clone());
        assert_eq!(valid, Some(json!(true)), "{t} is signed: {verified}");
        assert!(
            verified
                .to_string()
                .contains(&format!("Practitioner/{doctor_id}")),
            "{t} signed by the doctor: {verified}"
        );
        record.push((t.to_owned(), id.to_owned()));
    }
    assert_eq!(record.len(), 3);

    // 5. The doctor ends the visit: fulfilled, the encounter closed.
    let (s, done) = op(&doctor, app, &format!("Appointment/{appt}/$end"), &none).await;
    assert_eq!(
        (s, done["status"].as_str()),
        (200, Some("fulfilled")),
        "{done}"
    );
    let (_, e) = app.get_json(&format!("Encounter/{enc}")).await;
    assert_eq!(e["status"], "finished");
    for ws in [&mut patient_ws, &mut doctor_ws] {
        assert_eq!(
            ws.next_of("ended").await["from"],
            "server",
            "both sides are told"
        );
    }

    // 6. Lab charges go on the encounter's invoice with the BHYT share; it shows its QR.
    let subject = json!({"reference": format!("Patient/{an}")});
    let on = json!({"reference": format!("Encounter/{enc}")});
    for code in ["XN.GLU", "XN.HBA1C"] {
        let (s, c) = op(
            &doctor,
            app,
            "ChargeItem",
            &json!({"resourceType": "ChargeItem", "status": "billable",
            "code": {"coding": [{"system": "urn:hospital:service-code", "code": code}]},
            "subject": subject, "context": on,
            "occurrenceDateTime": e["period"]["start"], "quantity": {"value": 1}}),
        )
        .await;
        assert_eq!(s, 201, "{c}");
    }
    let (s, bill) = op(
        &desk,
        app,
        "Invoice/$issue",
        &parameters(json!([
        {"name": "encounter", "valueReference": {"reference": format!("Encounter/{enc}")}}])),
    )
    .await;
    assert_eq!(s, 200, "{bill}");
    let gross = total(&bill, "total");
    assert_eq!(gross, 150_000, "30.000 + 120.000 đồng of tests");
    assert!(
        total(&bill, "bhyt-fund") > 0,
        "the card pays its share: {bill}"
    );
    assert_eq!(
        bill["totalNet"]["value"].as_i64().unwrap() + total(&bill, "bhyt-fund"),
        gross
    );
    let bill_id = bill["id"].as_str().unwrap().to_owned();
    let owed = bill["totalNet"]["value"].as_i64().unwrap();
    let qr: Value = me
        .get(app.url(&format!("Invoice/{bill_id}/$payment-qr")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payload = qr["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "payload")
        .and_then(|p| p["valueString"].as_str())
        .expect("a VietQR payload")
        .to_owned();
    assert!(
        payload.starts_with("000201")
            && payload.contains(&identifier(&bill, "urn:hospital:payment-code"))
    );

    // 7. The bank delivers the payment twice; it is credited once.
    let (body, sig) = casso(
        8_800_002,
        owed,
        &format!(
            "MBVCB.2.{}.CT",
            identifier(&bill, "urn:hospital:payment-code")
        ),
        &account,
    );
    assert_eq!(post_casso(app, &body, &sig).await.0, 200);
    let (body2, sig2) = casso(
        8_800_002,
        owed,
        &format!(
            "MBVCB.2.{}.CT",
            identifier(&bill, "urn:hospital:payment-code")
        ),
        &account,
    );
    assert_eq!(
        post_casso(app, &body2, &sig2).await.0,
        200,
        "a repeated delivery is acknowledged"
    );
    wait_for(app, &format!("Invoice/{bill_id}"), "balanced").await;
    let paid = app
        .search_ids(&format!("PaymentNotice?request=Invoice/{bill_id}"))
        .await;
    assert_eq!(paid.len(), 1, "credited once");

    // 8. The patient reads their own record and receipt, and nobody else's.
    let other = app.create(patient_an("051085000778")).await;
    let (s, someone_else) = op(
        &desk,
        app,
        "Invoice/$issue",
        &parameters(json!([
        {"name": "patient", "valueReference": {"reference": format!("Patient/{other}")}},
        {"name": "deposit", "valueMoney": {"value": 500_000, "currency": "VND"}}])),
    )
    .await;
    assert_eq!(s, 200, "{someone_else}");
    for (rtype, id) in record.iter().map(|(t, i)| (t.as_str(), i.as_str())).chain([
        ("Encounter", enc.as_str()),
        ("Invoice", bill_id.as_str()),
        ("PaymentNotice", paid[0].as_str()),
        ("Appointment", appt.as_str()),
        ("Consent", consent.as_str()),
    ]) {
        let r = me
            .get(app.url(&format!("{rtype}/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the patient reads their {rtype}");
    }
    let r = me
        .get(app.url(&format!("Invoice/{}", someone_else["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "another patient's bill is not known to them"
    );
    let r = me
        .get(app.url(&format!("Patient/{other}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let mine: Value = me
        .get(app.url("Invoice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        mine["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["subject"]["reference"] == format!("Patient/{an}"))
    );

    // 9. Every access is in the audit trail, and the trail verifies.
    let trail = app
        .audit_events(&format!("patient=Patient/{an}&_count=500"))
        .await;
    let did = |needle: &str| trail.iter().any(|e| e.to_string().contains(needle));
    for needle in [
        "$book",
        "$join",
        "$notes",
        "$end",
        "$issue",
        "$payment-qr",
        "CreateInvoice",
        "OpenEncounter",
        &format!("Invoice/{bill_id}"),
    ] {
        assert!(did(needle), "the trail names {needle}");
    }
    // The effects telemedicine had billing and records make for the patient are named in the
    // patient's own records of the requests that caused them.
    let initiated = |action: &str, entity: &str| {
        trail.iter().any(|e| {
            e["subtype"]
                .as_array()
                .is_some_and(|s| s.iter().any(|c| c["code"] == action))
                && e["agent"].as_array().is_some_and(|a| {
                    a.iter().any(|g| {
                        g["who"]["identifier"]["value"]
                            .as_str()
                            .is_some_and(|w| w.starts_with("patient:"))
                    })
                })
                && e["entity"]
                    .as_array()
                    .is_some_and(|en| en.iter().any(|x| x["what"]["reference"] == entity))
        })
    };
    assert!(
        initiated("$book", &fee_invoice),
        "the patient initiated the fee's invoice"
    );
    assert!(
        initiated("$join", &format!("Encounter/{enc}")),
        "the patient's join opened the encounter"
    );
    app.store.audit_seal().await.unwrap();
    let report = app.store.audit_verify().await.unwrap();
    assert!(report.first_break.is_none(), "{:?}", report.first_break);
    let url = app.database_url().to_owned();
    let out = hospital_cli(&["audit", "verify"], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit trail intact"));
}
