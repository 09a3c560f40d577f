//! The auditor's tools, on both backends: `audit verify` names the first broken link of a log
//! tampered with by SQL, `audit export` streams a 100k-event history in bounded memory and
//! matches the HTTP history, and `replay` swaps in a rebuild equal to the live projection while
//! requests keep flowing.

use crate::support::{Backend, TestApp, fresh_store, method_id, spawn_backend};
use prost::Message;
use recovery_info::domain::{
    AdminId, DomainEvent, MethodId, MethodKind, ResetPolicy, StreamId, TenantId,
};
use recovery_info::events::{Actor, PendingEvent, pb};
use recovery_info::http::auth::Role;
use recovery_info::projections::replay::replay;
use recovery_info::store::projections::Projection;
use recovery_info::store::sqlite::DB_FILE;
use recovery_info::store::{EventLog, Maintenance, ProjectionStorage};
use recovery_info::store::{Store, StoreConfig};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers: the binary, a bare store, seeding, and raw SQL on either backend.

use crate::support::{bin, run};

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A migrated store without a server; the embedded one's directory goes when it drops.
pub(crate) struct TestStore {
    pub(crate) config: StoreConfig,
    pub(crate) store: Store,
}

impl TestStore {
    pub(crate) async fn new(backend: Backend) -> Self {
        let config = fresh_store(backend).await;
        let store = Store::open(&config).await.unwrap();
        store.migrate().await.unwrap();
        TestStore { config, store }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let StoreConfig::Embedded { data_dir, .. } = &self.config {
            let _ = std::fs::remove_dir_all(data_dir);
        }
    }
}

pub(crate) fn added(n: u64) -> PendingEvent {
    PendingEvent {
        event_id: Uuid::now_v7(),
        occurred_at: chrono::Utc::now(),
        actor: Actor {
            subject: "seed".into(),
            roles: vec!["authentication_admin".into()],
            ..Actor::default()
        },
        correlation_id: Uuid::now_v7(),
        idempotency_key: None,
        event: DomainEvent::MethodAdded {
            method_id: MethodId::from_uuid(Uuid::now_v7()),
            kind: MethodKind::Email,
            value: format!("user{n}@example.com"),
        },
    }
}

/// `rounds` rounds of one append of `per_append` events to each stream: with `per_append`
/// = 1, position p belongs to stream (p - 1) % n at version (p - 1) / n + 1.
pub(crate) async fn seed(store: &Store, streams: &[StreamId], rounds: u64, per_append: u64) {
    let mut n = 0;
    for round in 0..rounds {
        for stream in streams {
            let events = (0..per_append)
                .map(|_| {
                    n += 1;
                    added(n)
                })
                .collect();
            store
                .append(*stream, round * per_append, events, None)
                .await
                .unwrap();
        }
    }
}

pub(crate) fn admin_streams(tenant: Uuid, n: usize) -> Vec<StreamId> {
    (0..n)
        .map(|_| {
            StreamId::Admin(
                TenantId::from_uuid(tenant),
                AdminId::from_uuid(Uuid::now_v7()),
            )
        })
        .collect()
}

/// Raw SQL access to a store's database, behind the service's back.
pub(crate) enum Db {
    Pg(tokio_postgres::Client),
    Lite(rusqlite::Connection),
}

impl Db {
    pub(crate) async fn open(config: &StoreConfig) -> Db {
        match config {
            StoreConfig::Postgres { url, .. } => Db::Pg(crate::support::pg_client(url).await),
            StoreConfig::Embedded { data_dir, .. } => {
                let c = rusqlite::Connection::open(data_dir.join(DB_FILE)).unwrap();
                c.busy_timeout(Duration::from_secs(5)).unwrap();
                Db::Lite(c)
            }
        }
    }

    pub(crate) async fn bytes(&self, column: &str, position: i64) -> Vec<u8> {
        let sql = format!("SELECT {column} FROM events WHERE position = ");
        match self {
            Db::Pg(c) => c
                .query_one(&format!("{sql}$1"), &[&position])
                .await
                .unwrap()
                .get(0),
            Db::Lite(c) => c
                .query_row(&format!("{sql}?1"), [position], |r| r.get(0))
                .unwrap(),
        }
    }

    pub(crate) async fn set_bytes(&self, column: &str, position: i64, value: Vec<u8>) {
        let sql = format!("UPDATE events SET {column} = ");
        let n = match self {
            Db::Pg(c) => c
                .execute(
                    &format!("{sql}$1 WHERE position = $2"),
                    &[&value, &position],
                )
                .await
                .unwrap(),
            Db::Lite(c) => c
                .execute(
                    &format!("{sql}?1 WHERE position = ?2"),
                    rusqlite::params![value, position],
                )
                .unwrap() as u64,
        };
        assert_eq!(n, 1);
    }

