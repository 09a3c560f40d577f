//! `watch`: prints a tenant's live events and eligibility changes from NATS
//! ([`crate::publish::watch`]).

use crate::publish::watch::{self, WatchOptions};
use clap::Args;
use std::path::PathBuf;
use uuid::Uuid;

/// `watch` options.
#[derive(Args, Clone, Debug)]
pub struct WatchArgs {
    /// NATS server; a cluster's servers separated by commas.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// PEM file of the CA that signed the NATS servers' certificates (beside the system's).
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Tenant id (UUID).
    #[arg(long)]
    pub tenant: Uuid,
    /// Only this admin (UUID); tenant-level events are then left out.
    #[arg(long)]
    pub admin: Option<Uuid>,
    /// First tokens of the subjects.
    #[arg(
        long,
        env = "RECOVERY_NATS_SUBJECT_PREFIX",
        default_value = "recovery.v1"
    )]
    pub subject_prefix: String,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<usize>,
}

/// Runs `watch` until `--count` messages (or forever).
pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    Ok(watch::run(WatchOptions {
        nats_url: args.nats_url,
        ca_file: args.nats_ca,
        subject_prefix: args.subject_prefix,
        tenant: args.tenant,
        admin: args.admin,
        count: args.count,
    })
    .await?)
}
