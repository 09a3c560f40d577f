//! The soak: the real `recovery-info serve` binary, as a process of its own, under a steady
//! open-loop load for a set time — commands at a set rate, eligibility queries at half of it,
//! an event stream (SSE) open on every tenant — reporting the service's memory (RSS) and the
//! latencies window by window, and at the end whether memory stayed flat and nothing failed.
//! Not a CI test: `scripts/soak` (docs/benchmarks.md, "Soak").

use crate::load::{AdminSim, Service, bearer};
use crate::stats::{Latencies, Rng, Summary};
use crate::{db, say};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{ACCEPT, AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;
use recovery_info::http::auth::{JwtKeys, Role};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tenants of the load (an event stream each), admins in all, and command clients.
const TENANTS: usize = 8;
const ADMINS: usize = 8000;
const COMMAND_CLIENTS: usize = 16;
const QUERY_CLIENTS: usize = 8;
/// The share of the run after which memory must be flat (the caches and pools fill first).
const WARMUP_SHARE: f64 = 0.2;
/// Flat: the RSS at the end at most this much above the RSS after the warm-up.
const FLAT_GROWTH: f64 = 0.10;

/// Which store a soak runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SoakStore {
    Postgres,
    Embedded,
    /// Both, at the same time (each at the full rate: the machine carries twice the load).
    Both,
}

pub struct SoakPlan {
    pub duration: Duration,
    pub rate: u32,
    pub report_every: Duration,
    pub binary: PathBuf,
    pub pg_url: String,
    /// More arguments for `serve`.
    pub serve_args: Vec<String>,
}

/// What the clients measured since the last report.
#[derive(Default)]
struct Window {
    commands: Latencies,
    queries: Latencies,
    errors: BTreeMap<String, usize>,
}

#[derive(Default)]
struct Shared {
    window: Mutex<Window>,
    /// Accepted commands per tenant, and the domain events the streams delivered per tenant.
    accepted: [AtomicU64; TENANTS],
    streamed: [AtomicU64; TENANTS],
}

impl Shared {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, label: String) {
        *self.window().errors.entry(label).or_insert(0) += 1;
    }
}

/// A client's schedule: a tick every `period`, late ticks sent at once (open loop: a late
/// answer does not delay the next request's schedule; latencies count from the tick).
fn pacer(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    ticker
}

/// One line of the report.
struct Sample {
    at: Duration,
    rss_mib: f64,
    /// Of it, anonymous memory (`RssAnon`: the heap and the stacks, not file pages).
    anon_mib: f64,
    /// The service's threads (tokio's workers and its blocking pool, which grows under load).
    threads: u64,
    commands: Summary,
    queries: Summary,
    errors: usize,
}

/// The service under soak: its process and what it runs on.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    port: u16,
    cleanup: Cleanup,
}

enum Cleanup {
    Database(db::BenchDb),
    Dir(PathBuf),
}

const SECRET: &str = "recovery-soak-secret-not-for-production-00000";

async fn start(store: SoakStore, plan: &SoakPlan) -> anyhow::Result<Running> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = tokio::process::Command::new(&plan.binary);
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", "off", "--step-up-max-age", "off"])
        .args(["--writes-per-token", "off", "--writes-per-address", "off"])
        .args(["--queries-per-token", "off", "--queries-per-address", "off"])
        .args([
            "--jwt-secret",
            SECRET,
            "--no-checkpoints",
            "--no-dev-sign-in",
        ])
        .args(&plan.serve_args)
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    let cleanup = match store {
        SoakStore::Postgres => {
            let db = db::BenchDb::create(&plan.pg_url).await?;
            cmd.args(["--database-url", &db.url]);
            Cleanup::Database(db)
        }
        _ => {
            let dir = std::env::temp_dir().join(format!("recovery-soak-{}", uuid::Uuid::now_v7()));
            cmd.arg("--data-dir").arg(&dir);
            Cleanup::Dir(dir)
        }
    };
    let child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {} (build it: cargo build --release)",
            plan.binary.display()
        )
    })?;
    let pid = child.id().context("the service exited at once")?;
    Ok(Running {
        child,
        pid,
        port,
        cleanup,
    })
}

