//! What the signed checkpoints cost (issue 27): building the Merkle tree as the log grows (what
//! `serve`'s checkpointer does for every event), signing a tree head, and the proofs' latency
//! over a large log — on a database of its own, seeded like the rebuild's, served by the
//! command path alone (no projection to fold the seed).

use crate::db::{self, BenchDb};
use crate::load;
use crate::report::Row;
use crate::say;
use crate::stats::{CpuMeter, Latencies, Rng};
use anyhow::{Context, bail};
use recovery_info::audit::note::NoteSigner;
use recovery_info::audit::tree;
use recovery_info::http::auth::{JwtKeys, Role};
use recovery_info::server::{self, ServerConfig};
use recovery_info::store::{AuditReads, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;

/// The measured rows, and their details for the JSON.
pub struct TreeRun {
    pub rows: Vec<Row>,
    pub detail: Value,
}

/// Seeds `events` events into a fresh database, builds the tree over them, signs, and asks
/// for `proofs` inclusion and consistency proofs over HTTP; the CPU per event is set against
/// `command_us` (a command's machine CPU, when measured).
pub async fn measure(
    pg_url: &str,
    config: impl Fn(&str) -> ServerConfig,
    events: usize,
    tenants: usize,
    proofs: usize,
    command_us: Option<(&str, f64)>,
) -> anyhow::Result<TreeRun> {
    let db = BenchDb::create(pg_url).await?;
    say(&format!("checkpoints: a database of its own, {}", db.name));
    let result = run(&db, config, events, tenants, proofs, command_us).await;
    say("  dropping it");
    db.drop_db().await?;
    result
}

async fn run(
    db: &BenchDb,
    config: impl Fn(&str) -> ServerConfig,
    events: usize,
    tenants: usize,
    proofs: usize,
    command_us: Option<(&str, f64)>,
) -> anyhow::Result<TreeRun> {
    let server = server::start(config(&db.url))
        .await
        .context("cannot start the service")?;
    let store = server.app.store.clone();
    say(&format!("  seeding {events} events with binary COPY"));
    let t = Instant::now();
    let head = crate::seed::seed(&db.url, events, tenants).await?;
    say(&format!("  seeded in {:.1} s", t.elapsed().as_secs_f64()));
    let mut detail = json!({"events": head});

    // Building, from nothing, as the checkpointer does in the background.
    say(&format!("  building the tree over {head} events"));
    let cpu = CpuMeter::start_by_process();
    let t = Instant::now();
    let built = tree::catch_up(&store, head).await?;
    let seconds = t.elapsed().as_secs_f64();
    let mut build = json!({"leaves": built, "seconds": seconds});
    let (used, build_us) = cpu.record(built as f64 / seconds, &mut build);
    say(&format!(
        "  built {built} leaves in {seconds:.1} s ({:.0} events/s){used}",
        built as f64 / seconds
    ));
    detail["build"] = build;

    // Signing: the tree's root at the head (the partial chunk from the log) and a signature.
    let signer = NoteSigner::generate("recovery-bench")?;
    let mut signing = Latencies::with_capacity(5);
    for _ in 0..5 {
        let t = Instant::now();
        tree::sign_checkpoint(&store, &signer).await?;
        signing.record(t.elapsed());
    }
    let signing = signing.summary();
    say(&format!(
        "  signing a checkpoint: p50 {:.2} ms",
        signing.p50_ms
    ));
    detail["sign"] = signing.to_json();

    // Proofs over HTTP, one client, random positions of random tenants.
    let (inclusion, consistency, raw) =
        proof_latencies(&server, &store, &db.url, head, proofs).await?;
    say(&format!(
        "  inclusion p50 {:.2} ms p99 {:.2} ms; consistency p50 {:.2} ms p99 {:.2} ms; raw PK \
         lookup p99 {:.2} ms",
        inclusion.p50_ms, inclusion.p99_ms, consistency.p50_ms, consistency.p99_ms, raw.p99_ms
    ));
    detail["inclusion"] = inclusion.to_json();
    detail["consistency"] = consistency.to_json();
    detail["raw_pk_lookup"] = raw.to_json();
    let _ = server.stop().await;

    // A checkpoint every 10 000 events (the default) spreads one signature over them.
    let per_event_us = build_us.map(|b| b + signing.p50_ms * 1000.0 / 10_000.0);
    let size = format!("{}k events", head / 1000);
    let mut rows = Vec::new();
    if let Some(us) = per_event_us {
        let row = Row::new(
            "checkpointing: machine CPU per command (tree + a signature per 10k)",
            us,
            "µs",
        );
        rows.push(match command_us {
            Some((name, base)) => row.against(name, Some(base)),
            None => row,
        });
    }
    for (name, s) in [("inclusion", &inclusion), ("consistency", &consistency)] {
        rows.push(
            Row::new(format!("{name} proof p99, {size}"), s.p99_ms, "ms")
                .against(format!("raw PK lookup p99, {size}"), Some(raw.p99_ms)),
        );
    }
    Ok(TreeRun { rows, detail })
}

async fn proof_latencies(
    server: &server::Server,
    store: &Store,
    url: &str,
    head: u64,
    n: usize,
) -> anyhow::Result<(
    crate::stats::Summary,
    crate::stats::Summary,
    crate::stats::Summary,
)> {
    let keys = JwtKeys::new(crate::SECRET);
    let service = load::Service::new(server.addr, &keys, 0)?;
    let client = service.client();
    let mut rng = Rng::new(27);
    let mut tokens: HashMap<String, hyper::header::HeaderValue> = HashMap::new();
    let (mut inclusion, mut consistency) =
        (Latencies::with_capacity(n), Latencies::with_capacity(n));
    // One warm-up round of each, not counted.
    for i in 0..=n {
        let position = 1 + rng.below(head);
        let row = store
            .raw_events(position - 1, 1)
            .await?
            .pop()
            .context("a seeded event")?;
        let tenant = row.tenant_id.clone();
        if !tokens.contains_key(&tenant) {
            let id: uuid::Uuid = tenant.parse()?;
            let token = keys.mint(id, "bench-auditor", &[Role::Auditor], 3600)?;
            tokens.insert(tenant.clone(), load::bearer(&token)?);
        }
        let token = &tokens[&tenant];
        let t = Instant::now();
        let (status, _) = client
            .get(
                &format!(
                    "/v1/tenants/{tenant}/audit/proof/inclusion?position={position}&size={head}"
                ),
                token,
            )
            .await;
        let took = t.elapsed();
        if status != 200 {
            bail!("inclusion proof of {position}: status {status}");
        }
        let from = 1 + rng.below(head);
        let t2 = Instant::now();
        let (status, _) = client
            .get(
                &format!("/v1/tenants/{tenant}/audit/proof/consistency?from={from}&to={head}"),
                token,
            )
            .await;
        let took2 = t2.elapsed();
        if status != 200 {
            bail!("consistency proof from {from}: status {status}");
        }
        if i > 0 {
            inclusion.record(took);
            consistency.record(took2);
        }
    }
    // The baseline: one primary-key read of the same events table.
    let pg = db::connect(url).await?;
    let stmt = pg
        .prepare("SELECT hash FROM events WHERE position = $1")
        .await?;
    let mut raw = Latencies::with_capacity(n);
    for _ in 0..n {
        let position = 1 + rng.below(head) as i64;
        let t = Instant::now();
        pg.query_one(&stmt, &[&position]).await?;
        raw.record(t.elapsed());
    }
    Ok((inclusion.summary(), consistency.summary(), raw.summary()))
}
