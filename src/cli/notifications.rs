//! `notifications list` and `notifications retry`: the outbox of notices to the old contact
//! (docs/notifications.md), and the dead letters sent again.

use super::args::StoreArgs;
use crate::store::notifications::Status;
use crate::store::{Maintenance, NotificationStorage, Store};
use clap::{Args, Subcommand};
use uuid::Uuid;

/// `notifications` subcommands.
#[derive(Subcommand, Debug)]
pub enum NotificationsCommand {
    /// The notices, newest first: id, status, channel, kind, tries, when, the last error.
    List(ListArgs),
    /// Sends failed notices (dead letters) again, with their tries reset.
    Retry(RetryArgs),
}

/// `notifications list` options.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only the dead letters.
    #[arg(long, conflicts_with = "status")]
    pub failed: bool,
    /// Only notices of this status: pending, sent, failed or skipped.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<Status>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `notifications retry` options.
#[derive(Args, Debug)]
pub struct RetryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The failed notices to send again (ids from `list --failed`).
    #[arg(required_unless_present = "all_failed")]
    pub ids: Vec<Uuid>,
    /// Every failed notice.
    #[arg(long, conflicts_with = "ids")]
    pub all_failed: bool,
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| format!("{s:?} is not pending, sent, failed or skipped"))
}

/// Runs `notifications …`.
pub async fn run(command: NotificationsCommand) -> anyhow::Result<()> {
    match command {
        NotificationsCommand::List(args) => {
            let store = Store::open(&args.store.store_config()).await?;
            store.schema_is_current().await?;
            let status = if args.failed {
                Some(Status::Failed)
            } else {
                args.status
            };
            for n in store.notifications(status, args.limit).await? {
                println!(
                    "{} {} {} {} tries={} created={} position={}{}",
                    n.id,
                    n.status.name(),
                    n.channel.name(),
                    n.kind.name(),
                    n.attempts,
                    n.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    n.position,
                    n.last_error
                        .as_deref()
                        .map(|e| format!(" error={e:?}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        NotificationsCommand::Retry(args) => {
            let store = Store::open(&args.store.store_config()).await?;
            store.schema_is_current().await?;
            let n = store.retry_notifications(args.ids).await?;
            println!("notifications to send again: {n}");
            Ok(())
        }
    }
}
