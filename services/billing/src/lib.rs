//! The billing service: prices, charges, invoices, VietQR payment codes and bank feeds. It owns
//! ChargeItem, Invoice, Account, PaymentNotice and PaymentReconciliation in the store (the ownership table of
//! `hospital-core`).
//!
//! Built so far, as libraries with their published vectors as tests: [`vietqr`] (payment-code
//! payloads, encoded and decoded), [`qr`] (their PNG and SVG), [`bhyt`] (insurance cost sharing from dated rules) and
//! [`webhooks`] (each bank feed's signature and body). The service's own data (invoices, the
//! ledger, payment pages) is not yet built: until then its types are written with the
//! platform's common rule, references must resolve.

use hospital_core::{ServiceDefinition, ServiceName};

pub mod bhyt;
pub mod qr;
pub mod search_params;
pub mod vietqr;
pub mod webhooks;

/// What every process needs of the billing service: its rules on the types it owns.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition::references_only(ServiceName::Billing, search_params::SEARCH_PARAMS)
}

/// The billing service, as a process registers it. It has no gRPC service and no pages yet.
pub fn registration() -> hospital_host::Registration {
    hospital_host::Registration {
        definition,
        grpc: |_| Vec::new(),
        routes: |_| None,
    }
}
