//! The benchmark's own database: created fresh on the given server, dropped at the end.

use anyhow::{Context, anyhow};
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
