//! `hospital`: runs the system, one service, or an administrative command.

use clap::{CommandFactory, Parser};
use hospital::config::{AuditCommand, Cli, Command};
use hospital::{Service, start};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = parse_with_secrets()?;
    let format = hospital_telemetry::logs::Format::parse(&cli.config.log_format)
        .ok_or_else(|| anyhow::anyhow!("HOSPITAL_LOG_FORMAT is text or json"))?;
    let name = match &cli.command {
        Some(Command::Records) => "records",
        Some(Command::Telemedicine) => "telemedicine",
        Some(Command::Billing) => "billing",
        _ => "hospital",
    };
    hospital_telemetry::logs::init(&cli.config.log, format, name);
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
        Some(Command::Routes { ingress, nginx }) => {
            if nginx {
                print!("{}", hospital::routes::nginx());
            } else if ingress {
                print!("{}", hospital::routes::ingress());
            } else {
                for (p, s) in hospital::routes::prefixes() {
                    println!("{p}\t{s}");
                }
                println!("/\t{}", hospital::routes::DEFAULT);
            }
            return Ok(());
        }
        Some(Command::Backup { file }) => {
            let said = hospital::backup::backup(&cli.config, &file).await?;
            println!("{said}");
            return Ok(());
        }
        Some(Command::Restore { file }) => {
            let said = hospital::backup::restore(&cli.config, &file).await?;
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
    let grpc: Vec<String> = running
        .grpc_addrs
        .iter()
        .map(|(s, a)| format!("{s}={a}"))
        .collect();
    let metrics = running
        .metrics_addr
        .map(|a| format!("http://{a}/metrics"))
        .unwrap_or_else(|| "off".into());
    if format == hospital_telemetry::logs::Format::Json {
        // A log pipeline reads standard output: say it as one JSON line too.
        tracing::info!(
            http = %running.http_addr,
            grpc = %grpc.join(","),
            metrics = %metrics,
            "hospital is running ({service:?})"
        );
    } else {
        println!("hospital is running ({service:?})");
        println!(
            "  FHIR REST   http://{}/fhir   (try /fhir/metadata)",
            running.http_addr
        );
        for (service, a) in &running.grpc_addrs {
            println!("  {service} gRPC {a}   (grpc.health.v1.Health)");
        }
        println!("  metrics     {metrics}   (Prometheus; /readyz and /healthz on HTTP)");
        println!("  store       {}", redact(&cli.config.database_url));
    }
    running.run_until(shutdown_signal()).await
}

/// The command line, with the secrets of `HOSPITAL_SECRETS_DIR` (files named like the
/// environment variables, as Kubernetes mounts a Secret) for the settings neither the
/// environment nor a flag gives.
fn parse_with_secrets() -> anyhow::Result<Cli> {
    let cli = Cli::parse();
    let Some(dir) = cli.config.secrets_dir.clone() else {
        return Ok(cli);
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let given = |long: &str| {
        args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")))
        })
    };
    let mut extra = Vec::new();
    let command = Cli::command();
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if std::env::var_os(env).is_some() || given(long) {
            continue;
        }
        let path = std::path::Path::new(&dir).join(env);
        match std::fs::read_to_string(&path) {
            Ok(value) => {
                let value = value.trim_end_matches(['\n', '\r']);
                extra.push(std::ffi::OsString::from(format!("--{long}={value}")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot read the secret {}: {e}", path.display()),
        }
    }
    if extra.is_empty() {
        return Ok(cli);
    }
    let mut all = vec![args[0].clone()];
    all.extend(extra);
    all.extend(args.into_iter().skip(1));
    Ok(Cli::parse_from(all))
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
