//! Erasure by crypto-shredding (docs/privacy.md): an offboarded admin's values are erased with
//! their data key; the history stays and verifies; no byte of a value is left in the store;
//! KEKs are checked at start and rotate.

use crate::support::{
    Backend, DataDirGuard, TestApp, assert_problem, fresh_store, run, spawn_backend, spawn_store,
};
use base64::Engine;
use recovery_info::domain::{
    AdminId, DomainEvent, MethodId, MethodKind, RemovedMethod, StreamId, TenantId, mask,
};
use recovery_info::events::{Actor, PendingEvent, RecordedEvent};
use recovery_info::keys::ERASED;
use recovery_info::store::keys::KekSource;
use recovery_info::store::sqlite::DB_FILE;
use recovery_info::store::{GENESIS_HASH, Maintenance, chain_hash};
use recovery_info::store::{Store, StoreConfig};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// Jane's values, raw and masked, as they would appear in a table or a file.
fn janes_traces() -> Vec<String> {
    let mut traces = Vec::new();
    for (kind, value) in [
        (MethodKind::MobilePhone, "+4520123456"),
        (MethodKind::MobilePhone, "+4520123499"),
        (MethodKind::Email, "jane.private@example.org"),
    ] {
        traces.push(value.to_owned());
        traces.push(value.trim_start_matches('+').to_owned());
        traces.push(mask(kind, value));
    }
    traces.push("jane.private".into());
    traces
}

