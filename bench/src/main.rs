//! recovery-bench: measures recovery-info against the raw limits of its own engines
//! (PostgreSQL and NATS JetStream) on the same machine, in one run, and prints each figure
//! beside its baseline and the ratio (issue 6). See `docs/benchmarks.md`.
//!
//! The run creates a fresh database on the given server, starts the service in-process on
//! port 0 against it, measures, and drops the database at the end.

mod db;
mod load;
mod publisher;
mod raw_nats;
mod raw_pg;
mod report;
mod sealing;
mod seed;
mod soak;
mod stats;
mod tree;

use anyhow::Context;
use clap::Parser;
use recovery_info::audit::checkpoints::CheckpointConfig;
use recovery_info::http::auth::JwtKeys;
use recovery_info::projections::runner::RunnerConfig;
use recovery_info::publish::PublisherConfig;
use recovery_info::server::{self, ServerConfig};
use recovery_info::store::projections::Projection;
use recovery_info::store::{EventLog, ProjectionStorage};
use recovery_info::store::{Store, StoreConfig};
use report::{Goal, Row};
use serde_json::json;
use stats::CpuMeter;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Benchmarks recovery-info against raw PostgreSQL and NATS JetStream on this machine.
#[derive(Parser, Debug)]
#[command(name = "recovery-bench", version, about)]
struct Args {
    /// A smoke run that finishes in under two minutes (shorter phases, 100k-event rebuild).
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// The PostgreSQL server (a database is created on it for the run and dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg_url: String,
    /// The NATS server (with JetStream).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Keep the run's database at the end (to profile `recovery-info replay` on its log, say).
    #[arg(long)]
    keep_database: bool,
    /// The tenants the seeded log (the rebuild's and the publisher's) spreads its admins over;
    /// 1 is a deployment made of one large tenant.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    seed_tenants: u16,
    /// The events of the log the checkpoint phase builds its tree over and asks proofs of
    /// (default: 10M, 200k with --quick).
    #[arg(long)]
    tree_events: Option<usize>,
    /// Run only the command path's phase (the baseline of a command's CPU) and the checkpoint
    /// phase.
    #[arg(long)]
    tree_only: bool,
    /// Instead of the benchmark, a soak of this long (e.g. 30m): the `recovery-info serve`
    /// binary under a steady load, its memory and latencies reported over time.
    #[arg(long, value_parser = recovery_info::cli::args::parse_ttl)]
    soak: Option<Duration>,
    /// The soak's commands per second (and half as many eligibility queries).
    #[arg(long, default_value_t = 500)]
    soak_rate: u32,
    /// The soak's store(s).
    #[arg(long, value_enum, default_value = "both")]
    soak_store: soak::SoakStore,
    /// How often the soak reports (a line and a row of its table).
    #[arg(long, default_value = "60s", value_parser = recovery_info::cli::args::parse_ttl)]
    soak_every: Duration,
    /// The service binary the soak runs.
    #[arg(long, default_value = "target/release/recovery-info")]
    soak_binary: std::path::PathBuf,
    /// One more argument for the soak's `recovery-info serve` (repeat it): to measure the
    /// service with a part turned off, say `--soak-serve-arg=--no-notifications`.
    #[arg(long, allow_hyphen_values = true)]
    soak_serve_arg: Vec<String>,
}

/// How long and how big each phase is.
struct Plan {
    warmup: Duration,
    phase: Duration,
    nats_messages: usize,
    /// Log events whose relay messages are published raw (the relay's own ceiling).
    relay_sample: usize,
    rebuild_events: usize,
    /// The fewest events seeded (the publisher's backlog), however many the command phases
    /// appended: the rebuild's log is then longer than `rebuild_events`.
    min_seeded: usize,
    rebuild_timeout: Duration,
    admins_per_client: usize,
    /// The checkpoint phase's log, and its proofs asked.
    tree_events: usize,
    proofs: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                warmup: Duration::from_millis(500),
                phase: Duration::from_secs(3),
                nats_messages: 20_000,
                relay_sample: 50_000,
                rebuild_events: 100_000,
                min_seeded: 50_000,
                rebuild_timeout: Duration::from_secs(60),
                admins_per_client: 16,
                tree_events: 200_000,
                proofs: 200,
            }
        } else {
            Plan {
                warmup: Duration::from_secs(2),
                phase: Duration::from_secs(10),
                nats_messages: 200_000,
                relay_sample: 200_000,
                rebuild_events: 1_000_000,
                min_seeded: 500_000,
                rebuild_timeout: Duration::from_secs(1200),
                admins_per_client: 16,
                tree_events: 10_000_000,
                proofs: 1000,
            }
        }
    }
}

/// The secret the bench signs its tokens with (the service runs in this process only).
const SECRET: &[u8] = b"recovery-bench-secret-not-for-production-0000";

fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Prints a progress line with the time since the start.
pub fn say(line: &str) {
    eprintln!("[{:7.1}s] {line}", started().elapsed().as_secs_f64());
}

