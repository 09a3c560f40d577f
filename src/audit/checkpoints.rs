//! The service's own checkpoints: in `serve`, the Merkle tree is built as the log grows and a
//! tree head is signed every N events or M minutes, recorded in the store, served at
//! `/v1/audit/checkpoints` for witnesses to poll, and published on NATS when it is configured
//! (JetStream stream `<stream>_CHECKPOINTS`, subject `<prefix>.audit.checkpoints`, message id
//! `checkpoint-<size>`, so a replica that publishes again is de-duplicated).

use super::note::NoteSigner;
use super::tree::{self, TreeError};
use crate::store::{EventLog, Store, TreeStorage};
use std::time::Duration;
use tokio::task::JoinHandle;

/// With what key, and when, the service signs checkpoints by itself.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Whether this replica builds the tree and signs (where it runs the projections).
    pub enabled: bool,
    /// The signing key's file; none: the embedded store's data directory's, or the
    /// database's (see `tree::signer`).
    pub key_file: Option<std::path::PathBuf>,
    /// The log's name (the origin line) for a key generated here.
    pub log_name: String,
    /// After this many events since the last checkpoint (0: not by count).
    pub every_events: u64,
    /// After this long since the last checkpoint, when there are new events (zero: not by
    /// time).
    pub every: Duration,
    /// How often the tree is brought up to the head and the rules looked at.
    pub tick: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            enabled: true,
            key_file: None,
            log_name: DEFAULT_LOG_NAME.to_owned(),
            every_events: 10_000,
            every: Duration::from_secs(300),
            tick: Duration::from_secs(1),
        }
    }
}

/// The log's name when none is given.
pub const DEFAULT_LOG_NAME: &str = "recovery-info";

/// Where checkpoints are published on NATS.
#[derive(Clone, Debug)]
pub struct CheckpointPublisher {
    pub client: async_nats::Client,
    /// The JetStream stream that keeps them.
    pub stream: String,
    pub subject: String,
}

/// Whether a checkpoint is due: new events, and enough of them or enough time.
fn due(
    config: &CheckpointConfig,
    head: u64,
    last: Option<(u64, chrono::DateTime<chrono::Utc>)>,
) -> bool {
    let (size, at) = match last {
        None => return head > 0,
        Some(last) => last,
    };
    if head <= size {
        return false;
    }
    let by_count = config.every_events > 0 && head - size >= config.every_events;
    let by_time = !config.every.is_zero()
        && (chrono::Utc::now() - at).to_std().unwrap_or_default() >= config.every;
    by_count || by_time
}

/// Runs until aborted: builds the tree, signs what is due, publishes what is not yet.
pub fn spawn(
    store: Store,
    signer: NoteSigner,
    config: CheckpointConfig,
    publisher: Option<CheckpointPublisher>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        let mut stream_ready = false;
        loop {
            match round(&store, &signer, &config).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("checkpoints: signing resumed");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    match &e {
                        TreeError::Diverged { .. } => {
                            tracing::error!(error = %e, "checkpoints stopped")
                        }
                        _ => tracing::warn!(error = %e, "checkpoints: a round failed; retrying"),
                    }
                }
                Err(e) => tracing::debug!(error = %e, "checkpoints: a round failed again"),
            }
            if let Some(p) = &publisher
                && let Err(e) = publish(&store, p, &mut stream_ready).await
            {
                tracing::debug!(error = %e, "checkpoints: publishing failed; retrying");
            }
            tokio::time::sleep(config.tick).await;
        }
    })
}

async fn round(
    store: &Store,
    signer: &NoteSigner,
    config: &CheckpointConfig,
) -> Result<(), TreeError> {
    let head = store.head().await?;
    tree::catch_up(store, head).await?;
    let last = store
        .latest_tree_head()
        .await?
        .map(|h| (h.size, h.signed_at));
    if due(config, head, last) {
        tree::sign_checkpoint(store, signer).await?;
    }
    Ok(())
}

/// Publishes the recorded heads that are not yet, oldest first, each acknowledged by JetStream
/// before it is marked.
async fn publish(
    store: &Store,
    p: &CheckpointPublisher,
    stream_ready: &mut bool,
) -> anyhow::Result<()> {
    let heads = store.unpublished_tree_heads(100).await?;
    if heads.is_empty() {
        return Ok(());
    }
    let js = async_nats::jetstream::new(p.client.clone());
    if !*stream_ready {
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: p.stream.clone(),
            subjects: vec![p.subject.clone()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        *stream_ready = true;
    }
    for head in heads {
        let message = async_nats::jetstream::message::PublishMessage::build()
            .payload(head.note.clone().into())
            .message_id(format!("checkpoint-{}", head.size))
            .header("Recovery-Tree-Size", head.size.to_string().as_str());
        let ack = js.send_publish(p.subject.clone(), message).await?;
        tokio::time::timeout(Duration::from_secs(5), ack).await??;
        store.mark_tree_head_published(head.size).await?;
        metrics::counter!("recovery_checkpoints_published_total").increment(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_after_enough_events_or_enough_time_with_new_events() {
        let config = CheckpointConfig {
            every_events: 100,
            every: Duration::from_secs(60),
            ..Default::default()
        };
        let now = chrono::Utc::now();
        let long_ago = now - chrono::Duration::seconds(61);
        assert!(!due(&config, 0, None), "an empty log");
        assert!(due(&config, 1, None), "the first");
        assert!(!due(&config, 50, Some((50, long_ago))), "nothing new");
        assert!(!due(&config, 99, Some((0, now))), "too few, too soon");
        assert!(due(&config, 100, Some((0, now))), "enough events");
        assert!(due(&config, 51, Some((50, long_ago))), "enough time");
        let by_count_only = CheckpointConfig {
            every: Duration::ZERO,
            ..config
        };
        assert!(!due(&by_count_only, 51, Some((50, long_ago))));
    }
}
