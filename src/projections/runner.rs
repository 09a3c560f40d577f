//! The projection runner: one task per projection folds the log in batches, woken by local
//! appends and polling as a fallback (for appends made by other replicas).

use super::verdicts::{self, VerdictCache};
use crate::store::ProjectionStorage;
use crate::store::projections::{Projected, Projection};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Settings of the runner.
#[derive(Clone, Copy, Debug)]
pub struct RunnerConfig {
    /// Events folded per transaction.
    pub batch_size: u32,
    /// How often an idle runner looks for events appended elsewhere.
    pub poll_interval: Duration,
    /// How many eligibility verdicts are answered from memory at most.
    pub verdict_capacity: usize,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_size: 2000,
            poll_interval: Duration::from_millis(100),
            verdict_capacity: verdicts::DEFAULT_CAPACITY,
        }
    }
}

/// Handles to the running projections: wake them, wait until they reach a position, and the
/// verdicts the admin projection's runner keeps in memory.
#[derive(Clone)]
pub struct Projections {
    store: Store,
    wake: Arc<HashMap<Projection, Arc<Notify>>>,
    progress: Arc<HashMap<Projection, watch::Receiver<u64>>>,
    /// `None` in a process that does not run the projections.
    verdicts: Option<Arc<VerdictCache>>,
}

impl Projections {
    /// Starts one task per projection. The tasks stop when the returned handles are aborted.
    pub fn spawn(store: Store, config: RunnerConfig) -> (Self, Vec<JoinHandle<()>>) {
        let mut wake = HashMap::new();
        let mut progress = HashMap::new();
        let mut tasks = Vec::new();
        let verdicts = Arc::new(VerdictCache::new(config.verdict_capacity));
        for projection in Projection::ALL {
            let (tx, rx) = watch::channel(0);
            progress.insert(projection, rx);
            let notify = Arc::new(Notify::new());
            wake.insert(projection, notify.clone());
            let cache = (projection == Projection::Admins).then(|| verdicts.clone());
            tasks.push(tokio::spawn(run(
                store.clone(),
                projection,
                config,
                notify,
                tx,
                cache,
            )));
        }
        let handles = Projections {
            store,
            wake: Arc::new(wake),
            progress: Arc::new(progress),
            verdicts: Some(verdicts),
        };
        (handles, tasks)
    }

    /// Handles for a process that does not run the projections itself: waiting for a
    /// position then watches the checkpoints in the database only.
    pub fn external(store: Store) -> Self {
        let progress = Projection::ALL
            .into_iter()
            .map(|p| (p, watch::channel(0).1))
            .collect();
        Projections {
            store,
            wake: Arc::new(HashMap::new()),
            progress: Arc::new(progress),
            verdicts: None,
        }
    }

    /// The verdicts kept in memory, if this process runs the projections.
    pub fn verdicts(&self) -> Option<&VerdictCache> {
        self.verdicts.as_deref()
    }

    /// Tells every projection that new events were committed.
    pub fn wake(&self) {
        for notify in self.wake.values() {
            notify.notify_one();
        }
    }

    /// Whether this process has seen `projection` fold every event up to `position` (without
    /// asking the store: another replica's progress is not seen here).
    pub fn reached(&self, projection: Projection, position: u64) -> bool {
        *self.progress[&projection].borrow() >= position
    }

    /// Waits until `projection` has folded every event up to `position`; `false` on timeout.
    pub async fn wait_for(
        &self,
        projection: Projection,
        position: u64,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.progress[&projection].clone();
        loop {
            if *rx.borrow_and_update() >= position {
                return Ok(true);
            }
            // Another replica may be the one projecting: its progress is only in the database.
            if self.store.checkpoint(projection).await? >= position {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(projection = projection.name()))]
async fn run(
    store: Store,
    projection: Projection,
    config: RunnerConfig,
    wake: Arc<Notify>,
    progress: watch::Sender<u64>,
    verdicts: Option<Arc<VerdictCache>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.project_batch(projection, config.batch_size).await {
            Ok(Projected {
                from,
                batch,
                changes,
            }) => {
                backoff = Duration::from_millis(100);
                // Before the progress: a reader woken by it finds the verdicts up to date.
                if let Some(cache) = &verdicts {
                    cache.advance(from, batch.checkpoint, changes);
                }
                progress.send_replace(batch.checkpoint);
                if batch.applied > 0 {
                    metrics::counter!("recovery_projection_events_total", "projection" => projection.name())
                        .increment(batch.applied as u64);
                    metrics::counter!("recovery_projection_batches_total", "projection" => projection.name())
                        .increment(1);
                    tracing::debug!(
                        applied = batch.applied,
                        position = batch.checkpoint,
                        "projected"
                    );
                }
                if batch.applied < config.batch_size as usize {
                    let _ = tokio::time::timeout(config.poll_interval, wake.notified()).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projection batch failed");
                metrics::counter!("recovery_projection_failures_total", "projection" => projection.name())
                    .increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
