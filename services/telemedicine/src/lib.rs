//! The telemedicine service: schedules, slots, appointments, and the video visit. It owns
//! Schedule, Slot and Appointment in the shared store (the ownership table of
//! `hospital-core`).
//!
//! - [`calendar`] — Vietnam's clock and public holidays (data);
//! - [`schedule`] — a practitioner's working plan and the slots it makes, kept generated;
//! - [`appointment`] — the Appointment's rule: no double booking (time claims), the slot
//!   following its appointment;
//! - [`booking`] — hold, book (with prepayment), cancel, reschedule, and the sweep;
//!   [`payments`] — billing over gRPC; [`operations`] — the FHIR operations over booking.

use hospital_core::{ServiceDefinition, ServiceName};
use std::sync::Arc;

pub mod appointment;
pub mod booking;
pub mod calendar;
pub mod grpc;
pub mod indicators;
pub mod notes;
pub mod operations;
pub mod pages;
pub mod payments;
pub mod reminders;
pub mod rules;
pub mod schedule;
pub mod search_params;
// Generated from HL7's definitions (its header says how); kept as generated.
#[rustfmt::skip]
pub mod fhir_search_params;
pub mod signalling;
pub mod visit;

/// What every process needs of the telemedicine service: its rules on the types it owns.
pub fn definition() -> ServiceDefinition {
    let rules: Arc<dyn hospital_core::ResourceRules> = Arc::new(rules::TelemedicineRules);
    ServiceDefinition {
        name: ServiceName::Telemedicine,
        rules: hospital_core::ownership::owned_by(ServiceName::Telemedicine)
            .map(|t| (t, rules.clone()))
            .collect(),
        unique_identifiers: &[],
        search_params: search_params::ALL,
        combined_indexes: search_params::COMBINED_INDEXES,
    }
}

/// Booking as this process runs it: billing over gRPC, the configured windows.
pub fn booking(c: &hospital_host::Context) -> booking::Booking {
    let cfg = &c.config;
    let window = chrono::Duration::seconds(i64::from(cfg.payment_window_secs.max(1)));
    booking::Booking {
        platform: c.platform.clone(),
        settings: booking::Settings {
            hold: chrono::Duration::seconds(i64::from(cfg.hold_secs.max(1))),
            payment_window: window,
            prepay_in_person: cfg.prepay_in_person,
            prepay_staff: cfg.prepay_staff_bookings,
            video_code: cfg.video_visit_code.clone(),
            sweep_page: 200,
            sweep_batch: 1000,
        },
        payments: Arc::new(payments::BillingPayments {
            billing: c.clients.of(ServiceName::Billing).clone(),
            watch_for: window.to_std().unwrap_or_default() + std::time::Duration::from_secs(60),
        }),
        places: Default::default(),
    }
}

/// The key of visit join tokens: configured, or derived from the local token secret (the
/// same on every replica either way), or, failing both, this process's own.
fn visit_key(cfg: &hospital_host::Config) -> Arc<[u8]> {
    use sha2::Digest;
    if let Some(k) = &cfg.visit_secret {
        return Arc::from(k.as_bytes());
    }
    match hospital_host::local_secret(cfg) {
        Ok(secret) => {
            let mut h = sha2::Sha256::new();
            h.update(b"visit join tokens:");
            h.update(&secret);
            Arc::from(h.finalize().as_slice())
        }
        Err(_) => {
            tracing::warn!("no HOSPITAL_VISIT_SECRET: join tokens hold on this process only");
            Arc::from(uuid::Uuid::new_v4().as_bytes().as_slice())
        }
    }
}

/// Joining and ending visits as this process runs them.
pub fn visits(c: &hospital_host::Context) -> visit::Visits {
    let cfg = &c.config;
    visit::Visits {
        platform: c.platform.clone(),
        records: c.clients.of(ServiceName::Records).clone(),
        key: visit_key(cfg),
        early: chrono::Duration::minutes(i64::from(cfg.join_early_minutes)),
        stun: cfg.stun_urls.clone(),
        turn: cfg.turn_urls.clone(),
        turn_secret: cfg.turn_secret.clone(),
    }
}

