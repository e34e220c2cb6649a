//! `hospital`: runs the system, one service, or an administrative command.

use clap::Parser;
use hospital::config::{AuditCommand, Cli, Command};
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
        Some(Command::Telemedicine) => Service::Telemedicine,
        Some(Command::Billing) => Service::Billing,
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
            let n = hospital::seed::demo(&cli.config, &store).await?;
            let bill = hospital::seed::demo_invoice(&store).await;
            store.close().await;
            println!("loaded the demo data set: {n} resources");
            if let Some(v) = bill {
                let body: serde_json::Value = serde_json::from_str(&v.body)?;
                let id = |system: &str| {
                    hospital_billing::invoice::identifier(&body, system)
                        .unwrap_or("")
                        .to_owned()
                };
                let code = id(hospital_billing::invoice::PAYMENT_CODE);
                println!(
                    "a bill to pay: http://{}/pay/{}  (payment code {code}); while the system \
                     runs, `hospital simulate-payment {code}` pays it as a bank feed would",
                    cli.config.http_addr,
                    id(hospital_billing::invoice::PAYMENT_PAGE)
                );
            }
            return Ok(());
        }
        Some(Command::Token {
            role,
            patient,
            practitioner,
            subject,
            scope,
            ttl,
        }) => {
            let role = hospital_core::auth::Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("--role is one of patient, clinician, cashier, admin, service")
            })?;
            if role == hospital_core::auth::Role::Patient && patient.is_none() {
                anyhow::bail!("a patient token needs --patient <Patient id>");
            }
            // The audit trail names the token's subject: the patient, the practitioner, or
            // the user or service given, never the bare role.
            let subject = subject
                .or_else(|| patient.clone())
                .or_else(|| practitioner.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!("say who the token is for: --subject <user or service name>")
                })?;
            let auth = hospital::authenticator(&cli.config)?;
            let token = auth.mint(
                role,
                &subject,
                patient.as_deref(),
                practitioner.as_deref(),
                scope.as_deref(),
                parse_ttl(&ttl)?,
            )?;
            println!("{token}");
            return Ok(());
        }
        Some(Command::SimulatePayment { code, amount, url }) => {
            let said =
                hospital::simulate::simulate_payment(&cli.config, &code, amount, url.as_deref())
                    .await?;
            println!("{said}");
            return Ok(());
        }
        Some(Command::Audit {
            command: AuditCommand::Verify,
        }) => {
            let store = hospital::open_store(&cli.config).await?;
            let sealed = store.audit_seal().await?;
            let report = store.audit_verify().await?;
            store.close().await;
            match report.first_break {
                None => {
                    println!(
                        "audit trail intact: {} records chained ({sealed} sealed just now)",
                        report.checked
                    );
                    return Ok(());
                }
                Some(why) => {
                    eprintln!(
                        "AUDIT TRAIL BROKEN after {} intact records: {why}",
                        report.checked
                    );
                    std::process::exit(2);
                }
            }
        }
    };
    let running = start(&cli.config, service).await?;
    println!("hospital is running ({service:?})");
    println!(
        "  FHIR REST   http://{}/fhir   (try /fhir/metadata)",
        running.http_addr
    );
    for (service, a) in &running.grpc_addrs {
        println!("  {service} gRPC {a}   (grpc.health.v1.Health)");
    }
    println!("  store       {}", redact(&cli.config.database_url));
    running.run_until(shutdown_signal()).await
}

fn parse_ttl(s: &str) -> anyhow::Result<std::time::Duration> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("--ttl is a number with s, m, h or d: `{s}`"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => anyhow::bail!("--ttl is a number with s, m, h or d: `{s}`"),
    };
    Ok(std::time::Duration::from_secs(secs))
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
