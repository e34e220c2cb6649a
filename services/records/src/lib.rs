//! The records service: patients, practitioners, organisations, coverage (BHYT cards),
//! encounters and the clinical record. It owns those resource types in the shared store,
//! enforces their rules on every write, and serves `hospital.records.v1` over gRPC.

pub mod coverage;
pub mod discharge;
pub mod grpc;
pub mod identifiers;
pub mod rules;
pub mod search_params;
// Generated from HL7's definitions (its header says how); kept as generated.
#[rustfmt::skip]
pub mod fhir_search_params;

use hospital_core::ownership::{ServiceName, owned_by};
use hospital_core::{Platform, ResourceRules, ServiceDefinition};
use std::sync::Arc;

/// Identifier systems that name one Patient only.
pub const UNIQUE_IDENTIFIERS: &[(&str, &str)] = &[
    ("Patient", identifiers::NATIONAL_ID),
    ("Patient", identifiers::PATIENT_INTERNAL_ID),
];

/// What every process needs of the records service: its rules on the types it owns.
pub fn definition() -> ServiceDefinition {
    let rules: Arc<dyn ResourceRules> = Arc::new(rules::RecordsRules);
    ServiceDefinition {
        name: ServiceName::Records,
        rules: owned_by(ServiceName::Records)
            .map(|t| (t, rules.clone()))
            .collect(),
        unique_identifiers: UNIQUE_IDENTIFIERS,
        search_params: search_params::ALL,
        combined_indexes: &[],
    }
}

/// The records gRPC server, behind authentication.
pub fn grpc_server(
    platform: &Platform,
) -> hospital_grpc::Authenticated<
    hospital_proto::records::v1::records_server::RecordsServer<grpc::RecordsGrpc>,
> {
    hospital_grpc::Authenticated::new(
        platform.clone(),
        grpc::RecordsGrpc::new(platform.clone()).into_server(),
    )
}

/// The records service, as a process registers it: its definition, its gRPC server.
pub fn registration() -> hospital_host::Registration {
    hospital_host::Registration {
        definition,
        grpc: |c| {
            let server = grpc_server(&c.platform);
            vec![hospital_host::GrpcService {
                name: "hospital.records.v1.Records",
                add: Box::new(move |r| r.add_service(server)),
            }]
        },
        routes: |_| None,
        operations: |c| {
            vec![std::sync::Arc::new(discharge::Document {
                platform: c.platform.clone(),
                base: format!("{}/fhir", c.public_url.trim_end_matches('/')),
            })
                as std::sync::Arc<dyn hospital_core::Operation>]
        },
        background: |_| Vec::new(),
    }
}
