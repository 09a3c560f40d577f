//! Signed checkpoints and Merkle proofs (docs/audit.md "Checkpoints"), on both backends: the
//! service signs tree heads by itself, its proofs verify with an independent implementation
//! of RFC 9162 (tests/api/rfc9162.py), and `audit verify --checkpoint` names the first
//! position of a rewrite or a truncation below a checkpoint that plain `verify` accepts.

use crate::audit::{Db, TestStore, admin_streams, seed, text};
use crate::support::{Backend, Options, assert_problem, fresh_store, run, spawn_store};
use prost::Message;
use recovery_info::audit::checkpoints::CheckpointConfig;
use recovery_info::events::pb;
use recovery_info::http::auth::Role;
use recovery_info::store::{StoreConfig, TreeStorage};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

crate::on_both_backends!(
    a_tenants_auditor_verifies_the_tenants_chains,
    a_rewrite_below_a_checkpoint_stops_the_tree_and_changes_nothing_stored,
    the_service_signs_checkpoints_and_its_proofs_verify_independently,
    verify_with_a_checkpoint_names_the_first_position_of_a_rewrite_or_a_truncation,
    a_forged_or_foreign_checkpoint_is_refused,
);

/// Runs the independent verifier on `doc`: `Ok` with its line, or `Err` with its failure.
fn independent_check(doc: &Value) -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/rfc9162.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    match out.status.success() {
        true => Ok(said.trim().to_owned()),
        false => Err(said.trim().to_owned()),
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn the_service_signs_checkpoints_and_its_proofs_verify_independently(backend: Backend) {
    let app = spawn_store(
        fresh_store(backend).await,
        Options {
            checkpoints: CheckpointConfig {
                every_events: 300,
                every: Duration::from_secs(3600),
                tick: Duration::from_millis(50),
                ..Default::default()
            },
            ..Options::default()
        },
    )
    .await;
    let tenant = app.tenant;
    let client = reqwest::Client::new();
    let public = |path: &str| format!("{}{path}", app.base);

    // Before any event: no checkpoint yet, the public key already.
    let r = client
        .get(public("/v1/audit/checkpoints/latest"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    let key: Value = client
        .get(public("/v1/audit/public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(key["algorithm"], "Ed25519");
    let vkey = key["verifier_key"].as_str().unwrap().to_owned();
    assert_eq!(vkey, app.server.audit_key.to_string());

    // 650 events (two whole chunks of 256 and a part) of this tenant's admins, and some of
    // another tenant's, written straight to the store.
    let streams = admin_streams(tenant, 5);
    seed(app.store(), &streams, 100, 1).await;
    let others = admin_streams(Uuid::now_v7(), 3);
    seed(app.store(), &others, 50, 1).await;
    assert_eq!(
        recovery_info::store::EventLog::head(app.store())
            .await
            .unwrap(),
        650
    );

    // The service signs by itself: at once, and again after 300 events more.
    let deadline = Instant::now() + Duration::from_secs(20);
    let heads = loop {
        let page: Value = client
            .get(public("/v1/audit/checkpoints"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let heads = page["checkpoints"].as_array().unwrap().clone();
        // Settled: with the head at 650, no checkpoint is due once one is at 351 or more.
        if heads.len() >= 2 && heads.last().unwrap()["size"].as_u64().unwrap() > 350 {
            break heads;
        }
        assert!(Instant::now() < deadline, "no checkpoints: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sizes: Vec<u64> = heads.iter().map(|h| h["size"].as_u64().unwrap()).collect();
    assert!(sizes[0] >= 1 && sizes[1] >= sizes[0] + 300, "{sizes:?}");
    let latest = client
        .get(public("/v1/audit/checkpoints/latest"))
        .send()
        .await
        .unwrap();
    assert!(
        latest.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let latest_note = latest.text().await.unwrap();
    let latest_size: u64 = latest_note.lines().nth(1).unwrap().parse().unwrap();
    assert!(latest_size >= sizes[1]);
    // The tree is built as the log grows: both whole chunks are stored.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.store().tree_built().await.unwrap() < 512 {
        assert!(Instant::now() < deadline, "the tree is not built");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.store().tree_built().await.unwrap(), 512);

    // Proofs from the tenant's auditor, for sizes of checkpoints and others.
    let auditor = app.token("auditor", &[Role::Auditor]);
    let get = |url: String| {
        let client = client.clone();
        let auditor = auditor.clone();
        async move { client.get(url).bearer_auth(auditor).send().await.unwrap() }
    };
    let mut inclusion = Vec::new();
    // Positions 1 to 500 are this tenant's events, 501 to 650 another tenant's.
    for (position, size) in [
        (1u64, 650u64),
        (2, 2),
        (5, 256),
        (255, 257),
        (257, 300),
        (500, 650),
        (301, latest_size),
    ] {
        let r = get(app.url(&format!(
            "/audit/proof/inclusion?position={position}&size={size}"
        )))
        .await;
        assert_eq!(r.status(), 200, "{position}/{size}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["leaf_index"], position - 1);
        assert_eq!(answer["tree_size"], size);
        inclusion.push(answer);
    }
    // Without a size: the latest checkpoint's, with the note.
    let r = get(app.url("/audit/proof/inclusion?position=3")).await;
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["tree_size"], latest_size);
    assert_eq!(answer["checkpoint"], latest_note.as_str());
    inclusion.push(answer);
    let mut consistency = Vec::new();
    for (from, to) in [
        (1u64, 650u64),
        (256, 512),
        (300, 650),
        (257, 258),
        (sizes[0], sizes[1]),
        (650, 650),
    ] {
        let r = get(app.url(&format!("/audit/proof/consistency?from={from}&to={to}"))).await;
        assert_eq!(r.status(), 200, "{from}->{to}");
        consistency.push(r.json::<Value>().await.unwrap());
    }

    // The independent verifier: the note's signature, the root from the rows' hashes, every
    // proof.
    let hashes = app.store().chain_hashes(0, 10_000).await.unwrap();
    let mut doc = json!({
        "verifier_key": vkey,
        "checkpoint": latest_note,
        "leaf_inputs": hashes.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        "inclusion": inclusion,
        "consistency": consistency,
    });
    let said = independent_check(&doc).expect("the proofs verify");
    assert_eq!(said, "ok: 16 checks");
    // It can fail: one bit of one proof hash changed.
    let mut hash = {
        use base64::Engine;
        let first = doc["inclusion"][3]["proof"][0].as_str().unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(first)
            .unwrap()
    };
    hash[0] ^= 1;
    let proof = b64(&hash);
    doc["inclusion"][3]["proof"][0] = json!(proof);
    let e = independent_check(&doc).unwrap_err();
    assert!(e.contains("fail: inclusion of leaf 254 in 257"), "{e}");

    // Who may ask: the tenant's auditor only; the tenant's own events only.
    let dashboard = app.token("dash", &[Role::Dashboard]);
    let r = client
        .get(app.url("/audit/proof/inclusion?position=1&size=10"))
        .bearer_auth(&dashboard)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    let foreign = app.token_for(Uuid::now_v7(), "auditor", &[Role::Auditor]);
    let r = client
        .get(app.url("/audit/proof/consistency?from=1&to=10"))
        .bearer_auth(&foreign)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "tenant_mismatch").await;
    // Position 501 is another tenant's event.
    let r = get(app.url("/audit/proof/inclusion?position=501&size=650")).await;
    assert_problem(r, 404, "not_found").await;
    let r = get(app.url("/audit/proof/inclusion?position=1&size=651")).await;
    assert_problem(r, 400, "position_beyond_log").await;
    // Sizes past 2^63 (found by schemathesis: the proof's spans never ended and the request
    // spun a core) are beyond the log like any other.
    for huge in [
        "/audit/proof/consistency?from=270&to=10637003888411912192",
        "/audit/proof/consistency?from=1&to=18446744073709551615",
        "/audit/proof/inclusion?position=1&size=9223372036854775809",
    ] {
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), get(app.url(huge)))
            .await
            .unwrap_or_else(|_| panic!("{huge} was not answered in 10 s"));
        assert_problem(r, 400, "position_beyond_log").await;
    }
    for bad in [
        "/audit/proof/inclusion?position=0&size=5",
        "/audit/proof/inclusion?position=6&size=5",
        "/audit/proof/inclusion?position=x",
        "/audit/proof/inclusion?position=1&size=5&extra=1",
        "/audit/proof/consistency?from=0&to=5",
        "/audit/proof/consistency?from=6&to=5",
    ] {
        let r = get(app.url(bad)).await;
        assert_problem(r, 400, "invalid_query").await;
    }
    let r = client
        .get(public("/v1/audit/checkpoints?limit=0"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_query").await;
    let page: Value = client
        .get(public(&format!(
            "/v1/audit/checkpoints?after_size={}",
            sizes[0]
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["checkpoints"][0]["size"], sizes[1]);
}

/// Rewrites stream `stream`'s events from `position` on with a new actor, recomputing their
/// hashes and links: every chain stays consistent, so plain `verify` accepts the log.
async fn rewrite_suffix(db: &Db, positions: &[i64]) {
    let mut prev: Option<Vec<u8>> = None;
    for &p in positions {
        let mut env = pb::Envelope::decode(db.bytes("payload", p).await.as_slice()).unwrap();
        env.actor.as_mut().unwrap().subject = "mallory".into();
        let payload = env.encode_to_vec();
        let prev_hash = match &prev {
            Some(h) => h.clone(),
            None => db.bytes("prev_hash", p).await,
        };
        let hash: Vec<u8> = Sha256::new()
            .chain_update(&prev_hash)
            .chain_update(&payload)
            .finalize()
            .to_vec();
        db.set_bytes("payload", p, payload).await;
        db.set_bytes("prev_hash", p, prev_hash).await;
        db.set_bytes("hash", p, hash.clone()).await;
        prev = Some(hash);
    }
}

/// Deletes the events after `keep` and moves the head back to it.
async fn truncate(config: &StoreConfig, keep: u64) {
    crate::support::execute_sql(
        config,
        &[
            &format!("DELETE FROM events WHERE position > {keep}"),
            &format!("UPDATE log_head SET position = {keep}"),
        ],
    )
    .await;
}

/// A store of 4 streams × 100 rounds (position p is stream (p - 1) % 4, version (p - 1) / 4 +
/// 1), a checkpoint signed at 400 by the CLI, then 50 events more.
async fn checkpointed(
    backend: Backend,
) -> (
    TestStore,
    Vec<recovery_info::domain::StreamId>,
    String,
    String,
) {
    let t = TestStore::new(backend).await;
    let streams = admin_streams(Uuid::now_v7(), 4);
    seed(&t.store, &streams, 100, 1).await;
    let dir = std::env::temp_dir().join(format!("cp-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("checkpoint-400");
    let out = run(
        &t.config,
        &["audit", "checkpoint", "--output", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    let note = std::fs::read_to_string(&file).unwrap();
    assert!(note.starts_with("recovery-info\n400\n"), "{note}");
    let out = run(&t.config, &["audit", "public-key"]);
    assert!(out.status.success(), "{out:?}");
    let vkey = text(&out.stdout).trim().to_owned();
    assert!(vkey.starts_with("recovery-info+"), "{vkey}");
    append_after_the_checkpoint(&t.store, &streams, 0..50).await;
    (t, streams, file.to_str().unwrap().to_owned(), vkey)
}

/// One event per round, round-robin over the 4 streams, after their 100 versions of
/// [`checkpointed`]: position 400 + r + 1 for round r.
async fn append_after_the_checkpoint(
    store: &recovery_info::store::Store,
    streams: &[recovery_info::domain::StreamId],
    rounds: std::ops::Range<u64>,
) {
    for round in rounds {
        let stream = streams[(round % 4) as usize];
        let event = vec![crate::audit::added(round)];
        store
            .append(stream, 100 + round / 4, event, None)
            .await
            .unwrap();
    }
}

fn verify_checkpoint(config: &StoreConfig, file: &str, vkey: &str) -> std::process::Output {
    run(
        config,
        &[
            "audit",
            "verify",
            "--checkpoint",
            file,
            "--public-key",
            vkey,
        ],
    )
}

/// What is done to a checkpointed log (see [`checkpointed`]).
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// Stream s rewritten from version v on (118: in a whole chunk; 319: in the part of a
    /// chunk the checkpoint stored).
    Rewrite(i64, i64),
    /// The events after this position deleted, the head moved back.
    Truncate(u64),
    /// A rewrite, and the stored tree's chunk of its leaves deleted to hide it.
    RewriteAndHide(i64, i64),
}

/// Positions of stream `s` (of 4) from version `v` on, in the 450 events of [`checkpointed`].
fn stream_from(s: i64, v: i64) -> Vec<i64> {
    stream_until(s, v, 450)
}

/// Positions of stream `s` (of 4, written round-robin) from version `v` to position `head`.
fn stream_until(s: i64, v: i64, head: i64) -> Vec<i64> {
    (v..)
        .map(|v| (v - 1) * 4 + s + 1)
        .take_while(|&p| p <= head)
        .collect()
}

async fn tamper(config: &StoreConfig, how: Tamper) {
    match how {
        Tamper::Rewrite(s, v) => rewrite_suffix(&Db::open(config).await, &stream_from(s, v)).await,
        Tamper::Truncate(keep) => truncate(config, keep).await,
        Tamper::RewriteAndHide(s, v) => {
            rewrite_suffix(&Db::open(config).await, &stream_from(s, v)).await;
            crate::support::execute_sql(config, &["DELETE FROM tree_chunks WHERE chunk = 0"]).await;
        }
    }
}

async fn verify_with_a_checkpoint_names_the_first_position_of_a_rewrite_or_a_truncation(
    backend: Backend,
) {
    // The intact log matches its checkpoint.
    let (t, _, file, vkey) = checkpointed(backend).await;
    let out = verify_checkpoint(&t.config, &file, &vkey);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).contains("matches checkpoint: recovery-info size 400"),
        "{out:?}"
    );
    // A rewrite above the checkpoint is not its business.
    rewrite_suffix(&Db::open(&t.config).await, &stream_from(0, 101)).await;
    let out = verify_checkpoint(&t.config, &file, &vkey);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let cases = [
        (
            Tamper::Rewrite(1, 30),
            "first differs at position 118; the event at position 118 is not the one signed",
        ),
        (
            Tamper::Rewrite(2, 80),
            "first differs at position 319; the event at position 319 is not the one signed",
        ),
        (
            Tamper::Truncate(300),
            "first differs at position 301; position 301 is missing: the log ends at 300",
        ),
        (
            Tamper::Truncate(399),
            "first differs at position 400; position 400 is missing",
        ),
        (
            Tamper::RewriteAndHide(1, 30),
            "the stored Merkle tree was altered too, so the first difference is only known to \
             lie in positions 1..=256",
        ),
    ];
    for (what, expected) in cases {
        let (t, _, file, vkey) = checkpointed(backend).await;
        tamper(&t.config, what).await;
        let out = run(&t.config, &["audit", "verify"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "plain verify cannot see {what:?}: {out:?}"
        );
        let out = verify_checkpoint(&t.config, &file, &vkey);
        assert_eq!(out.status.code(), Some(3), "{what:?}: {out:?}");
        let line = text(&out.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        assert!(
            line.starts_with("recovery-info: error: the log is not the one checkpoint 400 of recovery-info signed")
                && line.contains(expected),
            "{what:?}: expected {expected:?} in {line:?}"
        );
    }
}

async fn a_forged_or_foreign_checkpoint_is_refused(backend: Backend) {
    let (t, _, file, vkey) = checkpointed(backend).await;
    let note = std::fs::read_to_string(&file).unwrap();
    // The size edited: the signature no longer verifies.
    let forged = format!("{file}.forged");
    std::fs::write(&forged, note.replacen("\n400\n", "\n399\n", 1)).unwrap();
    let out = verify_checkpoint(&t.config, &forged, &vkey);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = text(&out.stderr);
    assert!(
        line.contains("is not authentic") && line.contains("does not verify"),
        "{line}"
    );
    assert_eq!(line.trim().lines().count(), 1, "{line}");
    // Signed by another key of the same name: no signature of the trusted key.
    let dir = std::path::Path::new(&file).parent().unwrap();
    let other_key = dir.join("other.key");
    let out = run(
        &t.config,
        &[
            "audit",
            "keygen",
            "--name",
            "recovery-info",
            "--output",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let other = dir.join("other-checkpoint");
    let out = run(
        &t.config,
        &[
            "audit",
            "checkpoint",
            "--signing-key-file",
            other_key.to_str().unwrap(),
            "--output",
            other.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = verify_checkpoint(&t.config, other.to_str().unwrap(), &vkey);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("bears no signature of recovery-info"),
        "{out:?}"
    );
    // The key file is its owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&other_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // --checkpoint without a key to check it by is a usage error.
    let out = run(&t.config, &["audit", "verify", "--checkpoint", &file]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

async fn a_rewrite_below_a_checkpoint_stops_the_tree_and_changes_nothing_stored(backend: Backend) {
    // The checkpoint at 400 stored the part of chunk 1 (positions 257..400) it covers; a
    // rewrite at 319, then the log grows past the chunk's end: building refuses to store a
    // chunk 1 that does not begin with what was signed.
    let (t, streams, file, vkey) = checkpointed(backend).await;
    append_after_the_checkpoint(&t.store, &streams, 50..120).await;
    let head = recovery_info::store::EventLog::head(&t.store)
        .await
        .unwrap();
    assert_eq!(head, 520);
    rewrite_suffix(&Db::open(&t.config).await, &stream_until(2, 80, 520)).await;
    let chunk_before = t.store.tree_chunks(vec![1]).await.unwrap();
    assert_eq!(
        chunk_before[0].1.len(),
        144 * 32,
        "the checkpoint's part of chunk 1"
    );
    let e = recovery_info::audit::tree::catch_up(&t.store, head)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            recovery_info::audit::tree::TreeError::Diverged { position: 319 }
        ),
        "{e}"
    );
    assert_eq!(t.store.tree_built().await.unwrap(), 256);
    assert_eq!(t.store.tree_chunks(vec![1]).await.unwrap(), chunk_before);
    // A new checkpoint is refused too; the old one still finds the rewrite.
    let out = run(&t.config, &["audit", "checkpoint"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("differs at position 319"),
        "{out:?}"
    );
    let out = verify_checkpoint(&t.config, &file, &vkey);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        text(&out.stderr).contains("first differs at position 319"),
        "{out:?}"
    );
}

#[tokio::test]
async fn checkpoints_go_out_on_nats_once_each() {
    let nats = crate::support::nats::PrivateNats::start().await;
    let app = crate::support::spawn_app_with(Options {
        publisher: Some(recovery_info::publish::PublisherConfig {
            poll_interval: Duration::from_millis(200),
            ..recovery_info::publish::PublisherConfig::new(nats.url())
        }),
        checkpoints: CheckpointConfig {
            every_events: 10,
            tick: Duration::from_millis(50),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let streams = admin_streams(app.tenant, 2);
    // 36 events in three bursts, so that several checkpoints are signed.
    for round in 0..3 {
        seed_round(app.store(), &streams, round).await;
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let (heads, messages) = loop {
        let heads = app.store().tree_heads(0, 100).await.unwrap();
        let mut messages = Vec::new();
        if let Ok(mut stream) = js.get_stream("RECOVERY_EVENTS_CHECKPOINTS").await {
            let last = stream.info().await.unwrap().state.last_sequence;
            for seq in 1..=last {
                let m = stream.get_raw_message(seq).await.unwrap();
                assert_eq!(m.subject.as_str(), "recovery.v1.audit.checkpoints");
                let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
                messages.push((id, String::from_utf8(m.payload.to_vec()).unwrap()));
            }
        }
        if heads.len() >= 2 && messages.len() == heads.len() {
            break (heads, messages);
        }
        assert!(Instant::now() < deadline, "{heads:?} {messages:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every signed head once, in order, with its size as the message id; all marked sent.
    let expected: Vec<(String, String)> = heads
        .iter()
        .map(|h| (format!("checkpoint-{}", h.size), h.note.clone()))
        .collect();
    assert_eq!(messages, expected);
    assert!(
        app.store()
            .unpublished_tree_heads(10)
            .await
            .unwrap()
            .is_empty()
    );
    let key = &app.server.audit_key;
    for (_, note) in &messages {
        recovery_info::audit::note::Checkpoint::open(note, key).unwrap();
    }
}

/// One round of six events to each stream, after `round` rounds before.
async fn seed_round(
    store: &recovery_info::store::Store,
    streams: &[recovery_info::domain::StreamId],
    round: u64,
) {
    for stream in streams {
        let events = (0..6).map(crate::audit::added).collect();
        store
            .append(*stream, round * 6, events, None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn a_tenants_auditor_verifies_the_tenants_chains(backend: Backend) {
    let app = crate::support::spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.org").await;
    // Another tenant's events sit between this tenant's positions.
    let other = Uuid::now_v7();
    let r = app
        .send(
            reqwest::Method::POST,
            &format!(
                "{}/v1/tenants/{other}/admins/{}/methods",
                app.base,
                Uuid::now_v7()
            ),
            &app.token_for(other, "helpdesk", &[Role::AuthenticationAdmin]),
            Some(json!({"kind": "email", "value": "x@example.org"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    app.add_ok(Uuid::now_v7(), "email", "john@example.org")
        .await;
    let url = app.url("/audit/verify");
    let auditor = app.token("auditor", &[Role::Auditor]);
    let verdict: Value = app
        .send(reqwest::Method::GET, &url, &auditor, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["intact"], true, "{verdict}");
    assert_eq!(verdict["events"], 3);
    assert_eq!(verdict["streams"], 2);
    let r = app
        .send(
            reqwest::Method::GET,
            &url,
            &app.token("dash", &[Role::Dashboard]),
            None,
        )
        .await;
    assert_problem(r, 403, "forbidden").await;
    // An edited payload of this tenant's: the first broken link, named.
    let db = Db::open(&app.store_config).await;
    let mut env = pb::Envelope::decode(db.bytes("payload", 2).await.as_slice()).unwrap();
    env.actor.as_mut().unwrap().subject = "mallory".into();
    db.set_bytes("payload", 2, env.encode_to_vec()).await;
    let verdict: Value = app
        .send(reqwest::Method::GET, &url, &auditor, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["intact"], false, "{verdict}");
    assert_eq!(verdict["broken"]["position"], 2);
    assert_eq!(verdict["broken"]["version"], 2);
    assert!(
        verdict["broken"]["problem"]
            .as_str()
            .unwrap()
            .contains("the hash is not"),
        "{verdict}"
    );
}
