//! Billing through the FHIR door: an Invoice gets its bill number, payment code and payment
//! page token from billing, and `$payment-qr` gives what a bank app needs to pay it.

use crate::common::*;
use base64::Engine as _;
use hospital_core::auth::Role;
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    an_issued_invoice_gets_its_codes_and_a_payment_qr_a_bank_app_reads,
    bank_feeds_credit_each_payment_once_and_class_it,
    the_demo_bill_is_paid_by_simulate_payment,
    cash_at_the_desk_and_a_transfer_racing_never_both_pay_a_bill,
    failed_deliveries_and_wrong_links_are_throttled_and_live_pages_bounded,
    every_verified_delivery_is_kept_as_received_before_it_is_answered,
    vnpay_is_answered_in_its_order_of_checks_and_loses_no_money,
    signed_but_malformed_deliveries_are_refused_clearly_and_credit_nothing,
    credits_no_open_bill_takes_wait_in_the_queue_with_their_reason,
    the_payment_page_lists_each_line_with_the_bhyt_share_and_the_patients,
);

/// The doors that take no token are bounded like the others: failed signatures and links that
/// name no bill count against their client like failed sign-ins (slowed, then 429, their audit
/// rows bounded), and the live status streams a process keeps open are capped.
async fn failed_deliveries_and_wrong_links_are_throttled_and_live_pages_bounded(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.max_page_streams = 1;
    })
    .await;
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let (body, _) = casso(9001, 1000, "x", "1");
    let mut statuses = Vec::new();
    for _ in 0..14 {
        let r = app
            .anonymous
            .post(format!("{site}/webhooks/casso"))
            .header("x-forwarded-for", "198.51.100.23")
            .header("x-casso-signature", "t=1,v1=00")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(&statuses[10..], &[429; 4]);
    // The same client guessing payment links is already locked out: one throttle per client.
    let r = app
        .anonymous
        .get(format!("{site}/pay/{}", "B".repeat(22)))
        .header("x-forwarded-for", "198.51.100.23")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let trail = app.audit_events("agent=anonymous&_count=100").await;
    let from_client = trail
        .iter()
        .filter(|e| e["agent"][0]["network"]["address"] == "198.51.100.23")
        .count();
    assert_eq!(
        from_client, 11,
        "ten failures and the lock-out, not 15 rows"
    );

    // One live page at a time here: the second stream is refused until the first ends.
    let an = app.create(patient_an("051085000995")).await;
    let (invoice, _, _) = issued(&app, &an, 10_000).await;
    let (_, stored) = app.get_json(&format!("Invoice/{invoice}")).await;
    let token = ident(&stored, "urn:hospital:payment-page").to_owned();
    let events = format!("{site}/pay/{token}/events");
    let first = app.anonymous.get(&events).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = app.anonymous.get(&events).send().await.unwrap();
    assert_eq!(second.status(), 429);
    drop(first);
    let mut again = 0;
    for _ in 0..50 {
        again = app
            .anonymous
            .get(&events)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if again == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(again, 200, "a closed page frees its place");
    app.stop().await;
}

pub(crate) async fn pay_cash(
    client: &reqwest::Client,
    app: &TestApp,
    invoice: &str,
    amount: i64,
) -> (u16, Value) {
    let r = client
        .post(app.url(&format!("Invoice/{invoice}/$pay-cash")))
        .header("content-type", FHIR)
        .body(
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "amount", "valueMoney": {"value": amount, "currency": "VND"}}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn cash_at_the_desk_and_a_transfer_racing_never_both_pay_a_bill(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000990")).await;
    let cashier = app.client_for(Role::Cashier, None, None);

    // Part in cash, then too much: the second is refused and nothing is recorded.
    let (inv, _, _) = issued(&app, &an, 200_000).await;
    let (s, out) = pay_cash(&cashier, &app, &inv, 80_000).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(param(&out, "outcome")["valueCode"], "partial");
    assert!(
        param(&out, "receipt")["valueString"]
            .as_str()
            .unwrap()
            .starts_with("PT")
    );
    let (s, _) = pay_cash(&cashier, &app, &inv, 150_000).await;
    assert_eq!(s, 409, "more than is left");
    assert_eq!(notices(&app, &inv).await.len(), 1);
    let patient = client_with(&mint(Role::Patient, "an", Some(&an), None, None));
    let (s, _) = pay_cash(&patient, &app, &inv, 120_000).await;
    assert_eq!(s, 403);
    let (s, out) = pay_cash(&cashier, &app, &inv, 120_000).await;
    assert_eq!(
        (s, param(&out, "outcome")["valueCode"].clone()),
        (200, json!("paid"))
    );
    assert_eq!(status_of(&app, &inv).await, "balanced");

    // A transfer and cash for the whole bill, at once: exactly one of them pays it.
    for round in 0..3 {
        let (inv, code, _) = issued(&app, &an, 200_000).await;
        let (webhook, (cash, _)) = tokio::join!(
            post_sepay(&app, 8000 + round, 200_000, &code, &account),
            pay_cash(&cashier, &app, &inv, 200_000)
        );
        assert_eq!(webhook, 200, "a bank feed is always acknowledged");
        assert!(cash == 200 || cash == 409, "round {round}: {cash}");
        let paid: Vec<Value> = notices(&app, &inv).await;
        assert_eq!(
            paid.iter().filter(|n| outcome(n) == "paid").count(),
            1,
            "round {round}: one payment pays the bill: {paid:#?}"
        );
        assert_eq!(
            paid.len(),
            1,
            "round {round}: the other is not credited to it"
        );
        assert_eq!(status_of(&app, &inv).await, "balanced");
    }
    app.stop().await;
}

/// The newcomer's path: `seed --demo` leaves an issued bill; `simulate-payment` pays it with
/// a delivery signed as Casso signs it.
async fn the_demo_bill_is_paid_by_simulate_payment(b: Backend) {
    let app = spawn_app(b).await;
    let cfg = hospital::Config::for_tests("unused");
    hospital::seed::demo(&cfg, &app.store).await.unwrap();
    let demo = hospital::seed::demo_invoice(&app.store)
        .await
        .expect("a demo bill");
    let (s, bill) = app.get_json(&format!("Invoice/{}", demo.id)).await;
    assert_eq!((s, bill["status"].as_str()), (200, Some("issued")));
    // Priced from the list and split by BHYT: An's card (benefit 4) pays 80 % of 433,400.
    assert_eq!(bill["totalGross"]["value"], 433_400, "{bill}");
    assert_eq!(bill["lineItem"].as_array().map(Vec::len), Some(9));
    // Seeding again issues nothing new and leaves the bill as it was.
    hospital::seed::demo(&cfg, &app.store).await.unwrap();
    let again = hospital::seed::demo_invoice(&app.store).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.version_id),
        (demo.id.as_str(), demo.version_id)
    );
    let code = ident(&bill, "urn:hospital:payment-code").to_owned();
    let owed = hospital::simulate::owed_by_code(&app.store, &code)
        .await
        .unwrap();
    assert_eq!(
        owed, 86_680,
        "the co-pay the demo bill leaves for the patient"
    );
    let site = app.base.trim_end_matches("/fhir").to_owned();
    let said =
        hospital::simulate::simulate_payment(&cfg, &code.to_lowercase(), Some(owed), Some(&site))
            .await
            .unwrap();
    assert!(said.contains("success"), "{said}");
    assert_eq!(status_of(&app, &demo.id).await, "balanced");
    let err = hospital::simulate::owed_by_code(&app.store, "VP00000000")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no bill"), "{err}");
    app.stop().await;
}

