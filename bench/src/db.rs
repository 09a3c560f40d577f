//! The benchmark's own database: created fresh on the given server, dropped at the end.

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use std::time::Instant;
use tokio_postgres::{Client, NoTls};

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let mut u = url::Url::parse(url)
        .map_err(|e| anyhow!("--pg-url {url:?} is not a postgres:// URL: {e}"))?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

/// Opens one connection and drives it on a task.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The URL without a password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A database created for this run.
pub struct BenchDb {
    pub name: String,
    pub url: String,
    admin_url: String,
    pub server_version: String,
}

impl BenchDb {
    /// Creates `recovery_bench_<pid>_<time>` on the server of `pg_url`.
    pub async fn create(pg_url: &str) -> anyhow::Result<Self> {
        let admin_url = with_database(pg_url, "postgres")?;
        let admin = connect(&admin_url).await?;
        let server_version: String = admin
            .query_one("SHOW server_version", &[])
            .await
            .context("PostgreSQL did not answer")?
            .get(0);
        let name = format!(
            "recovery_bench_{}_{}",
            std::process::id(),
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        Ok(BenchDb {
            url: with_database(pg_url, &name)?,
            name,
            admin_url,
            server_version,
        })
    }

    /// Drops the database, closing the connections still open to it.
    pub async fn drop_db(&self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .with_context(|| format!("cannot drop database {}", self.name))
    }
}

/// The WAL the server writes over a phase, per operation: what PostgreSQL must flush, and ship
/// to a replica, for each. It reads the server's WAL position, so it counts every database's
/// writes (nothing else of ours writes during a run) and, like [`crate::stats::CpuMeter`], is
/// spread over the operations at the phase's rate: a warm-up at the same rate counts alike.
pub struct WalMeter<'a> {
    client: &'a Client,
    start: String,
    at: Instant,
}

impl<'a> WalMeter<'a> {
    pub async fn start(client: &'a Client) -> anyhow::Result<Self> {
        let start = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .context("cannot read the WAL position")?
            .get(0);
        Ok(WalMeter {
            client,
            start,
            at: Instant::now(),
        })
    }

    /// Adds `wal_bytes_per_op` to a phase's JSON; the text for its progress line, and the bytes
    /// per operation.
    pub async fn record(&self, per_second: f64, json: &mut Value) -> anyhow::Result<(String, f64)> {
        let bytes: f64 = self
            .client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
                &[&self.start],
            )
            .await
            .context("cannot read the WAL position")?
            .get(0);
        let per_op = bytes / self.at.elapsed().as_secs_f64().max(1e-9) / per_second.max(1e-9);
        json["wal_bytes_per_op"] = json!(per_op);
        Ok((format!(", WAL {per_op:.0} B per op"), per_op))
    }
}
