//! Telemedicine: schedules make slots; booking through every door never double books a
//! practitioner or a patient; prepaid video visits wait for their payment (a signed bank feed)
//! and are released when the window closes; bad input changes nothing.

use crate::billing::post_sepay;
use crate::common::*;
use hospital_billing::prices::{Category, definition};
use hospital_core::auth::Role;
use hospital_core::{Deployment, ServiceName};
use serde_json::{Value, json};

hospital_test_kit::on_both_backends!(
    a_schedule_makes_free_slots_that_search_finds,
    fifty_concurrent_bookings_of_one_slot_admit_exactly_one,
    plain_writes_and_transaction_bundles_cannot_double_book_either,
    a_patient_cannot_hold_two_overlapping_visits_but_back_to_back_and_cancelled_do_not_conflict,
    patients_book_their_own_and_staff_book_for_anyone,
    a_prepaid_video_visit_is_booked_when_the_bank_reports_the_payment,
    an_unpaid_visit_is_released_and_its_invoice_cancelled_when_the_window_closes,
    who_prepays_follows_the_in_person_and_staff_booking_settings,
    bad_booking_input_is_refused_and_changes_nothing,
    joining_is_for_the_visits_own_people_inside_its_window,
    bad_signalling_messages_are_refused_and_change_neither_rooms_stored_signals,
    a_booked_video_visit_nobody_joined_becomes_a_no_show,
    the_sweep_works_through_long_lists_a_bounded_batch_at_a_time,
    an_expired_hold_frees_its_slot_for_another_patient,
    grpc_books_once_and_lists_the_practitioners_day,
    reminders_are_queued_with_the_booking_and_sent_once_by_racing_replicas,
    reminders_queued_before_a_restart_are_sent_once_by_the_processes_after_it,
    a_reminder_whose_replica_died_after_sending_it_is_sent_again_with_the_same_key_after_its_lease,
    a_payment_made_while_no_telemedicine_process_runs_books_the_visit_when_one_starts,
    billing_confirming_a_payment_over_grpc_books_the_pending_visit_once,
    a_prepayment_paid_at_the_desk_or_assigned_by_the_cashier_books_the_visit_at_once,
    the_indicators_count_online_bookings_sessions_and_no_shows,
    the_booking_table_in_the_docs_is_what_the_operations_enforce,
    the_doctors_list_of_a_day_follows_vietnams_clock,
    the_visit_page_speaks_english_when_asked_and_shows_the_doctor_this_patients_summary_only,
    slot_searches_through_the_combined_index_find_what_the_plain_index_finds,
    a_changed_index_declaration_is_rebuilt_when_the_store_opens,
);

pub(crate) fn parameters(parts: Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": parts})
}

/// Books `patient` at the desk on `slot` (its reminder due now), restarts every service with
/// `tweak`, and returns once the new process has sent that reminder: its first pass is over.
async fn restart_after_a_marker(
    app: &mut TestApp,
    desk: &reqwest::Client,
    slot: &str,
    patient: &str,
    tweak: impl FnOnce(&mut hospital::Config),
) {
    let (code, marker) = op(desk, app, "Appointment/$book", &book_slot(slot, patient)).await;
    assert_eq!(code, 200, "{marker}");
    let marker = marker["id"].as_str().unwrap().to_owned();
    restart_app(app, Deployment::all(), tweak).await;
    let app = &*app;
    eventually(10, "the new process's first pass", || async {
        reminders_of(app, &marker).await[0].1.as_deref() == Some("sent")
    })
    .await;
}

pub(crate) async fn op(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let r = client
        .post(app.url(path))
        .header("content-type", FHIR)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// A schedule every day from 07:00 to 21:00 in `minutes`-long slots, `days` ahead.
pub(crate) fn schedule(practitioner: &str, mode: &str, minutes: i64, days: i64) -> Value {
    let all = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .map(|d| json!({"url": "day", "valueCode": d}));
    let mut available: Vec<Value> = all.to_vec();
    available.push(json!({"url": "start", "valueTime": "07:00:00"}));
    available.push(json!({"url": "end", "valueTime": "21:00:00"}));
    json!({"resourceType": "Schedule", "active": true,
        "actor": [{"reference": format!("Practitioner/{practitioner}")}],
        "serviceType": [{"coding": [{"system": "urn:hospital:service-code", "code": "KB.TX",
            "display": "Tư vấn khám bệnh từ xa"}]}],
        "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "394802001",
            "display": "General medicine"}]}],
        "extension": [{"url": "urn:hospital:schedule", "extension": [
            {"url": "mode", "valueCode": mode},
            {"url": "slot-minutes", "valueInteger": minutes},
            {"url": "horizon-days", "valueInteger": days},
            {"url": "available", "extension": available}]}]})
}

/// A slot written directly on `schedule` (for times a generated plan would not make).
pub(crate) fn slot(schedule: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Slot", "schedule": {"reference": format!("Schedule/{schedule}")},
        "status": "free", "start": start, "end": end})
}

/// An instant `minutes` from now, on Vietnam's clock, rounded to the minute.
pub(crate) fn from_now(minutes: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::minutes(minutes);
    let t = t.with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap());
    t.format("%Y-%m-%dT%H:%M:00+07:00").to_string()
}

pub(crate) async fn doctor(app: &TestApp, family: &str) -> String {
    app.create(json!({"resourceType": "Practitioner", "name": [{"family": family}]}))
        .await
}

/// A patient with a valid personal ID ending in `n`.
pub(crate) async fn patient(app: &TestApp, n: u32) -> String {
    app.create(patient_an(&format!("051085{:06}", 100_000 + n)))
        .await
}

/// The parameters of `Appointment/$book` for `slot` and `patient` (ids).
fn book_slot(slot: &str, patient: &str) -> Value {
    parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}},
        {"name": "patient", "valueReference": {"reference": format!("Patient/{patient}")}}]))
}

