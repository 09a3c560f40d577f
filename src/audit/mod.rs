//! The auditor's tools on the command line: `audit verify` (tamper evidence: the hash chains and
//! the dense global order, recomputed from the stored rows) and `audit export` (a tenant's or an
//! admin's history as JSON Lines or CSV). See `docs/audit.md`.

pub mod export;
pub mod verify;

use crate::config::StoreArgs;
use crate::domain::{AdminId, TenantId};
use crate::store::Maintenance;
use crate::store::Store;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use export::{ExportFilter, Format};
use std::io::Write;
use std::path::PathBuf;
use uuid::Uuid;
use verify::Anchor;

/// The process exit status of `audit verify` when the log was tampered with (1 means it could
/// not be verified at all, e.g. the database is unreachable).
pub const EXIT_TAMPERED: u8 = 3;

/// `audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every stream's hash chain and the global order; name the first broken link.
    Verify(VerifyArgs),
    /// Write a tenant's (or an admin's) history as JSON Lines or CSV.
    Export(ExportArgs),
}

/// `audit verify` options.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// An anchor printed by an earlier run (`<position>:<digest>`): also check that the log up
    /// to that position is the one anchored then.
    #[arg(long)]
    pub expect_anchor: Option<Anchor>,
}

/// `audit export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tenant id (UUID).
    #[arg(long)]
    pub tenant: Uuid,
    /// Only this admin's history (UUID).
    #[arg(long)]
    pub admin: Option<Uuid>,
    /// Only events that occurred at or after this instant (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only events that occurred before this instant (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Output format.
    #[arg(long)]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Show raw phone numbers and emails (masked by default).
    #[arg(long)]
    pub reveal: bool,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 instant: {e}"))
}

/// Runs an `audit` subcommand: data on stdout, progress on stderr.
pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => {
            let store = Store::open(&args.store.store_config()).await?;
            store.schema_is_current().await?;
            let summary = verify::verify(&store, args.expect_anchor).await?;
            println!(
                "intact: {} events in {} streams, head {}",
                summary.events, summary.streams, summary.head
            );
            if let Some(a) = summary.checked_anchor {
                println!("matches anchor: {a}");
            }
            println!("anchor: {}", summary.anchor);
            Ok(())
        }
        AuditCommand::Export(args) => {
            let store = Store::open(&args.store.store_config()).await?;
            store.schema_is_current().await?;
            let filter = ExportFilter {
                tenant: TenantId::from_uuid(args.tenant),
                admin: args.admin.map(AdminId::from_uuid),
                since: args.since,
                until: args.until,
                reveal: args.reveal,
            };
            let mut out: Box<dyn Write + Send> = match &args.output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            export::export(&store, &filter, args.format, &mut out).await?;
            Ok(())
        }
    }
}
