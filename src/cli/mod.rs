//! The command line: every flag, environment fallback and subcommand (clap), parsed into the
//! library's typed settings and options, and the dispatch to the library. One file per
//! subcommand; what several share (the store, the secret, the parsers) is in [`args`].

pub mod args;
pub mod audit;
pub mod identity;
pub mod keys;
pub mod migrate;
pub mod notifications;
pub mod replay;
pub mod serve;
pub mod token;
pub mod watch;

use crate::audit::verify::VerifyError;
use crate::config::LogFormat;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

/// recovery-info: the system of record for administrators' security info.
#[derive(Parser, Debug)]
#[command(name = "recovery-info", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "RECOVERY_LOG_FORMAT",
        default_value = "text",
        value_parser = args::log_format()
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API and the projections (applies migrations first).
    Serve(Box<serve::ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(args::StoreArgs),
    /// Mint a bearer token for operators and tests.
    Token(token::TokenArgs),
    /// Print a tenant's live events and eligibility changes from NATS, one line each.
    Watch(watch::WatchArgs),
    /// Auditor's tools: verify the hash chains, export the history.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Rebuild projections from position 0 into fresh tables and swap them in, live.
    Replay(replay::ReplayArgs),
    /// The key-encryption keys and the data keys they wrap.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The notices to the old contact: list them, send dead letters again.
    #[command(subcommand)]
    Notifications(notifications::NotificationsCommand),
}

/// Runs the binary: parses `args` (the program's name first; a usage error is one line and
/// exit status 2; `--help` and `--version` print and exit 0),
/// runs the command on a worker of the runtime and turns its outcome into the exit status: 0,
/// [`audit::EXIT_TAMPERED`] for a log that was tampered with, 1 for any other error, which is
/// printed on one line.
pub async fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // A usage error is one line like every other error (clap's own spans several).
            eprintln!("recovery-info: error: {}", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init_logs(cli.log_format);
    // On a worker, not on this thread: see `task::on_worker`.
    let outcome = crate::task::on_worker(dispatch(cli.command))
        .await
        .unwrap_or_else(|cancelled| Err(cancelled.into()));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recovery-info: error: {}", one_line(&e));
            match e.downcast_ref::<VerifyError>() {
                Some(
                    VerifyError::Broken(_)
                    | VerifyError::AnchorMismatch(_)
                    | VerifyError::CheckpointMismatch(_),
                ) => ExitCode::from(audit::EXIT_TAMPERED),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// A usage error of clap's on one line: its lines joined, the `error: ` prefix and the help
/// hint shortened.
fn usage_line(e: &clap::Error) -> String {
    e.render()
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l {
            "For more information, try '--help'." => "see --help",
            l => l.strip_prefix("error: ").unwrap_or(l),
        })
        .collect::<Vec<_>>()
        .join("; ")
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

async fn dispatch(command: Command) -> anyhow::Result<()> {
    // The commands that parse or mask numbers load the numbering plans' metadata beside their
    // start-up rather than on their first number; the others do not pay its memory.
    if matches!(command, Command::Serve(_) | Command::Replay(_)) {
        std::thread::spawn(crate::domain::load_phone_metadata);
    }
    match command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Token(args) => token::run(args).await,
        Command::Audit(command) => audit::run(command).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Notifications(command) => notifications::run(command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::args::parse_metrics_listen;
    use super::*;

    #[test]
    fn the_metrics_listener_is_on_loopback_unless_moved_or_off() {
        let serve = |args: &[&str]| match Cli::try_parse_from(
            ["recovery-info", "serve"].iter().chain(args),
        ) {
            Ok(Cli {
                command: Command::Serve(serve),
                ..
            }) => serve,
            other => panic!("{args:?}: {other:?}"),
        };
        // Unless the environment of the test run says otherwise.
        if std::env::var_os("RECOVERY_METRICS_LISTEN").is_none() {
            let default = serve(&[]).metrics_listen.0.unwrap();
            assert!(default.ip().is_loopback() && default.port() == 9464);
        }
        let moved = serve(&["--metrics-listen", "10.0.0.5:9100"]).metrics_listen;
        assert_eq!(moved.0, Some("10.0.0.5:9100".parse().unwrap()));
        assert_eq!(serve(&["--metrics-listen", "off"]).metrics_listen.0, None);
        assert!(parse_metrics_listen("on").is_err() && parse_metrics_listen("9464").is_err());
    }

    #[test]
    fn the_metrics_token_never_reaches_the_logs() {
        let token = "metrics-token-metrics-token-0123456789";
        let Ok(Cli {
            command: Command::Serve(serve),
            ..
        }) = Cli::try_parse_from(["recovery-info", "serve", "--metrics-token", token])
        else {
            panic!("serve --metrics-token does not parse");
        };
        assert!(serve.metrics_token().unwrap().is_some());
        assert!(!format!("{serve:?}").contains(token));
    }
}