/// The allocator of the service's binary (`src/main.rs`): the bench runs the service in its own
/// process, so it measures it with the allocator it ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    started();
    // The service's own logs, when asked for (e.g. `RUST_LOG=recovery_info=info`).
    if std::env::var_os("RUST_LOG").is_some() {
        recovery_info::telemetry::init_logs(recovery_info::config::LogFormat::Text);
    }
    // On a worker, as the service's own commands run: on this thread, every row a baseline
    // reads would wake it with a system call, which would slow the baselines, not the service.
    let outcome = recovery_info::task::on_worker(async move { run(&args).await })
        .await
        .unwrap_or_else(|cancelled| Err(cancelled.into()));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the reason and its causes.
            eprintln!("recovery-bench: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(duration) = args.soak {
        let plan = soak::SoakPlan {
            duration,
            rate: args.soak_rate,
            report_every: args.soak_every,
            binary: args.soak_binary.clone(),
            pg_url: args.pg_url.clone(),
            serve_args: args.soak_serve_arg.clone(),
        };
        return match soak::run(args.soak_store, &plan).await? {
            true => Ok(()),
            false => anyhow::bail!("the soak failed (see the FAIL lines)"),
        };
    }
    let mut plan = Plan::new(args.quick);
    if let Some(n) = args.tree_events {
        plan.tree_events = n;
    }
    let db = db::BenchDb::create(&args.pg_url).await?;
    say(&format!(
        "created database {} on PostgreSQL {}",
        db.name, db.server_version
    ));
    let result = tokio::select! {
        r = measure(args, &plan, &db), if !args.tree_only => r,
        r = measure_tree_only(args, &plan, &db), if args.tree_only => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let dropped = if args.keep_database {
        say(&format!("kept the database {}", db.name));
        Ok(())
    } else {
        say("dropping the database");
        db.drop_db().await
    };
    let (rows, goals, details) = result?;
    dropped?;

    println!();
    println!("{}", report::render(&rows, &goals));
    if let Some(path) = &args.json {
        let doc = json!({
            "command": std::env::args().collect::<Vec<_>>(),
            "quick": args.quick,
            "machine": machine(&db.server_version),
            "rows": report::rows_json(&rows),
            "goals": report::goals_json(&goals),
            "details": details,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        say(&format!("wrote {}", path.display()));
    }
    Ok(())
}

/// The service as the bench runs it: PostgreSQL, and the JetStream publisher on `nats_url`
/// under the run's own stream and subject prefix (see `publisher::stream_name`).
/// With `alone`, the command path only: no projection runners, no publisher (what
/// `serve --no-projections` without `NATS_URL` runs), for the phase that measures what the
/// commands cost without the work that follows them.
fn service_config(database_url: &str, nats_url: &str, alone: bool) -> ServerConfig {
    ServerConfig {
        store: StoreConfig::Postgres {
            url: database_url.to_owned(),
            pool_size: recovery_info::config::DEFAULT_POOL_SIZE,
            kek: Default::default(),
        },
        publisher: (!alone).then(|| PublisherConfig {
            stream_name: publisher::stream_name(),
            subject_prefix: publisher::prefix(),
            ..PublisherConfig::new(nats_url)
        }),
        listen: ([127, 0, 0, 1], 0).into(),
        // No metrics listener: the bench reads the service's counters in this process
        // (`ServiceCounters::read`), and a fixed port would collide with a service running
        // beside it.
        metrics_listen: None,
        metrics_token: None,
        jwt_secret: Some(SECRET.to_vec()),
        oidc: None,
        // The bench mints its tokens once and writes for longer than a sign-in lasts.
        step_up: recovery_info::http::auth::StepUp::off(),
        freshness_timeout: Duration::from_secs(2),
        settings_limits: Default::default(),
        plain_positions: true,
        runner: RunnerConfig::default(),
        run_projections: !alone,
        // Off here: over a bulk-seeded log the tree's building would share the cores with the
        // publisher's and the rebuild's phases; the checkpoint phase measures it alone.
        checkpoints: CheckpointConfig {
            enabled: false,
            ..Default::default()
        },
        // The production default: notices recorded (no channel is configured here).
        notifier: Some(Default::default()),
        dev_sign_in: false,
        console_client_id: None,
        // The bench's clients write and ask far beyond a person's pace, from one address.
        limits: Default::default(),
        edge: Default::default(),
    }
}

fn machine(pg_version: &str) -> serde_json::Value {
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_mb": mem_kb / 1024,
        "postgresql": pg_version,
    })
}

type Measured = (Vec<Row>, Vec<Goal>, serde_json::Value);

async fn measure(args: &Args, plan: &Plan, db: &db::BenchDb) -> anyhow::Result<Measured> {
    let alone = commands_alone(args, plan, db).await?;
    let server = server::start(service_config(&db.url, &args.nats_url, false))
        .await
        .context("cannot start the service")?;
    say(&format!("service listening on {}", server.addr));
    let store = server.app.store.clone();
    let result = measure_with(args, plan, db, &server, &store, alone).await;
    let _ = server.stop().await;
    if let Ok(nats) = raw_nats::connect(&args.nats_url).await {
        publisher::delete_stream(&nats).await;
    }
    result
}

