//! PostgreSQL servers of the tests' own, in temporary directories: the auditor's tools on a
//! hot standby (a streaming read replica: `audit verify` and `audit export` only read, so
//! auditors can run them on a replica and leave the primary to the service), and the service
//! over TLS to a server whose certificate it verifies.

use crate::support::postgres::{Dir, Server, give_to_postgres, init, pg};
use crate::support::{Options, spawn_on, succeeds};
use recovery_info::store::EventLog;

use std::process::Command;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn query_one_text(url: &str, sql: &str) -> String {
    let client = crate::support::pg_client(url).await;
    let row = client.query_one(sql, &[]).await.unwrap();
    row.get::<_, Option<String>>(0).unwrap_or_default()
}

fn audit(url: &str, args: &[&str]) -> String {
    let out = succeeds(
        Command::new(env!("CARGO_BIN_EXE_recovery-info"))
            .args(args)
            .env_remove("RECOVERY_DATA_DIR")
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn"),
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn audit_verify_and_export_run_on_a_hot_standby_and_agree_with_the_primary() {
    let dir = Dir::new();
    let primary_data = init(&dir, "primary");
    let primary = Server::start(&primary_data, &dir.0);
    crate::support::pg_client(&primary.url("postgres"))
        .await
        .batch_execute("CREATE DATABASE recovery")
        .await
        .unwrap();
    let app = spawn_on(primary.url("recovery"), Options::default()).await;
    let admins: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (i, a) in admins.iter().enumerate() {
        app.add_ok(*a, "mobile_phone", &format!("+45 20 12 34 5{i}"))
            .await;
    }

    // A streaming standby of the primary, then more commands that reach it by streaming.
    let standby_data = dir.0.join("standby");
    pg(
        "pg_basebackup",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
            standby_data.to_str().unwrap(),
            "-R",
            "-X",
            "stream",
            // An immediate checkpoint (a spread one takes minutes).
            "--checkpoint=fast",
        ],
    );
    let standby = Server::start(&standby_data, &dir.0);
    for (i, a) in admins.iter().enumerate() {
        app.add_ok(*a, "email", &format!("admin{i}@example.com"))
            .await;
    }
    let head = app.store().head().await.unwrap();
    assert_eq!(head, 2 * admins.len() as u64);
    let wal = query_one_text(
        &primary.url("recovery"),
        "SELECT pg_current_wal_lsn()::text",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let caught_up = query_one_text(
            &standby.url("recovery"),
            &format!("SELECT (pg_last_wal_replay_lsn() >= '{wal}')::text"),
        )
        .await;
        if caught_up == "true" {
            break;
        }
        assert!(Instant::now() < deadline, "the standby did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not vacuous: the standby is read-only.
    assert_eq!(
        query_one_text(&standby.url("recovery"), "SELECT pg_is_in_recovery()::text").await,
        "true"
    );

    let on_primary = audit(&primary.url("recovery"), &["audit", "verify"]);
    let on_standby = audit(&standby.url("recovery"), &["audit", "verify"]);
    assert!(
        on_standby.starts_with(&format!("intact: {head} events")),
        "{on_standby}"
    );
    assert_eq!(on_standby, on_primary, "the same log, the same anchor");

    let tenant = app.tenant.to_string();
    let export = ["audit", "export", "--tenant", &tenant, "--format", "jsonl"];
    let on_primary = audit(&primary.url("recovery"), &export);
    let on_standby = audit(&standby.url("recovery"), &export);
    assert_eq!(on_standby.lines().count(), head as usize);
    assert_eq!(on_standby, on_primary);
    app.server.stop().await.unwrap();
}

/// With `sslmode=require` (or `verify-full`) and the server's CA in `sslrootcert`, every
/// connection of the service is TLS; a certificate it cannot verify — a CA it was not given,
/// another host name — is refused rather than used, and `sslrootcert` without `sslmode` too.
#[tokio::test]
async fn the_service_talks_tls_to_a_server_it_verifies_and_to_no_other() {
    let dir = Dir::new();
    crate::support::certificates(&dir.0);
    // The server reads its key as the `postgres` user.
    give_to_postgres(&dir.0, &["server.key", "server.pem"]);
    let data = init(&dir, "tls");
    let ssl = format!(
        "-c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
        dir.0.display()
    );
    let server = Server::start_with(&data, &dir.0, &ssl);
    crate::support::pg_client(&server.url("postgres"))
        .await
        .batch_execute("CREATE DATABASE recovery")
        .await
        .unwrap();
    let ca = dir.0.join("ca.pem");
    let secured = |host: &str, mode: &str| {
        format!(
            "postgres://postgres@{host}:{}/recovery?sslmode={mode}&sslrootcert={}",
            server.port,
            ca.display()
        )
    };

    let app = spawn_on(secured("127.0.0.1", "verify-full"), Options::default()).await;
    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 56")
        .await;
    // Every connection of the service to its database (the pool's and the LISTEN one) is TLS.
    let observer = crate::support::pg_client(&server.url("postgres")).await;
    let row = observer
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = 'recovery' AND a.backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap();
    let (all, tls): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 2 && tls == all, "{tls} of {all} connections are TLS");
    app.server.stop().await.unwrap();

    // Refused: the system's roots alone do not know this CA; the certificate names 127.0.0.1,
    // not localhost; a CA file without sslmode.
    let refused = [
        format!(
            "postgres://postgres@127.0.0.1:{}/recovery?sslmode=require",
            server.port
        ),
        secured("localhost", "require"),
        format!(
            "postgres://postgres@127.0.0.1:{}/recovery?sslrootcert={}",
            server.port,
            ca.display()
        ),
    ];
    for url in refused {
        let opened =
            recovery_info::store::Store::open(&recovery_info::store::StoreConfig::Postgres {
                url: url.clone(),
                pool_size: 2,
                kek: Default::default(),
            })
            .await;
        assert!(opened.is_err(), "{url} must be refused");
    }
}
