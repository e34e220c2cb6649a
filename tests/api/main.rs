//! The end-to-end tests of the whole system, in one test binary (one link, not one per file):
//! every service in one process, real HTTP and real gRPC, on SQLite and on PostgreSQL.

mod access_control;
mod architecture;
mod audit_trail;
mod billing;
mod bounds;
mod browser;
mod chains;
mod compartments;
mod discharge;
mod durability;
mod fhir_rest;
mod fhir_rest_more;
mod fhir_sdk_client;
mod fuzz;
mod identity_provider;
mod invoicing;
mod logs_without_personal_data;
mod official_examples;
mod operations;
mod outbound;
mod platform;
mod replicas;
mod search_parameters;
mod signatures;
mod story;
mod telemedicine;
mod web_signin;
mod workflows;

/// The system's test helpers: the test kit, starting every service.
mod common {
    pub use hospital_test_kit::*;

    /// The whole system on a fresh `backend` store.
    pub async fn spawn_app(backend: Backend) -> TestApp {
        spawn_app_with(backend, |_| {}).await
    }

    /// Stops `app`'s process and starts `deployment` of the system on its database, the
    /// configuration changed by `tweak`.
    pub async fn restart_app(
        app: &mut TestApp,
        deployment: hospital_core::Deployment,
        tweak: impl FnOnce(&mut hospital::Config),
    ) {
        app.restart(&hospital::registrations(), deployment, tweak)
            .await
    }

    /// Runs the `hospital` binary with `args` against the database `url` (quietly), as an
    /// operator would: `audit verify`, `backup`, `restore`, `migrate`.
    pub fn hospital_cli(args: &[&str], url: &str) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_hospital"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("HOSPITAL_LOG", "error")
            .output()
            .expect("the hospital binary runs")
    }

    /// What a command printed, standard output then standard error.
    pub fn said(out: &std::process::Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    pub async fn spawn_app_with(
        backend: Backend,
        tweak: impl FnOnce(&mut hospital::Config),
    ) -> TestApp {
        spawn(
            &hospital::registrations(),
            hospital_core::Deployment::all(),
            backend,
            tweak,
        )
        .await
    }
}