/// One command phase, measured: the run, its JSON (CPU and WAL per command, errors by
/// status), and the progress line said.
struct CommandPhase {
    run: load::CommandRun,
    detail: serde_json::Value,
    cpu_us_per_op: Option<f64>,
    wal_per_op: f64,
    /// The group commit's round trips to PostgreSQL per event appended over the phase.
    append_round_trips: Option<f64>,
}

/// The service's own counters (its `/metrics`, read in this process: the bench runs the
/// service), to count over a phase the group commit's round trips and the background's batches.
#[derive(Clone, Copy, Default)]
struct ServiceCounters {
    /// Groups written in one round trip, in two, and guesses that failed (one round trip each).
    one: f64,
    two: f64,
    moved: f64,
    events: f64,
    /// The background's batches: the admin projection's, and the relay's rounds.
    projection_batches: f64,
    projection_events: f64,
    relay_rounds: f64,
    relay_events: f64,
}

impl ServiceCounters {
    fn read() -> Self {
        let text = recovery_info::telemetry::metrics_handle().render();
        let value = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0)
        };
        ServiceCounters {
            one: value("recovery_append_groups_total{round_trips=\"1\"}"),
            two: value("recovery_append_groups_total{round_trips=\"2\"}"),
            moved: value("recovery_append_head_moved_total"),
            events: value("recovery_events_appended_total"),
            projection_batches: value("recovery_projection_batches_total{projection=\"admins\"}"),
            projection_events: value("recovery_projection_events_total{projection=\"admins\"}"),
            relay_rounds: value("recovery_publish_batch_seconds_count"),
            relay_events: value("recovery_published_events_total"),
        }
    }

    /// Since `before`: events per group and round trips per event, and the background's batch
    /// sizes; adds them to `json`, and returns the text for the progress line and the round
    /// trips per event.
    fn record(self, before: Self, json: &mut serde_json::Value) -> (String, Option<f64>) {
        let groups = (self.one - before.one) + (self.two - before.two);
        let trips =
            (self.one - before.one) + 2.0 * (self.two - before.two) + (self.moved - before.moved);
        let events = self.events - before.events;
        if groups <= 0.0 || events <= 0.0 {
            return (String::new(), None);
        }
        let per_event = trips / events;
        json["append_events_per_group"] = json!(events / groups);
        json["append_round_trips_per_event"] = json!(per_event);
        let mut text = format!(
            ", append {:.1} events per group, {:.2} round trips per event",
            events / groups,
            per_event
        );
        // The background's batches over the phase (none when it runs no projections and no
        // publisher): what each of them pays per batch is spread over this many events.
        let batches = self.projection_batches - before.projection_batches;
        if batches > 0.0 {
            let size = (self.projection_events - before.projection_events) / batches;
            json["projection_events_per_batch"] = json!(size);
            text += &format!(", admin projection {size:.1} events per batch");
        }
        let rounds = self.relay_rounds - before.relay_rounds;
        if rounds > 0.0 {
            let size = (self.relay_events - before.relay_events) / rounds;
            json["relay_events_per_round"] = json!(size);
            text += &format!(", relay {size:.1} events per round");
        }
        (text, Some(per_event))
    }
}

impl CommandPhase {
    /// `clients` keep-alive clients sending commands to `service` for the plan's phase, with
    /// the machine's CPU and the server's WAL metered over it (`pg`: a connection to read it).
    async fn measure(
        service: &Arc<load::Service>,
        clients: usize,
        plan: &Plan,
        pg: &tokio_postgres::Client,
    ) -> anyhow::Result<Self> {
        let wal = db::WalMeter::start(pg).await?;
        let counters = ServiceCounters::read();
        let cpu = CpuMeter::start_by_process();
        let run = load::commands(
            service,
            clients,
            plan.admins_per_client,
            plan.warmup,
            plan.phase,
        )
        .await?;
        let r = run.rate;
        let mut detail = r.to_json();
        let (used, cpu_us_per_op) = cpu.record(r.per_second, &mut detail);
        let (wal_used, wal_per_op) = wal.record(r.per_second, &mut detail).await?;
        let (trips, append_round_trips) = ServiceCounters::read().record(counters, &mut detail);
        say(&format!(
            "  {:.0} commands/s, p50 {:.2} ms, p99 {:.2} ms, errors {:?}{used}{wal_used}{trips}",
            r.per_second, r.latency.p50_ms, r.latency.p99_ms, run.errors_by_status
        ));
        detail["errors_by_status"] = json!(run.errors_by_status);
        Ok(CommandPhase {
            run,
            detail,
            cpu_us_per_op,
            wal_per_op,
            append_round_trips,
        })
    }

    /// The note of the phase's rate row: its non-2xx answers, if any.
    fn errors_note(&self) -> String {
        let run = &self.run;
        if run.rate.errors > 0 {
            format!("{} errors: {:?}", run.rate.errors, run.errors_by_status)
        } else {
            String::new()
        }
    }
}

