//! `audit`: the auditor's tools ([`crate::audit`]): `audit verify` and `audit export`.

use super::args::{StoreArgs, one_of};
use crate::audit::{self, export::ExportFilter, export::Format, verify::Anchor};
use crate::domain::{AdminId, TenantId};
use crate::store::AuditReads;
use crate::store::Maintenance;
use crate::store::Store;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use uuid::Uuid;

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
    #[arg(long, value_parser = formats())]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Show raw phone numbers and emails (masked by default).
    #[arg(long)]
    pub reveal: bool,
}

/// `--format`: `jsonl` or `csv`.
fn formats() -> impl TypedValueParser<Value = Format> {
    const FORMATS: &[(Format, Option<&str>)] = &[
        (
            Format::Jsonl,
            Some("One history entry (the HTTP API's JSON) per line"),
        ),
        (
            Format::Csv,
            Some("One row per event, RFC 4180 quoting, `data` as JSON text"),
        ),
    ];
    one_of(FORMATS, |format| match format {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
    })
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
            let summary = audit::verify::verify(&store, args.expect_anchor).await?;
            println!(
                "intact: {} events in {} streams, head {}",
                summary.events, summary.streams, summary.head
            );
            if let Some(a) = summary.checked_anchor {
                println!("matches anchor: {a}");
            }
            println!("anchor: {}", summary.anchor);
            for r in store.reanchors().await? {
                println!("{r}");
            }
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
            audit::export::export(&store, &filter, args.format, &mut out).await?;
            Ok(())
        }
    }
}
