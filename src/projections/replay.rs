//! `replay`: rebuilds projections from position 0 into fresh (shadow) tables while the service
//! keeps serving, then swaps them in atomically. Readers never see an empty or half-built
//! projection, and a projection's checkpoint never goes backwards, so the runner's progress
//! watch and `min_position` reads stay correct. The SQL is in `store::replay`; the command
//! line's `replay` in `cli::replay`.

use crate::progress::Progress;
use crate::store::projections::Projection;
use crate::store::{EventLog, ProjectionStorage};
use crate::store::{Store, StoreError};

/// Events folded per shadow batch.
pub const DEFAULT_BATCH: u32 = 1000;

/// What a replay did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Replayed {
    /// Events folded into the new tables.
    pub events: u64,
    /// The checkpoint the new tables were swapped in at.
    pub checkpoint: u64,
    /// Events per second.
    pub rate: f64,
}

/// Rebuilds `projections` beside the live tables and swaps them in once caught up: on
/// PostgreSQL, one bulk pass over the log up to the head, then batches of `batch_size` for what
/// was appended meanwhile; on the embedded store, batches from the start. Progress on stderr.
pub async fn replay(
    store: &Store,
    projections: &[Projection],
    batch_size: u32,
) -> Result<Replayed, StoreError> {
    let batch_size = batch_size.max(1);
    let head = store.head().await?;
    let mut progress = Progress::new("replay", "events", Some(head));
    store.replay_prepare(projections.to_vec()).await?;
    let mut after = 0;
    if let Some(bulk) = store
        .replay_bulk(projections.to_vec(), |n| progress.add(n))
        .await?
    {
        after = bulk.checkpoint;
    }
    // Less than a batch left: the swap folds the rest under the lock.
    while store.head().await?.saturating_sub(after) >= u64::from(batch_size) {
        let batch = store
            .replay_batch(projections.to_vec(), after, batch_size)
            .await?;
        after = batch.checkpoint;
        progress.add(batch.applied as u64);
        // Only a gap in the log (events deleted by hand) gives a short batch here.
        if batch.applied < batch_size as usize {
            break;
        }
    }
    tracing::info!(position = after, "replay: caught up, swapping in");
    let swap = store.replay_swap(projections.to_vec(), after).await?;
    progress.add(swap.applied as u64);
    progress.finish();
    tracing::info!(
        position = swap.checkpoint,
        applied_under_lock = swap.applied,
        "replay: swapped in"
    );
    Ok(Replayed {
        events: progress.done(),
        checkpoint: swap.checkpoint,
        rate: progress.rate(),
    })
}
