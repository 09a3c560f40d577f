//! `audit`: the auditor's tools ([`crate::audit`]): `audit verify` and `audit export`.

use super::args::{SecretArgs, SigningArgs, StoreArgs, one_of};
use super::identity::IdentityArgs;
use crate::audit::note::{Checkpoint, NoteSigner, NoteVerifier};
use crate::audit::{self, export::ExportFilter, export::Format, verify::Anchor};
use crate::config::MissingSecret;
use crate::domain::{AdminId, TenantId};
use crate::events::Actor;
use crate::http::auth::oidc::Oidc;
use crate::http::auth::{Authenticator, JwtKeys, Role};
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
    Verify(Box<VerifyArgs>),
    /// Write a tenant's (or an admin's) history as JSON Lines or CSV.
    Export(Box<ExportArgs>),
    /// Sign a checkpoint (tree head) of the log as it is now and print it.
    Checkpoint(Box<CheckpointArgs>),
    /// Print the verifier key of the key that signs checkpoints.
    PublicKey(Box<PublicKeyArgs>),
    /// Make a new key for signing checkpoints: the key goes to a file (its owner only may read
    /// it), its verifier key to stdout.
    Keygen(KeygenArgs),
}

/// `audit checkpoint` options.
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Write the signed checkpoint to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `audit public-key` options.
#[derive(Args, Debug)]
pub struct PublicKeyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
}

/// `audit keygen` options.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The log's name (the checkpoints' origin line), e.g. `recovery.example.com/log`.
    #[arg(long)]
    pub name: String,
    /// The key file to create (refused if it exists).
    #[arg(long)]
    pub output: PathBuf,
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
    /// A signed checkpoint saved earlier (`audit checkpoint`, GET /v1/audit/checkpoints/latest,
    /// or from NATS): also check that the log's first events are the ones it signed, and name
    /// the first position that differs.
    #[arg(long, requires = "public_key")]
    pub checkpoint: Option<PathBuf>,
    /// The verifier key you trust for the checkpoint (`<name>+<hash>+<base64>`, as
    /// `audit public-key` and GET /v1/audit/public-key print it).
    #[arg(long, env = "RECOVERY_AUDIT_PUBLIC_KEY")]
    pub public_key: Option<NoteVerifier>,
}

/// `audit export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tenant id (UUID).
    #[arg(long = "tenant")]
    pub tenant_id: Uuid,
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
    /// Show raw phone numbers and emails (masked by default); needs `--token`.
    #[arg(long, requires = "token")]
    pub reveal: bool,
    /// An auditor's bearer token of the tenant, for `--reveal`: the read is recorded with its
    /// subject as the actor. Checked like the service checks tokens (RECOVERY_JWT_SECRET or the
    /// embedded store's secret, and the --oidc-* issuers).
    #[arg(long, env = "RECOVERY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// The auditor a revealing export reads for: the token checked, of the tenant, with the
/// auditor role.
async fn revealing_auditor(args: &ExportArgs) -> anyhow::Result<Actor> {
    let token = args
        .token
        .as_deref()
        .context("--reveal needs an auditor's token (--token)")?;
    let store = args.store.store_config();
    let hs256 = args
        .secret
        .resolve(&store, MissingSecret::Refuse)
        .ok()
        .map(|secret| JwtKeys::new(&secret));
    let oidc = match args.identity.oidc()? {
        Some(config) => Some(Oidc::start(config).await?),
        None => None,
    };
    anyhow::ensure!(
        hs256.is_some() || oidc.is_some(),
        "cannot check the --token: give RECOVERY_JWT_SECRET or an --oidc-issuer"
    );
    let auth = Authenticator::new(hs256, oidc, args.identity.step_up());
    let caller = auth
        .caller(token.trim())
        .await
        .map_err(|why| anyhow::anyhow!("the --token is not accepted: {why}"))?;
    anyhow::ensure!(
        caller.tenant == TenantId::from_uuid(args.tenant_id),
        "the --token is of another tenant"
    );
    anyhow::ensure!(
        caller.roles.contains(&Role::Auditor),
        "--reveal needs a token with the auditor role"
    );
    Ok(caller.actor())
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
            // The checkpoint is read and its signature checked before the log is.
            let checkpoint = match (&args.checkpoint, &args.public_key) {
                (Some(path), Some(key)) => {
                    let note = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Some(Checkpoint::open(&note, key).with_context(|| {
                        format!("the checkpoint {} is not authentic", path.display())
                    })?)
                }
                _ => None,
            };
            let store = Store::open(&args.store.store_config()).await?;
            store.schema_is_current().await?;
            let summary =
                audit::verify::verify(&store, args.expect_anchor, checkpoint.as_ref()).await?;
            println!(
                "intact: {} events in {} streams, head {}",
                summary.events, summary.streams, summary.head
            );
            if let Some(a) = summary.checked_anchor {
                println!("matches anchor: {a}");
            }
            if let (Some(size), Some(c)) = (summary.checked_checkpoint, &checkpoint) {
                println!(
                    "matches checkpoint: {} size {size} root {}",
                    c.origin,
                    hex::encode(c.root)
                );
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
                tenant: TenantId::from_uuid(args.tenant_id),
                admin: args.admin.map(AdminId::from_uuid),
                since: args.since,
                until: args.until,
                reveal: match args.reveal {
                    true => Some(revealing_auditor(&args).await?),
                    false => None,
                },
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
        AuditCommand::Checkpoint(args) => {
            let config = args.store.store_config();
            let store = Store::open(&config).await?;
            store.schema_is_current().await?;
            let (signer, _) = args.signing.signer(&store, &config).await?;
            let head = audit::tree::sign_checkpoint(&store, &signer).await?;
            match &args.output {
                Some(path) => std::fs::write(path, &head.note)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{}", head.note),
            }
            Ok(())
        }
        AuditCommand::PublicKey(args) => {
            let config = args.store.store_config();
            let store = Store::open(&config).await?;
            store.schema_is_current().await?;
            let (signer, _) = args.signing.signer(&store, &config).await?;
            println!("{}", signer.verifier());
            Ok(())
        }
        AuditCommand::Keygen(args) => {
            let signer = NoteSigner::generate(&args.name)?;
            crate::config::write_secret_file(&args.output, &signer.to_private_text())
                .with_context(|| format!("cannot create {}", args.output.display()))?;
            println!("{}", signer.verifier());
            Ok(())
        }
    }
}
