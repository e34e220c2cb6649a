//! Billing through the FHIR door: an Invoice gets its bill number, payment code and payment
//! page token from billing, and `$payment-qr` gives what a bank app needs to pay it.

use crate::common::*;
use base64::Engine as _;
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    an_issued_invoice_gets_its_codes_and_a_payment_qr_a_bank_app_reads,
);

fn param<'a>(params: &'a Value, name: &str) -> &'a Value {
    params["parameter"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name}: {params}"))
}

fn ident<'a>(invoice: &'a Value, system: &str) -> &'a str {
    invoice["identifier"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["system"] == system))
        .and_then(|i| i["value"].as_str())
        .unwrap_or_else(|| panic!("no {system} identifier: {invoice}"))
}

async fn an_issued_invoice_gets_its_codes_and_a_payment_qr_a_bank_app_reads(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000970")).await;
    let binh = app.create(patient_an("051085000971")).await;
    let cashier = app.client_for(Role::Cashier, None, None);
    let invoice = json!({"resourceType": "Invoice", "status": "issued",
        "subject": {"reference": format!("Patient/{an}")},
        "totalGross": {"value": 1_000_000, "currency": "VND"},
        "totalNet": {"value": 250_000, "currency": "VND"}});
    let r = cashier
        .post(app.url("Invoice"))
        .header("content-type", FHIR)
        .header("prefer", "return=representation")
        .body(invoice.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let stored: Value = r.json().await.unwrap();
    let id = stored["id"].as_str().unwrap().to_owned();
    let bill = ident(&stored, "urn:hospital:bill-number").to_owned();
    let code = ident(&stored, "urn:hospital:payment-code").to_owned();
    let token = ident(&stored, "urn:hospital:payment-page").to_owned();
    assert!(bill.starts_with("HD") && bill.len() == 12, "{bill}");
    assert!(code.starts_with("VP") && code.len() == 10, "{code}");
    assert_eq!(token.len(), 22, "128 bits: {token}");

    // The codes are billing's: a client cannot choose them, nor change them.
    let mut chosen = invoice.clone();
    chosen["identifier"] = json!([{"system": "urn:hospital:payment-code", "value": "VPCHOSEN01"}]);
    let (s, _, _) = app.post("Invoice", &chosen).await;
    assert_eq!(s, 400);
    let mut edited = stored.clone();
    edited["note"] = json!([{"text": "đã gọi điện nhắc"}]);
    edited["identifier"] = json!([]);
    let (s, _, kept) = app.put(&format!("Invoice/{id}"), &edited).await;
    assert_eq!(s, 200, "{kept}");
    let (_, kept) = app.get_json(&format!("Invoice/{id}")).await;
    assert_eq!(
        ident(&kept, "urn:hospital:payment-code"),
        code,
        "kept on update"
    );
    let mut changed = kept.clone();
    changed["identifier"] = json!([{"system": "urn:hospital:payment-code", "value": "VPOTHER001"}]);
    let (s, _, _) = app.put(&format!("Invoice/{id}"), &changed).await;
    assert_eq!(s, 400);

    // What the patient's bank app needs.
    let patient = client_with(&mint(Role::Patient, "an", Some(&an), None, None));
    let r = patient
        .get(app.url(&format!("Invoice/{id}/$payment-qr")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let params: Value = r.json().await.unwrap();
    assert_eq!(params["resourceType"], "Parameters");
    let payload = param(&params, "payload")["valueString"].as_str().unwrap();
    assert_eq!(param(&params, "code")["valueString"], code);
    assert_eq!(
        param(&params, "amount")["valueMoney"],
        json!({"value": 250_000, "currency": "VND"})
    );
    let url = param(&params, "url")["valueUrl"].as_str().unwrap();
    assert!(url.ends_with(&format!("/pay/{token}")), "{url}");
    let decoded = hospital_billing::vietqr::decode(payload).expect("a valid VietQR payload");
    let cfg = hospital::Config::for_tests("unused");
    assert_eq!(decoded.payment.bin, cfg.bank_bin);
    assert_eq!(decoded.payment.account, cfg.bank_account);
    assert_eq!(decoded.payment.amount, Some(250_000));
    assert_eq!(decoded.payment.bill_number.as_deref(), Some(bill.as_str()));
    assert_eq!(decoded.payment.purpose.as_deref(), Some(code.as_str()));
    assert!(decoded.dynamic);
    // The images are of exactly this payload (the billing crate's own test reads its PNG back
    // with the `png` and `rqrr` crates).
    let png = param(&params, "png")["valueAttachment"].clone();
    assert_eq!(png["contentType"], "image/png");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, hospital_billing::qr::png(payload, 8).unwrap());
    let svg = param(&params, "svg")["valueAttachment"].clone();
    assert_eq!(svg["contentType"], "image/svg+xml");

    // The payment page, with no login: the link is the credential.
    let page_url = format!("{}/pay/{token}", app.base.trim_end_matches("/fhir"));
    let r = app.anonymous.get(&page_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    for shown in [
        "250.000 ₫",
        "Nguyễn V. A.",
        &bill,
        &code,
        "<svg",
        "Chờ thanh toán",
        "750.000 ₫",
        &cfg.bank_account,
    ] {
        assert!(html.contains(shown), "the page lacks {shown}: {html}");
    }
    assert!(!html.contains("Nguyễn Văn An"), "the full name is masked");
    assert!(
        html.contains(&format!("data-payload=\"{payload}\"")),
        "the page's QR is the payload"
    );
    assert!(
        html.contains("https://dl.vietqr.io/pay?app=vcb&amp;am=250000"),
        "bank app buttons"
    );
    let english = app
        .anonymous
        .get(format!("{page_url}?lang=en"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(english.contains("Awaiting payment") && english.contains("Paid by BHYT"));
    let wrong = format!(
        "{}/pay/{}",
        app.base.trim_end_matches("/fhir"),
        "A".repeat(22)
    );
    assert_eq!(
        app.anonymous.get(&wrong).send().await.unwrap().status(),
        404
    );
    let views = app.audit_events("agent=anonymous").await;
    assert!(
        views
            .iter()
            .any(|e| e["subtype"][0]["code"] == "payment-page"
                && e["entity"][0]["what"]["reference"] == format!("Invoice/{id}")),
        "{views:#?}"
    );

    // Another patient learns nothing; a draft is not paid; the access is audited.
    let other = client_with(&mint(Role::Patient, "binh", Some(&binh), None, None));
    let r = other
        .get(app.url(&format!("Invoice/{id}/$payment-qr")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let mut draft = invoice.clone();
    draft["status"] = json!("draft");
    let draft_id = app.create(draft).await;
    let r = cashier
        .get(app.url(&format!("Invoice/{draft_id}/$payment-qr")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let trail = app
        .audit_events(&format!("patient={an}&agent=patient:an"))
        .await;
    assert!(
        trail
            .iter()
            .any(|e| e["subtype"][0]["code"] == "$payment-qr"
                && e["action"] == "R"
                && e["outcomeDesc"] == "HTTP 200"),
        "{trail:#?}"
    );
    app.stop().await;
}
