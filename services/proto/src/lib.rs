//! Generated gRPC bindings of the contracts in `proto/`. Only the gRPC edges of the services
//! use these types.

#![allow(clippy::all, clippy::pedantic)]

pub mod records {
    pub mod v1 {
        tonic::include_proto!("hospital.records.v1");
    }
}

pub mod billing {
    pub mod v1 {
        tonic::include_proto!("hospital.billing.v1");
    }
}

pub mod telemedicine {
    pub mod v1 {
        tonic::include_proto!("hospital.telemedicine.v1");
    }
}