pub(crate) fn param<'a>(params: &'a Value, name: &str) -> &'a Value {
    params["parameter"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name}: {params}"))
}

pub(crate) fn ident<'a>(invoice: &'a Value, system: &str) -> &'a str {
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
    // An issued invoice is never edited, by any client.
    let mut edited = stored.clone();
    edited["note"] = json!([{"text": "đã gọi điện nhắc"}]);
    edited["identifier"] = json!([]);
    let (s, _, refused) = app.put(&format!("Invoice/{id}"), &edited).await;
    assert_eq!(s, 409, "{refused}");
    let (_, kept) = app.get_json(&format!("Invoice/{id}")).await;
    assert_eq!(kept, stored, "unchanged");
    // A draft is edited, and keeps its codes.
    let mut draft = invoice.clone();
    draft["status"] = json!("draft");
    let (s, _, d) = app.post("Invoice", &draft).await;
    assert_eq!(s, 201, "{d}");
    let mut edited = d.clone();
    edited["identifier"] = json!([]);
    edited["note"] = json!([{"text": "chờ kết quả xét nghiệm"}]);
    let (s, _, e) = app
        .put(&format!("Invoice/{}", d["id"].as_str().unwrap()), &edited)
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(
        ident(&e, "urn:hospital:payment-code"),
        ident(&d, "urn:hospital:payment-code"),
        "kept on update"
    );
    let mut changed = e.clone();
    changed["identifier"] = json!([{"system": "urn:hospital:payment-code", "value": "VPOTHER001"}]);
    let (s, _, _) = app
        .put(&format!("Invoice/{}", d["id"].as_str().unwrap()), &changed)
        .await;
    assert_eq!(s, 400);

    // The CapabilityStatement says so.
    let (_, cs) = app.get_json("metadata").await;
    let invoice_ops = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Invoice")
        .map(|r| r["operation"].clone())
        .unwrap_or_default();
    assert!(
        invoice_ops.to_string().contains("\"payment-qr\""),
        "{invoice_ops}"
    );

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
    // The image is of exactly this payload, as a QR decoder written by others reads it.
    let png = param(&params, "png")["valueAttachment"].clone();
    assert_eq!(png["contentType"], "image/png");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(scan_qr(&bytes), payload);
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

/// The text of the one QR code in a PNG, read with the `png` crate and decoded by `rqrr`
/// (neither is billing's code): what a bank app's scanner would read.
fn scan_qr(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("an image");
    let channels = frame.color_type.samples();
    let luma = |x: usize, y: usize| -> u8 {
        let at = y * frame.line_size + x * channels;
        match channels {
            1 | 2 => pixels[at],
            _ => {
                let (r, g, b) = (
                    pixels[at] as u32,
                    pixels[at + 1] as u32,
                    pixels[at + 2] as u32,
                );
                ((r * 299 + g * 587 + b * 114) / 1000) as u8
            }
        }
    };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(
        frame.width as usize,
        frame.height as usize,
        luma,
    );
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the PNG");
    let (_, text) = grids[0].decode().expect("the QR code decodes");
    text
}

