//! `hospital`: runs the system, one service, or an administrative command.

use clap::Parser;
use hospital::config::{Cli, Command};
use hospital::{Service, start};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.config.log))
        .init();
    let service = match cli.command {
        None | Some(Command::All) => Service::All,
        Some(Command::Records) => Service::Records,
        Some(Command::Migrate) => {
            hospital::open_store(&cli.config).await?.close().await;
            println!("database is up to date");
            return Ok(());
        }
        Some(Command::Seed { demo }) => {
            if !demo {
                anyhow::bail!("say what to load: `hospital seed --demo`");
            }
            let store = hospital::open_store(&cli.config).await?;
            let n = hospital::seed::demo(&store).await?;
            store.close().await;
            println!("loaded the demo data set: {n} resources");
            return Ok(());
        }
    };
    let running = start(&cli.config, service).await?;
    println!("hospital is running ({service:?})");
    println!(
        "  FHIR REST   http://{}/fhir   (try /fhir/metadata)",
        running.http_addr
    );
    if let Some(a) = running.records_grpc_addr {
        println!("  records gRPC {a}   (hospital.records.v1.Records, grpc.health.v1.Health)");
    }
    println!("  store       {}", redact(&cli.config.database_url));
    running.run_until(shutdown_signal()).await
}

/// The database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..s], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