/// The commands at 16 clients of a service that runs the command path only (no projection
/// runners, no publisher), on the fresh database, before the full service starts: a bound on
/// what the full service can do, measured in the same run as the goals' baselines.
async fn commands_alone(
    args: &Args,
    plan: &Plan,
    db: &db::BenchDb,
) -> anyhow::Result<CommandPhase> {
    let server = server::start(service_config(&db.url, &args.nats_url, true))
        .await
        .context("cannot start the service")?;
    say(&format!(
        "service commands, {ALONE_CLIENTS} clients, the command path alone (no projections, no publisher)"
    ));
    let measured = async {
        let service = Arc::new(load::Service::new(server.addr, &JwtKeys::new(SECRET), 8)?);
        let pg = db::connect(&db.url).await?;
        CommandPhase::measure(&service, ALONE_CLIENTS, plan, &pg).await
    }
    .await;
    let _ = server.stop().await;
    measured
}

/// The clients of the command path's phase (those of the commands goal).
const ALONE_CLIENTS: usize = 16;

async fn measure_with(
    args: &Args,
    plan: &Plan,
    db: &db::BenchDb,
    server: &server::Server,
    store: &Store,
    alone: CommandPhase,
) -> anyhow::Result<Measured> {
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    let nats = match raw_nats::connect(&args.nats_url).await {
        Ok(c) => {
            say(&format!(
                "NATS {} at {}",
                c.server_info().version,
                args.nats_url
            ));
            Some(c)
        }
        Err(e) => {
            say(&format!(
                "warning: {e:#}; the NATS rows are reported as not available"
            ));
            None
        }
    };

    // The full service's projections and publisher fold the command path's events first:
    // they would share the machine with the baselines.
    say("waiting for the projections and the publisher to fold those commands");
    let head = store.head().await?;
    wait_for_projections(store, head, nats.is_some(), Duration::from_secs(120)).await?;

    // 1. Raw PostgreSQL.
    raw_pg::prepare(&db.url).await?;
    let raw = raw_pg::RawTable::new();
    let mut raw_insert = Vec::new();
    // CPU microseconds per operation of the 16-connection phases: (raw, service).
    let mut cpu_insert = (None, None);
    let mut cpu_lookup = (None, None);
    // WAL bytes per write of the 16-connection phases: (raw INSERT, command).
    let pg = db::connect(&db.url).await?;
    let mut wal_insert = (None, None);
    let mut append_trips_16 = None;
    for conns in [1, 16, 64] {
        say(&format!("raw INSERT, {conns} connections"));
        let wal = db::WalMeter::start(&pg).await?;
        let cpu = CpuMeter::start();
        let r = raw.insert_tps(&db.url, conns, plan.phase).await?;
        let mut d = r.to_json();
        let (used, us_per_op) = cpu.record(r.per_second, &mut d);
        let (wal_used, wal_per_op) = wal.record(r.per_second, &mut d).await?;
        say(&format!(
            "  {:.0} tps, p50 {:.2} ms, p99 {:.2} ms{used}{wal_used}",
            r.per_second, r.latency.p50_ms, r.latency.p99_ms
        ));
        if conns == 16 {
            cpu_insert.0 = us_per_op;
            wal_insert.0 = Some(wal_per_op);
        }
        details.insert(format!("raw_insert_{conns}"), d);
        raw_insert.push((conns, r));
    }
    let mut raw_pk = Vec::new();
    for conns in [1, 16] {
        say(&format!(
            "raw primary-key lookups, {conns} connections ({} rows)",
            raw.rows()
        ));
        let cpu = CpuMeter::start();
        let r = raw.pk_lookups(&db.url, conns, plan.phase).await?;
        let mut d = r.to_json();
        let (used, us_per_op) = cpu.record(r.per_second, &mut d);
        say(&format!(
            "  {:.0} lookups/s, p50 {:.2} ms, p99 {:.2} ms{used}",
            r.per_second, r.latency.p50_ms, r.latency.p99_ms
        ));
        if conns == 16 {
            cpu_lookup.0 = us_per_op;
        }
        details.insert(format!("raw_pk_{conns}"), d);
        raw_pk.push((conns, r));
    }

    // Raw JetStream.
    let raw_js = match &nats {
        Some(nats) => {
            say(&format!(
                "raw JetStream publish, {} messages, {} in flight",
                plan.nats_messages,
                raw_nats::WINDOW
            ));
            let cpu = CpuMeter::start_by_process();
            let r = raw_nats::publish_rate(nats, plan.nats_messages, 240).await?;
            let mut d = r.to_json();
            let (used, _) = cpu.record(r.per_second, &mut d);
            say(&format!("  {:.0} msgs/s{used}", r.per_second));
            details.insert("raw_jetstream_publish".into(), d);
            Some(r)
        }
        None => None,
    };

    // 2. The service over HTTP.
    let keys = JwtKeys::new(SECRET);
    let service = Arc::new(load::Service::new(server.addr, &keys, 8)?);
    let mut admins = Vec::new();
    // 256 clients (where the global append lock caps the writes, docs/scaling.md) against the
    // 64-connection INSERT: 256 raw connections are beyond PostgreSQL's default
    // max_connections (100).
    for conns in [1, 16, 64, 256] {
        let base_conns = conns.min(64);
        let Some((_, base)) = raw_insert.iter().find(|(c, _)| *c == base_conns) else {
            continue;
        };
        say(&format!("service commands, {conns} clients"));
        let phase = CommandPhase::measure(&service, conns, plan, &pg).await?;
        let r = phase.run.rate;
        if conns == 16 {
            cpu_insert.1 = phase.cpu_us_per_op;
            wal_insert.1 = Some(phase.wal_per_op);
            append_trips_16 = phase.append_round_trips;
        }
        let errors = phase.errors_note();
        details.insert(format!("service_commands_{conns}"), phase.detail);
        rows.push(
            Row::new(format!("commands/s, {conns} clients"), r.per_second, "/s")
                .against(
                    format!("raw 1-row INSERT tps, {base_conns} conns"),
                    Some(base.per_second),
                )
                .note(errors),
        );
        rows.push(
            Row::new(
                format!("command p50, {conns} clients"),
                r.latency.p50_ms,
                "ms",
            )
            .against(
                format!("raw INSERT p50, {base_conns} conns"),
                Some(base.latency.p50_ms),
            ),
        );
        rows.push(
            Row::new(
                format!("command p99, {conns} clients"),
                r.latency.p99_ms,
                "ms",
            )
            .against(
                format!("raw INSERT p99, {base_conns} conns"),
                Some(base.latency.p99_ms),
            ),
        );
        admins.extend(phase.run.admins);
    }
    let admins = Arc::new(admins);
    if let Some((_, base)) = raw_insert.iter().find(|(c, _)| *c == ALONE_CLIENTS) {
        let alone_rate = alone.run.rate.per_second;
        rows.push(
            Row::new(
                format!("command path alone: commands/s, {ALONE_CLIENTS} clients"),
                alone_rate,
                "/s",
            )
            .against(
                format!("raw 1-row INSERT tps, {ALONE_CLIENTS} conns"),
                Some(base.per_second),
            )
            .note(alone.errors_note()),
        );
        rows.push(
            Row::new(
                format!("command path alone: p99, {ALONE_CLIENTS} clients"),
                alone.run.rate.latency.p99_ms,
                "ms",
            )
            .against(
                format!("raw INSERT p99, {ALONE_CLIENTS} conns"),
                Some(base.latency.p99_ms),
            ),
        );
    }
    details.insert("service_commands_16_alone".into(), alone.detail);

    say("waiting for the projections and the publisher to catch up");
    let head = store.head().await?;
    wait_for_projections(store, head, nats.is_some(), Duration::from_secs(120)).await?;
    for (conns, base) in &raw_pk {
        say(&format!(
            "service eligibility queries, {conns} clients over {} admins",
            admins.len()
        ));
        let cpu = CpuMeter::start_by_process();
        let r = load::eligibility(&service, &admins, *conns, plan.warmup, plan.phase).await?;
        let mut d = r.to_json();
        let (used, us_per_op) = cpu.record(r.per_second, &mut d);
        say(&format!(
            "  {:.0} queries/s, p50 {:.2} ms, p99 {:.2} ms, errors {}{used}",
            r.per_second, r.latency.p50_ms, r.latency.p99_ms, r.errors
        ));
        if *conns == 16 {
            cpu_lookup.1 = us_per_op;
        }
        details.insert(format!("service_eligibility_{conns}"), d);
        rows.push(
            Row::new(
                format!("eligibility q/s, {conns} clients"),
                r.per_second,
                "/s",
            )
            .against(
                format!("raw PK lookups/s, {conns} conns"),
                Some(base.per_second),
            ),
        );
        rows.push(
            Row::new(
                format!("eligibility p50, {conns} clients"),
                r.latency.p50_ms,
                "ms",
            )
            .against(
                format!("raw PK p50, {conns} conns"),
                Some(base.latency.p50_ms),
            ),
        );
        rows.push(
            Row::new(
                format!("eligibility p99, {conns} clients"),
                r.latency.p99_ms,
                "ms",
            )
            .against(
                format!("raw PK p99, {conns} conns"),
                Some(base.latency.p99_ms),
            ),
        );
    }
    // The reset flow's read-your-writes: an admin's eligibility asked for right after a change,
    // at the change's position (answered from what the command left until the eligibility
    // projection has folded it: `app::folded`).
    for clients in [1, 16] {
        let Some((_, base)) = raw_pk.iter().find(|(c, _)| *c == clients) else {
            continue;
        };
        say(&format!(
            "service eligibility right after a command, at its position (min_position), {clients} clients"
        ));
        let r = load::read_your_writes(
            &service,
            clients,
            plan.admins_per_client,
            plan.warmup,
            plan.phase,
        )
        .await?;
        say(&format!(
            "  {:.0} queries/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
            r.per_second, r.latency.p50_ms, r.latency.p99_ms, r.errors
        ));
        let errors = match r.errors {
            0 => String::new(),
            n => format!("{n} errors"),
        };
        for (name, value, base) in [
            ("p50", r.latency.p50_ms, base.latency.p50_ms),
            ("p99", r.latency.p99_ms, base.latency.p99_ms),
        ] {
            rows.push(
                Row::new(
                    format!("eligibility after own command {name}, {clients} clients"),
                    value,
                    "ms",
                )
                .against(format!("raw PK {name}, {clients} conns"), Some(base))
                .note(errors.clone()),
            );
        }
        details.insert(format!("service_read_your_writes_{clients}"), r.to_json());
    }
    // What one operation costs the whole machine (service, PostgreSQL, NATS, load generator).
    for (measure, baseline, (raw_us, service_us)) in [
        (
            "machine CPU per command, 16 clients",
            "per raw INSERT, 16 conns",
            cpu_insert,
        ),
        (
            "command path alone: machine CPU per command",
            "per raw INSERT, 16 conns",
            (cpu_insert.0, alone.cpu_us_per_op),
        ),
        (
            "machine CPU per eligibility query, 16 clients",
            "per raw PK lookup, 16 conns",
            cpu_lookup,
        ),
    ] {
        if let Some(us) = service_us {
            rows.push(Row::new(measure, us, "µs").against(baseline, raw_us));
        }
    }
    // What sealing the values adds to a command's CPU, against the command path alone's.
    if let Some(alone_us) = alone.cpu_us_per_op {
        let added = sealing::added_us_per_command(20_000, 5);
        say(&format!(
            "  sealing: {added:.2} µs per command (a seal and {} opens, over plain)",
            sealing::OPENS_PER_COMMAND
        ));
        rows.push(
            Row::new("sealing values: CPU added per command", added, "µs").against(
                "command path alone: machine CPU per command",
                Some(alone_us),
            ),
        );
    }
    // What one write costs the WAL (PostgreSQL's flushes, and what a replica receives).
    for (measure, bytes) in [
        ("WAL per command, 16 clients", wal_insert.1),
        (
            "command path alone: WAL per command",
            Some(alone.wal_per_op),
        ),
    ] {
        if let Some(bytes) = bytes {
            rows.push(
                Row::new(measure, bytes, "B").against("per raw INSERT, 16 conns", wal_insert.0),
            );
        }
    }

    // The group commit's round trips per command (a command appends one event), against a raw
    // autocommit INSERT's one.
    for (measure, trips) in [
        (
            "append round trips per command, 16 clients",
            append_trips_16,
        ),
        (
            "command path alone: append round trips per command",
            alone.append_round_trips,
        ),
    ] {
        if let Some(trips) = trips {
            rows.push(
                Row::new(measure, trips, "count")
                    .against("raw 1-row INSERT, one round trip", Some(1.0)),
            );
        }
    }

    // Does the service publish?
    say("probing for the publisher (one command, waiting for its event on NATS)");
    let publishing = match publisher::probe(nats.as_ref(), &service, Duration::from_secs(2)).await?
    {
        publisher::Availability::Available => nats.as_ref(),
        publisher::Availability::NotAvailable(why) => {
            say(&format!("  not available: {why}"));
            details.insert("publisher".into(), json!({"not_available": why}));
            None
        }
    };
    let published_before = match publishing {
        Some(n) => Some(publisher::stream_messages(n).await?),
        None => None,
    };

    // The publisher is measured alone, as its raw baseline is: the projection runners are
    // held (their checkpoint rows locked) from before the seed until the publisher has
    // published it, and fold the seeded events afterwards.
    let held = seed::hold_projections(&db.url).await?;

    // Seed the log up to the rebuild size, by the publisher's backlog at least.
    let head = store.head().await?;
    let seeded = (plan.rebuild_events as u64)
        .saturating_sub(head)
        .max(plan.min_seeded as u64);
    let target = head + seeded;
    say(&format!(
        "seeding {seeded} events with binary COPY (log at {head}, target {target})"
    ));
    let t = Instant::now();
    seed::seed(&db.url, seeded as usize, usize::from(args.seed_tenants)).await?;
    let s = t.elapsed().as_secs_f64();
    say(&format!(
        "  seeded in {s:.1} s ({:.0} events/s)",
        seeded as f64 / s
    ));
    details.insert(
        "seed".into(),
        json!({"events": seeded, "seconds": s, "events_per_second": seeded as f64 / s}),
    );
    let committed_at = Instant::now();
    let publisher_cpu = CpuMeter::start_by_process();
    let head = store.head().await?;

    // Publisher throughput over the seeded backlog.
    let raw_js = raw_js.map(|r| r.per_second);
    let goal_row = |row: Row| row.against("raw pipelined JetStream publish", raw_js);
    let publish_rows = match (publishing, published_before) {
        (Some(n), Some(before)) => {
            say(&format!(
                "publisher: waiting for {seeded} events to reach JetStream"
            ));
            let (r, messages) = publisher::throughput(
                n,
                store,
                head,
                seeded,
                before,
                committed_at,
                plan.rebuild_timeout,
            )
            .await?;
            let messages_per_second = messages as f64 / r.seconds;
            let per_second = r.per_second;
            let mut detail = r.to_json();
            let (used, _) = publisher_cpu.record(per_second, &mut detail);
            say(&format!(
                "  {per_second:.0} events/s ({messages} messages with the eligibility changes, {messages_per_second:.0} messages/s){used}"
            ));
            detail["messages"] = json!(messages);
            detail["messages_per_second"] = json!(messages_per_second);
            let (stored, bytes) = publisher::stream_state(n).await?;
            let per_message = bytes as f64 / stored.max(1) as f64;
            say(&format!(
                "  the stream holds {stored} messages in {bytes} bytes ({per_message:.0} B per message)"
            ));
            detail["stream_bytes_per_message"] = json!(per_message);
            details.insert("publisher_throughput".into(), detail);
            // What JetStream takes of the relay's own message stream, sent raw.
            let (out, events) = publisher::relay_messages(store, plan.relay_sample).await?;
            say(&format!(
                "raw JetStream publish of the relay's messages for {events} events ({} messages, {} in flight)",
                out.len(),
                raw_nats::WINDOW
            ));
            let cpu = CpuMeter::start_by_process();
            let own =
                raw_nats::publish_messages_rate(n, &publisher::raw_prefix(), out, events).await?;
            let own_rate = own.per_second;
            let mut d = own.to_json();
            let (used, _) = cpu.record(own_rate, &mut d);
            say(&format!("  {own_rate:.0} events/s{used}"));
            details.insert("raw_jetstream_relay_messages".into(), d);
            vec![
                goal_row(Row::new(
                    "publisher events/s to JetStream",
                    per_second,
                    "/s",
                )),
                Row::new("publisher events/s, its messages raw", per_second, "/s").against(
                    "raw JetStream publish of the same messages, events/s",
                    Some(own_rate),
                ),
            ]
        }
        _ => vec![goal_row(Row::missing(
            "publisher events/s to JetStream",
            "/s",
            "publisher not built",
        ))],
    };

    // Raw COPY scan, then the rebuild over the same log, once the live runner has folded the
    // seeded events (it would compete with both for the cores).
    held.release().await?;
    say("waiting for the projections to fold the seeded events");
    let t = Instant::now();
    wait_for_projections(store, head, false, plan.rebuild_timeout).await?;
    let caught_up = t.elapsed().as_secs_f64();
    say(&format!(
        "  done in {caught_up:.1} s ({:.0} events/s by the live runners)",
        seeded as f64 / caught_up
    ));
    details.insert(
        "live_projection_catch_up".into(),
        json!({"events": seeded, "seconds": caught_up, "events_per_second": seeded as f64 / caught_up}),
    );
    say(&format!("raw binary COPY scan of {head} events"));
    let copy = raw_pg::copy_scan(&db.url).await?;
    details.insert("raw_copy_scan".into(), copy.to_json());
    say(&format!(
        "replaying the admin projection over {head} events"
    ));
    let rebuild = seed::rebuild(store, head, plan.rebuild_timeout).await?;
    say(&format!(
        "  {:.0} events/s ({} events in {:.2} s, swapped in at position {})",
        rebuild.rate.per_second, rebuild.rate.ops, rebuild.rate.seconds, rebuild.checkpoint
    ));
    details.insert(
        "rebuild".into(),
        json!({
            "events": head,
            "replay": rebuild.rate.to_json(),
            "checkpoint": rebuild.checkpoint,
        }),
    );
    let size = if args.quick {
        format!("{}k events (--quick)", head / 1000)
    } else {
        format!("{}k events", head / 1000)
    };
    rows.push(
        Row::new(
            format!("projection rebuild events/s, {size}"),
            rebuild.rate.per_second,
            "/s",
        )
        .against(
            format!("raw binary COPY rows/s, {size}"),
            Some(copy.per_second),
        ),
    );
    rows.extend(publish_rows);

    // Commit → subscriber latency at a fixed 1k events/s.
    let latency_row = match publishing {
        Some(n) => {
            say("commit → subscriber latency at 1000 commands/s");
            let (summary, missing) = publisher::commit_to_subscriber(
                n,
                &service,
                admins.as_ref().clone(),
                1000,
                plan.phase,
            )
            .await?;
            details.insert(
                "commit_to_subscriber".into(),
                json!({"latency": summary.to_json(), "missing": missing}),
            );
            // An event that never arrived has no latency to count: the goal fails.
            let complete = missing == 0 && summary.count > 0;
            let or_inf = |v: f64| if complete { v } else { f64::INFINITY };
            vec![
                Row::new(
                    "commit → subscriber p50 @1k/s",
                    or_inf(summary.p50_ms),
                    "ms",
                ),
                Row::new(
                    "commit → subscriber p99 @1k/s",
                    or_inf(summary.p99_ms),
                    "ms",
                )
                .note(if missing > 0 {
                    format!("{missing} events never arrived")
                } else {
                    String::new()
                }),
            ]
        }
        None => vec![
            Row::missing("commit → subscriber p50 @1k/s", "ms", "publisher not built"),
            Row::missing("commit → subscriber p99 @1k/s", "ms", "publisher not built"),
        ],
    };
    rows.extend(latency_row);

    // The checkpoints' cost, over a log of their own.
    let checkpoints = checkpoint_phase(args, plan, alone.cpu_us_per_op).await?;
    details.insert("checkpoints".into(), checkpoints.detail);
    rows.extend(checkpoints.rows);

    let find = |m: &str| rows.iter().find(|r| r.measure.starts_with(m));
    let goals = vec![
        Goal::ratio_at_least(
            "commands/s at 16 clients ≥ 0.5 × raw INSERT tps at 16",
            find("commands/s, 16 clients"),
            0.5,
        ),
        Goal::below(
            "command p99 at 16 clients < 10 ms",
            find("command p99, 16 clients"),
            10.0,
        ),
        Goal::ratio_at_least(
            "eligibility q/s at 16 clients ≥ 1.0 × raw PK lookups/s at 16",
            find("eligibility q/s, 16 clients"),
            1.0,
        ),
        Goal::ratio_at_least(
            "rebuild ≥ 0.5 × raw binary COPY rows/s",
            find("projection rebuild"),
            0.5,
        ),
        Goal::ratio_at_least(
            "publish ≥ 0.8 × raw pipelined JetStream publish",
            find("publisher events/s"),
            0.8,
        ),
        Goal::below(
            "commit → subscriber p99 < 50 ms",
            find("commit → subscriber p99"),
            50.0,
        ),
        // Issue 24: read-your-writes without waiting.
        Goal::at_most(
            "eligibility after own command p99 at 1 client ≤ 1 ms",
            find("eligibility after own command p99, 1 clients"),
            1.0,
        ),
        Goal::at_most(
            "eligibility after own command p99 at 16 clients ≤ 3 ms",
            find("eligibility after own command p99, 16 clients"),
            3.0,
        ),
    ];
    let mut goals = goals;
    goals.extend(tree_goals(&rows));
    Ok((rows, goals, serde_json::Value::Object(details)))
}

