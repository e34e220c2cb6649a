//! The telemedicine service: schedules, slots, appointments, and the video visit. It owns
//! Schedule, Slot and Appointment in the shared store (the ownership table of
//! `hospital-core`). Its place exists; its behaviour is the next issue. Until then its types
//! are written with the platform's common rule: references must resolve.

use hospital_core::{ServiceDefinition, ServiceName};

pub mod search_params;

/// What every process needs of the telemedicine service: its rules on the types it owns.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition::references_only(ServiceName::Telemedicine, search_params::SEARCH_PARAMS)
}

/// The telemedicine service, as a process registers it. It has no gRPC service and no pages yet.
pub fn registration() -> hospital_host::Registration {
    hospital_host::Registration {
        definition,
        grpc: |_| Vec::new(),
        routes: |_| None,
        operations: |_| Vec::new(),
    }
}
