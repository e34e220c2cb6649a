//! The billing service: prices, charges, invoices, VietQR payment codes and bank feeds. It owns
//! ChargeItem, Invoice, Account, PaymentNotice and PaymentReconciliation in the store (the ownership table of
//! `hospital-core`).
//!
//! Built so far:
//! - libraries tested against the published vectors: [`vietqr`] (payment-code payloads,
//!   encoded and decoded), [`qr`] (their PNG and SVG), [`bhyt`] (insurance cost sharing from
//!   dated rules) and [`webhooks`] (each bank feed's signature and body);
//! - [`invoice`] — its rules: an Invoice's bill number, payment code and payment page token,
//!   assigned by billing and never changed; amounts in whole VND;
//! - [`payment_qr`] — `GET /fhir/Invoice/{id}/$payment-qr`;
//! - [`page`] — the patient's payment page, `GET /pay/{token}`, and its live status;
//! - [`ledger`] — the append-only ledger of payments; [`intake`] — the bank feeds' webhooks.
//!
//! - [`prices`] — the price list; [`charges`] — charges for care; [`issue`] — invoices from
//!   charges with BHYT cost sharing (coverage from records over gRPC), deposits, cancelling;
//! - [`desk`] — the cashier's queue, assigning and refunding credits, totals by channel and
//!   the cashless indicator, reconciliation of statements ([`reconcile`]);
//! - [`operations`] — the FHIR operations over those; [`grpc`] — `hospital.billing.v1`.

use hospital_core::{ServiceDefinition, ServiceName};

pub mod bhyt;
pub mod cash;
pub mod charges;
pub mod codes;
pub mod desk;
pub mod grpc;
pub mod intake;
pub mod invoice;
pub mod issue;
pub mod ledger;
pub mod operations;
pub mod page;
pub mod payment_qr;
pub mod prepaid;
pub mod prices;
pub mod qr;
pub mod reconcile;
pub mod rules;
pub mod search_params;
// Generated from HL7's definitions (its header says how); kept as generated.
#[rustfmt::skip]
pub mod fhir_search_params;
pub mod staff;
pub mod vietqr;
pub mod webhooks;

/// What every process needs of the billing service: its rules on the types it owns.
pub fn definition() -> ServiceDefinition {
    let rules: std::sync::Arc<dyn hospital_core::ResourceRules> =
        std::sync::Arc::new(rules::BillingRules);
    ServiceDefinition {
        name: ServiceName::Billing,
        rules: hospital_core::ownership::owned_by(ServiceName::Billing)
            .map(|t| (t, rules.clone()))
            .collect(),
        unique_identifiers: invoice::UNIQUE_IDENTIFIERS,
        search_params: search_params::ALL,
        combined_indexes: &[],
    }
}

/// The shipped BHYT rules, loaded once.
pub fn bhyt_rules() -> std::sync::Arc<bhyt::Rules> {
    static RULES: std::sync::OnceLock<std::sync::Arc<bhyt::Rules>> = std::sync::OnceLock::new();
    RULES
        .get_or_init(|| std::sync::Arc::new(bhyt::Rules::shipped()))
        .clone()
}

/// Invoicing as this process runs it: coverage from the records service over gRPC.
pub fn invoicing(c: &hospital_host::Context) -> issue::Invoicing {
    invoicing_with(
        c.platform.clone(),
        std::sync::Arc::new(issue::RecordsCoverage(
            c.clients.of(hospital_core::ServiceName::Records).clone(),
        )),
        &c.config.facility_level,
    )
}

/// Invoicing with coverage from `coverage` (the seed, which runs without the services, reads
/// it with the records service's own rule in process).
pub fn invoicing_with(
    platform: hospital_core::Platform,
    coverage: std::sync::Arc<dyn issue::CoverageSource>,
    facility_level: &str,
) -> issue::Invoicing {
    issue::Invoicing {
        platform,
        coverage,
        rules: bhyt_rules(),
        level: if facility_level == "basic" {
            bhyt::Level::Basic
        } else {
            bhyt::Level::Specialised
        },
    }
}

/// Telemedicine, told when a payment settles a visit's prepayment (every payment door).
fn prepaid(c: &hospital_host::Context) -> prepaid::Prepaid {
    prepaid::Prepaid::telling(
        c.clients
            .of(hospital_core::ServiceName::Telemedicine)
            .clone(),
    )
}

/// Where patients' payments go, from the configuration.
fn receiving(c: &hospital_host::Context) -> payment_qr::Receiving {
    payment_qr::Receiving {
        bin: c.config.bank_bin.clone(),
        account: c.config.bank_account.clone(),
        page_base: c.public_url.clone(),
    }
}

/// The billing service, as a process registers it: its gRPC server, its pages and webhooks,
/// and its FHIR operations.
pub fn registration() -> hospital_host::Registration {
    hospital_host::Registration {
        definition,
        grpc: |c| {
            let server = hospital_grpc::Authenticated::new(
                c.platform.clone(),
                grpc::BillingGrpc::new(invoicing(c), c.public_url.clone(), c.stopping.clone())
                    .into_server(),
            );
            vec![hospital_host::GrpcService {
                name: "hospital.billing.v1.Billing",
                add: Box::new(move |r| r.add_service(server)),
            }]
        },
        routes: |c| {
            let cfg = &c.config;
            let secrets = intake::Secrets {
                sepay: cfg
                    .sepay_hmac_secret
                    .clone()
                    .map(webhooks::SepayAuth::Hmac)
                    .or_else(|| cfg.sepay_api_key.clone().map(webhooks::SepayAuth::ApiKey)),
                casso: cfg
                    .casso_key
                    .clone()
                    .or_else(|| hospital_host::embedded_casso_key(cfg)),
                payos: cfg.payos_checksum_key.clone(),
                vnpay: cfg.vnpay_hash_secret.clone(),
            };
            let webhooks = intake::routes(
                c.platform.clone(),
                secrets,
                cfg.hospital_name.clone(),
                cfg.bank_account.clone(),
                prepaid(c),
            );
            let desk = staff::routes(
                c.platform.clone(),
                cfg.hospital_name.clone(),
                cfg.bank_account.clone(),
                prepaid(c),
            );
            Some(webhooks.merge(desk).merge(page::routes(
                c.platform.clone(),
                page::PageConfig {
                    hospital_name: c.config.hospital_name.clone(),
                    account_name: c.config.bank_account_name.clone(),
                    max_streams: c.config.max_page_streams,
                    receiving: receiving(c),
                    stopping: c.stopping.clone(),
                },
            )))
        },
        operations: |c| {
            use std::sync::Arc;
            let p = || c.platform.clone();
            let cash: Arc<dyn hospital_core::Operation> = Arc::new(cash::PayCash {
                platform: p(),
                hospital: c.config.hospital_name.clone(),
                account: c.config.bank_account.clone(),
                prepaid: prepaid(c),
            });
            vec![
                cash,
                Arc::new(payment_qr::PaymentQr {
                    platform: p(),
                    receiving: receiving(c),
                }),
                Arc::new(operations::Issue(invoicing(c))),
                Arc::new(operations::Cancel(invoicing(c))),
                Arc::new(operations::Queue(p())),
                Arc::new(operations::Assign(p(), prepaid(c))),
                Arc::new(operations::Refund(p())),
                Arc::new(operations::Totals(p())),
                Arc::new(operations::Import(p())),
            ]
        },
        background: |_| Vec::new(),
    }
}
