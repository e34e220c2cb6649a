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
//! Not yet: cashier work, reconciliation, the price list and charges, BHYT on invoices, gRPC.

use hospital_core::{ServiceDefinition, ServiceName};

pub mod bhyt;
pub mod cash;
pub mod intake;
pub mod invoice;
pub mod ledger;
pub mod page;
pub mod payment_qr;
pub mod qr;
pub mod search_params;
pub mod vietqr;
pub mod webhooks;

/// What every process needs of the billing service: its rules on the types it owns.
pub fn definition() -> ServiceDefinition {
    let rules: std::sync::Arc<dyn hospital_core::ResourceRules> =
        std::sync::Arc::new(invoice::BillingRules);
    ServiceDefinition {
        name: ServiceName::Billing,
        rules: hospital_core::ownership::owned_by(ServiceName::Billing)
            .map(|t| (t, rules.clone()))
            .collect(),
        unique_identifiers: invoice::UNIQUE_IDENTIFIERS,
        search_params: search_params::SEARCH_PARAMS,
    }
}

/// Where patients' payments go, from the configuration.
fn receiving(c: &hospital_host::Context) -> payment_qr::Receiving {
    payment_qr::Receiving {
        bin: c.config.bank_bin.clone(),
        account: c.config.bank_account.clone(),
        page_base: c.public_url.clone(),
    }
}

/// The billing service, as a process registers it: its pages and webhooks, and its FHIR
/// operations (no gRPC service yet).
pub fn registration() -> hospital_host::Registration {
    hospital_host::Registration {
        definition,
        grpc: |_| Vec::new(),
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
            );
            Some(webhooks.merge(page::routes(
                c.platform.clone(),
                page::PageConfig {
                    hospital_name: c.config.hospital_name.clone(),
                    account_name: c.config.bank_account_name.clone(),
                    max_streams: c.config.max_page_streams,
                    receiving: receiving(c),
                },
            )))
        },
        operations: |c| {
            let cash: std::sync::Arc<dyn hospital_core::Operation> =
                std::sync::Arc::new(cash::PayCash {
                    platform: c.platform.clone(),
                    hospital: c.config.hospital_name.clone(),
                    account: c.config.bank_account.clone(),
                });
            vec![
                cash,
                std::sync::Arc::new(payment_qr::PaymentQr {
                    platform: c.platform.clone(),
                    receiving: receiving(c),
                }),
            ]
        },
    }
}
