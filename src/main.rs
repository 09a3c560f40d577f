//! The `recovery-info` binary: parses the command line and hands over to the library.

use clap::Parser;
use recovery_info::audit::verify::VerifyError;
use recovery_info::config::{Cli, Command, MissingSecret, SECRET_FILE};
use recovery_info::http::auth::JwtKeys;
use recovery_info::projections::runner::RunnerConfig;
use recovery_info::publish::PublisherConfig;
use recovery_info::publish::watch::{self, WatchOptions};
use recovery_info::server::{self, ServerConfig};
use recovery_info::store::Maintenance;
use recovery_info::store::{Store, StoreConfig};
use recovery_info::telemetry;
use std::process::ExitCode;
use std::time::Duration;

/// mimalloc instead of the system allocator: the service allocates per request, per event and
/// per row, and glibc's malloc took a tenth of the process's time in the profiles
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logs(cli.log_format);
    // On a worker, not on this thread: see `task::on_worker`.
    let outcome = recovery_info::task::on_worker(run(cli.command))
        .await
        .unwrap_or_else(|cancelled| Err(cancelled.into()));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recovery-info: error: {}", one_line(&e));
            match e.downcast_ref::<VerifyError>() {
                Some(VerifyError::Broken(_) | VerifyError::AnchorMismatch(_)) => {
                    ExitCode::from(recovery_info::audit::EXIT_TAMPERED)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// An error and its causes on one line; a cause whose text the line already holds (wrapping
/// errors often repeat their source's) is left out.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

async fn run(command: Command) -> anyhow::Result<()> {
    // The commands that parse or mask numbers load the numbering plans' metadata beside their
    // start-up rather than on their first number; the others do not pay its memory.
    if matches!(command, Command::Serve(_) | Command::Replay(_)) {
        std::thread::spawn(recovery_info::domain::load_phone_metadata);
    }
    match command {
        Command::Serve(args) => {
            tracing::debug!(config = ?args, "configuration");
            let store = args.store.store_config();
            let publisher = args.nats_url.as_ref().map(|url| PublisherConfig {
                stream_name: args.publish.nats_stream.clone(),
                subject_prefix: args.publish.nats_subject_prefix.clone(),
                duplicate_window: args.publish.nats_duplicate_window,
                replicas: usize::from(args.publish.nats_replicas),
                ca_file: args.nats_ca.clone(),
                reveal_values: args.publish.publish_raw_values,
                lease: args.publish.publisher_lease,
                ..PublisherConfig::new(url)
            });
            // Before the secret, whose generation creates the data directory: a configuration
            // that cannot work leaves nothing behind (`server::start` checks it too, for the
            // library's callers).
            recovery_info::publish::check_store(publisher.as_ref(), &store)?;
            let config = ServerConfig {
                jwt_secret: args.secret.resolve(&store, MissingSecret::Generate)?,
                store: store.clone(),
                listen: args.listen,
                metrics_listen: args.metrics_listen.0,
                metrics_token: args.metrics_token()?,
                freshness_timeout: Duration::from_millis(args.freshness_timeout_ms),
                plain_positions: args.plain_positions,
                settings_limits: recovery_info::domain::SettingsLimits {
                    max_domains: args.max_tenant_domains as usize,
                },
                runner: RunnerConfig::default(),
                run_projections: !args.no_projections,
                publisher,
            };
            let server = server::start(config).await?;
            print_banner(
                server.addr,
                server.metrics_addr,
                &store,
                args.secret.jwt_secret.is_some(),
            );
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.stop().await
        }
        Command::Migrate(args) => {
            let store = Store::open(&args.store_config()).await?;
            let applied = store.migrate().await?;
            println!("migrations applied: {applied}");
            Ok(())
        }
        Command::Watch(args) => Ok(watch::run(WatchOptions {
            nats_url: args.nats_url,
            ca_file: args.nats_ca,
            subject_prefix: args.subject_prefix,
            tenant: args.tenant,
            admin: args.admin,
            count: args.count,
        })
        .await?),
        Command::Token(args) => {
            let store = args.store.store_config();
            let keys = JwtKeys::new(&args.secret.resolve(&store, MissingSecret::Refuse)?);
            let token = keys.mint(
                args.tenant,
                &args.subject,
                &args.roles,
                args.ttl.as_secs() as i64,
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Audit(command) => recovery_info::audit::run(command).await,
        Command::Replay(args) => recovery_info::projections::replay::run(args).await,
    }
}

/// What a first-time user needs to go on: where it listens, where the data is, how to get in:
/// a token command that works as typed, from any directory (the binary's real path and the
/// data directory's absolute one), and the `cargo run` form when it runs from a cargo build.
fn print_banner(
    addr: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
    store: &StoreConfig,
    explicit_secret: bool,
) {
    println!("recovery-info listening on http://{addr}");
    println!(
        "  metrics: {}",
        metrics.map_or("off".into(), |m| format!("http://{m}/metrics"))
    );
    println!("  store: {}", store.describe());
    let (secret, store_flag) = match (store, explicit_secret) {
        (StoreConfig::Embedded { data_dir }, false) => (
            format!(
                "signed with the secret kept in {};",
                data_dir.join(SECRET_FILE).display()
            ),
            format!(
                " --data-dir {}",
                shell_word(&data_dir.display().to_string())
            ),
        ),
        _ => (
            "signed with RECOVERY_JWT_SECRET; with the same secret in the environment,".to_owned(),
            String::new(),
        ),
    };
    let mint = format!(
        "token --tenant <tenant-uuid> --subject <admin-uuid> --role self_service{store_flag}"
    );
    let exe = std::env::current_exe().ok();
    let program = exe.as_deref().map_or("recovery-info".to_owned(), |p| {
        shell_word(&p.display().to_string())
    });
    println!("  tokens: {secret} mint one with");
    println!("    {program} {mint}");
    if let Some((project, profile)) = exe.as_deref().and_then(cargo_build) {
        println!(
            "    or, in {}: cargo run -q{profile} -- {mint}",
            project.display()
        );
    }
    println!("  (roles: self_service, authentication_admin, reset_service, auditor, dashboard)");
}

/// The project and the `cargo run` profile flag of a binary that cargo built into the
/// project's `target/<profile>/`.
fn cargo_build(exe: &std::path::Path) -> Option<(&std::path::Path, String)> {
    let profile_dir = exe.parent()?;
    let target = profile_dir.parent()?;
    let project = target.parent()?;
    if target.file_name()? != "target" || !project.join("Cargo.toml").is_file() {
        return None;
    }
    let flag = match profile_dir.file_name()?.to_str()? {
        "debug" => String::new(),
        "release" => " --release".to_owned(),
        other => format!(" --profile {other}"),
    };
    Some((project, flag))
}

/// `word` as a shell reads it back: as it is when a shell leaves all its characters alone,
/// single-quoted otherwise.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@,=%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