/// An issued Invoice for `patient` owing `owed` đồng: (id, payment code, bill number).
pub(crate) async fn issued(app: &TestApp, patient: &str, owed: i64) -> (String, String, String) {
    let r = app
        .http
        .post(app.url("Invoice"))
        .header("content-type", FHIR)
        .header("prefer", "return=representation")
        .body(
            json!({"resourceType": "Invoice", "status": "issued",
                "subject": {"reference": format!("Patient/{patient}")},
                "totalNet": {"value": owed, "currency": "VND"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        ident(&v, "urn:hospital:payment-code").to_owned(),
        ident(&v, "urn:hospital:bill-number").to_owned(),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A Casso v2 delivery, signed as Casso signs it.
pub(crate) fn casso(id: i64, amount: i64, memo: &str, account: &str) -> (String, String) {
    casso_signed_at(now_ms(), id, amount, memo, account)
}

/// A Casso v2 delivery, signed as Casso signs it at `t` (unix ms).
pub(crate) fn casso_signed_at(
    t: i64,
    id: i64,
    amount: i64,
    memo: &str,
    account: &str,
) -> (String, String) {
    let body = json!({"error": 0, "data": {"id": id, "reference": format!("FT{id}"), "description": memo,
        "amount": amount, "runningBalance": 25_000_000, "transactionDateTime": "2026-12-01 15:06:37",
        "accountNumber": account, "bankName": "VietinBank", "bankAbbreviation": "ICB",
        "virtualAccountNumber": "", "virtualAccountName": "", "counterAccountName": "NGUYEN VAN A",
        "counterAccountNumber": "8888888888", "counterAccountBankId": "970436",
        "counterAccountBankName": "Vietcombank"}});
    casso_signed(t, &body.to_string())
}

/// The Casso signature header of `body` (any text, sorted as Casso sorts it when it is JSON)
/// at `t` (unix ms): `(body, header)`.
pub(crate) fn casso_signed(t: i64, body: &str) -> (String, String) {
    let canonical = match serde_json::from_str::<Value>(body) {
        Ok(v) => hospital_core::store::sorted_json(&v),
        Err(_) => body.to_owned(),
    };
    let v1 = hospital_billing::webhooks::hmac_sha512_hex(
        b"test-casso-key",
        format!("{t}.{canonical}").as_bytes(),
    );
    (body.to_owned(), format!("t={t},v1={v1}"))
}

/// What a bank feed's delivery leaves behind: versions of resources, deliveries kept as
/// received, and webhook audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Left {
    pub versions: i64,
    pub deliveries: i64,
    pub audit_lines: usize,
}

impl Left {
    /// `self` with `deliveries` more kept and `audit_lines` more lines, nothing else.
    pub fn and(self, deliveries: i64, audit_lines: usize) -> Left {
        Left {
            versions: self.versions,
            deliveries: self.deliveries + deliveries,
            audit_lines: self.audit_lines + audit_lines,
        }
    }
}

pub(crate) async fn left(app: &TestApp) -> Left {
    let trail = app
        .store
        .audit_search(&hospital_core::store::AuditQuery {
            count: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    Left {
        versions: app.versions().await,
        deliveries: app.store.count_deliveries().await.unwrap(),
        audit_lines: trail
            .iter()
            .filter(|r| r.record.action == "webhook")
            .count(),
    }
}

pub(crate) async fn post_casso(app: &TestApp, body: &str, signature: &str) -> (u16, Value) {
    let r = app
        .anonymous
        .post(format!(
            "{}/webhooks/casso",
            app.base.trim_end_matches("/fhir")
        ))
        .header("content-type", "application/json")
        .header("x-casso-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

pub(crate) async fn post_sepay(
    app: &TestApp,
    id: i64,
    amount: i64,
    memo: &str,
    account: &str,
) -> u16 {
    post_sepay_answer(app, id, amount, memo, account).await.0
}

/// A SePay delivery (API key) and its answer.
pub(crate) fn sepay_body(id: i64, amount: i64, memo: &str, account: &str) -> String {
    json!({"id": id, "gateway": "VietinBank", "transactionDate": "2026-12-01 14:02:37",
        "accountNumber": account, "code": null, "content": memo, "transferType": "in",
        "description": format!("BankAPINotify {memo}"), "transferAmount": amount,
        "referenceCode": format!("FT{id}"), "accumulated": 19_077_000, "subAccount": null})
    .to_string()
}

pub(crate) async fn post_sepay_answer(
    app: &TestApp,
    id: i64,
    amount: i64,
    memo: &str,
    account: &str,
) -> (u16, Value) {
    post_sepay_raw(app, &sepay_body(id, amount, memo, account)).await
}

/// Posts `body` as SePay does (with its API key): the status and the answer.
pub(crate) async fn post_sepay_raw(app: &TestApp, body: &str) -> (u16, Value) {
    let r = app
        .anonymous
        .post(format!(
            "{}/webhooks/sepay",
            app.base.trim_end_matches("/fhir")
        ))
        .header("authorization", "Apikey test-sepay-key")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

pub(crate) async fn notices(app: &TestApp, invoice: &str) -> Vec<Value> {
    let (_, b) = app
        .get_json(&format!(
            "PaymentNotice?request=Invoice/{invoice}&_count=100"
        ))
        .await;
    b["entry"]
        .as_array()
        .map(|a| a.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

pub(crate) fn outcome(notice: &Value) -> &str {
    notice["extension"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["url"] == "urn:hospital:payment:outcome")
        })
        .and_then(|e| e["valueCode"].as_str())
        .unwrap_or("")
}

pub(crate) async fn status_of(app: &TestApp, invoice: &str) -> String {
    let (_, v) = app.get_json(&format!("Invoice/{invoice}")).await;
    v["status"].as_str().unwrap_or("").to_owned()
}

async fn all_notices(app: &TestApp) -> usize {
    app.store.count(Some("PaymentNotice")).await.unwrap() as usize
}

async fn bank_feeds_credit_each_payment_once_and_class_it(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000972")).await;

    // One transfer, delivered 20 times at once: one credit, and the bill is paid.
    let (inv, code, _) = issued(&app, &an, 250_000).await;
    let memo = format!(
        "MBVCB.3278907687.{} thanh toan.CT tu 0123",
        code.to_lowercase().replace("vp", "vp ")
    );
    let (body, sig) = casso(1001, 250_000, &memo, &account);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app_base, body, sig) = (app.base.clone(), body.clone(), sig.clone());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!(
                    "{}/webhooks/casso",
                    app_base.trim_end_matches("/fhir")
                ))
                .header("x-casso-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "every replay is acknowledged");
    }
    let paid = notices(&app, &inv).await;
    assert_eq!(paid.len(), 1, "credited once");
    assert_eq!(outcome(&paid[0]), "paid");
    assert_eq!(status_of(&app, &inv).await, "balanced");
    let before = all_notices(&app).await;

    // Refused before anything is read: a changed byte, an empty signature, a timestamp
    // changed after signing (so the signature no longer matches), and a delivery correctly
    // signed six minutes ago (more than the 5 minutes allowed). Each leaves one audit line and
    // nothing else: no version, no kept delivery.
    let (stale_body, stale_sig) =
        casso_signed_at(now_ms() - 360_000, 1002, 250_000, &memo, &account);
    for (what, body, sig, says) in [
        (
            "a changed byte",
            body.replace("250000", "250001"),
            sig.clone(),
            "the signature does not match the body",
        ),
        (
            "an empty signature",
            body.clone(),
            String::new(),
            "the signature does not match the body",
        ),
        (
            "a changed timestamp",
            body.clone(),
            sig.replacen("t=", "t=1", 1),
            "the signature does not match the body",
        ),
        (
            "a stale timestamp",
            stale_body,
            stale_sig,
            "the signed timestamp is more than 300 seconds from now",
        ),
    ] {
        let was = left(&app).await;
        let (s, answer) = post_casso(&app, &body, &sig).await;
        assert_eq!(s, 401, "{what}: {answer}");
        assert_eq!(
            (answer["code"].as_str(), answer["error"].as_str()),
            (Some("BL_01"), Some(says)),
            "{what}"
        );
        assert_eq!(left(&app).await, was.and(0, 1), "{what}: one audit line");
    }
    assert_eq!(
        all_notices(&app).await,
        before,
        "a refused delivery stores nothing"
    );

    // Less, then more: partial, then paid with a credit to refund.
    let (inv2, code2, _) = issued(&app, &an, 300_000).await;
    assert_eq!(post_sepay(&app, 2001, 100_000, &code2, &account).await, 200);
    assert_eq!(
        status_of(&app, &inv2).await,
        "issued",
        "a partial payment leaves it open"
    );
    assert_eq!(
        post_sepay(&app, 2002, 250_000, &format!("ck {code2}"), &account).await,
        200
    );
    let two = notices(&app, &inv2).await;
    let mut kinds: Vec<&str> = two.iter().map(outcome).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["overpaid", "partial"]);
    assert!(
        two.iter()
            .any(|n| n.to_string().contains("urn:hospital:payment:to-refund")
                && n.to_string().contains("50000"))
    );
    assert_eq!(status_of(&app, &inv2).await, "balanced");

    // Two different payments racing for one bill: both recorded, the balance right.
    let (inv3, code3, _) = issued(&app, &an, 200_000).await;
    let (a, b2) = tokio::join!(
        post_sepay(&app, 3001, 150_000, &code3, &account),
        post_sepay(&app, 3002, 150_000, &code3, &account)
    );
    assert_eq!((a, b2), (200, 200));
    let three = notices(&app, &inv3).await;
    let mut kinds: Vec<&str> = three.iter().map(outcome).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec!["overpaid", "partial"],
        "the second is classed against what is left"
    );
    assert_eq!(status_of(&app, &inv3).await, "balanced");

    // No code, a cancelled bill: unmatched credits for the cashier, bills unchanged.
    assert_eq!(
        post_sepay(&app, 4001, 99_000, "chuyen tien", &account).await,
        200
    );
    let (inv4, code4, _) = issued(&app, &an, 120_000).await;
    let (s, _, c) = app
        .post(
            &format!("Invoice/{inv4}/$cancel"),
            &json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "lập nhầm"}]}),
        )
        .await;
    assert_eq!((s, c["status"].as_str()), (200, Some("cancelled")), "{c}");
    assert_eq!(post_sepay(&app, 4002, 120_000, &code4, &account).await, 200);
    assert_eq!(status_of(&app, &inv4).await, "cancelled");
    assert!(
        notices(&app, &inv4).await.is_empty(),
        "not credited to the cancelled bill"
    );
    let before = all_notices(&app).await;

    // Signed but wrong: another account, no money, absurd amounts. A clear error; nothing
    // changes but the delivery kept as received and its audit line.
    for (id, amount, to, status, code_id, says) in [
        (
            5001,
            120_000,
            "999999999",
            422,
            "BL_03",
            "the credited account is not the hospital's receiving account".to_owned(),
        ),
        (
            5002,
            0,
            account.as_str(),
            400,
            "IR_01",
            "a credit of 0 đồng is not a payment (1 to 10¹² đồng)".to_owned(),
        ),
        (
            5003,
            -5,
            account.as_str(),
            400,
            "IR_01",
            "a credit of -5 đồng is not a payment (1 to 10¹² đồng)".to_owned(),
        ),
        (
            5004,
            10_000_000_000_000,
            account.as_str(),
            400,
            "IR_01",
            "a credit of 10000000000000 đồng is not a payment (1 to 10¹² đồng)".to_owned(),
        ),
    ] {
        let was = left(&app).await;
        let (s, answer) = post_sepay_answer(&app, id, amount, &code, to).await;
        assert_eq!(s, status, "{answer}");
        assert_eq!(
            (answer["code"].as_str(), answer["error"].as_str()),
            (Some(code_id), Some(says.as_str())),
        );
        assert_eq!(left(&app).await, was.and(1, 1), "{says}");
    }
    assert_eq!(all_notices(&app).await, before);

    // The ledger is billing's: a client can write neither a notice nor a reconciliation, nor
    // mark a bill paid.
    for body in [
        json!({"resourceType": "PaymentNotice", "status": "active",
            "created": "2026-12-01", "payment": {"display": "x"}, "recipient": {"display": "x"},
            "amount": {"value": 1, "currency": "VND"}}),
        json!({"resourceType": "PaymentReconciliation", "status": "active",
            "created": "2026-12-01", "paymentDate": "2026-12-01",
            "paymentAmount": {"value": 1, "currency": "VND"}}),
    ] {
        let rtype = body["resourceType"].as_str().unwrap();
        let was = app.versions().await;
        let (s, _, o) = app.post(rtype, &body).await;
        assert_eq!(s, 405, "{o}");
        assert_eq!(o["issue"][0]["details"]["coding"][0]["code"], "OW_02");
        assert_eq!(
            o["issue"][0]["diagnostics"],
            format!("{rtype} is written by billing from its ledger of payments, never by a client")
        );
        assert_eq!(app.versions().await, was, "{rtype}: nothing written");
    }
    let (inv5, code5, bill5) = issued(&app, &an, 80_000).await;
    let (_, mut forged) = app.get_json(&format!("Invoice/{inv5}")).await;
    forged["status"] = json!("balanced");
    let (s, _, _) = app.put(&format!("Invoice/{inv5}"), &forged).await;
    assert_eq!(s, 409, "an issued invoice is never edited");
    let mut draft = forged.clone();
    draft.as_object_mut().unwrap().remove("identifier");
    draft.as_object_mut().unwrap().remove("id");
    let (s, _, _) = app.post("Invoice", &draft).await;
    assert_eq!(
        s, 422,
        "nor created paid: only the ledger marks a bill paid"
    );
    assert_eq!(status_of(&app, &inv5).await, "issued");

    // payOS, signed as payOS signs it.
    let data = json!({"accountNumber": account, "amount": 80_000, "description": format!("CSFHLF {code5}"),
        "reference": "FT-PAYOS-1", "transactionDateTime": "2026-12-01 09:00:00", "virtualAccountNumber": "",
        "counterAccountBankId": "970436", "counterAccountBankName": "", "counterAccountName": "NGUYEN VAN A",
        "counterAccountNumber": "9876543210", "virtualAccountName": "", "currency": "VND",
        "orderCode": 123, "paymentLinkId": "link", "code": "00", "desc": "success"});
    let signature = hospital_billing::webhooks::hmac_sha256_hex(
        b"test_checksum_key",
        hospital_billing::webhooks::payos_data_text(&data).as_bytes(),
    );
    let body = json!({"code": "00", "desc": "success", "success": true, "data": data, "signature": signature});
    let r = app
        .anonymous
        .post(format!(
            "{}/webhooks/payos",
            app.base.trim_end_matches("/fhir")
        ))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&app, &inv5).await, "balanced");
    let _ = bill5;

    // VNPay's IPN, answered in its protocol and in its order of checks (each answer code in
    // `vnpay_is_answered_in_its_order_of_checks_and_loses_no_money`).
    let (inv6, _, bill6) = issued(&app, &an, 150_000).await;
    let vnpay = |q: String| {
        let app = &app;
        async move { post_vnpay(app, &q).await.0 }
    };
    assert_eq!(
        vnpay(
            vnpay_ipn(&bill6, "15000000", "1", "00")
                .replace("vnp_BankCode=NCB", "vnp_BankCode=NCC")
        )
        .await,
        "97"
    );
    assert_eq!(
        vnpay(vnpay_ipn("HD1999000001", "15000000", "2", "00")).await,
        "01"
    );
    assert_eq!(vnpay(vnpay_ipn(&bill6, "14000000", "3", "00")).await, "04");
    assert_eq!(vnpay(vnpay_ipn(&bill6, "15000000", "4", "00")).await, "00");
    assert_eq!(status_of(&app, &inv6).await, "balanced");
    assert_eq!(
        vnpay(vnpay_ipn(&bill6, "15000000", "4", "00")).await,
        "02",
        "a replay is already confirmed"
    );
    assert_eq!(notices(&app, &inv6).await.len(), 1);

    // Every delivery is audited, the refused ones too.
    let trail = app.audit_events("agent=anonymous").await;
    assert!(
        trail
            .iter()
            .any(|e| e["subtype"][0]["code"] == "webhook" && e["outcomeDesc"] == "HTTP 401")
    );
    app.stop().await;
}