impl Running {
    async fn stop(mut self) -> anyhow::Result<()> {
        // SIGTERM by its PID, then wait: the service drains and exits.
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.kill().await;
        match self.cleanup {
            Cleanup::Database(db) => db.drop_db().await,
            Cleanup::Dir(dir) => Ok(std::fs::remove_dir_all(dir)?),
        }
    }
}

/// A field of a process's `/proc/{pid}/status` (`VmRSS`, `RssAnon`, `Threads`), as a number.
fn proc_status(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The resident memory of a process, MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    Some(proc_status(pid, "VmRSS")? / 1024.0)
}

/// Runs the soak on `store` (or both at once); true when every store passed.
pub async fn run(store: SoakStore, plan: &SoakPlan) -> anyhow::Result<bool> {
    let stores = match store {
        SoakStore::Both => vec![SoakStore::Postgres, SoakStore::Embedded],
        one => vec![one],
    };
    let runs = stores.iter().map(|&s| soak_one(s, plan));
    let mut passed = true;
    for (s, outcome) in stores.iter().zip(futures::future::join_all(runs).await) {
        let (ok, table) = outcome.with_context(|| format!("the soak on {s:?}"))?;
        println!(
            "\n## {s:?}: {} s at {} commands/s\n\n{table}",
            plan.duration.as_secs(),
            plan.rate
        );
        passed &= ok;
    }
    Ok(passed)
}

async fn soak_one(store: SoakStore, plan: &SoakPlan) -> anyhow::Result<(bool, String)> {
    let running = start(store, plan).await?;
    let outcome = drive(store, plan, &running).await;
    running.stop().await?;
    outcome
}