/// The slots of every schedule (or of those changed since `since`, microseconds) made up to
/// its horizon, from now.
pub async fn keep_slots_generated(
    platform: &hospital_core::Platform,
    since: Option<i64>,
) -> Result<usize, hospital_core::Error> {
    use hospital_core::store::SearchQuery;
    let caller = hospital_core::Caller::system("telemedicine");
    let mut made = 0;
    let mut failed = None;
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("_count".into(), "200".into())];
        if let Some(t) = since {
            params.push((
                "_lastUpdated".into(),
                format!("ge{}", hospital_core::store::dates::format_instant(t)),
            ));
        }
        if let Some(c) = &cursor {
            params.push(("_cursor".into(), c.clone()));
        }
        let page = platform
            .store()
            .search(&SearchQuery::new("Schedule", params))
            .await?;
        for v in &page.matches {
            let body: serde_json::Value = serde_json::from_str(&v.body)
                .map_err(|_| hospital_core::Error::internal("stored schedule unreadable"))?;
            match schedule::generate(platform, &caller, &v.id, &body, calendar::now()).await {
                Ok(n) => made += n,
                Err(e) => {
                    tracing::warn!(schedule = %v.id, error = %e, "slots not made; tried again");
                    failed = Some(e);
                }
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // A month of slots for many doctors at once: the planner must know.
    if made >= 1000 {
        platform.store().refresh_statistics().await?;
    }
    // A schedule that failed (a busy database) is tried again: the caller keeps its mark.
    match failed {
        Some(e) => Err(e),
        None => Ok(made),
    }
}

/// The telemedicine service, as a process registers it.
pub fn registration() -> hospital_host::Registration {
    hospital_host::Registration {
        definition,
        grpc: |c| {
            let server = hospital_grpc::Authenticated::new(
                c.platform.clone(),
                grpc::TelemedicineGrpc {
                    booking: booking(c),
                }
                .into_server(),
            );
            vec![hospital_host::GrpcService {
                name: "hospital.telemedicine.v1.Telemedicine",
                add: Box::new(move |r| r.add_service(server)),
            }]
        },
        routes: |c| {
            let visits = visits(c);
            let signalling = signalling::Signalling {
                visits: visits.clone(),
                open: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                max: c.config.max_signalling,
            };
            Some(pages::routes(
                visits,
                signalling,
                c.config.hospital_name.clone(),
            ))
        },
        operations: |c| {
            use operations::{BookingOperation, Kind};
            let mut ops: Vec<Arc<dyn hospital_core::Operation>> =
                [Kind::Hold, Kind::Book, Kind::Cancel, Kind::Reschedule]
                    .into_iter()
                    .map(|kind| {
                        Arc::new(BookingOperation {
                            kind,
                            booking: booking(c),
                        }) as Arc<dyn hospital_core::Operation>
                    })
                    .collect();
            ops.push(Arc::new(indicators::Indicators(c.platform.clone())));
            ops.push(Arc::new(operations::End(visits(c))));
            ops.push(Arc::new(operations::Join {
                visits: visits(c),
                public_url: c.public_url.clone(),
            }));
            ops
        },
        background: |c| {
            let booking = booking(c);
            let claimer = uuid::Uuid::new_v4().to_string();
            let every = std::time::Duration::from_millis(c.config.sweep_ms.max(10));
            vec![Box::pin(async move {
                let mut tick: u64 = 0;
                // Every schedule's slots are topped up about every ten minutes, and at start;
                // a schedule just written gets its slots at the next pass.
                let slots_every = (600_000 / every.as_millis().max(1) as u64).max(1);
                let mut last = hospital_core::store::dates::now_micros();
                loop {
                    let now = hospital_core::store::dates::now_micros();
                    let since = (!tick.is_multiple_of(slots_every)).then_some(last - 1_000_000);
                    match keep_slots_generated(&booking.platform, since).await {
                        Ok(_) => last = now,
                        Err(e) => tracing::warn!(error = %e, "keeping slots generated failed"),
                    }
                    if let Err(e) = booking.sweep().await {
                        tracing::warn!(error = %e, "the appointment sweep failed; it runs again");
                    }
                    if let Err(e) = reminders::deliver(
                        booking.platform.store(),
                        &reminders::LogSender,
                        &claimer,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "delivering reminders failed; they wait");
                    }
                    tick += 1;
                    tokio::time::sleep(every).await;
                }
            })]
        },
    }
}
