//! The tail of the log in this process: one task follows the global log (from the head at
//! start) and broadcasts each new event to the Server-Sent-Event streams. Every replica runs
//! its own, independent of the NATS leadership, so SSE works with or without NATS.

use super::Wake;
use crate::events::RecordedEvent;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Events buffered for slow SSE clients; one that falls further behind re-reads the store.
const CAPACITY: usize = 4096;

/// A handle on the tail: subscribe to events committed from now on.
#[derive(Clone)]
pub struct LiveLog {
    tx: broadcast::Sender<Arc<RecordedEvent>>,
    store: Store,
}

impl LiveLog {
    /// Starts following the log.
    pub fn spawn(store: Store, mut wake: Wake) -> (LiveLog, JoinHandle<()>) {
        let (tx, _) = broadcast::channel(CAPACITY);
        let live = LiveLog {
            tx: tx.clone(),
            store: store.clone(),
        };
        let task = tokio::spawn(async move {
            let mut position = loop {
                match store.head().await {
                    Ok(p) => break p,
                    Err(e) => {
                        tracing::warn!(error = %e, "log tail cannot read the head");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            loop {
                wake.mark_seen();
                match store.read_log(position, 500).await {
                    Ok(events) if !events.is_empty() => {
                        for e in events {
                            position = e.position;
                            // No receiver is fine: nobody is watching.
                            let _ = tx.send(Arc::new(e));
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "log tail cannot read the log"),
                }
                wake.wait().await;
            }
        });
        (live, task)
    }

    /// Events committed from now on (and possibly a few before: callers skip by position).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.tx.subscribe()
    }

    /// The store the tail reads (for back-filling a stream).
    pub fn store(&self) -> &Store {
        &self.store
    }
}