async fn drive(
    store: SoakStore,
    plan: &SoakPlan,
    running: &Running,
) -> anyhow::Result<(bool, String)> {
    let keys = JwtKeys::new(SECRET.as_bytes());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], running.port));
    let service = Arc::new(Service::new(addr, &keys, TENANTS)?);
    wait_ready(&service).await?;
    say(&format!(
        "{store:?}: the service (pid {}) is up on {addr}",
        running.pid
    ));
    let shared = Arc::new(Shared::default());
    let admins: Vec<AdminSim> = (0..ADMINS).map(|i| AdminSim::new(i % TENANTS)).collect();
    let started = Instant::now();
    let end = started + plan.duration;

    let mut streams = Vec::new();
    for t in 0..TENANTS {
        let token = bearer(&keys.mint(
            service.tenants[t].id,
            "soak-dashboard",
            &[Role::Dashboard],
            48 * 3600,
        )?)?;
        let path = format!("/v1/tenants/{}/events/stream", service.tenants[t].id);
        streams.push(tokio::spawn(subscribe(
            addr,
            path,
            token,
            t,
            shared.clone(),
        )));
    }
    let mut clients = Vec::new();
    let per_client = admins.len() / COMMAND_CLIENTS;
    for (c, chunk) in admins.chunks(per_client).enumerate() {
        let period = Duration::from_secs_f64(COMMAND_CLIENTS as f64 / f64::from(plan.rate));
        clients.push(tokio::spawn(commands(
            service.clone(),
            chunk.to_vec(),
            period,
            end,
            c as u64,
            shared.clone(),
        )));
    }
    let admins = Arc::new(admins);
    for c in 0..QUERY_CLIENTS {
        let period = Duration::from_secs_f64(QUERY_CLIENTS as f64 * 2.0 / f64::from(plan.rate));
        clients.push(tokio::spawn(queries(
            service.clone(),
            admins.clone(),
            period,
            end,
            c as u64,
            shared.clone(),
        )));
    }

    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + plan.report_every,
        plan.report_every,
    );
    loop {
        ticker.tick().await;
        let w = std::mem::take(&mut *shared.window());
        let errors: usize = w.errors.values().sum();
        for (label, n) in &w.errors {
            say(&format!("{store:?}: {n} × {label}"));
        }
        let sample = Sample {
            at: started.elapsed(),
            rss_mib: rss_mib(running.pid).context("the service is gone")?,
            anon_mib: proc_status(running.pid, "RssAnon").unwrap_or(0.0) / 1024.0,
            threads: proc_status(running.pid, "Threads").unwrap_or(0.0) as u64,
            commands: w.commands.summary(),
            queries: w.queries.summary(),
            errors,
        };
        say(&format!(
            "{store:?} {:>5.0} s  RSS {:6.1} MiB (anon {:6.1})  threads {:3}  commands {:5.0}/s p50 {:.2} p99 {:.2} max {:.1} ms  queries {:5.0}/s p99 {:.2} ms  errors {}",
            sample.at.as_secs_f64(),
            sample.rss_mib,
            sample.anon_mib,
            sample.threads,
            sample.commands.count as f64 / plan.report_every.as_secs_f64(),
            sample.commands.p50_ms,
            sample.commands.p99_ms,
            sample.commands.max_ms,
            sample.queries.count as f64 / plan.report_every.as_secs_f64(),
            sample.queries.p99_ms,
            sample.errors,
        ));
        samples.push(sample);
        if Instant::now() >= end {
            break;
        }
    }
    for c in clients {
        c.await.context("a load client failed")?;
    }
    // The streams deliver what was accepted, every event once: wait for the last ones.
    let delivered = |shared: &Shared| {
        (0..TENANTS).all(|t| {
            shared.streamed[t].load(Ordering::Relaxed) >= shared.accepted[t].load(Ordering::Relaxed)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !delivered(&shared) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in streams {
        s.abort();
    }
    Ok(verdict(store, plan, &samples, &shared))
}

/// The table of the samples and the verdict: flat memory after the warm-up, no error, the
/// rate held, and every accepted command streamed exactly once.
fn verdict(
    store: SoakStore,
    plan: &SoakPlan,
    samples: &[Sample],
    shared: &Shared,
) -> (bool, String) {
    let mut table = String::from(
        "| at | RSS MiB | anon MiB | threads | commands/s | p50 ms | p99 ms | max ms | queries/s | p99 ms | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let secs = plan.report_every.as_secs_f64();
    for s in samples {
        table.push_str(&format!(
            "| {:.0} s | {:.1} | {:.1} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} | {:.2} | {} |\n",
            s.at.as_secs_f64(),
            s.rss_mib,
            s.anon_mib,
            s.threads,
            s.commands.count as f64 / secs,
            s.commands.p50_ms,
            s.commands.p99_ms,
            s.commands.max_ms,
            s.queries.count as f64 / secs,
            s.queries.p99_ms,
            s.errors
        ));
    }
    let after_warmup = samples
        .iter()
        .find(|s| s.at.as_secs_f64() >= plan.duration.as_secs_f64() * WARMUP_SHARE)
        .or(samples.first());
    let last = samples.last();
    let (base, end) = (
        after_warmup.map_or(0.0, |s| s.rss_mib),
        last.map_or(0.0, |s| s.rss_mib),
    );
    let peak = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let growth = if base > 0.0 {
        end / base - 1.0
    } else {
        f64::INFINITY
    };
    let errors: usize = samples.iter().map(|s| s.errors).sum();
    let commands: usize = samples.iter().map(|s| s.commands.count).sum();
    let achieved = commands as f64 / samples.last().map_or(1.0, |s| s.at.as_secs_f64());
    let accepted: u64 = shared
        .accepted
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum();
    let streamed: u64 = shared
        .streamed
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum();
    let checks = [
        (
            growth <= FLAT_GROWTH,
            format!(
                "memory flat: {base:.1} MiB after the warm-up, {end:.1} MiB at the end ({:+.1} %, peak {peak:.1} MiB; at most +{:.0} %)",
                growth * 100.0,
                FLAT_GROWTH * 100.0
            ),
        ),
        (errors == 0, format!("errors: {errors}")),
        (
            achieved >= f64::from(plan.rate) * 0.98,
            format!(
                "commands: {commands} accepted, {achieved:.0}/s of {} asked",
                plan.rate
            ),
        ),
        (
            streamed == accepted,
            format!("event streams: {streamed} events delivered of {accepted} accepted commands"),
        ),
    ];
    let mut ok = true;
    for (pass, line) in &checks {
        ok &= pass;
        table.push_str(&format!("\n{} {line}", if *pass { "PASS" } else { "FAIL" }));
    }
    say(&format!("{store:?}: {}", if ok { "PASS" } else { "FAIL" }));
    (ok, table)
}

async fn wait_ready(service: &Service) -> anyhow::Result<()> {
    let client = service.client();
    let none = hyper::header::HeaderValue::from_static("");
    for _ in 0..300 {
        if client.get("/readyz", &none).await.0 == 200 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the service did not become ready in 30 s")
}

/// A command client: one command every `period` (see [`pacer`]), over its own admins.
async fn commands(
    service: Arc<Service>,
    mut admins: Vec<AdminSim>,
    period: Duration,
    end: Instant,
    seed: u64,
    shared: Arc<Shared>,
) {
    let client = service.client();
    let mut rng = Rng::new(seed * 131 + 7);
    let mut ticker = pacer(period);
    let mut i = 0;
    while Instant::now() < end {
        let scheduled = ticker.tick().await.into_std();
        let n = admins.len();
        let admin = &mut admins[i % n];
        i += 1;
        let outcome = service.command(&client, admin, &mut rng).await;
        if outcome.ok() {
            shared.accepted[admin.tenant].fetch_add(1, Ordering::Relaxed);
            shared.window().commands.record(scheduled.elapsed());
        } else {
            shared.error(format!("command {}", outcome.label()));
        }
    }
}

/// An eligibility client: one query of a random admin every `period`.
async fn queries(
    service: Arc<Service>,
    admins: Arc<Vec<AdminSim>>,
    period: Duration,
    end: Instant,
    seed: u64,
    shared: Arc<Shared>,
) {
    let client = service.client();
    let mut rng = Rng::new(seed * 17 + 3);
    let mut ticker = pacer(period);
    while Instant::now() < end {
        let scheduled = ticker.tick().await.into_std();
        let admin = &admins[rng.below(admins.len() as u64) as usize];
        let Ok(url) = service.eligibility_url(admin) else {
            continue;
        };
        match service.eligibility(&client, admin, url).await {
            200 => shared.window().queries.record(scheduled.elapsed()),
            status => shared.error(format!("query {status}")),
        }
    }
}

/// An event stream of tenant `t`, counting the domain events it delivers (not the
/// eligibility changes derived from them, nor heartbeats). A stream that ends is an error.
async fn subscribe(
    addr: std::net::SocketAddr,
    path: String,
    token: hyper::header::HeaderValue,
    t: usize,
    shared: Arc<Shared>,
) {
    let result: anyhow::Result<()> = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::get(path.as_str())
            .header(HOST, addr.to_string())
            .header(AUTHORIZATION, token)
            .header(ACCEPT, "text/event-stream")
            .body(Empty::<Bytes>::new())?;
        let response = send.send_request(req).await?;
        if response.status() != 200 {
            bail!("status {}", response.status());
        }
        let mut body = response.into_body();
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                if let Some(name) = line.strip_prefix(b"event:") {
                    let name = String::from_utf8_lossy(name);
                    if name.trim() != "EligibilityChanged" {
                        shared.streamed[t].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        bail!("the stream ended")
    }
    .await;
    if let Err(e) = result {
        shared.error(format!("event stream: {e}"));
    }
}