    pub(crate) async fn delete(&self, position: i64) {
        match self {
            Db::Pg(c) => {
                c.execute("DELETE FROM events WHERE position = $1", &[&position])
                    .await
                    .unwrap();
            }
            Db::Lite(c) => {
                c.execute("DELETE FROM events WHERE position = ?1", [position])
                    .unwrap();
            }
        }
    }

    /// `(key, row as JSON)` of a projection table: `sql` selects a key and JSON text columns.
    async fn rows(&self, sql: &str) -> BTreeMap<String, Value> {
        let parse = |cols: Vec<String>| -> Value {
            Value::Array(
                cols.iter()
                    .map(|c| serde_json::from_str(c).unwrap())
                    .collect(),
            )
        };
        match self {
            Db::Pg(c) => c
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let cols = (1..r.len()).map(|i| r.get::<_, String>(i)).collect();
                    (r.get::<_, String>(0), parse(cols))
                })
                .collect(),
            Db::Lite(c) => {
                let mut stmt = c.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    let cols = (1..n)
                        .map(|i| r.get::<_, String>(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((r.get::<_, String>(0)?, cols))
                })
                .unwrap()
                .map(|row| {
                    let (k, cols) = row.unwrap();
                    (k, parse(cols))
                })
                .collect()
            }
        }
    }

    /// PostgreSQL: each projection table's primary key, as `table: name definition`.
    async fn primary_keys(&self) -> Vec<String> {
        let Db::Pg(c) = self else {
            return Vec::new();
        };
        c.query(
            "SELECT conrelid::regclass::text || ': ' || conname || ' ' || pg_get_constraintdef(oid)
             FROM pg_constraint WHERE contype = 'p' AND conrelid = ANY(ARRAY[
               'admin_views', 'tenant_views']::regclass[])
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    /// Every row of the projections' tables, as JSON values (key order does not matter).
    async fn projections(&self) -> [BTreeMap<String, Value>; 3] {
        let cast = |col: &str| match self {
            Db::Pg(_) => format!("{col}::text"),
            Db::Lite(_) => format!("CAST({col} AS TEXT)"),
        };
        let key = format!("{} || '/' || {}", cast("tenant_id"), cast("admin_id"));
        [
            self.rows(&format!("SELECT {key}, {} FROM admin_views", cast("state")))
                .await,
            self.rows(&format!(
                "SELECT {key}, {}, {}, {} FROM admin_views",
                cast("state"),
                cast("verdict"),
                cast("changed_position")
            ))
            .await,
            self.rows(&format!(
                "SELECT {}, {} FROM tenant_views",
                cast("tenant_id"),
                cast("state")
            ))
            .await,
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// audit verify

async fn verify_accepts_an_intact_log_and_checks_an_anchor(backend: Backend) {
    let t = TestStore::new(backend).await;
    let streams = admin_streams(Uuid::now_v7(), 4);
    seed(&t.store, &streams, 5, 1).await;

    let out = run(&t.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("intact: 20 events in 4 streams, head 20"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("verify: 20 events in"),
        "{out:?}"
    );
    let anchor = stdout
        .lines()
        .find_map(|l| l.strip_prefix("anchor: "))
        .expect("an anchor line")
        .to_owned();
    assert!(
        anchor.starts_with("20:") && anchor.len() == 3 + 64,
        "{anchor}"
    );

    // The log grows: the anchor recorded at 20 still holds.
    t.store
        .append(streams[0], 5, (0..3).map(added).collect(), None)
        .await
        .unwrap();
    let out = run(&t.config, &["audit", "verify", "--expect-anchor", &anchor]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains(&format!("matches anchor: {anchor}")));
    assert!(text(&out.stdout).contains("head 23"));

    // Another digest, or an anchor beyond the end of the log, is a finding (exit 3).
    let mut wrong = anchor.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    let out = run(&t.config, &["audit", "verify", "--expect-anchor", &wrong]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        text(&out.stderr).contains("does not match the anchor"),
        "{out:?}"
    );
    let beyond = format!("99:{}", &anchor[3..]);
    let out = run(&t.config, &["audit", "verify", "--expect-anchor", &beyond]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text(&out.stderr).contains("truncated"), "{out:?}");

    let out = run(
        &t.config,
        &["audit", "verify", "--expect-anchor", "nonsense"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses a malformed anchor"
    );
}

#[derive(Clone, Copy, Debug)]
enum Tamper {
    PayloadChanged(i64),
    HashChanged(i64),
    RowDeleted(i64),
    PayloadsSwapped(i64, i64),
    TailDeleted(i64),
}

async fn tamper(db: &Db, how: Tamper) {
    match how {
        Tamper::PayloadChanged(p) => {
            let mut env = pb::Envelope::decode(db.bytes("payload", p).await.as_slice()).unwrap();
            env.actor.as_mut().unwrap().subject = "mallory".into();
            db.set_bytes("payload", p, env.encode_to_vec()).await;
        }
        Tamper::HashChanged(p) => db.set_bytes("hash", p, vec![7; 32]).await,
        Tamper::RowDeleted(p) | Tamper::TailDeleted(p) => db.delete(p).await,
        Tamper::PayloadsSwapped(a, b) => {
            let (pa, pb) = (db.bytes("payload", a).await, db.bytes("payload", b).await);
            db.set_bytes("payload", a, pb).await;
            db.set_bytes("payload", b, pa).await;
        }
    }
}

async fn verify_names_the_first_broken_link_of_a_tampered_log(backend: Backend) {
    // Four streams, five rounds: position p is stream (p - 1) % 4, version (p - 1) / 4 + 1.
    let cases = [
        (
            Tamper::PayloadChanged(7),
            "position 7 (stream {2}, version 2): the hash is not sha256(prev_hash || payload)",
        ),
        (
            Tamper::HashChanged(9),
            "position 9 (stream {0}, version 3): the hash is not sha256(prev_hash || payload)",
        ),
        (
            Tamper::RowDeleted(5),
            "position 5: the row is missing: the log jumps from position 4 to 6",
        ),
        (
            Tamper::PayloadsSwapped(6, 11),
            "position 6 (stream {1}, version 2): the payload belongs at position 11",
        ),
        (
            Tamper::TailDeleted(20),
            "position 20: the log ends at position 19 but its head is 20",
        ),
    ];
    for (how, expected) in cases {
        let t = TestStore::new(backend).await;
        let streams = admin_streams(Uuid::now_v7(), 4);
        seed(&t.store, &streams, 5, 1).await;
        tamper(&Db::open(&t.config).await, how).await;

        let out = run(&t.config, &["audit", "verify"]);
        assert_eq!(out.status.code(), Some(3), "{how:?}: {out:?}");
        let stderr = text(&out.stderr);
        let line = stderr.lines().last().unwrap_or_default();
        let mut expected = expected.to_owned();
        for (i, s) in streams.iter().enumerate() {
            expected = expected.replace(&format!("{{{i}}}"), &s.to_string());
        }
        assert!(
            line.starts_with("recovery-info: error: the hash chain is broken at ")
                && line.contains(&expected),
            "{how:?}: expected {expected:?} in {line:?}"
        );
        assert!(text(&out.stdout).is_empty(), "no summary for a broken log");
    }
}

#[test]
fn verify_of_an_unreachable_database_fails_with_one_line() {
    let config = StoreConfig::Postgres {
        url: "postgres://postgres@127.0.0.1:1/x".into(),
        pool_size: 1,
        kek: Default::default(),
    };
    let out = run(&config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("recovery-info: error: "), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// audit export

/// Runs the command to completion, sampling its peak resident set (VmHWM) meanwhile.
///
/// The binary's allocator (mimalloc) gives freed pages back to the system only after a delay,
/// and how many it holds then varies from run to run with the threads that freed them (peaks
/// of 37–65 MB for the same export): the command runs with no delay, so that its peak is the
/// memory it uses, well apart from what keeping the log in memory takes (≈ 80 MB here).
fn peak_rss_kib(mut cmd: Command) -> (Output, u64) {
    let mut child = cmd
        .env("MIMALLOC_PURGE_DELAY", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(kib) = crate::support::proc_status(child.id(), "VmHWM")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child.wait_with_output().unwrap(), peak)
}

async fn export_of_a_100k_event_log_runs_in_bounded_memory(backend: Backend) {
    const STREAMS: usize = 100;
    const EACH: u64 = 1000;
    let t = TestStore::new(backend).await;
    let tenant = Uuid::now_v7();
    let started = std::time::Instant::now();
    seed(&t.store, &admin_streams(tenant, STREAMS), 1, EACH).await;
    eprintln!("seeded 100k events in {:?}", started.elapsed());
    let dir = std::env::temp_dir().join(format!("ri_export_{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    for (format, header) in [("jsonl", 0), ("csv", 1)] {
        let file = dir.join(format!("export.{format}"));
        let mut cmd = bin(&t.config, &["audit", "export", "--format", format]);
        cmd.arg("--tenant")
            .arg(tenant.to_string())
            .arg("--output")
            .arg(&file);
        let (out, peak) = peak_rss_kib(cmd);
        assert!(out.status.success(), "{out:?}");
        eprintln!(
            "[{backend:?}] export {format}: peak RSS {} KiB; {}",
            peak,
            text(&out.stderr).trim()
        );
        assert!(
            peak > 0 && peak < 64 * 1024,
            "peak RSS {peak} KiB is not bounded"
        );
        let lines =
            std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&file).unwrap()))
                .count();
        assert_eq!(lines, STREAMS * EACH as usize + header, "{format}");
    }
    let _ = std::fs::remove_dir_all(&dir);

    // The same log verifies and replays; their rates and memory are worth a line.
    for args in [&["audit", "verify"][..], &["replay"][..]] {
        let (out, peak) = peak_rss_kib(bin(&t.config, args));
        assert!(out.status.success(), "{out:?}");
        eprintln!(
            "[{backend:?}] {}: peak RSS {peak} KiB; {}",
            args.join(" "),
            text(&out.stderr).trim()
        );
    }
    // A 100k-event database is worth giving back at once.
    if let StoreConfig::Postgres { url, .. } = &t.config {
        let (base, name) = url.rsplit_once('/').unwrap();
        crate::support::pg_client(&format!("{base}/postgres"))
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}

/// A tiny RFC 4180 reader for the test: records of fields, quotes undone.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

async fn export_writes_the_same_entries_as_the_http_history(backend: Backend) {
    let app = spawn_backend(backend).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let phone = app.add_ok(a, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(a, "email", "jane@example.com").await;
    app.add_ok(b, "mobile_phone", "+45 20 12 34 57").await;
    assert_eq!(app.change(a, &phone, "+45 31 12 34 99").await.status(), 200);
    app.put_settings_ok(json!({"domains": ["contoso.com"]}))
        .await;
    let feed = app.get_json(&app.url("/events?limit=1000")).await["events"].clone();
    let feed = feed.as_array().unwrap();
    assert_eq!(feed.len(), 5);
    let tenant = app.tenant.to_string();
    let export = |extra: &[&str]| {
        let mut args = vec!["audit", "export", "--tenant", &tenant];
        args.extend_from_slice(extra);
        let out = run(&app.store_config, &args);
        assert!(out.status.success(), "{out:?}");
        text(&out.stdout)
    };
    let jsonl = |s: String| -> Vec<Value> {
        s.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    assert_eq!(&jsonl(export(&["--format", "jsonl"])), feed);
    let admin_a = a.to_string();
    assert_eq!(
        jsonl(export(&["--format", "jsonl", "--admin", &admin_a])),
        app.history(a).await
    );
    // Revealing needs an auditor's token of the tenant, checked like the service checks one.
    let reveal = |token: &str| {
        let args = [
            "audit", "export", "--tenant", &tenant, "--format", "jsonl", "--reveal", "--token",
            token,
        ];
        bin(&app.store_config, &args)
            .env("RECOVERY_JWT_SECRET", crate::support::SECRET)
            .output()
            .unwrap()
    };
    let out = reveal(&app.token("auditor-9", &[Role::Auditor]));
    assert!(out.status.success(), "{out:?}");
    let revealed = jsonl(text(&out.stdout));
    assert_eq!(revealed[0]["data"]["value"], "+4520123456");
    assert_eq!(feed[0]["data"]["value"], "+45 •• •• •• 56");
    // A revealing export leaves its trace first, so it is the last entry it writes; its actor
    // is the token's subject.
    let trace = revealed.last().unwrap();
    assert_eq!(trace["type"], "PiiRevealed");
    assert_eq!(trace["data"]["scope"], "export");
    assert_eq!(trace["actor"]["subject"], "auditor-9");
    assert_eq!(trace["actor"]["roles"], json!(["auditor"]));
    for (token, why) in [
        (app.token("board", &[Role::Dashboard]), "the auditor role"),
        (
            app.token_for(Uuid::now_v7(), "auditor-9", &[Role::Auditor]),
            "another tenant",
        ),
        ("not-a-token".to_owned(), "is not accepted"),
    ] {
        let out = reveal(&token);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        assert!(
            err.lines().count() == 1 && err.contains(why),
            "{why}: {err}"
        );
    }
    let out = run(
        &app.store_config,
        &[
            "audit", "export", "--tenant", &tenant, "--format", "jsonl", "--reveal",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--token"), "{out:?}");
    let window = |since: &str, until: &str| {
        jsonl(export(&[
            "--format", "jsonl", "--since", since, "--until", until,
        ]))
        .len()
    };
    assert_eq!(window("2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"), 6);
    assert_eq!(window("2999-01-01T00:00:00Z", "2999-01-02T00:00:00Z"), 0);
    assert_eq!(
        window("2000-01-01T00:00:00+02:00", "2000-01-02T00:00:00Z"),
        0
    );

    let csv = parse_csv(&export(&["--format", "csv"]));
    assert_eq!(
        csv[0],
        recovery_info::audit::export::CSV_COLUMNS.map(String::from)
    );
    assert_eq!(
        csv.len(),
        1 + feed.len() + 1,
        "the header, the feed and the reveal trace"
    );
    for (row, entry) in csv[1..].iter().zip(feed) {
        assert_eq!(row.len(), 13);
        assert_eq!(row[0], entry["position"].to_string());
        assert_eq!(row[3], entry["type"].as_str().unwrap());
        assert_eq!(row[7], entry["actor"]["subject"].as_str().unwrap());
        assert_eq!(
            serde_json::from_str::<Value>(&row[10]).unwrap(),
            entry["data"]
        );
    }

    // Bad arguments: one line, or clap's usage error.
    let out = run(
        &app.store_config,
        &["audit", "export", "--tenant", &tenant, "--format", "xml"],
    );
    assert_eq!(out.status.code(), Some(2));
    // Like every error, one line (clap's own spans four).
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("recovery-info: error: invalid value 'xml' for '--format <FORMAT>'")
            && err.contains("jsonl, csv")
            && err.contains("see --help"),
        "{err}"
    );
    let out = run(
        &app.store_config,
        &[
            "audit",
            "export",
            "--tenant",
            &tenant,
            "--format",
            "csv",
            "--since",
            "yesterday",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &app.store_config,
        &[
            "audit",
            "export",
            "--tenant",
            &tenant,
            "--format",
            "csv",
            "--output",
            "/nonexistent/dir/x.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("recovery-info: error: cannot create"));
}

// ---------------------------------------------------------------------------------------------
// replay

/// A small deterministic generator (xorshift64*), so that a failing workload can be rerun.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

const KINDS: [&str; 4] = ["mobile_phone", "alternate_phone", "office_phone", "email"];

fn value_of(kind: &str, n: u64) -> String {
    match kind {
        "email" if n.is_multiple_of(3) => format!("a{n}@contoso.com"),
        "email" => format!("a{n}@example.com"),
        _ => format!("+45 20 12 {:02} {:02}", (n / 100) % 100, n % 100),
    }
}

/// One random command: add, change or remove a method of a random admin, or a settings change.
/// Refusals (409, 422) are part of the workload; only server errors fail the test.
async fn random_command(
    app: &TestApp,
    admins: &[Uuid],
    rng: &mut Rng,
    methods: &mut HashMap<(Uuid, &'static str), String>,
) {
    let admin = admins[rng.below(admins.len() as u64) as usize];
    let kind = KINDS[rng.below(4) as usize];
    let n = rng.below(10_000);
    let status = match (rng.below(12), methods.get(&(admin, kind)).cloned()) {
        (0, _) => {
            let body = if n.is_multiple_of(2) {
                json!({"domains": if n.is_multiple_of(4) { vec!["contoso.com"] } else { vec![] }})
            } else {
                let name = if n.is_multiple_of(3) {
                    "any_two_methods"
                } else {
                    "email_and_mobile_phone"
                };
                json!({"reset_policy": {"name": name}})
            };
            app.put_settings(body).await.status()
        }
        (1..=5, None) => {
            let r = app.add(admin, kind, &value_of(kind, n)).await;
            let status = r.status();
            if status == 201 {
                let body: Value = r.json().await.unwrap();
                let id = body["method"]["id"].as_str().unwrap().to_owned();
                methods.insert((admin, kind), id);
            }
            status
        }
        (1..=8, Some(id)) => app.change(admin, &id, &value_of(kind, n)).await.status(),
        (_, Some(id)) => {
            let status = app.remove(admin, &id).await.status();
            if status == 200 {
                methods.remove(&(admin, kind));
            }
            status
        }
        (_, None) => return,
    };
    assert!(!status.is_server_error() || status == 503, "{status}");
}

async fn replay_swaps_in_a_rebuild_equal_to_the_live_projection_while_requests_flow(
    backend: Backend,
) {
    let app = Arc::new(spawn_backend(backend).await);
    let admins: Arc<Vec<Uuid>> = Arc::new((0..10).map(|_| Uuid::now_v7()).collect());
    let mut rng = Rng(0x5eed_0000_0000_0001 ^ (backend == Backend::Embedded) as u64);
    let mut methods = HashMap::new();
    for (i, admin) in admins.iter().enumerate() {
        let id = app
            .add_ok(*admin, "mobile_phone", &value_of("mobile_phone", i as u64))
            .await;
        methods.insert((*admin, "mobile_phone"), id);
    }
    for _ in 0..150 {
        random_command(&app, &admins, &mut rng, &mut methods).await;
    }
    app.caught_up().await;
    let head_before = app.store().head().await.unwrap();

    // While the replay runs: a writer keeps commanding, a reader keeps reading every view.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, admins, stop) = (app.clone(), admins.clone(), stop.clone());
        tokio::spawn(async move {
            let mut writes = 0;
            while !stop.load(Ordering::Relaxed) {
                random_command(&app, &admins, &mut rng, &mut methods).await;
                writes += 1;
            }
            writes
        })
    };
    let reader = {
        let (app, admins, stop) = (app.clone(), admins.clone(), stop.clone());
        tokio::spawn(async move {
            let tenant = TenantId::from_uuid(app.tenant);
            let mut seen: HashMap<Uuid, (u64, u64)> = HashMap::new();
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                for admin in admins.iter() {
                    let (checkpoint, view) = app
                        .store()
                        .contact_view(tenant, AdminId::from_uuid(*admin))
                        .await
                        .unwrap();
                    let version = view.expect("never an empty projection").version;
                    let (last_cp, last_version) = seen.get(admin).copied().unwrap_or_default();
                    assert!(checkpoint >= last_cp, "the checkpoint went backwards");
                    assert!(version >= last_version, "a view went backwards");
                    seen.insert(*admin, (checkpoint, version));
                    reads += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            reads
        })
    };
    let other = Store::open(&app.store_config).await.unwrap();
    let replayed = replay(&other, &Projection::ALL, 25).await.unwrap();
    assert!(replayed.checkpoint >= head_before, "{replayed:?}");
    assert!(replayed.events >= head_before, "{replayed:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    let reads = reader.await.unwrap();
    assert!(writes > 0 && reads > 0, "{writes} writes, {reads} reads");
    app.caught_up().await;

    let db = Db::open(&app.store_config).await;
    let swapped = db.projections().await;
    assert_eq!(swapped[0].len(), admins.len());
    assert_eq!(swapped[1].len(), admins.len());
    // The reference: the long-standing rebuild (empty the tables, refold from 0).
    for p in Projection::ALL {
        app.store().reset_projection(p).await.unwrap();
    }
    app.caught_up().await;
    let reference = db.projections().await;
    assert!(swapped == reference, "the swapped-in rebuild differs");

    // The binary does the same, one projection at a time.
    let out = run(
        &app.store_config,
        &["replay", "--projection", "contact_view"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).starts_with("rebuilt admins: "), "{out:?}");
    assert!(text(&out.stderr).contains("events/s"), "{out:?}");
    app.caught_up().await;
    assert!(db.projections().await == reference);
}

/// One tenant's side of a workload, through the API.
struct Tenant<'a> {
    app: &'a TestApp,
    id: Uuid,
}

impl Tenant<'_> {
    /// Sends a command or a query as an authentication admin and auditor; it must succeed.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/v1/tenants/{}{path}", self.app.base, self.id);
        let roles = [Role::AuthenticationAdmin, Role::Auditor, Role::ResetService];
        let token = self.app.token_for(self.id, "helpdesk-1", &roles);
        let r = self.app.send(method, &url, &token, body).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Adds a method; returns its id.
    async fn add(&self, admin: Uuid, kind: &str, value: &str) -> String {
        let body = json!({"kind": kind, "value": value});
        let added = self
            .ok(
                Method::POST,
                &format!("/admins/{admin}/methods"),
                Some(body),
            )
            .await;
        added["method"]["id"].as_str().unwrap().to_owned()
    }

    async fn change(&self, admin: Uuid, method: &str, value: &str) {
        let path = format!("/admins/{admin}/methods/{method}");
        self.ok(Method::PATCH, &path, Some(json!({"value": value})))
            .await;
    }

    async fn settings(&self, body: Value) {
        self.ok(Method::PUT, "/settings", Some(body)).await;
    }

    async fn offboard(&self, admin: Uuid) {
        let path = format!("/admins/{admin}/offboard");
        self.ok(Method::POST, &path, None).await;
    }

    /// Each admin's contact view and eligibility answer.
    async fn answers(&self, admins: &[Uuid]) -> Vec<(Value, Value)> {
        let mut answers = Vec::new();
        for admin in admins {
            let view = self
                .ok(Method::GET, &format!("/admins/{admin}/methods"), None)
                .await;
            let verdict = self
                .ok(
                    Method::GET,
                    &format!("/admins/{admin}/reset-eligibility"),
                    None,
                )
                .await;
            answers.push((view, verdict));
        }
        answers
    }
}

/// Six admins of a tenant with phones, emails (half of them in contoso.com), an alternate and
/// an office phone, numbers changed, an email removed, one admin offboarded; with `settings`,
/// changes the tenant's domains and then its policy in between, re-evaluating every admin.
/// An auditor's reveal puts an audit event in the log too. Returns each admin's mobile id.
async fn tenant_workload(t: &Tenant<'_>, admins: &[Uuid], settings: bool) -> Vec<String> {
    let mut mobiles = Vec::new();
    for (i, admin) in admins.iter().enumerate() {
        mobiles.push(
            t.add(*admin, "mobile_phone", &format!("+45 20 12 34 {i:02}"))
                .await,
        );
        let domain = if i % 2 == 0 {
            "contoso.com"
        } else {
            "example.com"
        };
        t.add(*admin, "email", &format!("admin{i}@{domain}")).await;
        if i < 3 {
            t.add(*admin, "alternate_phone", &format!("+45 30 12 34 {i:02}"))
                .await;
        }
    }
    t.add(admins[3], "office_phone", "+1 425 555 0100 x123")
        .await;
    // Half the new numbers end like the old ones: their masks, and so the verdicts, stay.
    for (i, (admin, mobile)) in admins.iter().zip(&mobiles).enumerate() {
        let end = if i % 2 == 0 { i } else { i + 50 };
        t.change(*admin, mobile, &format!("+45 21 12 34 {end:02}"))
            .await;
    }
    if settings {
        t.settings(json!({"domains": ["contoso.com"]})).await;
    }
    let view = t
        .ok(Method::GET, &format!("/admins/{}/methods", admins[4]), None)
        .await;
    let email = method_id(&view, "email");
    t.ok(
        Method::DELETE,
        &format!("/admins/{}/methods/{email}", admins[4]),
        None,
    )
    .await;
    if settings {
        t.settings(json!({"reset_policy": {"name": "any_two_methods"}}))
            .await;
    }
    t.offboard(admins[5]).await;
    t.ok(
        Method::GET,
        &format!("/admins/{}/history?reveal=true", admins[0]),
        None,
    )
    .await;
    mobiles
}

async fn replay_comes_out_identical_across_tenants_policy_changes_and_offboarding(
    backend: Backend,
) {
    let app = spawn_backend(backend).await;
    let (one, two) = (
        Tenant {
            app: &app,
            id: app.tenant,
        },
        Tenant {
            app: &app,
            id: Uuid::now_v7(),
        },
    );
    let admins_one: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    let admins_two: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    // Only the first tenant changes its settings: the second one's verdicts must not follow.
    let mobiles_one = tenant_workload(&one, &admins_one, true).await;
    let mobiles_two = tenant_workload(&two, &admins_two, false).await;
    app.caught_up().await;
    let db = Db::open(&app.store_config).await;
    let live = db.projections().await;
    let keys = db.primary_keys().await;
    assert_eq!(keys.len(), if backend == Backend::Postgres { 2 } else { 0 });
    assert_eq!(live[0].len(), 12);
    assert_eq!(live[2].len(), 1, "one tenant has settings");
    let answers = (
        one.answers(&admins_one).await,
        two.answers(&admins_two).await,
    );
    let eligible = |answers: &[(Value, Value)]| {
        answers
            .iter()
            .filter(|(_, verdict)| verdict["eligible"] == true)
            .count()
    };
    // The workload gives both tenants eligible and ineligible admins, and the policy change
    // of the first one makes them differ (an email in contoso.com stops counting, but any
    // two methods do).
    assert_eq!(eligible(&answers.0), 4, "{:?}", answers.0);
    assert_eq!(eligible(&answers.1), 4, "{:?}", answers.1);

    // The replay folds the whole log at once (PostgreSQL: in one bulk pass): the tables come
    // out as the live runner built them event by event, and every answer stays the same.
    let store = Store::open(&app.store_config).await.unwrap();
    let replayed = replay(&store, &Projection::ALL, 4).await.unwrap();
    assert_eq!(replayed.checkpoint, app.store().head().await.unwrap());
    assert!(db.projections().await == live, "the replay differs");
    assert_eq!(
        (
            one.answers(&admins_one).await,
            two.answers(&admins_two).await
        ),
        answers
    );

    // Events committed after the bulk pass read the log (a policy change re-evaluating every
    // admin, an offboarding, changed numbers) are folded by the swap.
    store
        .replay_prepare(Projection::ALL.to_vec())
        .await
        .unwrap();
    let bulk = store
        .replay_bulk(Projection::ALL.to_vec(), |_| {})
        .await
        .unwrap();
    assert_eq!(bulk.is_some(), backend == Backend::Postgres);
    let after = bulk.map_or(0, |b| b.checkpoint);
    one.settings(json!({"reset_policy": {"name": "email_and_mobile_phone"}}))
        .await;
    one.offboard(admins_one[1]).await;
    one.change(admins_one[0], &mobiles_one[0], "+45 22 12 34 00")
        .await;
    two.change(admins_two[2], &mobiles_two[2], "+45 22 12 34 02")
        .await;
    let swap = store
        .replay_swap(Projection::ALL.to_vec(), after)
        .await
        .unwrap();
    assert_eq!(swap.checkpoint, app.store().head().await.unwrap());
    // The bulk pass builds the shadows' keys after loading them: the swapped-in tables have
    // the live ones' keys, under the live names (which the live runner's upserts rely on).
    assert_eq!(db.primary_keys().await, keys);
    app.caught_up().await;
    let swapped = db.projections().await;
    assert!(swapped != live);
    // The reference: empty the tables and let the live runner refold from 0.
    for p in Projection::ALL {
        app.store().reset_projection(p).await.unwrap();
    }
    app.caught_up().await;
    let reference = db.projections().await;
    assert!(swapped == reference, "the swapped-in rebuild differs");

    // One projection at a time folds the same (the contact view alone, or eligibility alone).
    for p in Projection::ALL {
        replay(&store, &[p], 1000).await.unwrap();
        assert!(db.projections().await == reference, "{p:?} alone differs");
    }
}

/// A payload that does not decode stops the replay with that error, wherever it is read
/// (PostgreSQL: on a fold shard's thread), and the live tables stay as they were.
async fn replay_of_a_log_that_does_not_decode_fails_and_swaps_nothing(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admins: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    for (i, admin) in admins.iter().enumerate() {
        app.add_ok(*admin, "mobile_phone", &format!("+45 20 12 34 5{i}"))
            .await;
        app.add_ok(*admin, "email", &format!("a{i}@example.org"))
            .await;
    }
    app.caught_up().await;
    let db = Db::open(&app.store_config).await;
    let live = db.projections().await;
    db.set_bytes("payload", 5, vec![0xff, 0xff, 0xff]).await;

    let store = Store::open(&app.store_config).await.unwrap();
    let err = replay(&store, &Projection::ALL, 1000).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("decode"),
        "the reason names the payload: {err:#}"
    );
    assert!(db.projections().await == live, "nothing was swapped in");
}

/// The bulk replay routes rows to its fold shards by the `tenant_id` column and folds them by
/// the payload's stream: a row where the two disagree (edited behind the service's back) must
/// not have its tenant folded on two shards, one of which the merge would drop.
#[tokio::test]
async fn bulk_replay_refuses_a_row_whose_tenant_id_is_not_its_payloads() {
    let app = spawn_backend(Backend::Postgres).await;
    for i in 0..4 {
        app.add_ok(Uuid::now_v7(), "email", &format!("a{i}@example.org"))
            .await;
    }
    app.caught_up().await;
    let Db::Pg(client) = Db::open(&app.store_config).await else {
        unreachable!()
    };
    // A tenant id on another shard than the event's own (the replay folds on one shard per
    // core, at most 8).
    let shards = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8)) as u128;
    let shard = |t: Uuid| t.as_u128() % shards;
    let other = std::iter::repeat_with(Uuid::now_v7)
        .find(|t| shards == 1 || shard(*t) != shard(app.tenant))
        .unwrap();
    client
        .execute(
            "UPDATE events SET tenant_id = $1 WHERE position = 3",
            &[&other],
        )
        .await
        .unwrap();
    let store = Store::open(&app.store_config).await.unwrap();
    let result = replay(&store, &Projection::ALL, 1000).await;
    if shards == 1 {
        // One shard folds every row: the payload decides, as everywhere else.
        result.unwrap();
    } else {
        let err = format!("{:#}", result.unwrap_err());
        assert!(
            err.contains("position 3 is not in its row's tenant_id"),
            "{err}"
        );
    }
}

/// The bulk replay writes its rows a chunk at a time (a thousand per table): a log of more
/// admins than that, in two tenants with settings, comes out as the batches fold it.
#[tokio::test]
async fn bulk_replay_of_thousands_of_admins_writes_what_the_batches_fold() {
    let t = TestStore::new(Backend::Postgres).await;
    let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
    let mut streams = admin_streams(one, 1800);
    streams.extend(admin_streams(two, 700));
    seed(&t.store, &streams, 1, 1).await;
    for (tenant, version) in [(one, 0), (two, 0), (one, 1)] {
        let event = PendingEvent {
            event: DomainEvent::ResetPolicySet {
                policy: if version == 0 {
                    ResetPolicy::AnyTwoMethods
                } else {
                    ResetPolicy::EmailAndMobilePhone
                },
            },
            ..added(0)
        };
        let stream = StreamId::Tenant(TenantId::from_uuid(tenant));
        t.store
            .append(stream, version, vec![event], None)
            .await
            .unwrap();
    }
    let db = Db::open(&t.config).await;
    let bulk = replay(&t.store, &Projection::ALL, 1000).await.unwrap();
    assert_eq!(bulk.checkpoint, 2503);
    let written = db.projections().await;
    assert_eq!(written.each_ref().map(BTreeMap::len), [2500, 2500, 2]);

    let all = Projection::ALL.to_vec();
    t.store.replay_prepare(all.clone()).await.unwrap();
    let mut after = 0;
    loop {
        let batch = t.store.replay_batch(all.clone(), after, 500).await.unwrap();
        if batch.applied == 0 {
            break;
        }
        after = batch.checkpoint;
    }
    t.store.replay_swap(all, after).await.unwrap();
    assert!(db.projections().await == written, "the bulk rows differ");
}

crate::on_both_backends!(
    replay_of_a_log_that_does_not_decode_fails_and_swaps_nothing,
    verify_accepts_an_intact_log_and_checks_an_anchor,
    verify_names_the_first_broken_link_of_a_tampered_log,
    export_of_a_100k_event_log_runs_in_bounded_memory,
    export_writes_the_same_entries_as_the_http_history,
    replay_swaps_in_a_rebuild_equal_to_the_live_projection_while_requests_flow,
    replay_comes_out_identical_across_tenants_policy_changes_and_offboarding,
);