/// The extension of `notice` with `url`.
fn extension<'a>(notice: &'a Value, url: &str) -> &'a Value {
    notice["extension"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == url))
        .unwrap_or_else(|| panic!("no {url}: {notice}"))
}

/// Every delivery whose signature verifies is kept as it was received (its raw bytes, the
/// provider, its transaction id, when, what became of it) before it is answered: a credit in
/// the ledger's own transaction, a replay or a refusal with its one audit line. A delivery
/// that fails verification keeps nothing. The kept deliveries are append-only.
async fn every_verified_delivery_is_kept_as_received_before_it_is_answered(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000973")).await;
    let (inv, code, _) = issued(&app, &an, 90_000).await;

    // Credited: the bytes kept with the credit, which names them.
    let (body, sig) = casso(6101, 90_000, &format!("CT {code} thanh toan"), &account);
    let was = left(&app).await;
    let (s, answer) = post_casso(&app, &body, &sig).await;
    assert_eq!(s, 200, "{answer}");
    let kept = app.store.deliveries(None, 1).await.unwrap().remove(0);
    assert_eq!(kept.raw, body.as_bytes(), "the bytes as posted");
    assert_eq!(
        (
            kept.provider.as_str(),
            kept.transaction_id.as_deref(),
            kept.outcome.as_str()
        ),
        ("casso", Some("6101"), "paid")
    );
    let age = hospital_core::store::dates::now_micros() - kept.received_at;
    assert!(
        (0..60_000_000).contains(&age),
        "received just now: {age} µs"
    );
    let credited = notices(&app, &inv).await;
    assert_eq!(
        extension(&credited[0], "urn:hospital:payment:delivery")["valueString"],
        kept.id.to_string()
    );
    let now = left(&app).await;
    assert_eq!(
        now,
        Left {
            versions: was.versions + 2,
            ..was.and(1, 1)
        },
        "the notice and the bill's new version, one delivery, one audit line"
    );

    // The same delivery again: a replay, kept as such, nothing credited.
    let (s, _) = post_casso(&app, &body, &sig).await;
    assert_eq!(s, 200);
    let replay = app.store.deliveries(None, 1).await.unwrap().remove(0);
    assert_eq!(
        (replay.raw.as_slice(), replay.outcome.as_str()),
        (body.as_bytes(), "duplicate")
    );
    assert_eq!(left(&app).await, now.and(1, 1));
    assert_eq!(notices(&app, &inv).await.len(), 1);

    // Refused, but verified: money into another account. Kept with the code that refused it.
    let wrong = sepay_body(6102, 90_000, &code, "999999999");
    let was = left(&app).await;
    let (s, answer) = post_sepay_raw(&app, &wrong).await;
    assert_eq!(
        (s, answer["code"].as_str()),
        (422, Some("BL_03")),
        "{answer}"
    );
    let refused = app
        .store
        .deliveries(Some("sepay"), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(refused.raw, wrong.as_bytes());
    assert_eq!(
        (refused.transaction_id.as_deref(), refused.outcome.as_str()),
        (Some("6102"), "refused:BL_03")
    );
    assert_eq!(left(&app).await, was.and(1, 1));

    // Money out of the account (Casso writes it negative): kept, nothing credited.
    let (out, sig) = casso(6103, -50_000, "chuyen tien ra", &account);
    let (s, _) = post_casso(&app, &out, &sig).await;
    assert_eq!(s, 200);
    let ignored = app.store.deliveries(None, 1).await.unwrap().remove(0);
    assert_eq!(
        (ignored.raw.as_slice(), ignored.outcome.as_str()),
        (out.as_bytes(), "ignored")
    );

    // A delivery that fails verification keeps nothing but its audit line.
    let was = left(&app).await;
    let (s, _) = post_casso(&app, &out.replace("6103", "6104"), &sig).await;
    assert_eq!(s, 401);
    assert_eq!(left(&app).await, was.and(0, 1));

    // What is kept stays as it was received.
    for sql in [
        "UPDATE bank_deliveries SET outcome = 'paid'",
        "DELETE FROM bank_deliveries",
    ] {
        let e = sqlx::query(sql)
            .execute(app.store.pool())
            .await
            .expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(app.store.count_deliveries().await.unwrap(), 4);
    app.stop().await;
}

#[test]
fn the_error_catalogue_lists_every_billing_code_with_its_meaning() {
    let doc = include_str!("../../docs/errors.md");
    let mut seen = std::collections::HashSet::new();
    for c in hospital_billing::codes::ALL {
        assert!(c.id.starts_with("BL_"), "{} is not billing's", c.id);
        assert!(seen.insert(c.id), "{} is defined twice", c.id);
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", c.id)))
            .unwrap_or_else(|| panic!("docs/errors.md lacks {}", c.id));
        assert!(row.ends_with(&format!("| {} |", c.meaning)), "{row}");
    }
}

/// A VNPay IPN query, signed with the test hash secret: `vnp_Amount` as given (VND × 100),
/// paid unless `response` says otherwise.
pub(crate) fn vnpay_ipn(txn_ref: &str, vnp_amount: &str, no: &str, response: &str) -> String {
    let params: Vec<(String, String)> = [
        ("vnp_Amount", vnp_amount.to_owned()),
        ("vnp_BankCode", "NCB".into()),
        ("vnp_BankTranNo", format!("VNP{no}")),
        ("vnp_CardType", "ATM".into()),
        ("vnp_OrderInfo", format!("Thanh toan hoa don {txn_ref}")),
        ("vnp_PayDate", "20261201091806".into()),
        ("vnp_ResponseCode", response.into()),
        ("vnp_TmnCode", "TEST_TMN_CODE".into()),
        ("vnp_TransactionNo", no.into()),
        ("vnp_TransactionStatus", response.into()),
        ("vnp_TxnRef", txn_ref.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let hash = hospital_billing::webhooks::hmac_sha512_hex(
        b"test_secret",
        hospital_billing::webhooks::vnpay_text(&params).as_bytes(),
    );
    let mut q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    q.push_str(&format!("&vnp_SecureHash={hash}"));
    q
}

/// VNPay's answer to `query`: (`RspCode`, `Message`).
pub(crate) async fn post_vnpay(app: &TestApp, query: &str) -> (String, String) {
    let url = format!(
        "{}/webhooks/vnpay?{query}",
        app.base.trim_end_matches("/fhir")
    );
    let r = app.anonymous.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "VNPay is answered in its own protocol");
    let v: Value = r.json().await.unwrap();
    (
        v["RspCode"].as_str().unwrap_or("").to_owned(),
        v["Message"].as_str().unwrap_or("").to_owned(),
    )
}

/// The cashier's queue: (kind, amount, reason) of each waiting credit.
pub(crate) async fn queue(app: &TestApp) -> Vec<(String, i64, String)> {
    let cashier = app.client_for(Role::Cashier, None, None);
    let r = cashier
        .get(app.url("PaymentNotice/$queue"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let q: Value = r.json().await.unwrap();
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
                    .cloned()
                    .unwrap_or_default()
            };
            (
                p["name"].as_str().unwrap_or("").to_owned(),
                part("amount")["valueMoney"]["value"].as_i64().unwrap_or(0),
                part("reason")["valueString"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// VNPay's IPN: the checks in the order bank-webhooks.md gives — checksum 97, order 01,
/// amount 04 (against the bill's amount, whatever its status), already confirmed 02, then 00
/// — each IPN kept as received with one audit line. Money VNPay reports for a bill already
/// paid or cancelled is not lost: it waits in the cashier's queue, with its reason.
async fn vnpay_is_answered_in_its_order_of_checks_and_loses_no_money(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000974")).await;
    let (inv, _, bill) = issued(&app, &an, 150_000).await;

    // Refusals: one audit line each; a verified IPN is kept as received; nothing else changes.
    let bad_checksum = vnpay_ipn(&bill, "15000000", "71", "00").replace("NCB", "NCC");
    for (what, query, answer, kept_as) in [
        (
            "a changed byte",
            bad_checksum,
            ("97", "Invalid Checksum"),
            None,
        ),
        (
            "an unknown order",
            vnpay_ipn("HD1999000001", "15000000", "72", "00"),
            ("01", "Order not Found"),
            Some("refused:order-not-found"),
        ),
        (
            "another amount",
            vnpay_ipn(&bill, "14000000", "73", "00"),
            ("04", "Invalid amount"),
            Some("refused:wrong-amount"),
        ),
        (
            "an amount that is not whole đồng",
            vnpay_ipn(&bill, "15000050", "74", "00"),
            ("04", "Invalid amount"),
            Some("refused:wrong-amount"),
        ),
        (
            "a payment that failed at VNPay",
            vnpay_ipn(&bill, "15000000", "75", "24"),
            ("00", "Confirm Success"),
            Some("not-paid"),
        ),
    ] {
        let was = left(&app).await;
        let (code, message) = post_vnpay(&app, &query).await;
        assert_eq!((code.as_str(), message.as_str()), answer, "{what}");
        match kept_as {
            None => assert_eq!(left(&app).await, was.and(0, 1), "{what}"),
            Some(outcome) => {
                assert_eq!(left(&app).await, was.and(1, 1), "{what}");
                let kept = app
                    .store
                    .deliveries(Some("vnpay"), 1)
                    .await
                    .unwrap()
                    .remove(0);
                assert_eq!(
                    (kept.raw.as_slice(), kept.outcome.as_str()),
                    (query.as_bytes(), outcome),
                    "{what}"
                );
            }
        }
    }
    assert_eq!(status_of(&app, &inv).await, "issued");
    assert!(notices(&app, &inv).await.is_empty());

    // The right amount: paid (00); the same IPN again: already confirmed (02), credited once.
    let paying = vnpay_ipn(&bill, "15000000", "76", "00");
    let was = left(&app).await;
    assert_eq!(post_vnpay(&app, &paying).await.0, "00");
    assert_eq!(status_of(&app, &inv).await, "balanced");
    assert_eq!(
        left(&app).await,
        Left {
            versions: was.versions + 2,
            ..was.and(1, 1)
        }
    );
    let was = left(&app).await;
    assert_eq!(post_vnpay(&app, &paying).await.0, "02");
    assert_eq!(left(&app).await, was.and(1, 1));
    assert_eq!(notices(&app, &inv).await.len(), 1);

    // On the paid bill the amount is still checked first: a wrong one is 04, not 02.
    let was = left(&app).await;
    let (code, _) = post_vnpay(&app, &vnpay_ipn(&bill, "9900000", "77", "00")).await;
    assert_eq!(code, "04");
    assert_eq!(left(&app).await, was.and(1, 1));
    assert!(queue(&app).await.is_empty(), "nothing credited");

    // A second payment of the paid bill: 02, and the money waits for the cashier.
    let was = left(&app).await;
    let (code, _) = post_vnpay(&app, &vnpay_ipn(&bill, "15000000", "78", "00")).await;
    assert_eq!(code, "02");
    assert_eq!(
        left(&app).await,
        Left {
            versions: was.versions + 1,
            ..was.and(1, 1)
        },
        "one unmatched credit"
    );
    assert_eq!(
        queue(&app).await,
        vec![(
            "unmatched".to_owned(),
            150_000,
            format!("{bill} was already paid")
        )]
    );

    // A payment of a cancelled bill: 02, the bill stays cancelled, the money is queued.
    let (gone, _, gone_bill) = issued(&app, &an, 70_000).await;
    let (s, _, c) = app
        .post(
            &format!("Invoice/{gone}/$cancel"),
            &json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "lập nhầm"}]}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    let (code, _) = post_vnpay(&app, &vnpay_ipn(&gone_bill, "7000000", "79", "00")).await;
    assert_eq!(code, "02");
    assert_eq!(status_of(&app, &gone).await, "cancelled");
    assert!(
        queue(&app).await.contains(&(
            "unmatched".to_owned(),
            70_000,
            format!("{gone_bill} was cancelled")
        )),
        "{:?}",
        queue(&app).await
    );

    // A bill part paid at the desk: VNPay for what is left pays it.
    let (part, _, part_bill) = issued(&app, &an, 200_000).await;
    let cashier = app.client_for(Role::Cashier, None, None);
    assert_eq!(pay_cash(&cashier, &app, &part, 50_000).await.0, 200);
    let (code, _) = post_vnpay(&app, &vnpay_ipn(&part_bill, "15000000", "80", "00")).await;
    assert_eq!(code, "00");
    assert_eq!(status_of(&app, &part).await, "balanced");
    app.stop().await;
}

async fn post_payos(app: &TestApp, data: Value) -> (u16, Value, String) {
    let signature = hospital_billing::webhooks::hmac_sha256_hex(
        b"test_checksum_key",
        hospital_billing::webhooks::payos_data_text(&data).as_bytes(),
    );
    let body = json!({"code": "00", "desc": "success", "success": true, "data": data,
        "signature": signature})
    .to_string();
    let r = app
        .anonymous
        .post(format!(
            "{}/webhooks/payos",
            app.base.trim_end_matches("/fhir")
        ))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    (
        r.status().as_u16(),
        r.json().await.unwrap_or_default(),
        body,
    )
}

/// Correctly signed, but not a body the provider sends, or not an amount anyone pays: a clear
/// error with its code; nothing changes but the delivery kept as received and its one audit
/// line. A body that cannot be verified (or carries no signature) keeps nothing at all.
async fn signed_but_malformed_deliveries_are_refused_clearly_and_credit_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000975")).await;
    let (inv, code, _) = issued(&app, &an, 80_000).await;
    let t = now_ms();
    let data = |amount: Value, reference: Option<&str>| {
        let mut d = json!({"accountNumber": account, "amount": amount,
            "description": format!("CSFHLF {code}"), "transactionDateTime": "2026-12-01 09:00:00",
            "currency": "VND", "orderCode": 7, "code": "00", "desc": "success"});
        if let Some(r) = reference {
            d["reference"] = json!(r);
        }
        d
    };
    let not_a_delivery = "the signed body is not a delivery this webhook takes: ";
    let not_a_payment = |a: &str| format!("a credit of {a} đồng is not a payment (1 to 10¹² đồng)");
    // (what, provider, status, code, error, kept)
    let mut cases: Vec<(&str, &str, String, u16, &str, String, bool)> = Vec::new();
    for (what, body, error) in [
        (
            "SePay, unreadable JSON",
            r#"{"id": 1, "transferType":"#.to_owned(),
            format!("{not_a_delivery}EOF while parsing a value at line 1 column 25"),
        ),
        (
            "SePay, no id",
            sepay_body(0, 80_000, &code, &account).replace(r#""id":0,"#, ""),
            format!("{not_a_delivery}no `id`"),
        ),
        (
            "SePay, a fraction of a đồng",
            sepay_body(6201, 80_000, &code, &account).replace("80000", "80000.5"),
            format!("{not_a_delivery}`transferAmount` is not a whole number of đồng"),
        ),
    ] {
        cases.push((what, "sepay", body, 422, "BL_02", error, true));
    }
    for (what, amount) in [
        ("SePay, zero", 0i64),
        ("SePay, negative", -80_000),
        ("SePay, absurd", 10_000_000_000_000),
    ] {
        cases.push((
            what,
            "sepay",
            sepay_body(6202, amount, &code, &account),
            400,
            "IR_01",
            not_a_payment(&amount.to_string()),
            true,
        ));
    }
    let casso_no_id = json!({"error": 0, "data": {"amount": 80_000, "accountNumber": account,
        "description": code}})
    .to_string();
    cases.push((
        "Casso, no id",
        "casso",
        casso_no_id,
        422,
        "BL_02",
        format!("{not_a_delivery}no `data.id`"),
        true,
    ));
    cases.push((
        "Casso, zero",
        "casso",
        casso_signed_at(t, 6203, 0, &code, &account).0,
        400,
        "IR_01",
        not_a_payment("0"),
        true,
    ));
    cases.push((
        "Casso, unreadable JSON",
        "casso",
        r#"{"error":0,"data":"#.to_owned(),
        401,
        "BL_01",
        "the signature does not match the body".to_owned(),
        false,
    ));
    for (what, provider, body, status, code_id, error, kept) in cases {
        let was = left(&app).await;
        let (s, answer) = match provider {
            "sepay" => post_sepay_raw(&app, &body).await,
            _ => {
                let (body, sig) = casso_signed(t, &body);
                post_casso(&app, &body, &sig).await
            }
        };
        assert_eq!(s, status, "{what}: {answer}");
        assert_eq!(
            (answer["code"].as_str(), answer["error"].as_str()),
            (Some(code_id), Some(error.as_str())),
            "{what}"
        );
        if kept {
            assert_eq!(left(&app).await, was.and(1, 1), "{what}");
            let d = app.store.deliveries(None, 1).await.unwrap().remove(0);
            assert_eq!(d.raw, body.as_bytes(), "{what}");
            assert_eq!(d.provider, provider);
            let expected = if status == 422 {
                "malformed".to_owned()
            } else {
                format!("refused:{code_id}")
            };
            assert_eq!(d.outcome, expected, "{what}");
        } else {
            assert_eq!(left(&app).await, was.and(0, 1), "{what}");
        }
    }

    // payOS: no reference, a negative amount.
    let was = left(&app).await;
    let (s, answer, body) = post_payos(&app, data(json!(80_000), None)).await;
    assert_eq!(
        (s, answer["code"].as_str(), answer["error"].as_str()),
        (
            422,
            Some("BL_02"),
            Some(format!("{not_a_delivery}no `data.reference`").as_str())
        )
    );
    assert_eq!(
        app.store.deliveries(None, 1).await.unwrap()[0].raw,
        body.as_bytes()
    );
    let (s, answer, _) = post_payos(&app, data(json!(-80_000), Some("FT-NEG"))).await;
    assert_eq!(
        (s, answer["code"].as_str(), answer["error"].as_str()),
        (400, Some("IR_01"), Some(not_a_payment("-80000").as_str()))
    );
    assert_eq!(left(&app).await, was.and(2, 2));

    // No signature at all: refused before anything is read.
    let was = left(&app).await;
    let r = app
        .anonymous
        .post(format!(
            "{}/webhooks/sepay",
            app.base.trim_end_matches("/fhir")
        ))
        .body(sepay_body(6204, 80_000, &code, &account))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        (answer["code"].as_str(), answer["error"].as_str()),
        (Some("BL_01"), Some("the delivery carries no signature"))
    );
    assert_eq!(left(&app).await, was.and(0, 1));

    // The bill saw none of it.
    assert_eq!(status_of(&app, &inv).await, "issued");
    assert!(notices(&app, &inv).await.is_empty());
    assert!(queue(&app).await.is_empty());
    app.stop().await;
}

/// What no open bill takes waits for the cashier, with its reason: an unknown payment code,
/// no code, a second payment of a paid bill, a payment of a cancelled bill — each one
/// unmatched credit (one notice, one kept delivery, one audit line), the bills untouched. A
/// code in odd case, cut by punctuation and behind the bank's own prefix still matches.
async fn credits_no_open_bill_takes_wait_in_the_queue_with_their_reason(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let an = app.create(patient_an("051085000976")).await;
    let (paid, code, paid_bill) = issued(&app, &an, 100_000).await;
    let odd = format!(
        "MBVCB.3278907687.{}-{}.CT tu 0123456789",
        code[..5].to_lowercase(),
        &code[5..]
    );
    assert_eq!(post_sepay(&app, 6301, 100_000, &odd, &account).await, 200);
    assert_eq!(status_of(&app, &paid).await, "balanced", "{odd} matches");

    let (gone, gone_code, gone_bill) = issued(&app, &an, 60_000).await;
    let (s, _, c) = app
        .post(
            &format!("Invoice/{gone}/$cancel"),
            &json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "lập nhầm"}]}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    let (_, paid_before) = app.get_json(&format!("Invoice/{paid}")).await;
    let (_, gone_before) = app.get_json(&format!("Invoice/{gone}")).await;

    let mut expected = Vec::new();
    for (id, amount, memo, reason) in [
        (
            6302,
            100_000,
            format!("IBFT {code} thanh toan lan 2"),
            format!("{paid_bill} was already paid"),
        ),
        (
            6303,
            45_000,
            "Thanh toan VP ZZZZ 9999".to_owned(),
            "the payment code VPZZZZ9999 in the memo names no bill".to_owned(),
        ),
        (
            6304,
            30_000,
            "chuyen tien an trua".to_owned(),
            "no payment code in the memo".to_owned(),
        ),
        (
            6305,
            60_000,
            format!("ck {gone_code}"),
            format!("{gone_bill} was cancelled"),
        ),
    ] {
        let was = left(&app).await;
        let (s, answer) = post_sepay_answer(&app, id, amount, &memo, &account).await;
        assert_eq!((s, answer), (200, json!({"success": true})), "{memo}");
        assert_eq!(
            left(&app).await,
            Left {
                versions: was.versions + 1,
                ..was.and(1, 1)
            },
            "{memo}: one unmatched notice"
        );
        let kept = app.store.deliveries(None, 1).await.unwrap().remove(0);
        assert_eq!(kept.outcome, "unmatched");
        expected.push(("unmatched".to_owned(), amount, reason));
    }
    let mut waiting = queue(&app).await;
    waiting.sort();
    expected.sort();
    assert_eq!(waiting, expected);
    // The bills are as they were.
    assert_eq!(
        app.get_json(&format!("Invoice/{paid}")).await.1,
        paid_before
    );
    assert_eq!(
        app.get_json(&format!("Invoice/{gone}")).await.1,
        gone_before
    );
    app.stop().await;
}

/// The payment page lists what the bill is for: each line with its cost, the BHYT fund's share
/// and the patient's, then the totals; in Vietnamese, or in English with `?lang=en`; still
/// there once the bill is paid.
async fn the_payment_page_lists_each_line_with_the_bhyt_share_and_the_patients(b: Backend) {
    let app = spawn_app(b).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    let (id, inv) = crate::invoicing::bill_with_lines(&app, "051085000960").await;
    let token = ident(&inv, "urn:hospital:payment-page").to_owned();
    let code = ident(&inv, "urn:hospital:payment-code").to_owned();
    let page = format!("{}/pay/{token}", app.base.trim_end_matches("/fhir"));
    let read = |lang: &'static str| {
        let url = format!("{page}{lang}");
        let app = &app;
        async move {
            let r = app.anonymous.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let line = |name: &str, labels: [&str; 3], amounts: [&str; 3]| {
        format!(
            "<li class=\"line\"><div class=\"name\">{name}</div><dl>\
             <dt>{}</dt><dd class=\"total\">{}</dd>\
             <dt>{}</dt><dd class=\"bhyt\">{}</dd>\
             <dt>{}</dt><dd class=\"patient\">{}</dd></dl></li>",
            labels[0], amounts[0], labels[1], amounts[1], labels[2], amounts[2]
        )
    };
    let lines = [
        ("Khám bệnh", ["50.600 ₫", "40.480 ₫", "10.120 ₫"]),
        ("Chụp CT sọ não", ["536.000 ₫", "428.800 ₫", "107.200 ₫"]),
        ("Vitamin C 500mg × 10", ["50.000 ₫", "0 ₫", "50.000 ₫"]),
    ];
    let vi = ["Thành tiền", "BHYT chi trả", "Người bệnh trả"];
    let en = ["Cost", "Paid by BHYT", "Patient pays"];
    let html = read("").await;
    assert!(html.contains("167.320 ₫"), "the amount owed");
    assert!(html.contains("Chi tiết viện phí"));
    for (name, amounts) in lines {
        assert!(
            html.contains(&line(name, vi, amounts)),
            "{name} in Vietnamese: {html}"
        );
    }
    assert!(
        html.contains("<td>Tổng chi phí</td><td>636.600 ₫</td>")
            && html.contains("<td>BHYT chi trả</td><td>469.280 ₫</td>")
            && html.contains("<td>Người bệnh trả</td><td><b>167.320 ₫</b></td>"),
        "the totals are the sums of the lines: {html}"
    );
    let english = read("?lang=en").await;
    assert!(english.contains("What the bill is for"));
    for (name, amounts) in lines {
        assert!(
            english.contains(&line(name, en, amounts)),
            "{name} in English: {english}"
        );
    }
    assert!(!english.contains("Thành tiền"), "no Vietnamese label left");

    // Paid: the QR goes, the lines stay.
    assert_eq!(post_sepay(&app, 6401, 167_320, &code, &account).await, 200);
    assert_eq!(status_of(&app, &id).await, "balanced");
    let paid = read("").await;
    assert!(paid.contains("Đã thanh toán") && !paid.contains("id=\"qr\""));
    for (name, amounts) in lines {
        assert!(paid.contains(&line(name, vi, amounts)), "{name} once paid");
    }
    app.stop().await;
}
