//! Billing beyond the bank feeds: the price list, clinicians' charges, invoices split by BHYT
//! with the coverage asked of the records service over gRPC, corrections, and the cashier's
//! work — the queue, assigning and refunding credits, totals by channel, the cashless
//! indicator and reconciling a provider's statement.

use crate::billing::{ident, param, pay_cash, post_sepay, status_of};
use crate::common::*;
use hospital_billing::prices::{Category, SERVICE_CODE, definition};
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    charges_from_the_price_list_become_an_invoice_split_by_bhyt,
    expired_coverage_is_self_pay_except_within_the_grace_of_a_stay,
    the_cashier_settles_the_queue_and_reads_the_days_totals,
    a_providers_statement_is_reconciled_with_the_ledger,
    services_invoice_once_per_key_and_watch_the_payment_over_grpc,
    the_cashiers_page_works_the_desk_through_the_same_rules,
    a_long_stay_is_invoiced_with_every_charge,
    a_card_or_personal_id_shown_at_the_desk_must_be_the_patients,
);

pub(crate) fn parameters(parts: Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": parts})
}

pub(crate) async fn send(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let r = client
        .post(app.url(path))
        .header("content-type", FHIR)
        .header("prefer", "return=representation")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

pub(crate) async fn get(client: &reqwest::Client, app: &TestApp, path: &str) -> (u16, Value) {
    let r = client.get(app.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

pub(crate) fn encounter(
    patient: &str,
    doctor: &str,
    class: &str,
    start: &str,
    end: Option<&str>,
) -> Value {
    let mut period = json!({"start": start});
    if let Some(e) = end {
        period["end"] = json!(e);
    }
    json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{doctor}")}}],
        "period": period})
}

pub(crate) fn coverage(patient: &str, card: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Coverage", "status": "active",
        "identifier": [{"system": "http://fhir.ehealth.gov.vn/core/sid/insurance_number", "value": card}],
        "beneficiary": {"reference": format!("Patient/{patient}")},
        "payor": [{"display": "BHXH Việt Nam"}],
        "period": {"start": start, "end": end}})
}

