//! The binary: `token`, `migrate`, and one clear line for bad configuration.

use crate::support::{SECRET, fresh_database, spawn_app};
use std::process::{Command, Output};
use uuid::Uuid;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recovery-info"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RECOVERY_JWT_SECRET")
        // Never the default port: tests run side by side.
        .env("RECOVERY_METRICS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the binary")
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text
}

#[tokio::test]
async fn a_minted_token_is_accepted_by_the_service() {
    let app = spawn_app().await;
    let tenant = app.tenant.to_string();
    let out = run(
        &[
            "token",
            "--tenant",
            &tenant,
            "--subject",
            "ops",
            "--role",
            "auditor",
            "--ttl",
            "5m",
        ],
        &[("RECOVERY_JWT_SECRET", SECRET)],
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let r = app
        .client
        .get(app.admin_path(Uuid::now_v7(), "/methods"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn bad_token_arguments_fail_with_a_reason() {
    let tenant = Uuid::now_v7().to_string();
    let out = run(
        &[
            "token",
            "--tenant",
            &tenant,
            "--subject",
            "s",
            "--role",
            "auditor",
        ],
        &[("RECOVERY_JWT_SECRET", "short")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("at least 32 bytes"));

    let out = run(
        &[
            "token",
            "--tenant",
            &tenant,
            "--subject",
            "s",
            "--role",
            "root",
        ],
        &[("RECOVERY_JWT_SECRET", SECRET)],
    );
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown role");
    let out = run(
        &[
            "token",
            "--tenant",
            "nope",
            "--subject",
            "s",
            "--role",
            "auditor",
        ],
        &[("RECOVERY_JWT_SECRET", SECRET)],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn token_never_makes_a_secret_and_says_where_it_looked() {
    let cwd = std::env::temp_dir().join(format!("ri_test_{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recovery-info"))
        .args(["token", "--tenant", &Uuid::now_v7().to_string()])
        .args(["--subject", "s", "--role", "auditor"])
        .current_dir(&cwd)
        .env_remove("RECOVERY_JWT_SECRET")
        .env_remove("RECOVERY_DATA_DIR")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = stderr_line(&out);
    let looked_at = cwd.join("data").join("jwt-secret");
    assert!(
        line.contains(&looked_at.display().to_string()) && line.contains("--data-dir"),
        "{line}"
    );
    assert!(!cwd.join("data").exists(), "token created nothing");
    let _ = std::fs::remove_dir_all(&cwd);
}

#[tokio::test]
async fn migrate_applies_the_schema_once() {
    let url = fresh_database().await;
    let out = run(&["migrate"], &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{out:?}");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("migrations applied: {files}")
    );
    let out = run(&["migrate", "--database-url", &url], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "migrations applied: 0"
    );
}

#[tokio::test]
async fn replicas_migrating_at_once_apply_each_migration_once() {
    let url = fresh_database().await;
    let children: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            // PostgreSQL's notices are logged at `info` by tokio_postgres.
            std::thread::spawn(move || {
                run(
                    &["migrate", "--database-url", &url],
                    &[("RUST_LOG", "tokio_postgres=info")],
                )
            })
        })
        .collect();
    let mut applied = 0;
    for child in children {
        let out = child.join().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(out.stderr.is_empty(), "no notice, no warning: {out:?}");
        let line = String::from_utf8_lossy(&out.stdout);
        applied += line
            .trim()
            .strip_prefix("migrations applied: ")
            .unwrap()
            .parse::<usize>()
            .unwrap();
    }
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(applied, files);
}

#[tokio::test]
async fn replay_and_audit_refuse_a_schema_that_is_not_migrated() {
    let url = fresh_database().await;
    let commands: [&[&str]; 2] = [&["replay"], &["audit", "verify"]];
    // Never migrated, then one migration behind: each command says what to run, and writes
    // nothing.
    for behind in [false, true] {
        if behind {
            assert!(
                run(&["migrate"], &[("DATABASE_URL", &url)])
                    .status
                    .success()
            );
            crate::support::pg_client(&url)
                .await
                .batch_execute(
                    "DELETE FROM schema_migrations
                     WHERE version = (SELECT max(version) FROM schema_migrations)",
                )
                .await
                .unwrap();
        }
        for args in commands {
            let out = run(args, &[("DATABASE_URL", &url)]);
            assert_eq!(out.status.code(), Some(1), "{args:?} {out:?}");
            let line = stderr_line(&out);
            assert!(
                line.contains("older than this build needs")
                    && line.contains("run `recovery-info migrate` first"),
                "{args:?}: {line}"
            );
        }
    }
    // Migrated again, both run.
    assert!(
        run(&["migrate"], &[("DATABASE_URL", &url)])
            .status
            .success()
    );
    for args in commands {
        let out = run(args, &[("DATABASE_URL", &url)]);
        assert!(out.status.success(), "{args:?} {out:?}");
    }
}

#[test]
fn a_malformed_or_unreachable_database_fails_with_one_line() {
    let out = run(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:notaport/x")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("DATABASE_URL"), "{out:?}");

    let out = run(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")],
    );
    assert_eq!(out.status.code(), Some(1));
    stderr_line(&out);

    let out = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x"),
            ("RECOVERY_JWT_SECRET", "short"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("RECOVERY_JWT_SECRET"));
}

/// A database of the build before the admin projection (a contact view and an eligibility
/// projection, two checkpoints) upgrades in place: the eligibility rows, which held each admin's
/// state whole, are the admin projection's, and nothing is rebuilt.
#[tokio::test]
async fn a_database_with_the_two_old_projections_upgrades_without_a_rebuild() {
    let url = fresh_database().await;
    let app = crate::support::spawn_on(url.clone(), Default::default()).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.com").await;
    app.put_settings_ok(serde_json::json!({"domains": ["contoso.com"]}))
        .await;
    app.caught_up().await;
    let (view, eligibility) = (app.view(admin).await, app.eligibility(admin).await);
    let tenant = app.tenant;
    drop(app);

    // Back to the old schema, as version 4 left it (but for the data keys, which version 6
    // adds and this database's events are sealed with, and the index of version 7: those
    // migrations find them in place).
    let db = crate::support::pg_client(&url).await;
    db.batch_execute(
        "ALTER TABLE admin_views RENAME TO eligibility_admins;
         ALTER INDEX admin_views_pkey RENAME TO eligibility_admins_pkey;
         ALTER TABLE tenant_views RENAME TO eligibility_tenants;
         ALTER INDEX tenant_views_pkey RENAME TO eligibility_tenants_pkey;
         CREATE TABLE contact_views (tenant_id uuid NOT NULL, admin_id uuid NOT NULL,
                                     state json NOT NULL, PRIMARY KEY (tenant_id, admin_id));
         INSERT INTO contact_views SELECT tenant_id, admin_id, state FROM eligibility_admins;
         UPDATE projection_checkpoints SET name = 'eligibility' WHERE name = 'admins';
         INSERT INTO projection_checkpoints SELECT 'contact_view', position
             FROM projection_checkpoints WHERE name = 'eligibility';
         DELETE FROM schema_migrations WHERE version >= 5;",
    )
    .await
    .unwrap();

    let out = run(&["migrate", "--database-url", &url], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "migrations applied: 5",
        "{out:?}"
    );
    // Served by a replica that projects nothing: the rows are the migrated ones.
    let mut app = crate::support::spawn_on(
        url,
        crate::support::Options {
            run_projections: false,
            ..Default::default()
        },
    )
    .await;
    app.tenant = tenant;
    assert_eq!(app.view(admin).await, view);
    assert_eq!(app.eligibility(admin).await, eligibility);
    let tables: Vec<String> = db
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'
             AND tablename LIKE ANY (ARRAY['%view%', 'eligibility%']) ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["admin_views", "tenant_views"]);
}

/// Usage errors are one line with exit status 2, like every other error; help still prints
/// whole, with status 0.
#[test]
fn usage_errors_are_one_line_and_help_prints_whole() {
    for (args, says) in [
        (&["nonsense"][..], "unrecognized subcommand 'nonsense'"),
        (
            &["audit", "verify", "--expect-anchor", "x"][..],
            "is not an anchor",
        ),
        (
            &["token", "--tenant"][..],
            "a value is required for '--tenant <TENANT>'",
        ),
    ] {
        let out = run(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?} {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("recovery-info: error: ") && err.contains(says),
            "{err}"
        );
    }
    let out = run(&["--help"], &[]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage:") && help.lines().count() > 5,
        "{help}"
    );
}