/// Every trace of `needles` in the store: each table's rows as text on PostgreSQL (bytea in
/// hex, so a value's bytes show as their hex too), every file of the data directory byte for
/// byte on the embedded store.
async fn traces_in_store(config: &StoreConfig, needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    match config {
        StoreConfig::Postgres { url, .. } => {
            let db = crate::support::pg_client(url).await;
            let tables: Vec<String> = db
                .query(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(tables.iter().any(|t| t == "events"), "{tables:?}");
            for table in tables {
                let text: String = db
                    .query_one(
                        &format!(
                            "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t"
                        ),
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                for n in needles {
                    if text.contains(n.as_str()) || text.contains(&hex::encode(n.as_bytes())) {
                        found.push(format!("{n:?} in table {table}"));
                    }
                }
            }
        }
        StoreConfig::Embedded { data_dir, .. } => {
            for entry in std::fs::read_dir(data_dir).unwrap() {
                let path = entry.unwrap().path();
                // Read by another process: closing a descriptor of the database file in this
                // one would drop the locks the service's SQLite holds on it (POSIX locks are
                // per process), and a concurrent writer could then corrupt it.
                let bytes = std::process::Command::new("cat")
                    .arg(&path)
                    .output()
                    .unwrap()
                    .stdout;
                for n in needles {
                    if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                        found.push(format!("{n:?} in {}", path.display()));
                    }
                }
            }
        }
    }
    found
}

async fn erase(app: &TestApp, admin: Uuid, body: Value) -> reqwest::Response {
    app.send(
        Method::POST,
        &app.admin_path(admin, "/erase"),
        &app.admin_token(),
        Some(body),
    )
    .await
}

/// Every contact value a history entry shows (values, old and new, removed ones).
fn values_of(entry: &Value) -> Vec<String> {
    let data = &entry["data"];
    let mut values: Vec<String> = ["value", "old_value", "new_value"]
        .iter()
        .filter_map(|f| data[f].as_str().map(str::to_owned))
        .collect();
    for removed in data["removed"].as_array().into_iter().flatten() {
        values.push(removed["old_value"].as_str().unwrap().to_owned());
    }
    values
}

async fn history(app: &TestApp, admin: Uuid, reveal: bool) -> Vec<Value> {
    let query = if reveal { "?reveal=true" } else { "" };
    app.get_json(&app.admin_path(admin, &format!("/history{query}")))
        .await["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// The whole walk: refused before offboarding, a bad reason, the erase, nothing after it; the
/// history kept and erased, another admin untouched, no trace in the store, verify passes and
/// still catches a tampered ciphertext, a replay brings no value back.
async fn erasing_an_offboarded_admin_keeps_the_history_and_leaves_no_value(backend: Backend) {
    let app = spawn_backend(backend).await;
    let (jane, john) = (Uuid::now_v7(), Uuid::now_v7());
    let phone = app.add_ok(jane, "mobile_phone", "+45 20 12 34 56").await;
    // An answer kept under an idempotency key: it shows the value, and must go too.
    let r = app
        .client
        .post(app.admin_path(jane, "/methods"))
        .bearer_auth(app.admin_token())
        .header("idempotency-key", "jane-email-1")
        .json(&json!({"kind": "email", "value": "jane.private@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        app.change(jane, &phone, "+45 20 12 34 99").await.status(),
        200
    );
    app.add_ok(john, "mobile_phone", "+45 30 11 22 33").await;
    app.caught_up().await;
    let before = janes_traces();
    assert!(
        !traces_in_store(&app.store_config, &before).await.is_empty(),
        "the scan finds what the projections and answers hold before the erasure"
    );

    let body = json!({"reason": "GDPR request 42"});
    assert_problem(
        erase(&app, jane, body.clone()).await,
        409,
        "admin_not_offboarded",
    )
    .await;
    let r = app
        .send(
            Method::POST,
            &app.admin_path(jane, "/offboard"),
            &app.admin_token(),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    for reason in ["", "   ", "tab\there", &"x".repeat(501)] {
        let r = erase(&app, jane, json!({ "reason": reason })).await;
        assert_problem(r, 422, "invalid_erase_reason").await;
    }
    let r = erase(&app, jane, body.clone()).await;
    let status = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_problem(erase(&app, jane, body).await, 409, "admin_erased").await;
    assert_problem(
        app.add(jane, "email", "again@example.org").await,
        409,
        "admin_erased",
    )
    .await;
    app.caught_up().await;

    // The history keeps every event, who and when; its values read as erased, raw or masked.
    for reveal in [false, true] {
        let entries = history(&app, jane, reveal).await;
        // The reads of her raw values are in her history too (the last one is this read).
        let types: Vec<&str> = entries
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .filter(|t| *t != "PiiRevealed")
            .collect();
        assert_eq!(
            types,
            [
                "MethodAdded",
                "MethodAdded",
                "MethodChanged",
                "AdminOffboarded",
                "AdminErased"
            ]
        );
        for e in entries.iter().filter(|e| e["type"] != "PiiRevealed") {
            assert_eq!(e["actor"]["subject"], "helpdesk-1", "{e}");
            assert!(e["occurred_at"].is_string(), "{e}");
        }
        let values: Vec<String> = entries.iter().flat_map(values_of).collect();
        assert_eq!(values.len(), 6, "{values:?}");
        assert!(values.iter().all(|v| v == ERASED), "{values:?}");
        assert_eq!(entries[4]["data"]["reason"], "GDPR request 42");
        assert_eq!(entries.last().unwrap()["type"] == "PiiRevealed", reveal);
    }
    // The tenant's feed, raw: Jane's entries erased, John's value there.
    let feed = app
        .get_json(&app.url("/events?reveal=true"))
        .await
        .to_string();
    assert!(
        feed.contains(ERASED) && feed.contains("+4530112233"),
        "{feed}"
    );
    assert!(before.iter().all(|t| !feed.contains(t.as_str())), "{feed}");
    let view = app.view(jane).await;
    assert_eq!(view["methods"], json!([]), "{view}");
    // John is untouched.
    let johns = history(&app, john, true).await;
    assert_eq!(johns[0]["data"]["value"], "+4530112233");

    // Nothing of Jane's values is left in any table or file.
    app.caught_up().await;
    let left = traces_in_store(&app.store_config, &before).await;
    assert!(left.is_empty(), "{left:?}");

    // The export shows the erased values; verify passes; a replay brings nothing back.
    let tenant = app.tenant.to_string();
    let auditor = app.token("auditor-1", &[recovery_info::http::auth::Role::Auditor]);
    let export_args = [
        "audit", "export", "--tenant", &tenant, "--format", "jsonl", "--reveal", "--token",
        &auditor,
    ];
    let out = crate::support::bin(&app.store_config, &export_args)
        .env("RECOVERY_JWT_SECRET", crate::support::SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let export = String::from_utf8_lossy(&out.stdout);
    assert!(
        export.contains(ERASED) && export.contains("+4530112233"),
        "{export}"
    );
    assert!(
        before.iter().all(|t| !export.contains(t.as_str())),
        "{export}"
    );
    let out = run(&app.store_config, &["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&app.store_config, &["replay"]);
    assert!(out.status.success(), "{out:?}");

    let left = traces_in_store(&app.store_config, &before).await;
    assert!(left.is_empty(), "after the replay: {left:?}");

    // A ciphertext edited in place is still caught: the chain hashes the stored bytes.
    let position = johns[0]["position"].as_u64().unwrap();
    tamper_last_byte(&app.store_config, position).await;
    let out = run(&app.store_config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("position {position}")),
        "{out:?}"
    );
}

/// Flips the last byte of the payload at `position` (inside the sealed value's tag).
async fn tamper_last_byte(config: &StoreConfig, position: u64) {
    match config {
        StoreConfig::Postgres { url, .. } => {
            crate::support::pg_client(url)
                .await
                .execute(
                    "UPDATE events SET payload = set_byte(payload, length(payload) - 1,
                         get_byte(payload, length(payload) - 1) # 1)
                     WHERE position = $1",
                    &[&(position as i64)],
                )
                .await
                .unwrap();
        }
        StoreConfig::Embedded { data_dir, .. } => {
            let c = rusqlite::Connection::open(data_dir.join(DB_FILE)).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let mut payload: Vec<u8> = c
                .query_row(
                    "SELECT payload FROM events WHERE position = ?1",
                    [position as i64],
                    |r| r.get(0),
                )
                .unwrap();
            *payload.last_mut().unwrap() ^= 1;
            c.execute(
                "UPDATE events SET payload = ?1 WHERE position = ?2",
                rusqlite::params![payload, position as i64],
            )
            .unwrap();
        }
    }
}

fn kek_line(id: &str, seed: u8) -> String {
    let key = [seed; 32];
    format!(
        "{id} {}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn with_kek(config: &StoreConfig, text: String) -> StoreConfig {
    match config.clone() {
        StoreConfig::Postgres { url, pool_size, .. } => StoreConfig::Postgres {
            url,
            pool_size,
            kek: KekSource::Value(text),
        },
        StoreConfig::Embedded { data_dir, .. } => StoreConfig::Embedded {
            data_dir,
            kek: KekSource::Value(text),
        },
    }
}

async fn keyring_error(config: &StoreConfig) -> String {
    let store = Store::open(config).await.unwrap();
    store.keyring().await.unwrap_err().to_string()
}

/// A KEK that is not the one the data keys were wrapped with, or that lacks one they need, is
/// refused with a reason; a new KEK wraps new keys, the rewrap moves the old ones, and every
/// admin stays readable once the old KEK is gone.
async fn a_wrong_kek_is_refused_and_rotation_keeps_every_admin_readable(backend: Backend) {
    let base = fresh_store(backend).await;
    let _dir = DataDirGuard::of(&base);
    let old = with_kek(&base, kek_line("k1", 1));
    let mut app = spawn_store(old.clone(), Default::default()).await;
    app.keep_data();
    let jane = Uuid::now_v7();
    app.add_ok(jane, "mobile_phone", "+45 20 12 34 56").await;
    let tenant = app.tenant;
    drop(app);

    let err = keyring_error(&with_kek(&base, kek_line("k1", 9))).await;
    assert!(err.contains("\"k1\" is not the one"), "{err}");
    let err = keyring_error(&with_kek(&base, kek_line("k2", 2))).await;
    assert!(
        err.contains("wrapped by the key-encryption key \"k1\""),
        "{err}"
    );
    let out = run(&with_kek(&base, kek_line("k1", 9)), &["keys", "status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let both = format!("{};{}", kek_line("k1", 1), kek_line("k2", 2));
    let mut app = spawn_store(with_kek(&base, both.clone()), Default::default()).await;
    app.keep_data();
    app.tenant = tenant;
    let john = Uuid::now_v7();
    app.add_ok(john, "email", "john@example.org").await;
    // The background rewrap moves Jane's key to k2.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = run(&with_kek(&base, both.clone()), &["keys", "status"]);
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{out:?}");
        if status.contains("kek k1: 0 data keys") && status.contains("kek k2 (active): 2 data keys")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(app);
    let mut app = spawn_store(with_kek(&base, kek_line("k2", 2)), Default::default()).await;
    app.keep_data();
    app.tenant = tenant;
    assert_eq!(
        history(&app, jane, true).await[0]["data"]["value"],
        "+4520123456"
    );
    assert_eq!(
        history(&app, john, true).await[0]["data"]["value"],
        "john@example.org"
    );
}

/// Writes `events` for `admin` as a build before sealing did: plain values (schema 2), chained,
/// after the log's head, straight into the table.
async fn write_legacy(config: &StoreConfig, tenant: Uuid, admin: Uuid, events: Vec<DomainEvent>) {
    let stream = StreamId::Admin(TenantId::from_uuid(tenant), AdminId::from_uuid(admin));
    let mut prev = GENESIS_HASH.to_vec();
    let mut rows = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let pending = PendingEvent {
            event_id: Uuid::now_v7(),
            occurred_at: chrono::Utc::now(),
            actor: Actor {
                subject: "helpdesk-0".into(),
                roles: vec!["authentication_admin".into()],
                ..Actor::default()
            },
            correlation_id: Uuid::now_v7(),
            idempotency_key: None,
            event,
        };
        let recorded = RecordedEvent::place(pending, stream, i as u64 + 1, i as u64 + 1);
        let payload = recorded.encode();
        assert!(RecordedEvent::has_plain_values(&payload).unwrap() || i > 2);
        let hash = chain_hash(&prev, &payload);
        rows.push((
            recorded,
            payload,
            std::mem::replace(&mut prev, hash.clone()),
            hash,
        ));
    }
    let n = rows.len() as i64;
    match config {
        StoreConfig::Postgres { url, .. } => {
            let db = crate::support::pg_client(url).await;
            for (e, payload, prev, hash) in &rows {
                db.execute(
                    "INSERT INTO events (position, stream_id, stream_version, event_id, event_type,
                         tenant_id, admin_id, occurred_at, payload, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    &[
                        &(e.position as i64),
                        &stream.to_string(),
                        &(e.version as i64),
                        &e.event_id,
                        &e.type_name(),
                        &tenant,
                        &admin,
                        &e.occurred_at,
                        payload,
                        prev,
                        hash,
                    ],
                )
                .await
                .unwrap();
            }
            db.execute("UPDATE log_head SET position = $1", &[&n])
                .await
                .unwrap();
        }
        StoreConfig::Embedded { data_dir, .. } => {
            let c = rusqlite::Connection::open(data_dir.join(DB_FILE)).unwrap();
            for (e, payload, prev, hash) in &rows {
                c.execute(
                    "INSERT INTO events (position, stream_id, stream_version, event_id, event_type,
                         tenant_id, admin_id, occurred_at_ms, payload, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    rusqlite::params![
                        e.position as i64,
                        stream.to_string(),
                        e.version as i64,
                        e.event_id.to_string(),
                        e.type_name(),
                        tenant.to_string(),
                        admin.to_string(),
                        e.occurred_at.timestamp_millis(),
                        payload,
                        prev,
                        hash
                    ],
                )
                .unwrap();
            }
            c.execute("UPDATE log_head SET position = ?1", [n]).unwrap();
        }
    }
}

/// Events an older build wrote, values in plain: `migrate` seals them once, links their chain
/// again and records the re-anchoring, which `audit verify` reports; the values still read;
/// the admin can then be erased like any other.
async fn migrate_seals_the_values_of_older_events_and_records_the_re_anchoring(backend: Backend) {
    let config = fresh_store(backend).await;
    let _dir = DataDirGuard::of(&config);
    let store = Store::open(&config).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.seal_legacy_values().await.unwrap(), (0, 0));
    drop(store);
    let (tenant, jane) = (Uuid::now_v7(), Uuid::now_v7());
    let phone = MethodId::from_uuid(Uuid::now_v7());
    let removed = RemovedMethod {
        method_id: phone,
        kind: MethodKind::MobilePhone,
        old_value: "+4520123499".into(),
    };
    write_legacy(
        &config,
        tenant,
        jane,
        vec![
            DomainEvent::MethodAdded {
                method_id: phone,
                kind: MethodKind::MobilePhone,
                value: "+4520123456".into(),
            },
            DomainEvent::MethodChanged {
                method_id: phone,
                kind: MethodKind::MobilePhone,
                old_value: "+4520123456".into(),
                new_value: "+4520123499".into(),
            },
            DomainEvent::AdminOffboarded {
                removed: vec![removed],
            },
        ],
    )
    .await;
    // As an older build left it: the sealing has not run.
    let forget = "DELETE FROM chain_reanchors";
    match &config {
        StoreConfig::Postgres { url, .. } => {
            crate::support::pg_client(url)
                .await
                .batch_execute(forget)
                .await
                .unwrap();
        }
        StoreConfig::Embedded { data_dir, .. } => {
            let c = rusqlite::Connection::open(data_dir.join(DB_FILE)).unwrap();
            c.execute_batch(forget).unwrap();
        }
    }
    let out = run(&config, &["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let old_anchor = stdout
        .lines()
        .find_map(|l| l.strip_prefix("anchor: "))
        .unwrap()
        .to_owned();
    let traces = vec!["+4520123456".to_owned(), "+4520123499".to_owned()];
    assert!(!traces_in_store(&config, &traces).await.is_empty());

    let out = run(&config, &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sealed the values of 3 events of 1 streams"),
        "{out:?}"
    );
    let left = traces_in_store(&config, &traces).await;
    assert!(left.is_empty(), "{left:?}");
    // Verify passes on the new chain and says it was re-anchored; the old anchor no longer
    // matches, and the refusal points at the record.
    let out = run(&config, &["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("re-anchored at position 3") && stdout.contains(&old_anchor),
        "{stdout}"
    );
    let out = run(
        &config,
        &["audit", "verify", "--expect-anchor", &old_anchor],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("re-anchored at position 3"), "{err}");
    // Run again: nothing more to seal, the chain stays.
    let out = run(&config, &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("sealed"),
        "{out:?}"
    );

    // The values still read; the admin is erased like any other.
    let mut app = spawn_store(config.clone(), Default::default()).await;
    app.keep_data();
    app.tenant = tenant;
    let entries = history(&app, jane, true).await;
    assert_eq!(entries[0]["data"]["value"], "+4520123456");
    assert_eq!(entries[1]["data"]["new_value"], "+4520123499");
    assert_eq!(entries[0]["actor"]["subject"], "helpdesk-0");
    let r = erase(&app, jane, json!({"reason": "GDPR request 7"})).await;
    assert_eq!(r.status(), 200);
    let entries = history(&app, jane, true).await;
    assert!(entries.iter().flat_map(values_of).all(|v| v == ERASED));
}

crate::on_both_backends!(
    erasing_an_offboarded_admin_keeps_the_history_and_leaves_no_value,
    a_wrong_kek_is_refused_and_rotation_keeps_every_admin_readable,
    migrate_seals_the_values_of_older_events_and_records_the_re_anchoring,
);