pub(crate) fn charge(patient: &str, encounter: &str, code: &str, qty: i64, day: &str) -> Value {
    json!({"resourceType": "ChargeItem", "status": "billable",
        "code": {"coding": [{"system": SERVICE_CODE, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "context": {"reference": format!("Encounter/{encounter}")},
        "occurrenceDateTime": day, "quantity": {"value": qty}})
}

/// The amount of the `code` price component of an invoice's totals.
pub(crate) fn total(invoice: &Value, code: &str) -> i64 {
    invoice["totalPriceComponent"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["code"]["coding"][0]["code"] == code))
        .and_then(|c| c["amount"]["value"].as_i64())
        .unwrap_or_else(|| panic!("no {code} total: {invoice}"))
}

pub(crate) fn line(invoice: &Value, n: usize, code: &str) -> i64 {
    invoice["lineItem"][n]["priceComponent"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["code"]["coding"][0]["code"] == code))
        .and_then(|c| c["amount"]["value"].as_i64())
        .unwrap_or_else(|| panic!("no {code} on line {n}: {invoice}"))
}

pub(crate) async fn issue(
    cashier: &reqwest::Client,
    app: &TestApp,
    encounter: &str,
) -> (u16, Value) {
    send(
        cashier,
        app,
        "Invoice/$issue",
        &parameters(json!([{"name": "encounter", "valueReference": {"reference": format!("Encounter/{encounter}")}}])),
    )
    .await
}

async fn charges_from_the_price_list_become_an_invoice_split_by_bhyt(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000980")).await;
    let binh = app.create(patient_an("051085000981")).await;
    app.create(coverage(&an, "DN4510123456789", "2026-01-01", "2026-12-31"))
        .await;
    let hung = app
        .create(
            json!({"resourceType": "Practitioner", "name": [{"family": "Lê", "given": ["Hùng"]}]}),
        )
        .await;
    let mai = app
        .create(
            json!({"resourceType": "Practitioner", "name": [{"family": "Trần", "given": ["Mai"]}]}),
        )
        .await;
    let admin = app.client_for(Role::Admin, None, None);
    let doctor = app.client_for(Role::Clinician, None, Some(&hung));
    let other_doctor = app.client_for(Role::Clinician, None, Some(&mai));
    let cashier = app.client_for(Role::Cashier, None, None);

    // The price list is the admins'; one price per code and day.
    for (code, cat, price, bhyt) in [
        ("KB.01", Category::Service, 50_600, Some(50_600)),
        ("CDHA.CT", Category::Service, 536_000, Some(536_000)),
        ("T.VITA", Category::Drug, 5_000, None),
    ] {
        let (s, d) = send(
            &admin,
            &app,
            "ChargeItemDefinition",
            &definition(code, code, cat, price, bhyt, "2026-01-01"),
        )
        .await;
        assert_eq!(s, 201, "{d}");
        assert_eq!(d["url"], format!("urn:hospital:price:{code}"));
    }
    let (s, _) = send(
        &doctor,
        &app,
        "ChargeItemDefinition",
        &definition("X.1", "x", Category::Supply, 1, None, "2026-01-01"),
    )
    .await;
    assert_eq!(s, 403, "a clinician does not set prices");
    let (s, o) = send(
        &admin,
        &app,
        "ChargeItemDefinition",
        &definition(
            "KB.01",
            "KB",
            Category::Service,
            60_000,
            Some(60_000),
            "2026-06-01",
        ),
    )
    .await;
    assert_eq!(s, 422, "two prices of one code on one day: {o}");

    // Charges: by a clinician of the encounter, priced by the list in force that day.
    let enc = app
        .create(encounter(
            &an,
            &hung,
            "AMB",
            "2026-08-01T08:00:00+07:00",
            None,
        ))
        .await;
    let mut ids = Vec::new();
    for (code, qty) in [("KB.01", 1), ("CDHA.CT", 1), ("T.VITA", 10)] {
        let (s, c) = send(
            &doctor,
            &app,
            "ChargeItem",
            &charge(&an, &enc, code, qty, "2026-08-01"),
        )
        .await;
        assert_eq!(s, 201, "{c}");
        assert_eq!(
            c["definitionCanonical"][0],
            format!("urn:hospital:price:{code}|2026-01-01")
        );
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let before = app.store.count(Some("ChargeItem")).await.unwrap();
    for (who, body, want, code, says) in [
        (
            &other_doctor,
            charge(&an, &enc, "KB.01", 1, "2026-08-01"),
            403,
            "AZ_01",
            "a clinician charges only for an encounter they take part in",
        ),
        (
            &doctor,
            charge(&an, &enc, "NO.SUCH", 1, "2026-08-01"),
            422,
            "BR_01",
            "the price list has no price of `NO.SUCH` in force on 2026-08-01",
        ),
        (
            &doctor,
            charge(&an, &enc, "KB.01", 1, "2025-08-01"),
            422,
            "BR_01",
            "the price list has no price of `KB.01` in force on 2025-08-01",
        ),
        (
            &doctor,
            charge(&an, &enc, "KB.01", 0, "2026-08-01"),
            400,
            "IR_01",
            "a quantity is a whole number from 1 to 10000",
        ),
        (
            &doctor,
            charge(&binh, &enc, "KB.01", 1, "2026-08-01"),
            400,
            "IR_01",
            "the charge's patient is not its encounter's",
        ),
    ] {
        let (s, o) = send(who, &app, "ChargeItem", &body).await;
        assert_eq!(s, want, "{body}: {o}");
        assert_eq!(o["resourceType"], "OperationOutcome");
        assert_eq!(
            (
                o["issue"][0]["details"]["coding"][0]["code"].as_str(),
                o["issue"][0]["diagnostics"].as_str()
            ),
            (Some(code), Some(says)),
            "{body}"
        );
    }
    assert_eq!(
        app.store.count(Some("ChargeItem")).await.unwrap(),
        before,
        "nothing kept"
    );

    // The invoice: card level 4 pays 80 % of the covered cost (586,600 is above the
    // small-visit threshold, 15 % of 2,530,000), the vitamins are self-pay.
    let (s, doctor_try) = issue(&doctor, &app, &enc).await;
    assert_eq!(s, 403, "{doctor_try}");
    let (s, inv) = issue(&cashier, &app, &enc).await;
    assert_eq!(s, 200, "{inv}");
    assert_eq!(inv["status"], "issued");
    assert_eq!(inv["totalGross"]["value"], 636_600);
    assert_eq!(total(&inv, "covered"), 586_600);
    assert_eq!(total(&inv, "bhyt-fund"), 469_280);
    assert_eq!(total(&inv, "copay"), 117_320);
    assert_eq!(total(&inv, "self-pay"), 50_000);
    assert_eq!(inv["totalNet"]["value"], 167_320);
    let lines = inv["lineItem"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    let gross: i64 = (0..3).map(|n| line(&inv, n, "total")).sum();
    let fund: i64 = (0..3).map(|n| line(&inv, n, "bhyt-fund")).sum();
    assert_eq!((gross, fund), (636_600, 469_280), "lines and totals agree");
    for n in 0..3 {
        assert_eq!(
            line(&inv, n, "total"),
            line(&inv, n, "covered") + line(&inv, n, "self-pay")
        );
    }
    let inv_id = inv["id"].as_str().unwrap().to_owned();
    ident(&inv, "urn:hospital:payment-code");
    // Created and then billed in one transaction, the charges are indexed as they are now.
    let found = app
        .search_ids(&format!("ChargeItem?context=Encounter/{enc}"))
        .await;
    assert_eq!(found.len(), 3);
    let (_, by_code) = get(&cashier, &app, "ChargeItem?code=CDHA.CT").await;
    assert_eq!(by_code["entry"][0]["resource"]["status"], "billed");

    // The charges are billed: not invoiced twice, not changed by a client.
    let (s, o) = issue(&cashier, &app, &enc).await;
    assert_eq!(s, 422, "{o}");
    let (_, c0) = app.get_json(&format!("ChargeItem/{}", ids[0])).await;
    assert_eq!(c0["status"], "billed");
    let mut edited = c0.clone();
    edited["quantity"] = json!({"value": 2});
    let r = doctor
        .put(app.url(&format!("ChargeItem/{}", ids[0])))
        .header("content-type", FHIR)
        .body(edited.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // A price change never alters a past invoice.
    let (_, mut old) = get(
        &admin,
        &app,
        "ChargeItemDefinition?url=urn:hospital:price:KB.01",
    )
    .await;
    let mut old = old["entry"][0]["resource"].take();
    old["effectivePeriod"]["end"] = json!("2026-08-31");
    let r = admin
        .put(app.url(&format!(
            "ChargeItemDefinition/{}",
            old["id"].as_str().unwrap()
        )))
        .header("content-type", FHIR)
        .body(old.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = send(
        &admin,
        &app,
        "ChargeItemDefinition",
        &definition(
            "KB.01",
            "KB",
            Category::Service,
            60_000,
            Some(60_000),
            "2026-09-01",
        ),
    )
    .await;
    assert_eq!(s, 201);
    let (_, same) = app.get_json(&format!("Invoice/{inv_id}")).await;
    assert_eq!(same, inv, "the issued invoice is as it was");

    // A correction: cancel (with a reason), then a new invoice of the same charges.
    let (s, o) = send(
        &cashier,
        &app,
        &format!("Invoice/{inv_id}/$cancel"),
        &parameters(json!([])),
    )
    .await;
    assert_eq!(s, 400, "a reason is required: {o}");
    let (s, cancelled) = send(
        &cashier,
        &app,
        &format!("Invoice/{inv_id}/$cancel"),
        &parameters(json!([{"name": "reason", "valueString": "thiếu thẻ BHYT đúng tuyến"}])),
    )
    .await;
    assert_eq!(
        (s, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    let (s, again) = issue(&cashier, &app, &enc).await;
    assert_eq!(s, 200, "{again}");
    assert_ne!(again["id"], inv["id"]);
    assert_eq!(
        again["totalNet"]["value"], 167_320,
        "the charges' day keeps the old price"
    );
    let (s, _) = send(
        &cashier,
        &app,
        &format!("Invoice/{inv_id}/$cancel"),
        &parameters(json!([{"name": "reason", "valueString": "again"}])),
    )
    .await;
    assert_eq!(s, 409, "a cancelled invoice stays cancelled");

    // The patient reads their own invoices (both kept), and no one else's.
    let me = app.client_for(Role::Patient, Some(&an), None);
    let (s, mine) = get(&me, &app, "Invoice").await;
    assert_eq!((s, mine["entry"].as_array().map(Vec::len)), (200, Some(2)));
    let binh_c = app.client_for(Role::Patient, Some(&binh), None);
    let (s, _) = get(&binh_c, &app, &format!("Invoice/{inv_id}")).await;
    assert_eq!(s, 404);
    app.stop().await;
}

async fn expired_coverage_is_self_pay_except_within_the_grace_of_a_stay(b: Backend) {
    let app = spawn_app(b).await;
    let chau = app.create(patient_an("051085000982")).await;
    // A card that ran out on 31 May.
    app.create(coverage(
        &chau,
        "DN4510123456780",
        "2026-01-01",
        "2026-05-31",
    ))
    .await;
    let doc = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê"}]}))
        .await;
    app.create(definition(
        "KB.01",
        "Khám",
        Category::Service,
        50_600,
        Some(50_600),
        "2026-01-01",
    ))
    .await;
    app.create(definition(
        "GB.NOI",
        "Giường",
        Category::Service,
        217_800,
        Some(217_800),
        "2026-01-01",
    ))
    .await;
    let cashier = app.client_for(Role::Cashier, None, None);

    // An outpatient visit in August: self-pay, and the invoice says why.
    let visit = app
        .create(encounter(
            &chau,
            &doc,
            "AMB",
            "2026-08-01T08:00:00+07:00",
            None,
        ))
        .await;
    app.create(charge(&chau, &visit, "KB.01", 1, "2026-08-01"))
        .await;
    let (s, inv) = issue(&cashier, &app, &visit).await;
    assert_eq!(s, 200, "{inv}");
    assert_eq!(total(&inv, "bhyt-fund"), 0);
    assert_eq!(inv["totalNet"]["value"], 50_600);
    let expired = "card DN4 51 ******6780 expired on 2026-05-31: self-pay (the 15 days' grace after expiry is only for a treatment begun while the card was valid)";
    assert_eq!(
        inv["note"],
        json!([{"text": expired}]),
        "the reason is on the invoice, not \"no BHYT card\""
    );
    assert_eq!(
        inv["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == "urn:hospital:invoice:coverage")
            .map(|e| e["valueReference"]["display"].clone()),
        Some(json!("DN4 51 ******6780")),
        "the expired card is named"
    );
    // Five days after expiry, an outpatient visit is not a treatment begun while the card was
    // valid: self-pay too.
    let soon = app
        .create(encounter(
            &chau,
            &doc,
            "AMB",
            "2026-06-05T08:00:00+07:00",
            None,
        ))
        .await;
    app.create(charge(&chau, &soon, "KB.01", 1, "2026-06-05"))
        .await;
    let (s, inv) = issue(&cashier, &app, &soon).await;
    assert_eq!(s, 200, "{inv}");
    assert_eq!(
        (total(&inv, "bhyt-fund"), &inv["note"]),
        (0, &json!([{"text": expired}]))
    );

    // A stay begun while the card was valid and ended inside the grace: covered, and why.
    let short = app
        .create(encounter(
            &chau,
            &doc,
            "IMP",
            "2026-05-28T08:00:00+07:00",
            Some("2026-06-10T10:00:00+07:00"),
        ))
        .await;
    for day in ["2026-05-29", "2026-06-10"] {
        app.create(charge(&chau, &short, "GB.NOI", 1, day)).await;
    }
    let (s, inv) = issue(&cashier, &app, &short).await;
    assert_eq!(s, 200, "{inv}");
    assert_eq!(
        (total(&inv, "bhyt-fund"), total(&inv, "self-pay")),
        (2 * 217_800 * 8 / 10, 0),
        "both days at the card's 80 %"
    );
    assert_eq!(
        inv["note"],
        json!([{"text": "card DN4 51 ******6780 expired on 2026-05-31 during the stay: it pays until discharge, at most 15 days after (rule 6 grace)"}])
    );

    // A stay begun while the card was valid: paid until discharge, at most 15 days after
    // expiry (rule 6); a day beyond that is self-pay.
    let stay = app
        .create(encounter(
            &chau,
            &doc,
            "IMP",
            "2026-05-25T08:00:00+07:00",
            Some("2026-06-20T10:00:00+07:00"),
        ))
        .await;
    for day in ["2026-05-26", "2026-06-15", "2026-06-16"] {
        app.create(charge(&chau, &stay, "GB.NOI", 1, day)).await;
    }
    let (s, inv) = issue(&cashier, &app, &stay).await;
    assert_eq!(s, 200, "{inv}");
    let by_day: Vec<(String, i64)> = inv["lineItem"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(n, l)| {
            let day = l["extension"][0]["extension"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["url"] == "date")
                .unwrap()["valueDate"]
                .as_str()
                .unwrap()
                .to_owned();
            (day, line(&inv, n, "bhyt-fund"))
        })
        .collect();
    for (day, fund) in &by_day {
        if day.as_str() <= "2026-06-15" {
            assert!(*fund > 0, "{day} is inside the grace: {by_day:?}");
        } else {
            assert_eq!(*fund, 0, "{day} is past it: {by_day:?}");
        }
    }
    assert_eq!(
        inv["note"],
        json!([{"text": "card DN4 51 ******6780 expired on 2026-05-31 during the stay: it pays until discharge, at most 15 days after (to 2026-06-15); care after that is self-pay"}])
    );
    app.stop().await;
}

/// The coverage of the card or personal ID the patient shows the cashier is looked up by it
/// (records' gRPC), on `Invoice/$issue` and on billing's gRPC `CreateInvoice`; one that
/// belongs to another patient, or that records does not know, is refused with nothing issued.
async fn a_card_or_personal_id_shown_at_the_desk_must_be_the_patients(b: Backend) {
    use hospital_proto::billing::v1 as pb;
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000977")).await;
    let binh = app.create(patient_an("051085000978")).await;
    // Chi has a personal ID and no card.
    app.create(patient_an("051085000979")).await;
    app.create(coverage(&an, "CK2510123456701", "2026-01-01", "2026-12-31"))
        .await;
    app.create(coverage(
        &binh,
        "DN4510123456702",
        "2026-01-01",
        "2026-12-31",
    ))
    .await;
    let doc = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê"}]}))
        .await;
    app.create(definition(
        "CDHA.CT",
        "Chụp CT",
        Category::Service,
        536_000,
        Some(536_000),
        "2026-01-01",
    ))
    .await;
    let visit = app
        .create(encounter(
            &an,
            &doc,
            "AMB",
            "2026-08-01T08:00:00+07:00",
            None,
        ))
        .await;
    app.create(charge(&an, &visit, "CDHA.CT", 1, "2026-08-01"))
        .await;
    let cashier = app.client_for(Role::Cashier, None, None);
    let issue_with = |shown: Value| {
        let cashier = cashier.clone();
        let visit = visit.clone();
        let app = &app;
        async move {
            let mut parts = vec![json!({"name": "encounter",
                "valueReference": {"reference": format!("Encounter/{visit}")}})];
            if let Value::Array(more) = shown {
                parts.extend(more);
            }
            send(
                &cashier,
                app,
                "Invoice/$issue",
                &parameters(Value::Array(parts)),
            )
            .await
        }
    };
    let card = |n: &str| json!([{"name": "card-number", "valueString": n}]);
    let personal = |n: &str| json!([{"name": "national-id", "valueString": n}]);
    let another = format!("belongs to another patient, not to Patient/{an}");
    for (what, shown, status, code, says) in [
        (
            "Bình's card",
            card("DN4510123456702"),
            422,
            "BL_04",
            format!("the BHYT card shown {another}"),
        ),
        (
            "Bình's personal ID",
            personal("051085000978"),
            422,
            "BL_04",
            format!("the personal ID shown {another}"),
        ),
        (
            "a card records does not know",
            card("DN4510999999999"),
            422,
            "BL_05",
            "the records service knows no BHYT coverage for the BHYT card shown".to_owned(),
        ),
        (
            "Chi's personal ID (no coverage)",
            personal("051085000979"),
            422,
            "BL_05",
            "the records service knows no BHYT coverage for the personal ID shown".to_owned(),
        ),
        (
            "not a card number",
            card("DN45"),
            400,
            "IR_01",
            "a BHYT card number is 15 characters: 2 letters, a benefit digit 1-5, 12 digits"
                .to_owned(),
        ),
        (
            "both",
            json!([{"name": "card-number", "valueString": "CK2510123456701"},
                {"name": "national-id", "valueString": "051085000977"}]),
            400,
            "IR_01",
            "give the `card-number` or the `national-id` the patient showed, not both".to_owned(),
        ),
    ] {
        let was = app.versions().await;
        let (s, o) = issue_with(shown).await;
        assert_eq!(s, status, "{what}: {o}");
        assert_eq!(
            (
                o["issue"][0]["details"]["coding"][0]["code"].as_str(),
                o["issue"][0]["diagnostics"].as_str()
            ),
            (Some(code), Some(says.as_str())),
            "{what}"
        );
        assert_eq!(app.versions().await, was, "{what}: nothing issued");
    }

    // An's own card, in the odd spacing a cashier types: the fund pays its level (CK2: 100 %).
    let (s, inv) = issue_with(card("ck2 51 0123456701")).await;
    assert_eq!(s, 200, "{inv}");
    assert_eq!(
        (total(&inv, "bhyt-fund"), inv["totalNet"]["value"].as_i64()),
        (536_000, Some(0))
    );
    assert!(inv.to_string().contains("CK2 51 ******6701"), "{inv}");
    let (s, c) = send(
        &cashier,
        &app,
        &format!("Invoice/{}/$cancel", inv["id"].as_str().unwrap()),
        &parameters(json!([{"name": "reason", "valueString": "xuất lại theo CCCD"}])),
    )
    .await;
    assert_eq!(s, 200, "{c}");
    // An's personal ID instead of the card: the same coverage.
    let (s, inv) = issue_with(personal("051085000977")).await;
    assert_eq!(s, 200, "{inv}");
    assert!(inv.to_string().contains("CK2 51 ******6701"), "{inv}");

    // Over gRPC, the same rule.
    let service = mint(Role::Service, "telemedicine", None, None, None);
    let mut c = billing_client(&app).await;
    let other = app
        .create(encounter(
            &an,
            &doc,
            "AMB",
            "2026-08-02T08:00:00+07:00",
            None,
        ))
        .await;
    let create = |shown| pb::CreateInvoiceRequest {
        idempotency_key: format!("shown-{other}"),
        subject: Some(pb::create_invoice_request::Subject::EncounterId(
            other.clone(),
        )),
        charges: vec![pb::Charge {
            code: "CDHA.CT".into(),
            quantity: 1,
            date: "2026-08-02".into(),
            on_request: false,
        }],
        deposit_amount: 0,
        shown: Some(shown),
        prepaid_appointment_id: String::new(),
    };
    let was = app.versions().await;
    let e = c
        .create_invoice(authed(
            create(pb::create_invoice_request::Shown::CardNumber(
                "DN4510123456702".into(),
            )),
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert_eq!(e.metadata().get("hospital-error-code").unwrap(), "BL_04");
    assert_eq!(app.versions().await, was, "no charge, no invoice");
    let ok = c
        .create_invoice(authed(
            create(pb::create_invoice_request::Shown::NationalId(
                "051085000977".into(),
            )),
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.total_gross, ok.total_net), (536_000, 0));
    app.stop().await;
}

/// A credit in the queue (unmatched) to settle.
async fn waiting(cashier: &reqwest::Client, app: &TestApp) -> Vec<(String, String, i64)> {
    let (s, q) = get(cashier, app, "PaymentNotice/$queue").await;
    assert_eq!(s, 200, "{q}");
    q["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let part = |n: &str| {
                p["part"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["name"] == n)
                    .unwrap()
                    .clone()
            };
            (
                p["name"].as_str().unwrap().to_owned(),
                part("notice")["valueReference"]["reference"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("PaymentNotice/")
                    .to_owned(),
                part("amount")["valueMoney"]["value"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn deposit(cashier: &reqwest::Client, app: &TestApp, patient: &str, amount: i64) -> Value {
    let (s, inv) = send(
        cashier,
        app,
        "Invoice/$issue",
        &parameters(json!([
            {"name": "patient", "valueReference": {"reference": format!("Patient/{patient}")}},
            {"name": "deposit", "valueMoney": {"value": amount, "currency": "VND"}}])),
    )
    .await;
    assert_eq!(s, 200, "{inv}");
    inv
}

async fn the_cashier_settles_the_queue_and_reads_the_days_totals(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000983")).await;
    let binh = app.create(patient_an("051085000984")).await;
    let cashier = app.client_for(Role::Cashier, None, None);
    let admin = app.client_for(Role::Admin, None, None);

    // A transfer without a code waits for the cashier, who assigns it to the deposit.
    let dep = deposit(&cashier, &app, &an, 300_000).await;
    let dep_id = dep["id"].as_str().unwrap().to_owned();
    assert_eq!(
        post_sepay(&app, 7001, 300_000, "chuyen tien tam ung", &account).await,
        200
    );
    let q = waiting(&cashier, &app).await;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!((q[0].0.as_str(), q[0].2), ("unmatched", 300_000));
    let credit = q[0].1.clone();
    let (s, _) = get(&admin, &app, "PaymentNotice/$queue").await;
    assert_eq!(s, 403, "the queue is the cashiers'");
    // Two cashiers assign it at once: one does.
    let assign = |to: String| {
        let c = cashier.clone();
        let app = &app;
        let credit = credit.clone();
        async move {
            send(&c, app, &format!("PaymentNotice/{credit}/$assign"),
                &parameters(json!([{"name": "invoice", "valueReference": {"reference": format!("Invoice/{to}")}}]))).await
        }
    };
    let other = deposit(&cashier, &app, &binh, 300_000).await;
    let (a, b2) = tokio::join!(
        assign(dep_id.clone()),
        assign(other["id"].as_str().unwrap().to_owned())
    );
    let mut statuses = [a.0, b2.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b2:?}");
    let paid = [
        status_of(&app, &dep_id).await,
        status_of(&app, other["id"].as_str().unwrap()).await,
    ];
    assert_eq!(
        paid.iter().filter(|s| *s == "balanced").count(),
        1,
        "{paid:?}"
    );
    assert!(waiting(&cashier, &app).await.is_empty());

    // Overpaid: the excess waits to be refunded, by hand, once, with a reason.
    let (bill, code, _) = crate::billing::issued(&app, &an, 100_000).await;
    assert_eq!(post_sepay(&app, 7002, 150_000, &code, &account).await, 200);
    assert_eq!(status_of(&app, &bill).await, "balanced");
    // The bill carries what the ledger credited to it; a client cannot say otherwise.
    let (_, b) = app.get_json(&format!("Invoice/{bill}")).await;
    assert_eq!(hospital_billing::invoice::paid_of(&b), Some(150_000), "{b}");
    let mut forged = json!({"resourceType": "Invoice", "status": "issued",
        "subject": {"reference": format!("Patient/{an}")},
        "totalNet": {"value": 10_000, "currency": "VND"}});
    hospital_billing::invoice::set_paid(&mut forged, 10_000);
    let (s, f) = send(&cashier, &app, "Invoice", &forged).await;
    assert_eq!(s, 201, "{f}");
    assert_eq!(hospital_billing::invoice::paid_of(&f), Some(0));
    assert_eq!(
        crate::billing::pay_cash(&cashier, &app, f["id"].as_str().unwrap(), 10_000)
            .await
            .0,
        200,
        "still owed in full"
    );
    let q = waiting(&cashier, &app).await;
    assert_eq!(
        (q.len(), q[0].0.as_str(), q[0].2),
        (1, "to-refund", 50_000),
        "{q:?}"
    );
    let over = q[0].1.clone();
    let (s, _) = send(
        &cashier,
        &app,
        &format!("PaymentNotice/{over}/$refund"),
        &parameters(json!([])),
    )
    .await;
    assert_eq!(s, 400, "a refund says why");
    let why =
        parameters(json!([{"name": "reason", "valueString": "trả lại tiền mặt cho người nhà"}]));
    let (s, r) = send(
        &cashier,
        &app,
        &format!("PaymentNotice/{over}/$refund"),
        &why,
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(param(&r, "amount")["valueMoney"]["value"], 50_000);
    assert!(
        param(&r, "receipt")["valueString"]
            .as_str()
            .unwrap()
            .starts_with("PT")
    );
    let (s, _) = send(
        &cashier,
        &app,
        &format!("PaymentNotice/{over}/$refund"),
        &why,
    )
    .await;
    assert_eq!(s, 409, "refunded once");
    assert!(waiting(&cashier, &app).await.is_empty());

    // Cash and card at the desk.
    let (cash_bill, _, _) = crate::billing::issued(&app, &binh, 40_000).await;
    assert_eq!(pay_cash(&cashier, &app, &cash_bill, 40_000).await.0, 200);
    let (card_bill, _, _) = crate::billing::issued(&app, &binh, 60_000).await;
    let (s, o) = send(
        &cashier,
        &app,
        &format!("Invoice/{card_bill}/$pay-cash"),
        &parameters(json!([
        {"name": "amount", "valueMoney": {"value": 60_000, "currency": "VND"}},
        {"name": "method", "valueCode": "card"}])),
    )
    .await;
    assert_eq!(s, 200, "{o}");

    // Today's totals: money in once by channel (the assignment is not new money), refunds out.
    let today = hospital_billing::invoice::vietnam_now().date().to_string();
    let (s, t) = get(
        &cashier,
        &app,
        &format!("PaymentNotice/$totals?date={today}"),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let channel = |c: &str| -> (i64, i64, i64) {
        let p = t["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "channel" && p["part"][0]["valueCode"] == c)
            .unwrap_or_else(|| panic!("no {c}: {t}"));
        (
            p["part"][1]["valueInteger"].as_i64().unwrap(),
            p["part"][2]["valueMoney"]["value"].as_i64().unwrap(),
            p["part"][4]["valueMoney"]["value"].as_i64().unwrap(),
        )
    };
    assert_eq!(channel("vietqr-sepay"), (2, 450_000, 50_000));
    assert_eq!(channel("cash"), (2, 50_000, 0));
    assert_eq!(channel("card"), (1, 60_000, 0));
    let cashless = param(&t, "cashless");
    assert_eq!(cashless["part"][0]["valueInteger"], 3);
    assert_eq!(cashless["part"][1]["valueMoney"]["value"], 510_000);
    assert_eq!(cashless["part"][2]["valueDecimal"], 0.6);
    // The indicator over a period, for the admin; not for a clinician or a patient.
    let (s, _) = get(
        &admin,
        &app,
        &format!("PaymentNotice/$totals?start={today}&end={today}"),
    )
    .await;
    assert_eq!(s, 200);
    for c in [
        app.client_for(Role::Clinician, None, None),
        app.client_for(Role::Patient, Some(&an), None),
    ] {
        let (s, _) = get(&c, &app, &format!("PaymentNotice/$totals?date={today}")).await;
        assert_eq!(s, 403);
    }
    let (s, _) = get(&admin, &app, "PaymentNotice/$totals?date=2026-13-01").await;
    assert_eq!(s, 400);

    // The patient reads their own payments and receipts, and nobody else's.
    let me = app.client_for(Role::Patient, Some(&binh), None);
    let (s, mine) = get(&me, &app, "PaymentNotice").await;
    assert_eq!(s, 200);
    let mine = mine["entry"].as_array().cloned().unwrap_or_default();
    assert!(mine.len() >= 2, "{mine:?}");
    assert!(
        mine.iter()
            .all(|e| e.to_string().contains(&format!("Patient/{binh}")))
    );
    app.stop().await;
}

async fn a_providers_statement_is_reconciled_with_the_ledger(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000985")).await;
    let cashier = app.client_for(Role::Cashier, None, None);
    let (_, code, _) = crate::billing::issued(&app, &an, 100_000).await;
    for (id, amount, memo) in [
        (8001, 100_000, code.as_str()),
        (8002, 20_000, "x"),
        (8003, 30_000, "y"),
    ] {
        assert_eq!(post_sepay(&app, id, amount, memo, &account).await, 200);
    }
    let today = hospital_billing::invoice::vietnam_now().date();
    let d = today.format("%d/%m/%Y");
    // 8001 agrees, 8002 differs in amount, 8003 is not in the statement, 8004 not in the ledger.
    let csv = format!(
        "transaction_id,date,amount,memo\n8001,{d} 09:00,100.000,{code}\n8002,{d},25000,x\n8004,{today},5000,\"lẻ, thừa\"\n"
    );
    let body = parameters(json!([
        {"name": "provider", "valueCode": "sepay"},
        {"name": "date", "valueDate": today.to_string()},
        {"name": "statement", "valueString": csv}]));
    let (s, rec) = send(&cashier, &app, "PaymentReconciliation/$import", &body).await;
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["resourceType"], "PaymentReconciliation");
    assert_eq!(rec["outcome"], "partial");
    let found: Vec<(String, String)> = rec["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["identifier"]["value"].as_str().unwrap().to_owned(),
                d["type"]["coding"][0]["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("8002".to_owned(), "amount-mismatch".to_owned()),
            ("8003".to_owned(), "missing-in-statement".to_owned()),
            ("8004".to_owned(), "missing-in-ledger".to_owned()),
        ]
    );
    // Kept, searchable; a malformed statement is refused and nothing kept.
    let kept = app
        .store
        .count(Some("PaymentReconciliation"))
        .await
        .unwrap();
    let mut bad = body.clone();
    bad["parameter"][2]["valueString"] = json!("transaction_id,date,amount\n1,2026-12-01,12a\n");
    let (s, o) = send(&cashier, &app, "PaymentReconciliation/$import", &bad).await;
    assert_eq!(s, 400, "{o}");
    assert!(o.to_string().contains("line 2"), "{o}");
    assert_eq!(
        app.store
            .count(Some("PaymentReconciliation"))
            .await
            .unwrap(),
        kept
    );
    let clinician = app.client_for(Role::Clinician, None, None);
    let (s, _) = send(&clinician, &app, "PaymentReconciliation/$import", &body).await;
    assert_eq!(s, 403);
    app.stop().await;
}

async fn billing_client(
    app: &TestApp,
) -> hospital_proto::billing::v1::billing_client::BillingClient<tonic::transport::Channel> {
    let addr = app.running.as_ref().unwrap().grpc_addrs[&hospital_core::ServiceName::Billing];
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    hospital_proto::billing::v1::billing_client::BillingClient::new(channel)
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn services_invoice_once_per_key_and_watch_the_payment_over_grpc(b: Backend) {
    use hospital_proto::billing::v1 as pb;
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000986")).await;
    let doc = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê"}]}))
        .await;
    app.create(definition(
        "KB.TX",
        "Tư vấn từ xa",
        Category::Service,
        150_000,
        None,
        "2026-01-01",
    ))
    .await;
    let visit = app
        .create(encounter(
            &an,
            &doc,
            "VR",
            "2026-12-01T08:00:00+07:00",
            None,
        ))
        .await;
    let service = mint(Role::Service, "telemedicine", None, None, None);
    let mut c = billing_client(&app).await;
    let create = pb::CreateInvoiceRequest {
        idempotency_key: format!("appointment-{visit}"),
        subject: Some(pb::create_invoice_request::Subject::EncounterId(
            visit.clone(),
        )),
        charges: vec![pb::Charge {
            code: "KB.TX".into(),
            quantity: 1,
            date: "2026-12-01".into(),
            on_request: false,
        }],
        deposit_amount: 0,
        shown: None,
        prepaid_appointment_id: String::new(),
    };
    // The same call retried 20 times at once: one invoice, one charge.
    let calls = (0..20).map(|_| {
        let mut c = c.clone();
        let req = authed(create.clone(), &service);
        async move { c.create_invoice(req).await.map(|r| r.into_inner()) }
    });
    let answers = futures::future::join_all(calls).await;
    let first = answers[0].as_ref().unwrap().clone();
    for a in &answers {
        assert_eq!(a.as_ref().unwrap().id, first.id, "{a:?}");
    }
    assert_eq!(app.store.count(Some("Invoice")).await.unwrap(), 1);
    assert_eq!(app.store.count(Some("ChargeItem")).await.unwrap(), 1);
    assert_eq!(
        (first.status.as_str(), first.total_net),
        ("issued", 150_000)
    );
    assert!(first.payment_code.starts_with("VP") && first.payment_page_url.contains("/pay/"));

    // Bad requests get precise codes and change nothing.
    let mut keyless = create.clone();
    keyless.idempotency_key.clear();
    let e = c
        .create_invoice(authed(keyless, &service))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut unpriced = create.clone();
    unpriced.idempotency_key = "other".into();
    unpriced.charges[0].code = "NO.SUCH".into();
    let e = c
        .create_invoice(authed(unpriced, &service))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let patient = mint(Role::Patient, "an", Some(&an), None, None);
    let mut own = create.clone();
    own.idempotency_key = "mine".into();
    let e = c.create_invoice(authed(own, &patient)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // An appointment is prepaid by a prepayment (a patient with charges), not by an
    // encounter's invoice; and it is named by a FHIR id.
    let mut prepays = create.clone();
    prepays.idempotency_key = "prepays-an-encounter".into();
    prepays.prepaid_appointment_id = "a1".into();
    let e = c
        .create_invoice(authed(prepays.clone(), &service))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("prepaid by a prepayment"), "{e:?}");
    prepays.subject = Some(pb::create_invoice_request::Subject::PatientId(an.clone()));
    prepays.prepaid_appointment_id = "not an id!".into();
    let e = c
        .create_invoice(authed(prepays, &service))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert_eq!(app.store.count(Some("Invoice")).await.unwrap(), 1);

    // Watching: issued now, balanced when the bank feed arrives, then the stream ends.
    let mut watch = c
        .watch_invoice(authed(
            pb::WatchInvoiceRequest {
                invoice_id: first.id.clone(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    let now = watch.message().await.unwrap().unwrap();
    assert_eq!(
        (now.status.as_str(), now.paid, now.r#final),
        ("issued", 0, false)
    );
    assert_eq!(
        post_sepay(
            &app,
            9001,
            150_000,
            &format!("thanh toan {}", first.payment_code),
            &account
        )
        .await,
        200
    );
    let paid = tokio::time::timeout(std::time::Duration::from_secs(5), watch.message())
        .await
        .expect("the payment is seen within seconds")
        .unwrap()
        .unwrap();
    assert_eq!(
        (paid.status.as_str(), paid.paid, paid.r#final),
        ("balanced", 150_000, true)
    );
    assert!(
        watch.message().await.unwrap().is_none(),
        "the stream ends when final"
    );
    let got = c
        .get_invoice(authed(
            pb::GetInvoiceRequest {
                invoice_id: first.id.clone(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status, "balanced");
    let e = c
        .cancel_invoice(authed(
            pb::CancelInvoiceRequest {
                invoice_id: first.id.clone(),
                reason: "x".into(),
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "a paid invoice is not cancelled: {e:?}"
    );

    // A deposit, cancelled unpaid; the day's totals.
    let dep = c
        .create_invoice(authed(
            pb::CreateInvoiceRequest {
                idempotency_key: "deposit-1".into(),
                subject: Some(pb::create_invoice_request::Subject::PatientId(an.clone())),
                charges: vec![],
                deposit_amount: 500_000,
                shown: None,
                prepaid_appointment_id: String::new(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    let cancelled = c
        .cancel_invoice(authed(
            pb::CancelInvoiceRequest {
                invoice_id: dep.id.clone(),
                reason: "hết hạn thanh toán".into(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, "cancelled");
    let t = c
        .get_day_totals(authed(
            pb::GetDayTotalsRequest {
                date: String::new(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (t.received_count, t.received, t.cashless),
        (1, 150_000, 150_000)
    );
    assert_eq!(t.channels[0].channel, "vietqr-sepay");
    app.stop().await;
}

/// A browser-like client signed in as `user`: its session cookie.
pub(crate) async fn signed_in(
    app: &TestApp,
    user: &str,
    password: &str,
) -> (reqwest::Client, String, String) {
    let web = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = app.base.trim_end_matches("/fhir").to_owned();
    let form = web.get(format!("{base}/signin")).send().await.unwrap();
    let cookie = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap().to_owned())
            .unwrap()
    };
    let pre = cookie(&form, "hospital_signin");
    let html = form.text().await.unwrap();
    let csrf = hidden(&html);
    let ok = web
        .post(format!("{base}/signin"))
        .header(reqwest::header::COOKIE, pre)
        .form(&[
            ("username", user),
            ("password", password),
            ("csrf", &csrf),
            ("return_to", "/staff/billing"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let session = cookie(&ok, "hospital_session");
    (web, session, base)
}

fn hidden(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn the_cashiers_page_works_the_desk_through_the_same_rules(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000987")).await;
    let (bill_id, _, bill) = crate::billing::issued(&app, &an, 120_000).await;
    let (cash_id, _, _) = crate::billing::issued(&app, &an, 30_000).await;
    assert_eq!(
        post_sepay(&app, 9501, 120_000, "chuyen khoan vien phi", &account).await,
        200
    );
    let (web, session, base) = signed_in(&app, "thungan", "thungan-demo").await;
    let get_page = |path: String| {
        let web = web.clone();
        let session = session.clone();
        async move {
            let r = web
                .get(path)
                .header(reqwest::header::COOKIE, session)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, html) = get_page(format!("{base}/staff/billing")).await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains(&bill), "the open invoice is listed: {html}");
    assert!(
        html.contains("chuyen khoan vien phi"),
        "the unmatched credit is queued"
    );
    assert!(
        html.contains("Nguyễn Văn An"),
        "staff see the patient's name"
    );
    let csrf = hidden(&html);
    let notice_marker = "name=\"notice\" value=\"";
    let at = html.find(notice_marker).unwrap() + notice_marker.len();
    let notice = html[at..].split('"').next().unwrap().to_owned();
    let post = |path: &str, form: Vec<(&str, String)>| {
        web.post(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, session.clone())
            .form(&form)
            .send()
    };
    // Without the session's CSRF token nothing happens.
    let r = post(
        "/staff/billing/assign",
        vec![
            ("csrf", "forged".into()),
            ("notice", notice.clone()),
            ("bill", bill.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(status_of(&app, &bill_id).await, "issued");
    // Assigning the credit by bill number (in odd case) pays the bill.
    let r = post(
        "/staff/billing/assign",
        vec![
            ("csrf", csrf.clone()),
            ("notice", notice.clone()),
            ("bill", bill.to_lowercase()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(status_of(&app, &bill_id).await, "balanced");
    // Cash at the desk, and the day's totals and receipts on the page.
    let r = post(
        "/staff/billing/pay",
        vec![
            ("csrf", csrf.clone()),
            ("invoice", cash_id.clone()),
            ("amount", "30.000".into()),
            ("method", "cash".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let msg = r.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("msg="), "{msg}");
    assert_eq!(status_of(&app, &cash_id).await, "balanced");
    let (_, html) = get_page(format!("{base}/staff/billing")).await;
    assert!(html.contains("data-channel=\"cash\""), "{html}");
    assert!(html.contains("data-channel=\"vietqr-sepay\""), "{html}");
    let receipts = html.find("id=\"receipts\"").unwrap();
    let href = "href=\"/staff/billing/receipts/";
    let at = html[receipts..].find(href).unwrap() + receipts + href.len();
    let receipt_id = html[at..].split('"').next().unwrap().to_owned();
    let (s, receipt) = get_page(format!("{base}/staff/billing/receipts/{receipt_id}")).await;
    assert_eq!(s, 200);
    assert!(
        receipt.contains("PT") && receipt.contains("window.print()"),
        "{receipt}"
    );
    // A patient's session is refused the page.
    let (web2, patient_session, _) = signed_in(&app, "an", "an-demo").await;
    let r = web2
        .get(format!("{base}/staff/billing"))
        .header(reqwest::header::COOKIE, patient_session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // An admin sees the figures and the indicator, not the queue.
    let (web3, admin_session, _) = signed_in(&app, "quantri", "quantri-demo").await;
    let r = web3
        .get(format!("{base}/staff/billing"))
        .header(reqwest::header::COOKIE, admin_session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"indicator\"") && !html.contains("id=\"unmatched\""),
        "{html}"
    );
    app.stop().await;
}

/// More charges than one page of a search: the invoice takes every one, not the first page.
async fn a_long_stay_is_invoiced_with_every_charge(b: Backend) {
    let app = spawn_app(b).await;
    let dung = app.create(patient_an("051085000988")).await;
    let doc = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê"}]}))
        .await;
    app.create(definition(
        "T.PARA500",
        "Paracetamol",
        Category::Drug,
        500,
        None,
        "2026-01-01",
    ))
    .await;
    let stay = app
        .create(encounter(
            &dung,
            &doc,
            "IMP",
            "2026-08-01T08:00:00+07:00",
            Some("2026-08-30T08:00:00+07:00"),
        ))
        .await;
    let entries: Vec<Value> = (0..1000)
        .map(|_| {
            json!({"resource": charge(&dung, &stay, "T.PARA500", 1, "2026-08-02"),
            "request": {"method": "POST", "url": "ChargeItem"}})
        })
        .collect();
    let (s, _, o) = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(s, 200, "{o}");
    app.create(charge(&dung, &stay, "T.PARA500", 3, "2026-08-03"))
        .await;
    let cashier = app.client_for(Role::Cashier, None, None);
    let (s, inv) = issue(&cashier, &app, &stay).await;
    assert_eq!(s, 200, "{inv}");
    assert_eq!(inv["lineItem"].as_array().map(Vec::len), Some(1001));
    assert_eq!(inv["totalGross"]["value"], 1003 * 500);
    app.stop().await;
}

/// A bill of three lines for a new patient with a BHYT card (benefit 4, in force): an
/// examination and a head CT shared 80/20, ten vitamin tablets self-pay. Its id and body:
/// 636.600 ₫ in all, the fund 469.280 ₫, the patient 167.320 ₫.
pub(crate) async fn bill_with_lines(app: &TestApp, national_id: &str) -> (String, Value) {
    let patient = app.create(patient_an(national_id)).await;
    let card = format!("DN4510{}", &national_id[3..]);
    app.create(coverage(&patient, &card, "2026-01-01", "2026-12-31"))
        .await;
    let doc = app
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Lê"}]}))
        .await;
    for (code, title, cat, price, bhyt) in [
        (
            "KB.01",
            "Khám bệnh",
            Category::Service,
            50_600,
            Some(50_600),
        ),
        (
            "CDHA.CT",
            "Chụp CT sọ não",
            Category::Service,
            536_000,
            Some(536_000),
        ),
        ("T.VITA", "Vitamin C 500mg", Category::Drug, 5_000, None),
    ] {
        app.create(definition(code, title, cat, price, bhyt, "2026-01-01"))
            .await;
    }
    let visit = app
        .create(encounter(
            &patient,
            &doc,
            "AMB",
            "2026-08-01T08:00:00+07:00",
            None,
        ))
        .await;
    for (code, qty) in [("KB.01", 1), ("CDHA.CT", 1), ("T.VITA", 10)] {
        app.create(charge(&patient, &visit, code, qty, "2026-08-01"))
            .await;
    }
    let cashier = app.client_for(Role::Cashier, None, None);
    let (s, inv) = issue(&cashier, app, &visit).await;
    assert_eq!(s, 200, "{inv}");
    assert_eq!(inv["totalNet"]["value"], 167_320);
    (inv["id"].as_str().unwrap().to_owned(), inv)
}
