//! `hospital backup` and `hospital restore`.
//!
//! The embedded store (SQLite) is copied online: `VACUUM INTO` writes one read transaction's
//! snapshot, so the copy is consistent while the services keep writing. A restore checks the
//! copy (`PRAGMA integrity_check`, the audit chain), then swaps the file in whole.
//!
//! PostgreSQL is dumped with `pg_dump --format=custom` (the store's schema only) and loaded
//! with `pg_restore --clean --single-transaction`: all of it or nothing. Both need the
//! PostgreSQL client tools of the server's major version or newer on the PATH.

use crate::Config;
use anyhow::{Context as _, bail};
use std::path::Path;

enum Kind<'a> {
    Sqlite(&'a str),
    Postgres,
}

fn kind(url: &str) -> anyhow::Result<Kind<'_>> {
    match url.split(':').next().unwrap_or_default() {
        "sqlite" => Ok(Kind::Sqlite(
            url.trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or_default(),
        )),
        "postgres" | "postgresql" => Ok(Kind::Postgres),
        other => bail!("unknown database scheme `{other}` (sqlite:// or postgres://)"),
    }
}

/// Writes a backup of the configured store to `file`; says what it wrote.
pub async fn backup(cfg: &Config, file: &Path) -> anyhow::Result<String> {
    if file.exists() {
        bail!(
            "{} exists: a backup never overwrites a file",
            file.display()
        );
    }
    let store = crate::open_store(cfg).await?;
    let result = match kind(&cfg.database_url)? {
        Kind::Sqlite(_) => {
            let path = file
                .to_str()
                .context("the backup's path must be UTF-8")?
                .to_owned();
            store
                .copy_to(&path)
                .await
                .context("cannot copy the store")?;
            private(file)?;
            Ok(())
        }
        Kind::Postgres => {
            let schema = store.schema().await?;
            run(
                std::process::Command::new("pg_dump")
                    .arg("--format=custom")
                    .arg(format!("--schema={schema}"))
                    .arg("--no-owner")
                    .arg("--no-privileges")
                    .arg(format!("--file={}", file.display()))
                    .arg(format!("--dbname={}", cfg.database_url)),
                "pg_dump",
            )
        }
    };
    store.close().await;
    result?;
    let size = std::fs::metadata(file)?.len();
    Ok(format!(
        "backup written: {} ({size} bytes); `hospital restore {}` puts it back",
        file.display(),
        file.display()
    ))
}

/// Replaces the configured store with the backup in `file`, then checks the audit chain;
/// says what it restored.
pub async fn restore(cfg: &Config, file: &Path) -> anyhow::Result<String> {
    if !file.is_file() {
        bail!("no backup at {}", file.display());
    }
    match kind(&cfg.database_url)? {
        Kind::Sqlite(target) => {
            check_sqlite(file).await?;
            let target = Path::new(target);
            if let Some(dir) = target.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let staging = target.with_extension("restoring");
            std::fs::copy(file, &staging).context("cannot copy the backup into place")?;
            std::fs::File::open(&staging)?.sync_all()?;
            private(&staging)?;
            // The old file's write-ahead log belongs to it: replayed onto the restored file it
            // would corrupt it. The services are stopped, so nothing holds them.
            for suffix in ["-wal", "-shm"] {
                let side = format!("{}{suffix}", target.display());
                match std::fs::remove_file(&side) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).context(format!("cannot remove {side}")),
                }
            }
            std::fs::rename(&staging, target).context("cannot swap the restored file in")?;
        }
        Kind::Postgres => {
            let store = crate::open_store(cfg).await?;
            let schema = store.schema().await;
            store.close().await;
            let schema = schema?;
            run(
                std::process::Command::new("pg_restore")
                    .arg("--clean")
                    .arg("--if-exists")
                    .arg("--single-transaction")
                    .arg("--exit-on-error")
                    .arg("--no-owner")
                    .arg("--no-privileges")
                    .arg(format!("--schema={schema}"))
                    .arg(format!("--dbname={}", cfg.database_url))
                    .arg(file),
                "pg_restore",
            )?;
        }
    }
    // Open it as the services will (a backup of an older release is migrated here) and walk
    // the audit chain.
    let store = crate::open_store(cfg).await?;
    let report = store.audit_verify().await;
    store.close().await;
    let report = report?;
    if let Some(why) = report.first_break {
        bail!(
            "restored, but the audit trail does not verify after {} records: {why}",
            report.checked
        );
    }
    Ok(format!(
        "restored from {}: audit trail intact ({} records chained)",
        file.display(),
        report.checked
    ))
}

/// A SQLite backup that is whole: it opens, passes the integrity check and holds a store.
async fn check_sqlite(file: &Path) -> anyhow::Result<()> {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("{} is not a SQLite database", file.display()))?;
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("{} is not a SQLite database", file.display()))?;
    if ok != "ok" {
        bail!("{} is damaged: {ok}", file.display());
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('resources', 'audit_log')",
    )
    .fetch_one(&mut conn)
    .await?;
    if tables != 2 {
        bail!("{} is not a backup of this system's store", file.display());
    }
    Ok(())
}

fn run(cmd: &mut std::process::Command, name: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {name}: install the PostgreSQL client tools (Debian: postgresql-client)"
        )
    })?;
    if !out.status.success() {
        bail!(
            "{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A backup holds medical records: readable by this user only.
fn private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