async fn read(app: &TestApp, path: &str) -> Value {
    let (s, v) = app.get_json(path).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

async fn status(app: &TestApp, path: &str) -> String {
    read(app, path).await["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls `f` until it holds, for up to `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {secs} s");
}

/// Makes every schedule's missing slots now, as the background pass would, so that what a
/// test counts afterwards is not raced by that pass (it makes the same slots under the same
/// lock, and finds them made).
async fn all_slots_made(app: &TestApp) {
    hospital_telemedicine::keep_slots_generated(&app.running.as_ref().unwrap().platform, None)
        .await
        .unwrap();
}

async fn free_slots(app: &TestApp, query: &str) -> Vec<String> {
    app.search_ids(&format!("Slot?status=free&{query}&_count=500"))
        .await
}

/// A free slot of `schedule` starting at least `lead` minutes from now, waiting for the
/// background to make them.
pub(crate) async fn first_free_slot(app: &TestApp, schedule: &str, lead: i64) -> String {
    let q = format!(
        "schedule=Schedule/{schedule}&start=ge{}&_sort=start",
        from_now(lead).replace('+', "%2B")
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = free_slots(app, &q).await;
        if let Some(first) = found.first() {
            return first.clone();
        }
        assert!(
            std::time::Instant::now() < until,
            "no slots made for Schedule/{schedule}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn a_schedule_makes_free_slots_that_search_finds(b: Backend) {
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Trần").await;
    let video = app.create(schedule(&doc, "video", 30, 2)).await;
    let other = doctor(&app, "Lê").await;
    // Two days: today's hours may be over when the test runs (evening in Vietnam).
    let in_person = app.create(schedule(&other, "in-person", 15, 2)).await;
    first_free_slot(&app, &video, 0).await;
    first_free_slot(&app, &in_person, 0).await;
    // The background makes one day at a time: the counts below need them all.
    all_slots_made(&app).await;
    // Searchable by practitioner, specialty, service type, mode, date range and status.
    let by_doc = free_slots(&app, &format!("practitioner=Practitioner/{doc}")).await;
    assert!(!by_doc.is_empty());
    assert!(by_doc.iter().all(|s| s.starts_with(&video)), "{by_doc:?}");
    let videos = free_slots(&app, "mode=video").await;
    assert_eq!(videos.len(), by_doc.len());
    let specialty = free_slots(&app, "specialty=http://snomed.info/sct|394802001").await;
    assert_eq!(
        specialty.len(),
        by_doc.len() + free_slots(&app, "mode=in-person").await.len()
    );
    let service = free_slots(&app, "service-type=urn:hospital:service-code|KB.TX").await;
    assert_eq!(service.len(), specialty.len());
    // Within the hours: 07:00 to 21:00 in Vietnam, 30 minutes each, none in the past.
    let (_, page) = app
        .get_json(&format!("Slot?schedule=Schedule/{video}&_count=500"))
        .await;
    let now = chrono::Utc::now();
    for e in page["entry"].as_array().unwrap() {
        let s = &e["resource"];
        let start = chrono::DateTime::parse_from_rfc3339(s["start"].as_str().unwrap()).unwrap();
        let end = chrono::DateTime::parse_from_rfc3339(s["end"].as_str().unwrap()).unwrap();
        assert_eq!((end - start).num_minutes(), 30);
        assert!(start > now);
        let hhmm = start.format("%H:%M").to_string();
        assert!(
            ("07:00".."20:31").contains(&hhmm.as_str()),
            "{hhmm} outside the hours"
        );
    }
    // A date range: today's slots and the next day's are separated by it.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::hours(7) + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let next_day = free_slots(
        &app,
        &format!("practitioner=Practitioner/{doc}&start={tomorrow}"),
    )
    .await;
    assert_eq!(
        next_day.len(),
        28,
        "a whole day of 30-minute slots from 07:00 to 21:00"
    );
    // Making them again makes nothing twice.
    let before = app.versions().await;
    hospital_telemedicine::keep_slots_generated(&app.running.as_ref().unwrap().platform, None)
        .await
        .unwrap();
    assert_eq!(app.versions().await, before);
}

async fn fifty_concurrent_bookings_of_one_slot_admit_exactly_one(b: Backend) {
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Trần").await;
    // Two days: today's hours may be over when the test runs (evening in Vietnam).
    let sched = app.create(schedule(&doc, "in-person", 30, 2)).await;
    let slot = first_free_slot(&app, &sched, 60).await;
    let mut patients = Vec::new();
    for i in 0..50 {
        patients.push(patient(&app, i).await);
    }
    let staff = app.client_for(Role::Clinician, None, Some(&doc));
    let mut calls = Vec::new();
    for p in &patients {
        let body = parameters(json!([
            {"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}},
            {"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}},
            {"name": "reason", "valueString": "Tái khám tăng huyết áp"}]));
        let (c, a) = (staff.clone(), app.url("Appointment/$book"));
        calls.push(tokio::spawn(async move {
            let r = c
                .post(a)
                .header("content-type", FHIR)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or_default(),
            )
        }));
    }
    let mut booked = Vec::new();
    let mut refused = 0;
    for c in calls {
        let (s, v) = c.await.unwrap();
        match s {
            200 | 201 => booked.push(v),
            409 => {
                assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(booked.len(), 1, "exactly one booking");
    assert_eq!(refused, 49);
    assert_eq!(booked[0]["status"], "booked");
    assert_eq!(status(&app, &format!("Slot/{slot}")).await, "busy");
    let active = app
        .search_ids(&format!(
            "Appointment?slot=Slot/{slot}&status=booked,pending"
        ))
        .await;
    assert_eq!(active.len(), 1);
}

fn plain_appointment(slot: &str, patient: &str, doc: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Appointment", "status": "booked",
        "slot": [{"reference": format!("Slot/{slot}")}], "start": start, "end": end,
        "participant": [
            {"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
            {"actor": {"reference": format!("Practitioner/{doc}")}, "status": "accepted"}]})
}

async fn plain_writes_and_transaction_bundles_cannot_double_book_either(b: Backend) {
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Phạm").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let (start, end) = (from_now(120), from_now(150));
    let s1 = app.create(slot(&sched, &start, &end)).await;
    let (start2, end2) = (from_now(240), from_now(270));
    let s2 = app.create(slot(&sched, &start2, &end2)).await;
    let mut patients = Vec::new();
    for i in 0..50 {
        patients.push(patient(&app, i).await);
    }
    /// Sends every request at once: each one's status and body.
    async fn race(requests: Vec<reqwest::RequestBuilder>) -> Vec<(u16, Value)> {
        let calls: Vec<_> = requests
            .into_iter()
            .map(|r| {
                tokio::spawn(async move {
                    let r = r.send().await.unwrap();
                    (
                        r.status().as_u16(),
                        r.json::<Value>().await.unwrap_or_default(),
                    )
                })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        out
    }
    /// One winner with `won`; every other racer refused with 409 and an OperationOutcome
    /// saying the time is taken (`CF_06`).
    fn one_winner(results: &[(u16, Value)], won: u16, door: &str) {
        let winners = results.iter().filter(|(s, _)| *s == won).count();
        assert_eq!(winners, 1, "{door}: {results:?}");
        for (s, body) in results.iter().filter(|(s, _)| *s != won) {
            assert_eq!(*s, 409, "{door}: {body}");
            assert_eq!(body["resourceType"], "OperationOutcome", "{door}: {body}");
            assert_eq!(
                body["issue"][0]["details"]["coding"][0]["code"], "CF_06",
                "{door}: {body}"
            );
        }
    }
    // Fifty plain POSTs of an Appointment on one slot, each for another patient.
    let posts = patients
        .iter()
        .map(|p| {
            app.http
                .post(app.url("Appointment"))
                .header("content-type", FHIR)
                .body(plain_appointment(&s1, p, &doc, &start, &end).to_string())
        })
        .collect();
    one_winner(&race(posts).await, 201, "plain writes");
    assert_eq!(
        status(&app, &format!("Slot/{s1}")).await,
        "busy",
        "the slot follows"
    );
    // Fifty transaction Bundles, each booking the second slot for another patient.
    let bundles = patients
        .iter()
        .map(|p| {
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": plain_appointment(&s2, p, &doc, &start2, &end2),
                 "request": {"method": "POST", "url": "Appointment"}}]});
            app.http
                .post(app.url(""))
                .header("content-type", FHIR)
                .body(bundle.to_string())
        })
        .collect();
    one_winner(&race(bundles).await, 200, "transaction Bundles");
    for s in [&s1, &s2] {
        let n = app
            .search_ids(&format!("Appointment?slot=Slot/{s}&status=booked"))
            .await
            .len();
        assert_eq!(n, 1, "one appointment on Slot/{s}");
    }
    // Without a slot too: the practitioner's time is what is claimed.
    let (s, _, v) = app
        .post(
            "Appointment",
            &json!({"resourceType": "Appointment", "status": "booked",
                "start": from_now(130), "end": from_now(140),
                "participant": [
                    {"actor": {"reference": format!("Patient/{}", patients[0])}, "status": "accepted"},
                    {"actor": {"reference": format!("Practitioner/{doc}")}, "status": "accepted"}]}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .map(|d| d.contains(&format!("Practitioner/{doc}"))),
        Some(true),
        "{v}"
    );
}

async fn a_patient_cannot_hold_two_overlapping_visits_but_back_to_back_and_cancelled_do_not_conflict(
    b: Backend,
) {
    let app = spawn_app(b).await;
    let (d1, d2) = (doctor(&app, "Trần").await, doctor(&app, "Lê").await);
    let (sc1, sc2) = (
        app.create(schedule(&d1, "in-person", 30, 1)).await,
        app.create(schedule(&d2, "in-person", 30, 1)).await,
    );
    let an = patient(&app, 1).await;
    let me = app.client_for(Role::Patient, Some(&an), None);
    let (t0, t1, t2) = (from_now(90), from_now(120), from_now(150));
    let a = app.create(slot(&sc1, &t0, &t1)).await;
    let overlapping = app.create(slot(&sc2, &from_now(105), &from_now(135))).await;
    let next = app.create(slot(&sc2, &t1, &t2)).await;
    let book = |s: &str| {
        parameters(json!([{"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}}]))
    };
    let (s, first) = op(&me, &app, "Appointment/$book", &book(&a)).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(
        first["status"], "booked",
        "in-person, not prepaid by default"
    );
    let (s, v) = op(&me, &app, "Appointment/$hold", &book(&overlapping)).await;
    assert_eq!(s, 409, "the patient is taken then: {v}");
    assert_eq!(
        v["issue"][0]["details"]["coding"][0]["code"], "CF_06",
        "{v}"
    );
    assert_eq!(
        status(&app, &format!("Slot/{overlapping}")).await,
        "free",
        "nothing changed"
    );
    // Back to back: [t0, t1) and [t1, t2) do not overlap.
    let (s, v) = op(&me, &app, "Appointment/$book", &book(&next)).await;
    assert_eq!(s, 200, "{v}");
    // Cancelled, the first frees its time and its slot.
    let id = first["id"].as_str().unwrap();
    let (s, v) = op(
        &me,
        &app,
        &format!("Appointment/{id}/$cancel"),
        &parameters(json!([
        {"name": "reason", "valueString": "Bận việc gia đình"}])),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "cancelled");
    assert_eq!(status(&app, &format!("Slot/{a}")).await, "free");
    let other = patient(&app, 2).await;
    let staff = app.client_for(Role::Cashier, None, None);
    let (s, v) = op(&staff, &app, "Appointment/$book", &book_slot(&a, &other)).await;
    assert_eq!(s, 200, "the cancelled visit's slot is booked again: {v}");
}

async fn patients_book_their_own_and_staff_book_for_anyone(b: Backend) {
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let s1 = app.create(slot(&sched, &from_now(60), &from_now(90))).await;
    let s2 = app
        .create(slot(&sched, &from_now(90), &from_now(120)))
        .await;
    let s3 = app
        .create(slot(&sched, &from_now(120), &from_now(150)))
        .await;
    let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
    let me = app.client_for(Role::Patient, Some(&an), None);
    let slot_of =
        |s: &str| json!({"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}});
    // For another patient: as if that patient did not exist.
    let (s, v) = op(
        &me,
        &app,
        "Appointment/$book",
        &parameters(json!([slot_of(&s1),
        {"name": "patient", "valueReference": {"reference": format!("Patient/{binh}")}}])),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(status(&app, &format!("Slot/{s1}")).await, "free");
    // A hold, then booking it.
    let (s, held) = op(
        &me,
        &app,
        "Appointment/$hold",
        &parameters(json!([slot_of(&s1)])),
    )
    .await;
    assert_eq!(s, 200, "{held}");
    assert_eq!(held["status"], "pending");
    assert_eq!(status(&app, &format!("Slot/{s1}")).await, "busy-tentative");
    let id = held["id"].as_str().unwrap().to_owned();
    let (s, v) = op(
        &me,
        &app,
        "Appointment/$book",
        &parameters(json!([
        {"name": "appointment", "valueReference": {"reference": format!("Appointment/{id}")}}])),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "booked");
    assert_eq!(status(&app, &format!("Slot/{s1}")).await, "busy");
    // Rescheduled by the patient: the old slot freed, the new one taken, one transaction.
    let (s, v) = op(
        &me,
        &app,
        &format!("Appointment/{id}/$reschedule"),
        &parameters(json!([slot_of(&s2)])),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["slot"][0]["reference"], format!("Slot/{s2}"));
    assert_eq!(status(&app, &format!("Slot/{s1}")).await, "free");
    assert_eq!(status(&app, &format!("Slot/{s2}")).await, "busy");
    // Binh's appointment (booked by a cashier at reception) is not An's to touch.
    let desk = app.client_for(Role::Cashier, None, None);
    let (s, theirs) = op(
        &desk,
        &app,
        "Appointment/$book",
        &parameters(json!([slot_of(&s3),
        {"name": "patient", "valueReference": {"reference": format!("Patient/{binh}")}}])),
    )
    .await;
    assert_eq!(s, 200, "{theirs}");
    let theirs = theirs["id"].as_str().unwrap().to_owned();
    for path in [
        format!("Appointment/{theirs}/$cancel"),
        format!("Appointment/{theirs}/$reschedule"),
    ] {
        let (s, v) = op(&me, &app, &path, &parameters(json!([slot_of(&s1)]))).await;
        assert_eq!(s, 404, "{path}: {v}");
    }
    assert_eq!(
        status(&app, &format!("Appointment/{theirs}")).await,
        "booked"
    );
    // The patient sees their own appointment, not Binh's.
    let mine = app.client_for(Role::Patient, Some(&an), None);
    let r: Value = mine
        .get(app.url("Appointment"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = r["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    // An admin does not book.
    let admin = app.client_for(Role::Admin, None, None);
    let (s, _) = op(
        &admin,
        &app,
        "Appointment/$book",
        &parameters(json!([slot_of(&s1),
        {"name": "patient", "valueReference": {"reference": format!("Patient/{an}")}}])),
    )
    .await;
    assert_eq!(s, 403);
    // Nor does a patient write an Appointment plainly.
    let (s, _) = {
        let r = mine
            .post(app.url("Appointment"))
            .header("content-type", FHIR)
            .body(plain_appointment(&s1, &an, &doc, &from_now(60), &from_now(90)).to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(s, 403);
}

/// The price list's video consultation, as billing invoices it.
async fn price_list(app: &TestApp) {
    app.create(definition(
        "KB.TX",
        "Tư vấn khám bệnh từ xa",
        Category::Service,
        150_000,
        None,
        "2026-01-01",
    ))
    .await;
}

async fn a_prepaid_video_visit_is_booked_when_the_bank_reports_the_payment(b: Backend) {
    let app = spawn_app(b).await;
    price_list(&app).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "video", 20, 1)).await;
    let s = app.create(slot(&sched, &from_now(60), &from_now(80))).await;
    let an = patient(&app, 7).await;
    let me = app.client_for(Role::Patient, Some(&an), None);
    let (code, visit) = op(
        &me,
        &app,
        "Appointment/$book",
        &parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}},
        {"name": "reason", "valueString": "Tư vấn kết quả xét nghiệm"}])),
    )
    .await;
    assert_eq!(code, 200, "{visit}");
    assert_eq!(visit["status"], "pending", "a video visit is prepaid");
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy-tentative");
    let page = visit["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:hospital:appointment:payment-page")
        .and_then(|e| e["valueUrl"].as_str())
        .expect("the payment page")
        .to_owned();
    assert!(page.contains("/pay/"), "{page}");
    let invoice = visit["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:hospital:appointment:invoice")
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .unwrap()
        .trim_start_matches("Invoice/")
        .to_owned();
    let inv = read(&app, &format!("Invoice/{invoice}")).await;
    assert_eq!(
        inv["totalNet"]["value"], 150_000,
        "self-pay at the hospital's price"
    );
    assert_eq!(inv["subject"]["reference"], format!("Patient/{an}"));
    // The patient pays by transfer; the bank's feed (signed) reaches billing.
    let memo = inv["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "urn:hospital:payment-code")
        .and_then(|i| i["value"].as_str())
        .unwrap()
        .to_owned();
    let account = hospital::Config::for_tests("unused").bank_account;
    assert_eq!(
        post_sepay(
            &app,
            9_100_001,
            150_000,
            &format!("CK {memo} thanh toan"),
            &account
        )
        .await,
        200
    );
    let id = visit["id"].as_str().unwrap().to_owned();
    eventually(5, "booked once paid", || {
        let (app, id) = (&app, id.clone());
        async move { status(app, &format!("Appointment/{id}")).await == "booked" }
    })
    .await;
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy");
    // The patient cancels the paid visit: the money is not lost, it waits for the cashier.
    let (code, v) = op(
        &me,
        &app,
        &format!("Appointment/{id}/$cancel"),
        &parameters(json!([])),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        status(&app, &format!("Invoice/{invoice}")).await,
        "cancelled"
    );
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "free");
    let released = app.search_ids("PaymentNotice?outcome=released").await;
    assert_eq!(released.len(), 1, "the payment moved to the refund queue");
    let cashier = app.client_for(Role::Cashier, None, None);
    let queue: Value = cashier
        .get(app.url("PaymentNotice/$queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = queue.to_string();
    assert!(
        text.contains(&released[0]) && text.contains("not given"),
        "{queue}"
    );
    let (code, v) = op(
        &cashier,
        &app,
        &format!("PaymentNotice/{}/$refund", released[0]),
        &parameters(json!([
        {"name": "reason", "valueString": "Hoàn tiền mặt tại quầy, khách đã ký nhận"}])),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let queue: Value = cashier
        .get(app.url("PaymentNotice/$queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !queue.to_string().contains(&released[0]),
        "settled once: {queue}"
    );
    // The money came in once and went out once.
    let day = (chrono::Utc::now() + chrono::Duration::hours(7))
        .format("%Y-%m-%d")
        .to_string();
    let totals: Value = cashier
        .get(app.url(&format!("PaymentNotice/$totals?date={day}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let part = |group: &Value, name: &str| {
        group["part"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["valueMoney"]["value"]
            .clone()
    };
    let total = param(&totals, "total");
    assert_eq!(part(total, "received"), 150_000, "counted once: {totals}");
    let refunded: Vec<Value> = totals["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "channel")
        .map(|c| part(c, "refunded"))
        .collect();
    assert_eq!(
        refunded,
        [json!(150_000)],
        "refunded once, on the transfer's channel: {totals}"
    );
}

async fn an_unpaid_visit_is_released_and_its_invoice_cancelled_when_the_window_closes(b: Backend) {
    let app = spawn_app_with(b, |c| c.payment_window_secs = 2).await;
    price_list(&app).await;
    let doc = doctor(&app, "Lê").await;
    let sched = app.create(schedule(&doc, "video", 20, 1)).await;
    let s = app.create(slot(&sched, &from_now(60), &from_now(80))).await;
    let an = patient(&app, 8).await;
    let me = app.client_for(Role::Patient, Some(&an), None);
    let (code, visit) = op(
        &me,
        &app,
        "Appointment/$book",
        &parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}}])),
    )
    .await;
    assert_eq!(code, 200, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let invoice = visit["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:hospital:appointment:invoice")
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .unwrap()
        .to_owned();
    eventually(10, "released", || {
        let (app, id) = (&app, id.clone());
        async move { status(app, &format!("Appointment/{id}")).await == "cancelled" }
    })
    .await;
    assert_eq!(status(&app, &invoice).await, "cancelled");
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "free");
    // A payment arriving after the release is not lost: it waits in the cashier's queue.
    let inv = read(&app, &invoice).await;
    let memo = inv["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "urn:hospital:payment-code")
        .and_then(|i| i["value"].as_str())
        .unwrap()
        .to_owned();
    let account = hospital::Config::for_tests("unused").bank_account;
    assert_eq!(
        post_sepay(&app, 9_100_002, 150_000, &memo, &account).await,
        200
    );
    let cashier = app.client_for(Role::Cashier, None, None);
    let queue: Value = cashier
        .get(app.url("PaymentNotice/$queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        queue.to_string().contains(&memo) || queue.to_string().contains("150000"),
        "{queue}"
    );
    assert_eq!(
        status(&app, &format!("Appointment/{id}")).await,
        "cancelled",
        "not booked by a late payment"
    );
}

/// Who prepays: a video visit a patient books always; in-person visits when
/// `prepay_in_person`; visits staff book when `prepay_staff_bookings` (and then as the mode
/// says). A prepaid visit is `pending` with the invoice of its fee; the others are `booked`
/// with none.
async fn who_prepays_follows_the_in_person_and_staff_booking_settings(b: Backend) {
    // (prepay_in_person, prepay_staff_bookings) -> whether each booking is prepaid:
    // [patient video, patient in person, staff video, staff in person].
    let cases = [
        ((false, false), [true, false, false, false]),
        ((true, false), [true, true, false, false]),
        ((false, true), [true, false, true, false]),
        ((true, true), [true, true, true, true]),
    ];
    for ((in_person, staff_bookings), expected) in cases {
        let app = spawn_app_with(b, |c| {
            c.prepay_in_person = in_person;
            c.prepay_staff_bookings = staff_bookings;
        })
        .await;
        price_list(&app).await;
        let (d1, d2) = (doctor(&app, "Trần").await, doctor(&app, "Lê").await);
        let video = app.create(schedule(&d1, "video", 20, 1)).await;
        let desk_schedule = app.create(schedule(&d2, "in-person", 20, 1)).await;
        let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
        let me = app.client_for(Role::Patient, Some(&an), None);
        let desk = app.client_for(Role::Cashier, None, None);
        let bookings = [
            (&me, &video, 60, None),
            (&me, &desk_schedule, 90, None),
            (&desk, &video, 120, Some(&binh)),
            (&desk, &desk_schedule, 150, Some(&binh)),
        ];
        let mut prepaid = Vec::new();
        for (client, sched, at, for_whom) in bookings {
            let s = app
                .create(slot(sched, &from_now(at), &from_now(at + 20)))
                .await;
            let mut ask =
                vec![json!({"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}})];
            if let Some(p) = for_whom {
                ask.push(json!({"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}));
            }
            let (code, v) = op(client, &app, "Appointment/$book", &parameters(json!(ask))).await;
            assert_eq!(code, 200, "{v}");
            let invoice = v["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["url"] == "urn:hospital:appointment:invoice")
                .and_then(|e| e["valueReference"]["reference"].as_str())
                .map(str::to_owned);
            match v["status"].as_str() {
                Some("pending") => {
                    let invoice = invoice.expect("a prepaid visit has its invoice");
                    let inv = read(&app, &invoice).await;
                    assert_eq!(inv["totalNet"]["value"], 150_000, "{inv}");
                    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy-tentative");
                    prepaid.push(true);
                }
                Some("booked") => {
                    assert_eq!(invoice, None, "{v}");
                    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy");
                    prepaid.push(false);
                }
                other => panic!("{other:?}: {v}"),
            }
        }
        assert_eq!(
            prepaid, expected,
            "prepay_in_person={in_person}, prepay_staff_bookings={staff_bookings}"
        );
        app.stop().await;
    }
}

async fn bad_booking_input_is_refused_and_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Trần").await;
    let in_person = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let past = app
        .create(slot(&in_person, &from_now(-90), &from_now(-60)))
        .await;
    let fine = app
        .create(slot(&in_person, &from_now(60), &from_now(90)))
        .await;
    let taken = app
        .create(slot(&in_person, &from_now(90), &from_now(120)))
        .await;
    let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
    // The schedule's own slots, made now rather than by the background in the middle of the
    // counts of what changed.
    all_slots_made(&app).await;
    let desk = app.client_for(Role::Cashier, None, None);
    let ask = |s: &str, p: &str, extra: Option<Value>| {
        let mut parts = vec![
            json!({"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}}),
            json!({"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}),
        ];
        parts.extend(extra);
        parameters(Value::Array(parts))
    };
    let (s, v) = op(&desk, &app, "Appointment/$book", &ask(&taken, &binh, None)).await;
    assert_eq!(s, 200, "{v}");
    let (s, mine) = op(&desk, &app, "Appointment/$book", &ask(&fine, &an, None)).await;
    assert_eq!(s, 200, "{mine}");
    let id = mine["id"].as_str().unwrap().to_owned();
    let before = app.versions().await;
    // A slot in the past.
    let (s, v) = op(&desk, &app, "Appointment/$book", &ask(&past, &an, None)).await;
    assert_eq!(
        (s, v["resourceType"].as_str()),
        (422, Some("OperationOutcome")),
        "{v}"
    );
    // A reschedule onto a taken slot.
    let (s, v) = op(
        &desk,
        &app,
        &format!("Appointment/{id}/$reschedule"),
        &parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{taken}")}}])),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        read(&app, &format!("Appointment/{id}")).await["slot"][0]["reference"],
        format!("Slot/{fine}")
    );
    // An in-person slot booked as video.
    let free = app
        .create(slot(&in_person, &from_now(200), &from_now(230)))
        .await;
    let before_free = app.versions().await;
    let (s, v) = op(
        &desk,
        &app,
        "Appointment/$book",
        &ask(
            &free,
            &an,
            Some(json!({"name": "mode", "valueCode": "video"})),
        ),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("in-person"),
        "{v}"
    );
    // Unknown parameters, a malformed slot reference, a missing patient.
    for body in [
        parameters(json!([{"name": "slott", "valueString": "x"}])),
        parameters(json!([{"name": "slot", "valueString": "Slot/../x"}])),
        parameters(
            json!([{"name": "slot", "valueReference": {"reference": format!("Slot/{free}")}}]),
        ),
        json!({"resourceType": "Patient"}),
    ] {
        let (s, v) = op(&desk, &app, "Appointment/$book", &body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["resourceType"], "OperationOutcome");
    }
    assert_eq!(app.versions().await, before_free, "nothing changed");
    assert_eq!(before + 1, before_free, "only the new slot was written");
    // A reversed date range.
    let (s, v) = app
        .get_json(&format!(
            "Slot?start=ge{}&start=le{}",
            from_now(600).replace('+', "%2B"),
            from_now(60).replace('+', "%2B")
        ))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    // A schedule with its hours the wrong way round.
    let mut bad = schedule(&doc, "video", 30, 1);
    bad["extension"][0]["extension"][3]["extension"][8]["valueTime"] = json!("06:00:00");
    let (s, _, v) = app.post("Schedule", &bad).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["issue"][0]["expression"][0]
            .as_str()
            .unwrap_or("")
            .contains("available"),
        "{v}"
    );
}

/// The signalling bus crosses processes: a signal stored through one store is heard by
/// another store on the same PostgreSQL schema, and by no store of another schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_another_store_of_the_same_database_only() {
    let app = spawn_app(Backend::Postgres).await;
    let url = app
        .running
        .as_ref()
        .unwrap()
        .context
        .config
        .database_url
        .clone();
    let other = hospital_core::store::Store::open(&url, Default::default())
        .await
        .unwrap();
    let elsewhere = spawn_app(Backend::Postgres).await;
    let mut heard = other.signal_feed().await.unwrap();
    let mut not_here = elsewhere.store.signal_feed().await.unwrap();
    let sent = app
        .store
        .signal_append(
            "room-1",
            "conn-a",
            "patient",
            "chat",
            r#"{"text":"xin chào"}"#,
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), heard.recv())
        .await
        .expect("heard within 5 s")
        .unwrap();
    assert_eq!(got, sent);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), not_here.recv())
            .await
            .is_err(),
        "another schema hears nothing"
    );
    let kept = other.signals_of("room-1", &["chat"], 10).await.unwrap();
    assert_eq!(kept, vec![sent]);
    other.close().await;
}

fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["parameter"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {p}"))
}

async fn joining_is_for_the_visits_own_people_inside_its_window(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.turn_urls = vec!["turn:turn.benhvien.example:3478".into()];
        c.stun_urls = vec!["stun:turn.benhvien.example:3478".into()];
        c.turn_secret = Some("coturn-static-auth-secret".into());
    })
    .await;
    let (doc, other_doc) = (doctor(&app, "Trần").await, doctor(&app, "Lê").await);
    let sched = app.create(schedule(&doc, "video", 30, 1)).await;
    let soon = app.create(slot(&sched, &from_now(5), &from_now(35))).await;
    let later = app
        .create(slot(&sched, &from_now(120), &from_now(150)))
        .await;
    let held = app
        .create(slot(&sched, &from_now(200), &from_now(230)))
        .await;
    let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
    let staff = app.client_for(Role::Clinician, None, Some(&doc));
    let book = |s: &str, p: &str| {
        parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}},
        {"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}]))
    };
    let (_, now) = op(&staff, &app, "Appointment/$book", &book(&soon, &an)).await;
    let (_, after) = op(&staff, &app, "Appointment/$book", &book(&later, &an)).await;
    let (_, pending) = op(&staff, &app, "Appointment/$hold", &book(&held, &an)).await;
    let (now, after, pending) = (
        now["id"].as_str().unwrap().to_owned(),
        after["id"].as_str().unwrap().to_owned(),
        pending["id"].as_str().unwrap().to_owned(),
    );
    let empty = parameters(json!([]));
    let me = app.client_for(Role::Patient, Some(&an), None);
    // The patient's first join asks their consent, and records it.
    let (s, v) = op(&me, &app, &format!("Appointment/{now}/$join"), &empty).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["issue"][0]["expression"][0], "consent");
    assert_eq!(
        status(&app, &format!("Appointment/{now}")).await,
        "booked",
        "nothing changed"
    );
    let agree = parameters(json!([{"name": "consent", "valueBoolean": true}]));
    let (s, joined) = op(&me, &app, &format!("Appointment/{now}/$join"), &agree).await;
    assert_eq!(s, 200, "{joined}");
    let consents = app
        .search_ids(&format!("Consent?data=Appointment/{now}"))
        .await;
    assert_eq!(consents.len(), 1);
    let (_, c) = app.get_json(&format!("Consent/{}", consents[0])).await;
    assert_eq!(c["patient"]["reference"], format!("Patient/{an}"));
    assert_eq!(
        c["extension"][0]["valueBoolean"], false,
        "nothing is recorded"
    );
    let r = me
        .get(app.url(&format!("Consent/{}", consents[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the patient reads their consent");
    let (s, _) = op(&me, &app, &format!("Appointment/{now}/$join"), &empty).await;
    assert_eq!(s, 200, "asked once");
    assert_eq!(
        app.search_ids(&format!("Consent?data=Appointment/{now}"))
            .await
            .len(),
        1
    );
    assert_eq!(param(&joined, "role")["valueCode"], "patient");
    assert!(
        param(&joined, "token")["valueString"]
            .as_str()
            .unwrap()
            .contains('.')
    );
    assert!(
        param(&joined, "signalling")["valueUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/visit/{now}/ws"))
    );
    let ice: Value = serde_json::from_str(
        param(&joined, "iceServers")["valueString"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let turn = ice
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["username"].is_string())
        .expect("TURN");
    let user = turn["username"].as_str().unwrap();
    let (expiry, who) = user.split_once(':').unwrap();
    assert_eq!(
        who,
        format!("Patient/{an}"),
        "coturn's username is <expiry>:<user>"
    );
    assert!(expiry.parse::<i64>().unwrap() > chrono::Utc::now().timestamp());
    assert_eq!(
        turn["credential"].as_str().unwrap().len(),
        28,
        "base64 of a 20-byte HMAC-SHA1"
    );
    // The first join began the visit: arrived, with its Encounter (class VR) from records.
    assert_eq!(status(&app, &format!("Appointment/{now}")).await, "arrived");
    let (s, again) = op(&staff, &app, &format!("Appointment/{now}/$join"), &empty).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(param(&again, "role")["valueCode"], "practitioner");
    let encounters = app
        .search_ids(&format!("Encounter?appointment=Appointment/{now}"))
        .await;
    assert_eq!(encounters.len(), 1, "one encounter however many join");
    let (_, e) = app.get_json(&format!("Encounter/{}", encounters[0])).await;
    assert_eq!(e["class"]["code"], "VR");
    // Refused: another patient, another doctor, an admin, outside the window, not booked.
    let binh_token = app.client_for(Role::Patient, Some(&binh), None);
    let (s, v) = op(
        &binh_token,
        &app,
        &format!("Appointment/{now}/$join"),
        &empty,
    )
    .await;
    assert_eq!(s, 404, "another patient's visit is not known to them: {v}");
    let stranger = app.client_for(Role::Clinician, None, Some(&other_doc));
    let (s, v) = op(&stranger, &app, &format!("Appointment/{now}/$join"), &empty).await;
    assert_eq!(s, 403, "a third person: {v}");
    let admin = app.client_for(Role::Admin, None, None);
    let (s, _) = op(&admin, &app, &format!("Appointment/{now}/$join"), &empty).await;
    assert_eq!(s, 403);
    let (s, v) = op(&me, &app, &format!("Appointment/{after}/$join"), &empty).await;
    assert_eq!(s, 422, "two hours early: {v}");
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("joined from"),
        "{v}"
    );
    assert_eq!(
        status(&app, &format!("Appointment/{after}")).await,
        "booked",
        "nothing changed"
    );
    let (s, v) = op(&me, &app, &format!("Appointment/{pending}/$join"), &empty).await;
    assert_eq!(
        v["issue"][0]["details"]["coding"][0]["code"], "PC_03",
        "{s}: {v}"
    );
    // A forged or another visit's token opens no signalling channel.
    let token = param(&joined, "token")["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    let site = app.base.trim_end_matches("/fhir").to_owned();
    for (room, t) in [
        (after.as_str(), token.as_str()),
        (now.as_str(), "bm9wZQ.bm9wZQ"),
    ] {
        let r = app
            .anonymous
            .get(format!("{site}/visit/{room}/ws?token={t}"))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 401 | 403),
            "{room}: {}",
            r.status()
        );
    }
}

/// A participant's signalling connection, as a browser or a phone app holds it.
pub(crate) struct Peer(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Peer {
    /// Opens the signalling WebSocket `url` (what `$join` answered) with the join `token`:
    /// the connection, and the server's welcome.
    pub(crate) async fn open(url: &str, token: &str) -> (Peer, Value) {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={token}"))
            .await
            .expect("the signalling WebSocket opens");
        let mut peer = Peer(ws);
        let welcome = peer.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (peer, welcome)
    }

    pub(crate) async fn say(&mut self, message: Value) {
        self.say_text(message.to_string()).await
    }

    pub(crate) async fn say_text(&mut self, text: String) {
        use futures::SinkExt;
        self.0
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("sent");
    }

    async fn say_bytes(&mut self, bytes: Vec<u8>) {
        use futures::SinkExt;
        self.0
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                bytes.into(),
            ))
            .await
            .expect("sent");
    }

    /// The next message from the server, within 5 s; a close is
    /// `{"type": "closed", "code": .., "reason": ..}`.
    pub(crate) async fn next(&mut self) -> Value {
        self.within(5000).await.expect("a message within 5 s")
    }

    /// The next message from the server within `ms`, if any.
    pub(crate) async fn within(&mut self, ms: u64) -> Option<Value> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            let got = tokio::time::timeout_at(until, self.0.next()).await.ok()?;
            match got {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(c))) => {
                    let (code, reason) = c
                        .map(|c| (u16::from(c.code), c.reason.to_string()))
                        .unwrap_or_default();
                    return Some(json!({"type": "closed", "code": code, "reason": reason}));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(json!({"type": "closed", "error": e.to_string()})),
                None => return Some(json!({"type": "closed"})),
            }
        }
    }

    /// The next message of `kind` (others, such as presence, passed over).
    pub(crate) async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] == kind {
                return m;
            }
            assert_ne!(m["type"], "closed", "closed while waiting for {kind}: {m}");
        }
    }
}

/// The signalling URL and join token `$join` gives `client` for Appointment `id`.
pub(crate) async fn join_token(
    client: &reqwest::Client,
    app: &TestApp,
    id: &str,
    consent: bool,
) -> (String, String) {
    let body = if consent {
        parameters(json!([{"name": "consent", "valueBoolean": true}]))
    } else {
        parameters(json!([]))
    };
    let (s, joined) = op(client, app, &format!("Appointment/{id}/$join"), &body).await;
    assert_eq!(s, 200, "{joined}");
    (
        param(&joined, "signalling")["valueUrl"]
            .as_str()
            .unwrap()
            .to_owned(),
        param(&joined, "token")["valueString"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// Every kind of signal a room stores.
const SIGNAL_KINDS: &[&str] = &[
    "presence", "offer", "answer", "ice", "chat", "admit", "hangup", "ended",
];

/// Messages the signalling server refuses (for another visit's room, malformed, oversized,
/// of no known type, the patient's media before the doctor let them in) are each answered
/// with an error and change nothing: neither room's stored signals, nothing relayed. A frame
/// over the 64 KiB the server reads is answered `too-large` before the connection is closed
/// with 1009; the only trace is the patient's presence ending.
async fn bad_signalling_messages_are_refused_and_change_neither_rooms_stored_signals(b: Backend) {
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "video", 10, 1)).await;
    let a_slot = app.create(slot(&sched, &from_now(1), &from_now(11))).await;
    let b_slot = app.create(slot(&sched, &from_now(11), &from_now(21))).await;
    let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
    let staff = app.client_for(Role::Clinician, None, Some(&doc));
    let mut rooms = Vec::new();
    for (s, p) in [(&a_slot, &an), (&b_slot, &binh)] {
        let (code, v) = op(&staff, &app, "Appointment/$book", &book_slot(s, p)).await;
        assert_eq!(code, 200, "{v}");
        rooms.push(v["id"].as_str().unwrap().to_owned());
    }
    let (room_a, room_b) = (rooms[0].clone(), rooms[1].clone());
    let an_client = app.client_for(Role::Patient, Some(&an), None);
    let binh_client = app.client_for(Role::Patient, Some(&binh), None);
    let (url, token) = join_token(&an_client, &app, &room_a, true).await;
    let (mut patient_ws, welcome) = Peer::open(&url, &token).await;
    assert_eq!(welcome["admitted"], false, "in the waiting room: {welcome}");
    let stored = |room: String| {
        let store = app.store.clone();
        async move { store.signals_of(&room, SIGNAL_KINDS, 1000).await.unwrap() }
    };
    // The patient's presence is stored just after their welcome.
    eventually(5, "the patient's presence stored", || async {
        stored(room_a.clone()).await.len() == 1
    })
    .await;
    let (url, token) = join_token(&staff, &app, &room_a, false).await;
    let (mut doctor_ws, welcome) = Peer::open(&url, &token).await;
    assert_eq!(welcome["present"], json!(["patient"]), "{welcome}");
    let presence = patient_ws.next_of("presence").await;
    assert_eq!(presence["from"], "practitioner");
    let (url, token) = join_token(&binh_client, &app, &room_b, true).await;
    let (mut other_ws, _) = Peer::open(&url, &token).await;
    eventually(5, "every presence stored", || async {
        stored(room_a.clone()).await.len() == 2 && stored(room_b.clone()).await.len() == 1
    })
    .await;
    let (a_before, b_before) = (stored(room_a.clone()).await, stored(room_b.clone()).await);

    let refused = [
        (
            json!({"type": "chat", "room": room_b, "data": {"text": "lạc phòng"}}).to_string(),
            "wrong-room",
        ),
        ("{not json".to_owned(), "malformed"),
        ("[\"offer\"]".to_owned(), "malformed"),
        (
            json!({"type": "chat", "data": {"text": "x".repeat(20_000)}}).to_string(),
            "too-large",
        ),
        (json!({"type": "chat", "data": {"text": ""}}).to_string(), "malformed"),
        (json!({"type": "shout", "data": {}}).to_string(), "unknown-type"),
        (json!({"type": "admit"}).to_string(), "forbidden"),
        (
            json!({"type": "offer", "data": {"type": "offer", "sdp": "v=0"}}).to_string(),
            "not-admitted",
        ),
        (
            json!({"type": "ice", "data": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}})
                .to_string(),
            "not-admitted",
        ),
    ];
    for (message, code) in &refused {
        patient_ws.say_text(message.clone()).await;
        let e = patient_ws.next().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(*code)),
            "{}: {e}",
            &message[..message.len().min(80)]
        );
        assert!(!e["message"].as_str().unwrap_or("").is_empty(), "{e}");
    }
    patient_ws.say_bytes(vec![0x7b, 0x7d]).await;
    assert_eq!(patient_ws.next().await["code"], "malformed");
    assert_eq!(stored(room_a.clone()).await, a_before, "room A unchanged");
    assert_eq!(stored(room_b.clone()).await, b_before, "room B unchanged");
    assert_eq!(
        doctor_ws.within(300).await,
        None,
        "nothing relayed to the doctor"
    );
    assert_eq!(
        other_ws.within(300).await,
        None,
        "nothing reached the other room"
    );

    // Let in, the patient's media pass and are kept (what the comparison above would see).
    doctor_ws
        .say(json!({"type": "admit", "room": room_a}))
        .await;
    assert_eq!(patient_ws.next_of("admit").await["from"], "practitioner");
    let candidate = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"});
    patient_ws
        .say(json!({"type": "ice", "room": room_a, "data": candidate}))
        .await;
    assert_eq!(doctor_ws.next_of("ice").await["data"], candidate);
    let a_admitted = stored(room_a.clone()).await;
    assert_eq!(
        a_admitted.len(),
        a_before.len() + 2,
        "the admit and the candidate"
    );

    // Over 64 KiB: not read; the reason, then the close (1009: too big).
    patient_ws
        .say(json!({"type": "chat", "data": {"text": "y".repeat(70_000)}}))
        .await;
    let e = patient_ws.next().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("too-large")),
        "{e}"
    );
    let closed = patient_ws.next().await;
    assert_eq!(
        (closed["type"].as_str(), closed["code"].as_u64()),
        (Some("closed"), Some(1009)),
        "{closed}"
    );
    assert!(
        closed["reason"].as_str().unwrap().contains("16384"),
        "{closed}"
    );
    eventually(5, "the patient's presence ended", || async {
        stored(room_a.clone()).await.len() == a_admitted.len() + 1
    })
    .await;
    let after = stored(room_a.clone()).await;
    assert_eq!(after[..a_admitted.len()], a_admitted[..]);
    let last = after.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.role.as_str(), last.body.as_str()),
        ("presence", "patient", r#"{"state":"left"}"#),
        "only the presence ended"
    );
    assert_eq!(stored(room_b.clone()).await, b_before, "room B unchanged");
    let left = doctor_ws.next_of("presence").await;
    assert_eq!(left["data"]["state"], "left");
    assert!(
        doctor_ws.within(300).await.is_none(),
        "no chat reached the doctor"
    );
}

async fn a_booked_video_visit_nobody_joined_becomes_a_no_show(b: Backend) {
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Phạm").await;
    let sched = app.create(schedule(&doc, "video", 30, 1)).await;
    let t = |secs: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
            .format("%Y-%m-%dT%H:%M:%S+07:00")
            .to_string()
    };
    let s = app.create(slot(&sched, &t(2), &t(3))).await;
    let an = patient(&app, 3).await;
    let staff = app.client_for(Role::Cashier, None, None);
    let (code, v) = op(&staff, &app, "Appointment/$book", &book_slot(&s, &an)).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    eventually(10, "no-show", || {
        let (app, id) = (&app, id.clone());
        async move { status(app, &format!("Appointment/{id}")).await == "noshow" }
    })
    .await;
}

/// An instant `secs` seconds from now, on Vietnam's clock.
fn secs_from_now(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S+07:00")
        .to_string()
}

/// An appointment written plainly (as a desk system would): `status`, its window, a mode,
/// and (pending) when it lapses.
fn written_appointment(
    patient: &str,
    status: &str,
    start: &str,
    end: &str,
    mode: &str,
    expires: Option<&str>,
) -> Value {
    let mut extension = vec![json!({"url": "urn:hospital:visit-mode", "valueCode": mode})];
    if let Some(x) = expires {
        extension.push(json!({"url": "urn:hospital:appointment:expires", "valueInstant": x}));
    }
    json!({"resourceType": "Appointment", "status": status, "start": start, "end": end,
        "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}],
        "extension": extension})
}

/// The sweep reads long lists a page at a time and looks at a bounded batch per pass, going
/// on after it at the next pass: what is due far down a list is reached in a few passes, and
/// each pass does a bounded amount of work. (It read only the first 200 matches: with 200
/// visits still inside their window, a lapsed hold or an ended visit further down waited for
/// ever.)
async fn the_sweep_works_through_long_lists_a_bounded_batch_at_a_time(b: Backend) {
    // The background sweeps once, at start, before any of this exists.
    let app = spawn_app_with(b, |c| c.sweep_ms = 3_600_000).await;
    let mut booking = hospital_telemedicine::booking(&app.running.as_ref().unwrap().context);
    booking.settings.sweep_page = 2;
    booking.settings.sweep_batch = 3;
    let an = patient(&app, 1).await;
    // Four holds still inside their window, five that lapse in three seconds (each an hour
    // of An's on a day ahead, so that none overlaps another).
    let lapse_at = secs_from_now(3);
    let mut waiting = Vec::new();
    let mut lapsing = Vec::new();
    for i in 0..9 {
        let (start, end) = (from_now(600 + 60 * i), from_now(630 + 60 * i));
        let expires = if i < 4 {
            from_now(120)
        } else {
            lapse_at.clone()
        };
        let id = app
            .create(written_appointment(
                &an,
                "pending",
                &start,
                &end,
                "in-person",
                Some(&expires),
            ))
            .await;
        if i < 4 {
            waiting.push(id)
        } else {
            lapsing.push(id)
        }
    }
    // Six video visits under way nobody joined, and after them on the list (it begins
    // later) one that ends in three seconds.
    let mut under_way = Vec::new();
    for i in 0..6 {
        let p = patient(&app, 10 + i).await;
        under_way.push(
            app.create(written_appointment(
                &p,
                "booked",
                &from_now(-20),
                &from_now(40),
                "video",
                None,
            ))
            .await,
        );
    }
    let late = patient(&app, 20).await;
    let ending = app
        .create(written_appointment(
            &late,
            "booked",
            &from_now(-5),
            &secs_from_now(3),
            "video",
            None,
        ))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let statuses = |ids: Vec<String>| {
        let app = &app;
        async move {
            let mut out = Vec::new();
            for id in ids {
                out.push(status(app, &format!("Appointment/{id}")).await);
            }
            out
        }
    };
    // Pass 1: three of the five lapsed holds (the batch), and three visits under way.
    let first = booking.sweep().await.unwrap();
    assert_eq!((first.released, first.no_shows), (3, 0), "{first:?}");
    // Pass 2: the two other lapsed holds, and the next three visits under way.
    let second = booking.sweep().await.unwrap();
    assert_eq!((second.released, second.no_shows), (2, 0), "{second:?}");
    assert_eq!(
        statuses(lapsing.clone()).await,
        ["cancelled"; 5],
        "every lapsed hold released"
    );
    // Pass 3: the ended visit, seventh on its list.
    let third = booking.sweep().await.unwrap();
    assert_eq!((third.released, third.no_shows), (0, 1), "{third:?}");
    assert_eq!(
        status(&app, &format!("Appointment/{ending}")).await,
        "noshow"
    );
    assert_eq!(
        statuses(waiting).await,
        ["pending"; 4],
        "holds in force stay"
    );
    assert_eq!(
        statuses(under_way).await,
        ["booked"; 6],
        "visits under way stay"
    );
    // Once through, the lists begin again and find nothing more to do.
    for _ in 0..3 {
        assert_eq!(booking.sweep().await.unwrap(), Default::default());
    }
}

/// A hold nobody books lapses: the sweep releases it, its slot is free again, another patient
/// books the slot, and the lapsed hold can no longer be booked.
async fn an_expired_hold_frees_its_slot_for_another_patient(b: Backend) {
    let app = spawn_app_with(b, |c| c.hold_secs = 1).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let s = app.create(slot(&sched, &from_now(60), &from_now(90))).await;
    let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
    let me = app.client_for(Role::Patient, Some(&an), None);
    let the_slot = json!({"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}});
    let (code, held) = op(
        &me,
        &app,
        "Appointment/$hold",
        &parameters(json!([the_slot.clone()])),
    )
    .await;
    assert_eq!(
        (code, held["status"].as_str()),
        (200, Some("pending")),
        "{held}"
    );
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy-tentative");
    let id = held["id"].as_str().unwrap().to_owned();
    eventually(10, "the sweep releases the lapsed hold", || {
        let (app, id) = (&app, id.clone());
        async move { status(app, &format!("Appointment/{id}")).await == "cancelled" }
    })
    .await;
    let lapsed = read(&app, &format!("Appointment/{id}")).await;
    assert_eq!(lapsed["cancelationReason"]["text"], "the hold lapsed");
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "free");
    assert!(
        app.search_ids(&format!(
            "Appointment?patient=Patient/{an}&status=pending,booked,arrived"
        ))
        .await
        .is_empty(),
        "An holds nothing any more"
    );
    // The lapsed hold is not booked late.
    let (code, v) = op(
        &me,
        &app,
        "Appointment/$book",
        &parameters(json!([
            {"name": "appointment", "valueReference": {"reference": format!("Appointment/{id}")}}])),
    )
    .await;
    assert_eq!(code, 412, "{v}");
    assert_eq!(
        v["issue"][0]["details"]["coding"][0]["code"], "PC_03",
        "{v}"
    );
    // Binh books the slot.
    let other = app.client_for(Role::Patient, Some(&binh), None);
    let (code, booked) = op(
        &other,
        &app,
        "Appointment/$book",
        &parameters(json!([the_slot])),
    )
    .await;
    assert_eq!(
        (code, booked["status"].as_str()),
        (200, Some("booked")),
        "{booked}"
    );
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy");
    assert_eq!(
        status(&app, &format!("Appointment/{id}")).await,
        "cancelled"
    );
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn grpc_books_once_and_lists_the_practitioners_day(b: Backend) {
    use hospital_proto::telemedicine::v1 as pb;
    let app = spawn_app(b).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let start = from_now(60);
    let s = app.create(slot(&sched, &start, &from_now(90))).await;
    let mut patients = Vec::new();
    for i in 0..10 {
        patients.push(patient(&app, 40 + i).await);
    }
    let addr = app.running.as_ref().unwrap().grpc_addrs[&hospital_core::ServiceName::Telemedicine];
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = pb::telemedicine_client::TelemedicineClient::new(channel);
    let service = mint(Role::Service, "reception-kiosk", None, None, None);
    let mut calls = Vec::new();
    for p in &patients {
        let mut c = client.clone();
        let req = authed(
            pb::BookAppointmentRequest {
                slot_id: s.clone(),
                patient_id: p.clone(),
                reason: "Khám sức khỏe".into(),
                mode: String::new(),
            },
            &service,
        );
        calls.push(tokio::spawn(async move { c.book_appointment(req).await }));
    }
    let mut booked = Vec::new();
    let mut taken = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(r) => booked.push(r.into_inner()),
            Err(st) => {
                assert_eq!(st.code(), tonic::Code::AlreadyExists, "{st:?}");
                taken += 1;
            }
        }
    }
    assert_eq!(
        (booked.len(), taken),
        (1, 9),
        "one booking through gRPC too"
    );
    let record = &booked[0];
    assert_eq!(record.status, "booked");
    assert_eq!(record.practitioner_ids, vec![doc.clone()]);
    assert_eq!(record.slot_id, s);
    let mut c = client.clone();
    let got = c
        .get_appointment(authed(
            pb::GetAppointmentRequest {
                appointment_id: record.id.clone(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, record.id);
    let day = start[..10].to_owned();
    let listed = c
        .list_practitioner_day(authed(
            pb::ListPractitionerDayRequest {
                practitioner_id: doc.clone(),
                date: day.clone(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .appointments
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        [record.id.as_str()]
    );
    // Another patient sees nothing of the day; the booked patient sees theirs.
    let stranger = patients.iter().find(|p| **p != record.patient_id).unwrap();
    let other = mint(Role::Patient, "other", Some(stranger), None, None);
    let theirs = mint(Role::Patient, "own", Some(&record.patient_id), None, None);
    let none = c
        .list_practitioner_day(authed(
            pb::ListPractitionerDayRequest {
                practitioner_id: doc.clone(),
                date: day.clone(),
            },
            &other,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(none.appointments.is_empty());
    let st = c
        .get_appointment(authed(
            pb::GetAppointmentRequest {
                appointment_id: record.id.clone(),
            },
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::NotFound);
    let mine = c
        .list_practitioner_day(authed(
            pb::ListPractitionerDayRequest {
                practitioner_id: doc.clone(),
                date: day,
            },
            &theirs,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.appointments.len(), 1);
    // Confirming a payment is billing's, never a patient's.
    let st = c
        .confirm_payment(authed(
            pb::ConfirmPaymentRequest {
                appointment_id: record.id.clone(),
                invoice_id: "x".into(),
            },
            &theirs,
        ))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    let st = c
        .list_practitioner_day(authed(
            pb::ListPractitionerDayRequest {
                practitioner_id: doc,
                date: "02/12/2026".into(),
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
}

/// Counts what it sends.
struct Counting(
    std::sync::atomic::AtomicUsize,
    std::sync::Mutex<Vec<String>>,
);

#[async_trait::async_trait]
impl hospital_telemedicine::reminders::Sender for Counting {
    async fn send(&self, key: &str, _a: &str, channel: &str, _at: &str) -> Result<(), String> {
        assert_eq!(channel, "sms");
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.1.lock().unwrap().push(key.to_owned());
        Ok(())
    }
}

async fn reminders_are_queued_with_the_booking_and_sent_once_by_racing_replicas(b: Backend) {
    use hospital_telemedicine::reminders::{TOPIC, deliver};
    // The background's own deliveries stay out of the way: it sweeps once, at start.
    let app = spawn_app_with(b, |c| c.sweep_ms = 3_600_000).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let soon = app.create(slot(&sched, &from_now(30), &from_now(60))).await;
    let also_soon = app.create(slot(&sched, &from_now(60), &from_now(90))).await;
    let later = app
        .create(slot(
            &sched,
            &from_now(3 * 24 * 60),
            &from_now(3 * 24 * 60 + 30),
        ))
        .await;
    let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
    let desk = app.client_for(Role::Cashier, None, None);
    let book = |s: &str, p: &str| {
        parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}},
        {"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}]))
    };
    let (_, first) = op(&desk, &app, "Appointment/$book", &book(&soon, &an)).await;
    let (_, cancelled) = op(&desk, &app, "Appointment/$book", &book(&also_soon, &binh)).await;
    let (_, far) = op(&desk, &app, "Appointment/$book", &book(&later, &an)).await;
    let cancelled = cancelled["id"].as_str().unwrap().to_owned();
    let (s, _) = op(
        &desk,
        &app,
        &format!("Appointment/{cancelled}/$cancel"),
        &parameters(json!([])),
    )
    .await;
    assert_eq!(s, 200);
    let queued = app.store.outbox_of(TOPIC).await.unwrap();
    // Within the hour: one reminder now each; three days ahead: 24 h and 1 h before.
    assert_eq!(queued.len(), 4, "{queued:?}");
    let far_id = far["id"].as_str().unwrap();
    assert_eq!(queued.iter().filter(|(k, _)| k.contains(far_id)).count(), 2);
    // Eight deliverers at once (on PostgreSQL half of them through a second store: another
    // replica): the due reminder goes once, the cancelled visit's is settled unsent.
    let counting = std::sync::Arc::new(Counting(Default::default(), Default::default()));
    let second = match b {
        Backend::Postgres => {
            let url = app
                .running
                .as_ref()
                .unwrap()
                .context
                .config
                .database_url
                .clone();
            Some(
                hospital_core::store::Store::open(&url, Default::default())
                    .await
                    .unwrap(),
            )
        }
        Backend::Sqlite => None,
    };
    let mut runs = Vec::new();
    for i in 0..8 {
        let store = match (&second, i % 2) {
            (Some(s), 1) => s.clone(),
            _ => app.store.clone(),
        };
        let c = counting.clone();
        runs.push(tokio::spawn(async move {
            deliver(&store, c.as_ref(), &format!("replica-{i}"))
                .await
                .unwrap()
        }));
    }
    let mut total = 0;
    for r in runs {
        total += r.await.unwrap();
    }
    assert_eq!(total, 1);
    assert_eq!(
        counting.0.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sent exactly once"
    );
    let first_id = first["id"].as_str().unwrap();
    assert!(counting.1.lock().unwrap()[0].contains(first_id));
    let settled = app.store.outbox_of(TOPIC).await.unwrap();
    let outcome = |id: &str| {
        settled
            .iter()
            .filter(|(k, _)| k.contains(id))
            .map(|(_, o)| o.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(outcome(first_id), [Some("sent".to_owned())]);
    assert!(
        outcome(&cancelled)[0]
            .as_deref()
            .unwrap()
            .starts_with("skipped")
    );
    assert_eq!(outcome(far_id), [None, None], "not due yet");
    // Delivering again sends nothing more.
    assert_eq!(
        deliver(&app.store, counting.as_ref(), "replica-9")
            .await
            .unwrap(),
        0
    );
    if let Some(s) = second {
        s.close().await;
    }
}

/// The payment code of a prepaid visit's invoice (what the patient writes in the transfer).
async fn payment_code_of(app: &TestApp, visit: &Value) -> (String, String) {
    let invoice = visit["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:hospital:appointment:invoice")
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .expect("the visit's invoice")
        .to_owned();
    let inv = read(app, &invoice).await;
    let memo = inv["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "urn:hospital:payment-code")
        .and_then(|i| i["value"].as_str())
        .unwrap()
        .to_owned();
    (invoice.trim_start_matches("Invoice/").to_owned(), memo)
}

/// The reminders of `appointment` in the outbox: each key and what became of it.
async fn reminders_of(app: &TestApp, appointment: &str) -> Vec<(String, Option<String>)> {
    app.store
        .outbox_of(hospital_telemedicine::reminders::TOPIC)
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.contains(appointment))
        .collect()
}

/// Reminders queued by one process are sent by the next, after a restart, once each: each
/// process delivers what is due when it starts (and then not for an hour), so what the log
/// sender wrote shows which process sent what.
async fn reminders_queued_before_a_restart_are_sent_once_by_the_processes_after_it(b: Backend) {
    let logs = crate::logs_without_personal_data::capture();
    let hourly = |c: &mut hospital::Config| c.sweep_ms = 3_600_000;
    let mut app = spawn_app_with(b, hourly).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let slots = [
        app.create(slot(&sched, &from_now(30), &from_now(45))).await,
        app.create(slot(&sched, &from_now(45), &from_now(50))).await,
        app.create(slot(
            &sched,
            &from_now(3 * 24 * 60),
            &from_now(3 * 24 * 60 + 15),
        ))
        .await,
        app.create(slot(&sched, &from_now(50), &from_now(58))).await,
    ];
    let (an, binh, chi) = (
        patient(&app, 1).await,
        patient(&app, 2).await,
        patient(&app, 3).await,
    );
    let desk = app.client_for(Role::Cashier, None, None);
    let book = |app: &TestApp, s: &str, p: &str| {
        let (desk, url, body) = (
            desk.clone(),
            app.url("Appointment/$book"),
            parameters(json!([
                {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}},
                {"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}])),
        );
        async move {
            let r = desk
                .post(url)
                .header("content-type", FHIR)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // Two visits within the hour (a reminder due now each), one in three days (two later).
    let soon = book(&app, &slots[0], &an).await;
    let also_soon = book(&app, &slots[1], &binh).await;
    let far = book(&app, &slots[2], &an).await;
    for id in [&soon, &also_soon] {
        assert_eq!(
            reminders_of(&app, id)
                .await
                .iter()
                .map(|(_, o)| o.clone())
                .collect::<Vec<_>>(),
            [None],
            "queued, not sent: this process delivered at its start, before the booking"
        );
    }
    restart_app(&mut app, Deployment::all(), hourly).await;
    for id in [&soon, &also_soon] {
        eventually(10, "sent by the process after the restart", || async {
            reminders_of(&app, id).await[0].1.as_deref() == Some("sent")
        })
        .await;
    }
    // A visit booked on the second process, after its delivery: the third one sends it.
    let later = book(&app, &slots[3], &chi).await;
    restart_app(&mut app, Deployment::all(), hourly).await;
    eventually(10, "sent by the third process", || async {
        reminders_of(&app, &later).await[0].1.as_deref() == Some("sent")
    })
    .await;
    let text = logs.text();
    let sent = |id: &str| {
        text.lines()
            .filter(|l| l.contains("visit reminder") && l.contains(id))
            .count()
    };
    for id in [&soon, &also_soon, &later] {
        assert_eq!(sent(id), 1, "Appointment/{id}'s reminder sent once");
        assert_eq!(reminders_of(&app, id).await.len(), 1);
    }
    assert_eq!(sent(&far), 0, "not due yet");
    assert_eq!(
        reminders_of(&app, &far)
            .await
            .iter()
            .map(|(_, o)| o.clone())
            .collect::<Vec<_>>(),
        [None, None]
    );
    app.stop().await;
}

/// The money arrives while no process runs telemedicine (only billing is up): nothing watches
/// the invoice. When telemedicine starts again, its sweep alone finds the invoice paid and
/// books the visit.
async fn a_payment_made_while_no_telemedicine_process_runs_books_the_visit_when_one_starts(
    b: Backend,
) {
    let mut app = spawn_app(b).await;
    price_list(&app).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "video", 20, 1)).await;
    let s = app.create(slot(&sched, &from_now(60), &from_now(80))).await;
    let an = patient(&app, 7).await;
    let me = app.client_for(Role::Patient, Some(&an), None);
    let (code, visit) = op(
        &me,
        &app,
        "Appointment/$book",
        &parameters(json!([
            {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}}])),
    )
    .await;
    assert_eq!(
        (code, visit["status"].as_str()),
        (200, Some("pending")),
        "{visit}"
    );
    let id = visit["id"].as_str().unwrap().to_owned();
    let (invoice, memo) = payment_code_of(&app, &visit).await;
    // Telemedicine stops; a billing process takes the bank's feed.
    restart_app(&mut app, Deployment::only(ServiceName::Billing), |_| {}).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    assert_eq!(
        post_sepay(&app, 9_300_001, 150_000, &memo, &account).await,
        200
    );
    assert_eq!(
        status(&app, &format!("Invoice/{invoice}")).await,
        "balanced"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        status(&app, &format!("Appointment/{id}")).await,
        "pending",
        "nobody watches while telemedicine is down"
    );
    assert!(reminders_of(&app, &id).await.is_empty());
    // Telemedicine is back: its sweep books the visit.
    restart_app(&mut app, Deployment::all(), |_| {}).await;
    eventually(10, "booked by the sweep", || async {
        status(&app, &format!("Appointment/{id}")).await == "booked"
    })
    .await;
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy");
    assert_eq!(
        reminders_of(&app, &id).await.len(),
        1,
        "a booked visit has its reminder"
    );
    app.stop().await;
}

/// A gateway that deduplicates by the key it is given, as SMS and Zalo gateways do by a
/// client message id: every attempt it saw, and what it delivered.
#[derive(Default)]
struct Gateway {
    attempts: std::sync::Mutex<Vec<String>>,
    delivered: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The replica dies right after this send, before it can mark the reminder sent.
    die_after_sending: bool,
}

#[async_trait::async_trait]
impl hospital_telemedicine::reminders::Sender for Gateway {
    async fn send(&self, key: &str, _a: &str, _channel: &str, _at: &str) -> Result<(), String> {
        self.attempts.lock().unwrap().push(key.to_owned());
        self.delivered.lock().unwrap().insert(key.to_owned());
        if self.die_after_sending {
            panic!("the replica died after sending, before marking");
        }
        Ok(())
    }
}

/// The window a crash leaves open, closed by the key: a replica that sent a reminder and died
/// before marking it leaves it claimed; no other replica sends it while the lease holds; after
/// the lease another sends it again with the same key, and the gateway delivers it once.
async fn a_reminder_whose_replica_died_after_sending_it_is_sent_again_with_the_same_key_after_its_lease(
    b: Backend,
) {
    use hospital_telemedicine::reminders::{Delivery, deliver_with};
    let app = spawn_app_with(b, |c| c.sweep_ms = 3_600_000).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "in-person", 30, 1)).await;
    let s = app.create(slot(&sched, &from_now(30), &from_now(45))).await;
    let an = patient(&app, 1).await;
    let desk = app.client_for(Role::Cashier, None, None);
    let (code, visit) = op(&desk, &app, "Appointment/$book", &book_slot(&s, &an)).await;
    assert_eq!(code, 200, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let how = Delivery {
        lease: std::time::Duration::from_secs(2),
        send_within: std::time::Duration::from_millis(500),
        at_most: 100,
    };
    let dying = std::sync::Arc::new(Gateway {
        die_after_sending: true,
        ..Default::default()
    });
    let (store, sender) = (app.store.clone(), dying.clone());
    let died =
        tokio::spawn(async move { deliver_with(&store, sender.as_ref(), "replica-a", how).await })
            .await;
    assert!(died.is_err(), "replica A died");
    let key = dying.attempts.lock().unwrap().clone();
    assert_eq!(key.len(), 1);
    assert!(key[0].contains(&id), "{key:?}");
    assert_eq!(reminders_of(&app, &id).await[0].1, None, "not marked");
    // While A's lease holds, B sends nothing.
    let gateway = Gateway::default();
    assert_eq!(
        deliver_with(&app.store, &gateway, "replica-b", how)
            .await
            .unwrap(),
        0
    );
    assert!(gateway.attempts.lock().unwrap().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        deliver_with(&app.store, &gateway, "replica-b", how)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        *gateway.attempts.lock().unwrap(),
        key,
        "sent again with the same key"
    );
    assert_eq!(reminders_of(&app, &id).await[0].1.as_deref(), Some("sent"));
    // And never again.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        deliver_with(&app.store, &gateway, "replica-c", how)
            .await
            .unwrap(),
        0
    );
    assert_eq!(gateway.attempts.lock().unwrap().len(), 1);
}

/// Billing's push (`ConfirmPayment`: billing tells telemedicine when a bank feed's payment
/// settles a visit's prepayment) books the pending visit, once. The visit is set up so that
/// nothing else would book it: its watcher died with the process that booked it, and the
/// sweep of the process that runs now has passed. `ConfirmPayment` refuses an unknown invoice,
/// an unpaid one and another bill's, writing nothing, and repeated (billing retrying) answers
/// the same booked visit and writes nothing.
/// Every door of billing's ledger tells telemedicine that a visit's prepayment arrived, not
/// only the bank feeds: cash taken at the desk (`$pay-cash`), and a queued transfer the
/// cashier assigns to the bill (`$assign`). Set up as above so that nothing else would book
/// the visits: their watchers died with the process that booked them, and the sweep of the
/// process that runs now has passed.
async fn a_prepayment_paid_at_the_desk_or_assigned_by_the_cashier_books_the_visit_at_once(
    b: Backend,
) {
    let hourly = |c: &mut hospital::Config| c.sweep_ms = 3_600_000;
    let mut app = spawn_app_with(b, hourly).await;
    price_list(&app).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "video", 20, 1)).await;
    let by_cash = app.create(slot(&sched, &from_now(60), &from_now(80))).await;
    let by_assign = app
        .create(slot(&sched, &from_now(80), &from_now(100)))
        .await;
    let marker_slot = app.create(slot(&sched, &from_now(30), &from_now(50))).await;
    let (an, binh, chau) = (
        patient(&app, 1).await,
        patient(&app, 2).await,
        patient(&app, 3).await,
    );
    let mut visits = Vec::new();
    for (who, s) in [(&an, &by_cash), (&chau, &by_assign)] {
        let me = app.client_for(Role::Patient, Some(who), None);
        let (code, visit) = op(
            &me,
            &app,
            "Appointment/$book",
            &parameters(json!([
                {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}}])),
        )
        .await;
        assert_eq!((code, visit["status"].as_str()), (200, Some("pending")));
        let (invoice, _) = payment_code_of(&app, &visit).await;
        visits.push((visit["id"].as_str().unwrap().to_owned(), invoice));
    }
    let desk = app.client_for(Role::Cashier, None, None);
    restart_after_a_marker(&mut app, &desk, &marker_slot, &binh, hourly).await;

    // Cash at the desk.
    let (cash_visit, cash_invoice) = &visits[0];
    let (code, paid) = crate::billing::pay_cash(&desk, &app, cash_invoice, 150_000).await;
    assert_eq!(code, 200, "{paid}");
    eventually(5, "the desk's payment told telemedicine", || async {
        status(&app, &format!("Appointment/{cash_visit}")).await == "booked"
    })
    .await;

    // A transfer without the payment code waits in the cashier's queue; assigned, it pays.
    let (assign_visit, assign_invoice) = &visits[1];
    let account = hospital::Config::for_tests("unused").bank_account;
    assert_eq!(
        post_sepay(&app, 9_500_001, 150_000, "chuyen tien kham", &account).await,
        200
    );
    assert_eq!(
        status(&app, &format!("Appointment/{assign_visit}")).await,
        "pending"
    );
    let notice = app
        .search_ids("PaymentNotice?identifier=urn:hospital:bank-transaction:sepay|9500001")
        .await;
    assert_eq!(notice.len(), 1, "{notice:?}");
    let (code, assigned) = op(
        &desk,
        &app,
        &format!("PaymentNotice/{}/$assign", notice[0]),
        &parameters(json!([
            {"name": "invoice", "valueReference": {"reference": format!("Invoice/{assign_invoice}")}}])),
    )
    .await;
    assert_eq!(code, 200, "{assigned}");
    eventually(5, "the cashier's assignment told telemedicine", || async {
        status(&app, &format!("Appointment/{assign_visit}")).await == "booked"
    })
    .await;
    app.stop().await;
}

async fn billing_confirming_a_payment_over_grpc_books_the_pending_visit_once(b: Backend) {
    use hospital_proto::telemedicine::v1 as pb;
    let hourly = |c: &mut hospital::Config| c.sweep_ms = 3_600_000;
    let mut app = spawn_app_with(b, hourly).await;
    price_list(&app).await;
    let doc = doctor(&app, "Trần").await;
    let sched = app.create(schedule(&doc, "video", 20, 1)).await;
    let s = app.create(slot(&sched, &from_now(60), &from_now(80))).await;
    let marker_slot = app.create(slot(&sched, &from_now(30), &from_now(50))).await;
    let (an, binh) = (patient(&app, 1).await, patient(&app, 2).await);
    let me = app.client_for(Role::Patient, Some(&an), None);
    let (code, visit) = op(
        &me,
        &app,
        "Appointment/$book",
        &parameters(json!([
            {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}}])),
    )
    .await;
    assert_eq!(
        (code, visit["status"].as_str()),
        (200, Some("pending")),
        "{visit}"
    );
    let id = visit["id"].as_str().unwrap().to_owned();
    let (invoice, memo) = payment_code_of(&app, &visit).await;
    // A visit booked at the desk with a reminder due now: once the next process has sent it,
    // that process's sweep has passed (the pending visit unpaid then).
    let desk = app.client_for(Role::Cashier, None, None);
    restart_after_a_marker(&mut app, &desk, &marker_slot, &binh, hourly).await;
    let account = hospital::Config::for_tests("unused").bank_account;
    assert_eq!(
        post_sepay(&app, 9_400_001, 150_000, &memo, &account).await,
        200
    );
    assert_eq!(
        status(&app, &format!("Invoice/{invoice}")).await,
        "balanced"
    );
    eventually(5, "billing told telemedicine the visit is paid", || async {
        status(&app, &format!("Appointment/{id}")).await == "booked"
    })
    .await;

    let addr = app.running.as_ref().unwrap().grpc_addrs[&ServiceName::Telemedicine];
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = pb::telemedicine_client::TelemedicineClient::new(channel);
    let billing = mint(Role::Service, "billing", None, None, None);
    let confirm = |invoice: &str| {
        let mut c = client.clone();
        let req = authed(
            pb::ConfirmPaymentRequest {
                appointment_id: id.clone(),
                invoice_id: invoice.to_owned(),
            },
            &billing,
        );
        async move { c.confirm_payment(req).await.map(|r| r.into_inner()) }
    };
    // An unknown invoice, an unpaid one, and a paid one of another bill: refused, nothing
    // written.
    let (unpaid, _, _) = crate::billing::issued(&app, &binh, 90_000).await;
    let (paid, other_memo, _) = crate::billing::issued(&app, &binh, 60_000).await;
    assert_eq!(
        post_sepay(&app, 9_400_002, 60_000, &other_memo, &account).await,
        200
    );
    assert_eq!(status(&app, &format!("Invoice/{paid}")).await, "balanced");
    let before = app.versions().await;
    let st = confirm("not-an-invoice").await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::NotFound, "{st:?}");
    for other in [&unpaid, &paid] {
        let st = confirm(other).await.unwrap_err();
        assert_eq!(
            st.code(),
            tonic::Code::FailedPrecondition,
            "{other}: {st:?}"
        );
    }
    assert_eq!(app.versions().await, before, "nothing changed");
    // Billing confirms again (a retry): the visit its push booked, nothing written.
    let booked = confirm(&invoice).await.unwrap();
    assert_eq!(booked.status, "booked");
    assert_eq!(booked.invoice_id, invoice);
    assert_eq!(status(&app, &format!("Slot/{s}")).await, "busy");
    let after = app.versions().await;
    assert_eq!(after, before, "booked once, by billing's push");
    // Repeated (billing retrying, at once and again later): the same visit, nothing written.
    let again = futures::future::join_all((0..5).map(|_| confirm(&invoice))).await;
    for r in again {
        let r = r.unwrap();
        assert_eq!(
            (r.status.as_str(), r.version_id),
            ("booked", booked.version_id)
        );
    }
    assert_eq!(app.versions().await, after, "confirmed once");
    let (_, history) = app.get_json(&format!("Appointment/{id}/_history")).await;
    let booked_versions = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["status"] == "booked")
        .count();
    assert_eq!(booked_versions, 1);
    app.stop().await;
}

async fn the_indicators_count_online_bookings_sessions_and_no_shows(b: Backend) {
    let app = spawn_app(b).await;
    let (d1, d2) = (doctor(&app, "Trần").await, doctor(&app, "Lê").await);
    let video = app.create(schedule(&d1, "video", 30, 1)).await;
    let desk = app.create(schedule(&d2, "in-person", 30, 1)).await;
    let slots = [
        app.create(slot(&video, &from_now(60), &from_now(90))).await,
        app.create(slot(&desk, &from_now(60), &from_now(90))).await,
        app.create(slot(&desk, &from_now(90), &from_now(120))).await,
        app.create(slot(&desk, &from_now(120), &from_now(150)))
            .await,
    ];
    let ps = [
        patient(&app, 1).await,
        patient(&app, 2).await,
        patient(&app, 3).await,
        patient(&app, 4).await,
    ];
    let staff = app.client_for(Role::Clinician, None, Some(&d1));
    let book = |s: &str, p: &str| {
        parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}},
        {"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}]))
    };
    let (_, v) = op(&staff, &app, "Appointment/$book", &book(&slots[0], &ps[0])).await;
    let online = app.client_for(Role::Patient, Some(&ps[1]), None);
    let (_, o) = op(
        &online,
        &app,
        "Appointment/$book",
        &parameters(json!([
        {"name": "slot", "valueReference": {"reference": format!("Slot/{}", slots[1])}}])),
    )
    .await;
    let (_, n) = op(&staff, &app, "Appointment/$book", &book(&slots[2], &ps[2])).await;
    let (_, c) = op(&staff, &app, "Appointment/$book", &book(&slots[3], &ps[3])).await;
    let id = |x: &Value| x["id"].as_str().unwrap().to_owned();
    let set = |a: &Value, status: &str| {
        let mut a = a.clone();
        a["status"] = json!(status);
        a
    };
    for (a, st) in [(&v, "fulfilled"), (&n, "noshow")] {
        let (s, _, out) = app
            .put(&format!("Appointment/{}", id(a)), &set(a, st))
            .await;
        assert_eq!(s, 200, "{out}");
    }
    let (s, _) = op(
        &staff,
        &app,
        &format!("Appointment/{}/$cancel", id(&c)),
        &parameters(json!([])),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(o["status"], "booked");
    let today = (chrono::Utc::now() + chrono::Duration::hours(7))
        .format("%Y-%m-%d")
        .to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::hours(31))
        .format("%Y-%m-%d")
        .to_string();
    let admin = app.client_for(Role::Admin, None, None);
    let q = format!("Appointment/$indicators?start={today}&end={tomorrow}");
    let r: Value = admin
        .get(app.url(&q))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = |name: &str| param(&r, name).clone();
    assert_eq!(
        n("appointments")["valueInteger"],
        3,
        "the cancelled one is not counted: {r}"
    );
    assert_eq!(n("booked-online")["valueInteger"], 1);
    assert_eq!(n("online-share")["valueDecimal"], 0.3333);
    assert_eq!(n("telemedicine-sessions")["valueInteger"], 1);
    assert_eq!(n("no-show-rate")["valueDecimal"], 0.5);
    let r = staff.get(app.url(&q)).send().await.unwrap();
    assert_eq!(r.status(), 403, "for administrators");
    let r = admin
        .get(app.url(&format!(
            "Appointment/$indicators?start={tomorrow}&end={today}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// The booking table of `docs/access.md`: role -> (column -> cell).
fn booking_table() -> Vec<(Role, Vec<(String, String)>)> {
    let doc = include_str!("../../docs/access.md");
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.starts_with("## Booking and visits"))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let header: Vec<String> = lines
        .next()
        .expect("the booking table")
        .split('|')
        .map(|c| c.split_whitespace().next().unwrap_or("").to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header[0], "role");
    lines.next();
    lines
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().to_owned()).collect();
            let cells = &cells[1..cells.len() - 1];
            let role =
                Role::parse(&cells[0]).unwrap_or_else(|| panic!("unknown role {}", cells[0]));
            (
                role,
                header[1..]
                    .iter()
                    .cloned()
                    .zip(cells[1..].iter().cloned())
                    .collect(),
            )
        })
        .collect()
}

async fn the_booking_table_in_the_docs_is_what_the_operations_enforce(b: Backend) {
    let app = spawn_app(b).await;
    price_list(&app).await;
    let table = booking_table();
    assert_eq!(table.len(), 5, "every role has a row");
    let doc = doctor(&app, "Trần").await;
    let stranger_doc = doctor(&app, "Lê").await;
    let video = app.create(schedule(&doc, "video", 30, 1)).await;
    let desk = app.client_for(Role::Cashier, None, None);
    let mut n = 0u32;
    for (role, cells) in table {
        let cell = |c: &str| {
            cells
                .iter()
                .find(|(k, _)| k == c)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {c}"))
        };
        n += 10;
        // Whom the role acts as, and the appointments it acts on.
        let own = patient(&app, n).await;
        let other = patient(&app, n + 1).await;
        let client = match role {
            Role::Patient => app.client_for(role, Some(&own), None),
            Role::Clinician => app.client_for(role, None, Some(&doc)),
            _ => app.client_for(role, None, None),
        };
        let new_slot = |a: i64| {
            let app = &app;
            let video = video.clone();
            async move {
                app.create(slot(&video, &from_now(a), &from_now(a + 20)))
                    .await
            }
        };
        let base = i64::from(n) * 60;
        let for_whom = |p: &str| json!({"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}});
        let slot_of =
            |s: &str| json!({"name": "slot", "valueReference": {"reference": format!("Slot/{s}")}});
        // book
        let s1 = new_slot(base).await;
        let target = if role == Role::Patient { &own } else { &other };
        let (st, v) = op(
            &client,
            &app,
            "Appointment/$book",
            &parameters(json!([slot_of(&s1), for_whom(target)])),
        )
        .await;
        match cell("book") {
            "own" | "anyone" => assert!(matches!(st, 200), "{role:?} books: {st} {v}"),
            "—" => assert_eq!(st, 403, "{role:?} may not book: {v}"),
            c => panic!("unknown cell {c}"),
        }
        if cell("book") == "own" {
            let s2 = new_slot(base + 20).await;
            let (st, _) = op(
                &client,
                &app,
                "Appointment/$book",
                &parameters(json!([slot_of(&s2), for_whom(&other)])),
            )
            .await;
            assert_eq!(st, 404, "{role:?} books only their own");
        }
        // manage: an appointment of `own` (the patient's) and of `other`, booked at the desk.
        let (s3, s4) = (new_slot(base + 40).await, new_slot(base + 60).await);
        let (_, mine) = op(
            &desk,
            &app,
            "Appointment/$book",
            &parameters(json!([slot_of(&s3), for_whom(&own)])),
        )
        .await;
        let (_, theirs) = op(
            &desk,
            &app,
            "Appointment/$book",
            &parameters(json!([slot_of(&s4), for_whom(&other)])),
        )
        .await;
        let (mine, theirs) = (
            mine["id"].as_str().unwrap().to_owned(),
            theirs["id"].as_str().unwrap().to_owned(),
        );
        let cancel = |id: &str| format!("Appointment/{id}/$cancel");
        match cell("manage") {
            "own" => {
                assert_eq!(
                    op(&client, &app, &cancel(&theirs), &parameters(json!([])))
                        .await
                        .0,
                    404
                );
                assert_eq!(
                    op(&client, &app, &cancel(&mine), &parameters(json!([])))
                        .await
                        .0,
                    200
                );
            }
            "anyone" => assert_eq!(
                op(&client, &app, &cancel(&theirs), &parameters(json!([])))
                    .await
                    .0,
                200,
                "{role:?}"
            ),
            "—" => assert_eq!(
                op(&client, &app, &cancel(&theirs), &parameters(json!([])))
                    .await
                    .0,
                403,
                "{role:?}"
            ),
            c => panic!("unknown cell {c}"),
        }
        // join and end: a visit starting now, of `own` with `doc`; and one of another doctor.
        // Inside the join window, one after another (each role's visit its own time).
        let k = i64::from(n / 10) * 2;
        let sched_other = app.create(schedule(&stranger_doc, "video", 30, 1)).await;
        let s6 = app
            .create(slot(&sched_other, &from_now(1 + k), &from_now(2 + k)))
            .await;
        let visit_slot = app
            .create(slot(&video, &from_now(1 + k), &from_now(2 + k)))
            .await;
        let staff = app.client_for(Role::Clinician, None, Some(&doc));
        let (st, v) = op(
            &staff,
            &app,
            "Appointment/$book",
            &parameters(json!([slot_of(&visit_slot), for_whom(&own)])),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let visit = v["id"].as_str().unwrap().to_owned();
        let stranger = app.client_for(Role::Clinician, None, Some(&stranger_doc));
        let (st, v) = op(
            &stranger,
            &app,
            "Appointment/$book",
            &parameters(json!([slot_of(&s6), for_whom(&other)])),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let not_mine = v["id"].as_str().unwrap().to_owned();
        let join = |id: &str| format!("Appointment/{id}/$join");
        match cell("join") {
            "own" => {
                assert_eq!(
                    op(
                        &client,
                        &app,
                        &join(&visit),
                        &parameters(json!([{"name": "consent", "valueBoolean": true}]))
                    )
                    .await
                    .0,
                    200,
                    "{role:?} joins"
                );
                let refused = op(&client, &app, &join(&not_mine), &parameters(json!([])))
                    .await
                    .0;
                assert!(
                    matches!(refused, 403 | 404),
                    "{role:?} joins only their own: {refused}"
                );
            }
            "—" => assert_eq!(
                op(
                    &client,
                    &app,
                    &join(&visit),
                    &parameters(json!([{"name": "consent", "valueBoolean": true}]))
                )
                .await
                .0,
                403,
                "{role:?}"
            ),
            c => panic!("unknown cell {c}"),
        }
        // The visit is under way (joined by its doctor): who may end it.
        assert_eq!(
            op(&staff, &app, &join(&visit), &parameters(json!([])))
                .await
                .0,
            200
        );
        let end = format!("Appointment/{visit}/$end");
        match cell("end") {
            "own" => assert_eq!(
                op(&client, &app, &end, &parameters(json!([]))).await.0,
                200,
                "{role:?} ends"
            ),
            "—" => assert_eq!(
                op(&client, &app, &end, &parameters(json!([]))).await.0,
                403,
                "{role:?}"
            ),
            c => panic!("unknown cell {c}"),
        }
        let r = client
            .get(app.url("Appointment/$indicators?start=2026-12-01&end=2026-12-31"))
            .send()
            .await
            .unwrap();
        match cell("indicators") {
            "read" => assert_eq!(r.status(), 200, "{role:?}"),
            "—" => assert_eq!(r.status(), 403, "{role:?}"),
            c => panic!("unknown cell {c}"),
        }
    }
}

/// The doctor's page of a day lists the visits of that day on Vietnam's clock: a visit at 03:00
/// there is at 20:00 UTC the day before, and still on its own day's list.
async fn the_doctors_list_of_a_day_follows_vietnams_clock(b: Backend) {
    let app = spawn_app(b).await;
    hospital::seed::demo(&hospital::Config::for_tests("unused"), &app.store)
        .await
        .unwrap();
    let vn = chrono::FixedOffset::east_opt(7 * 3600).unwrap();
    let tomorrow = chrono::Utc::now().with_timezone(&vn).date_naive() + chrono::Duration::days(1);
    let slot = app
        .create(slot(
            "lich-bs-mai-video",
            &format!("{tomorrow}T03:00:00+07:00"),
            &format!("{tomorrow}T03:30:00+07:00"),
        ))
        .await;
    let doctor = app.client_for(Role::Clinician, None, Some("bs-tran-thi-mai"));
    let (s, visit) = op(
        &doctor,
        &app,
        "Appointment/$book",
        &parameters(json!([
            {"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}},
            {"name": "patient", "valueReference": {"reference": "Patient/nguyen-van-an"}}])),
    )
    .await;
    assert_eq!(s, 200, "{visit}");
    let link = format!("href=\"/visit/{}\"", visit["id"].as_str().unwrap());
    let (web, session, site) = crate::invoicing::signed_in(&app, "bs.mai", "mai-demo").await;
    let page = |day: String| {
        web.get(format!("{site}/visit?day={day}"))
            .header(reqwest::header::COOKIE, session.clone())
            .send()
    };
    let r = page(tomorrow.to_string()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.unwrap().contains(&link),
        "on its own day's list"
    );
    let after = tomorrow + chrono::Duration::days(1);
    for day in [tomorrow - chrono::Duration::days(1), after] {
        let r = page(day.to_string()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.text().await.unwrap().contains(&link), "not on {day}'s");
    }
    let r = page("tomorrow".into()).await.unwrap();
    assert_eq!(r.status(), 400, "a day that is not YYYY-MM-DD is refused");
    app.stop().await;
}

/// The visit page in Vietnamese by default and in English with `?lang=en` (its labels, and the
/// script's language); the doctor's page summarises the visit's patient — their allergies,
/// active conditions and recent observations — and nobody else's, nor a condition resolved;
/// the patient's page has no summary.
async fn the_visit_page_speaks_english_when_asked_and_shows_the_doctor_this_patients_summary_only(
    b: Backend,
) {
    let app = spawn_app(b).await;
    hospital::seed::demo(&hospital::Config::for_tests("unused"), &app.store)
        .await
        .unwrap();
    let (an, binh) = ("Patient/nguyen-van-an", "Patient/tran-thi-binh");
    let concept = |text: &str| json!({"text": text});
    let clinical = |code: &str| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": code}]});
    for (who, allergy, active, resolved, observation, value) in [
        (
            an,
            "Dị ứng Penicillin",
            "Hen phế quản",
            "Viêm họng cấp",
            "Glucose máu lúc đói",
            6.1,
        ),
        (
            binh,
            "Dị ứng Aspirin",
            "Viêm dạ dày",
            "Gãy xương cẳng tay",
            "Cholesterol toàn phần",
            5.2,
        ),
    ] {
        app.create(
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": who},
            "code": concept(allergy)}),
        )
        .await;
        for (text, status) in [(active, "active"), (resolved, "resolved")] {
            app.create(
                json!({"resourceType": "Condition", "subject": {"reference": who},
                "code": concept(text), "clinicalStatus": clinical(status)}),
            )
            .await;
        }
        app.create(json!({"resourceType": "Observation", "status": "final",
            "subject": {"reference": who}, "code": concept(observation),
            "effectiveDateTime": from_now(-60),
            "valueQuantity": {"value": value, "unit": "mmol/L"}}))
            .await;
    }
    let slot = app
        .create(slot("lich-bs-mai-video", &from_now(1), &from_now(31)))
        .await;
    let doctor = app.client_for(Role::Clinician, None, Some("bs-tran-thi-mai"));
    let (s, visit) = op(
        &doctor,
        &app,
        "Appointment/$book",
        &parameters(json!([
            {"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}},
            {"name": "patient", "valueReference": {"reference": an}}])),
    )
    .await;
    assert_eq!(s, 200, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let page_of = |user: &'static str, password: &'static str, query: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            let (web, session, site) = crate::invoicing::signed_in(app, user, password).await;
            let r = web
                .get(format!("{site}/visit/{id}{query}"))
                .header(reqwest::header::COOKIE, session)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{user}{query}");
            r.text().await.unwrap()
        }
    };
    let has = |html: &str, words: &[&str]| {
        for w in words {
            assert!(html.contains(w), "missing `{w}`");
        }
    };
    let lacks = |html: &str, words: &[&str]| {
        for w in words {
            assert!(!html.contains(w), "`{w}` shown");
        }
    };
    // The doctor's page, in Vietnamese.
    let vi = page_of("bs.mai", "mai-demo", "").await;
    has(
        &vi,
        &[
            "<html lang=\"vi\"",
            "data-lang=\"vi\"",
            "Khám từ xa",
            "Kiểm tra camera và micro",
            "Vào phòng khám",
            "Tóm tắt bệnh nhân",
            "Ghi chép",
            "Lưu và ký",
            "href=\"?lang=en\"",
        ],
    );
    // The visit's patient's summary, and nobody else's; a resolved condition is not active.
    let summary = vi
        .split("<aside id=\"summary\">")
        .nth(1)
        .expect("the doctor sees the summary");
    let section = |id: &str| {
        summary
            .split(&format!("<ul id=\"{id}\">"))
            .nth(1)
            .and_then(|r| r.split("</ul>").next())
            .unwrap_or_else(|| panic!("no {id}"))
            .to_owned()
    };
    has(&section("allergies"), &["Dị ứng Penicillin"]);
    has(&section("conditions"), &["Hen phế quản"]);
    has(
        &section("observations"),
        &["Glucose máu lúc đói 6.1 mmol/L"],
    );
    lacks(
        &vi,
        &[
            "Dị ứng Aspirin",
            "Viêm dạ dày",
            "Cholesterol toàn phần",
            "Gãy xương cẳng tay",
            "Viêm họng cấp",
        ],
    );
    // In English.
    let en = page_of("bs.mai", "mai-demo", "?lang=en").await;
    has(
        &en,
        &[
            "<html lang=\"en\"",
            "data-lang=\"en\"",
            "Video visit",
            "Camera and microphone check",
            ">Join<",
            "Let the patient in",
            "End the visit",
            "Patient summary",
            "Allergies",
            "Active conditions",
            "Recent observations",
            "Notes",
            "ICD-10 code",
            "Save and sign",
            "Nothing is recorded.",
            "href=\"?lang=vi\"",
            "Dị ứng Penicillin",
        ],
    );
    lacks(
        &en,
        &[
            "Vào phòng khám",
            "Tóm tắt bệnh nhân",
            "Kiểm tra camera",
            "Dị ứng Aspirin",
        ],
    );
    // The patient's own page: in English too, with the consent, and no summary or notes.
    let mine = page_of("an", "an-demo", "?lang=en").await;
    has(
        &mine,
        &[
            "<html lang=\"en\"",
            "Camera and microphone check",
            "I agree to be examined remotely by video",
            "Trần Thị Mai",
        ],
    );
    lacks(
        &mine,
        &[
            "id=\"summary\"",
            "id=\"notes\"",
            "Dị ứng Penicillin",
            "Hen phế quản",
            "Let the patient in",
        ],
    );
    // The doctor's list of the visit's day, in English.
    let (web, session, site) = crate::invoicing::signed_in(&app, "bs.mai", "mai-demo").await;
    let day = &visit["start"].as_str().unwrap()[..10];
    let list = web
        .get(format!("{site}/visit?lang=en&day={day}"))
        .header(reqwest::header::COOKIE, session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    has(
        &list,
        &[
            "Today's visits",
            "<th>Patient</th>",
            &format!("href=\"/visit/{id}\""),
        ],
    );
}

/// Every match of a search, page after page (following the `next` links), in order.
async fn all_pages(app: &TestApp, query: &str) -> Vec<String> {
    let (s, mut page) = app.get_json(query).await;
    assert_eq!(s, 200, "{query}: {page}");
    let mut ids = Vec::new();
    loop {
        for e in page["entry"].as_array().into_iter().flatten() {
            ids.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        let next = page["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        let Some(next) = next else { break };
        let r = app.http.get(&next).send().await.unwrap();
        assert_eq!(r.status(), 200, "{next}");
        page = r.json().await.unwrap();
    }
    ids
}

/// A day on Vietnam's calendar, `days` from today.
fn vn_day(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(7) + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// Two doctors' slots over three days: video general medicine, in-person cardiology.
async fn two_doctors_slots(app: &TestApp) -> (String, String, String) {
    let (a, b) = (doctor(app, "Trần").await, doctor(app, "Lê").await);
    let video = app.create(schedule(&a, "video", 30, 3)).await;
    let mut heart = schedule(&b, "in-person", 60, 3);
    heart["specialty"] = json!([{"coding": [{"system": "http://snomed.info/sct",
        "code": "394579002", "display": "Cardiology"}]}]);
    let in_person = app.create(heart).await;
    all_slots_made(app).await;
    let _ = in_person;
    (a, video, b)
}

/// The combined index (specialty or service type, mode, status, start) answers exactly what
/// the plain index answers: the same matches in the same order, page after page, in every
/// form a client writes its values. `status=|free` ("no system") is a form the combined index
/// does not key, so that query takes the plain path.
async fn slot_searches_through_the_combined_index_find_what_the_plain_index_finds(b: Backend) {
    let app = spawn_app(b).await;
    let (tran, video, le) = two_doctors_slots(&app).await;
    // Book one video slot, so that some are not free.
    let taken = first_free_slot(&app, &video, 60).await;
    let an = patient(&app, 1).await;
    let desk = app.client_for(Role::Cashier, None, None);
    let (s, v) = op(&desk, &app, "Appointment/$book", &book_slot(&taken, &an)).await;
    assert_eq!(s, 200, "{v}");
    let range = format!("start=ge{}&start=le{}", vn_day(0), vn_day(3));
    let general = "http://snomed.info/sct|394802001";
    let cases = [
        format!("specialty={general}&mode=video&status=free&{range}"),
        format!("specialty=394802001&mode=video&status=free&{range}"),
        format!("specialty=394802001&mode=video&status=free,busy&{range}"),
        format!(
            "specialty=394579002&mode=in-person&status=free&start=ge{}",
            vn_day(1)
        ),
        format!("specialty=394579002&mode=video&status=free&{range}"),
        format!("service-type=urn:hospital:service-code|KB.TX&mode=video&status=busy&{range}"),
        format!(
            "specialty={general}&mode=video&status=free&start={}",
            vn_day(1)
        ),
        format!(
            "practitioner=Practitioner/{tran}&status=free&start={}",
            vn_day(1)
        ),
        format!("practitioner={le}&status=free,busy&{range}"),
        format!("practitioner=Practitioner/{tran}&status=busy&{range}"),
    ];
    let mut seen_some = 0;
    for q in &cases {
        let plain = q.replacen("status=", "status=|", 1).replace(",", ",|");
        for sort in ["", "&_sort=start", "&_sort=-start"] {
            let through_combo = all_pages(&app, &format!("Slot?{q}{sort}&_count=7")).await;
            let through_plain = all_pages(&app, &format!("Slot?{plain}{sort}&_count=7")).await;
            assert_eq!(through_combo, through_plain, "{q}{sort}");
            let mut unique = through_combo.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                through_combo.len(),
                "each match once: {q}{sort}"
            );
            if !through_combo.is_empty() {
                seen_some += 1;
            }
        }
        let (_, counted) = app.get_json(&format!("Slot?{q}&_summary=count")).await;
        let (_, plain_count) = app.get_json(&format!("Slot?{plain}&_summary=count")).await;
        assert_eq!(counted["total"], plain_count["total"], "{q}");
    }
    // The cases are not all empty (the booked slot, the free ones); one is by design.
    assert!(seen_some >= 24, "{seen_some}");
    let none = app
        .search_ids(&format!(
            "Slot?specialty=394579002&mode=video&status=free&{range}"
        ))
        .await;
    assert!(none.is_empty(), "no cardiologist sees patients by video");
    let busy = app
        .search_ids(&format!(
            "Slot?service-type=urn:hospital:service-code|KB.TX&mode=video&status=busy&{range}"
        ))
        .await;
    assert_eq!(busy, vec![taken]);
    // A slot whose combined index would take more rows than its bound is refused, whole.
    let before = app.versions().await;
    let mut crowded = slot(&video, &from_now(600), &from_now(630));
    crowded["specialty"] = json!([{"coding": (0..130)
        .map(|i| json!({"system": "http://snomed.info/sct", "code": format!("{}", 394000000 + i)}))
        .collect::<Vec<_>>()}]);
    let (s, _, v) = app.post("Slot", &crowded).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("at most 256"),
        "{v}"
    );
    assert_eq!(app.versions().await, before, "nothing written");
}

/// A database whose index rows were derived from other declarations (or from before the
/// combined indexes) is brought up to date when the store opens: the combined index rows are
/// made for every stored slot, and searches through it find them all.
async fn a_changed_index_declaration_is_rebuilt_when_the_store_opens(b: Backend) {
    let app = spawn_app(b).await;
    two_doctors_slots(&app).await;
    let url = app
        .running
        .as_ref()
        .unwrap()
        .context
        .config
        .database_url
        .clone();
    let combo_rows = |store: hospital_core::store::Store| async move {
        let row = sqlx::query("SELECT COUNT(*) FROM idx_combo")
            .fetch_one(store.pool())
            .await
            .unwrap();
        sqlx::Row::try_get::<i64, _>(&row, 0).unwrap()
    };
    let made = combo_rows(app.store.clone()).await;
    assert!(made > 50, "{made}");
    let query = format!(
        "Slot?specialty=394802001&mode=video&status=free&start=ge{}&_count=500",
        vn_day(0)
    );
    let found = app.search_ids(&query).await;
    assert!(!found.is_empty());
    for forget in [
        // The Slot's declarations changed since its rows were made.
        "UPDATE index_state SET fingerprint = 'an older declaration' WHERE resource_type = 'Slot'",
        // A database from before the index state.
        "DELETE FROM index_state",
    ] {
        sqlx::query("DELETE FROM idx_combo")
            .execute(app.store.pool())
            .await
            .unwrap();
        sqlx::query(forget).execute(app.store.pool()).await.unwrap();
        assert!(app.search_ids(&query).await.is_empty(), "{forget}");
        let reopened = hospital_core::store::Store::open(&url, Default::default())
            .await
            .unwrap();
        assert_eq!(combo_rows(reopened.clone()).await, made, "{forget}");
        reopened.close().await;
        assert_eq!(app.search_ids(&query).await, found, "{forget}");
    }
}