/// The checkpoint phase's goals (issue 27).
fn tree_goals(rows: &[Row]) -> Vec<Goal> {
    let find = |m: &str| rows.iter().find(|r| r.measure.starts_with(m));
    vec![
        Goal::ratio_at_most(
            "checkpointing ≤ 0.05 × a command's machine CPU (the command path alone's)",
            find("checkpointing"),
            0.05,
        ),
        Goal::below(
            "inclusion proof p99 < 10 ms",
            find("inclusion proof p99"),
            10.0,
        ),
        Goal::below(
            "consistency proof p99 < 10 ms",
            find("consistency proof p99"),
            10.0,
        ),
    ]
}

/// The checkpoint phase over its own database, against a command's CPU on the command path
/// alone (`alone`, when measured).
async fn checkpoint_phase(
    args: &Args,
    plan: &Plan,
    alone: Option<f64>,
) -> anyhow::Result<tree::TreeRun> {
    let nats = args.nats_url.clone();
    tree::measure(
        &args.pg_url,
        move |url| service_config(url, &nats, true),
        plan.tree_events,
        usize::from(args.seed_tenants),
        plan.proofs,
        alone.map(|us| ("command path alone: machine CPU per command", us)),
    )
    .await
}

/// `--tree-only`: the command path's phase and the checkpoint phase.
async fn measure_tree_only(args: &Args, plan: &Plan, db: &db::BenchDb) -> anyhow::Result<Measured> {
    let alone = commands_alone(args, plan, db).await?;
    let run = checkpoint_phase(args, plan, alone.cpu_us_per_op).await?;
    let mut rows = Vec::new();
    if let Some(us) = alone.cpu_us_per_op {
        rows.push(Row::new(
            "command path alone: machine CPU per command",
            us,
            "µs",
        ));
    }
    rows.extend(run.rows);
    let goals = tree_goals(&rows);
    Ok((rows, goals, json!({"checkpoints": run.detail})))
}

/// Waits until the projection and, with `publisher`, the publisher have reached `head`, so
/// that the next phase does not share the machine with their catching up.
async fn wait_for_projections(
    store: &Store,
    head: u64,
    publisher: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for p in Projection::ALL {
        wait_until(p.name(), head, deadline, || store.checkpoint(p)).await?;
    }
    if let (true, Store::Postgres(pg)) = (publisher, store) {
        let stream = publisher::stream_name();
        wait_until("publisher", head, deadline, || {
            pg.publisher_checkpoint(&stream)
        })
        .await?;
    }
    Ok(())
}

/// Polls `position` until it reaches `head`, or fails at `deadline`.
async fn wait_until<F>(
    what: &str,
    head: u64,
    deadline: Instant,
    mut position: impl FnMut() -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<u64, recovery_info::store::StoreError>>,
{
    while position().await? < head {
        if Instant::now() > deadline {
            anyhow::bail!("the {what} did not reach position {head} in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
