//! The tail of the log in this process: one task follows the global log (from the head at
//! start) and broadcasts each new event to the Server-Sent-Event streams. Every replica runs
//! its own, independent of the NATS leadership, so SSE works with or without NATS. While no
//! stream is open it reads nothing but, now and then, the head.

use super::Wake;
use crate::events::RecordedEvent;
use crate::store::EventLog;
use crate::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Events buffered for slow SSE clients; one that falls further behind re-reads the store.
const CAPACITY: usize = 4096;

/// How often the tail, while no stream is open, moves its position to the head.
const IDLE_REFRESH: Duration = Duration::from_secs(1);

/// Signals open streams to end when the server stops (otherwise a graceful shutdown would wait
/// for every dashboard to hang up).
#[derive(Clone)]
pub struct StreamShutdown(pub watch::Receiver<bool>);

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
            let mut refreshed = Instant::now();
            loop {
                wake.mark_seen();
                if tx.receiver_count() == 0 {
                    // Nobody watches: the log is not read, only the head now and then, so that
                    // the first subscriber is not sent a long backlog. The head is read before
                    // the count is looked at: a stream opened after that look back-fills from
                    // the store past this head, and the tail sends what follows it.
                    if refreshed.elapsed() >= IDLE_REFRESH {
                        refreshed = Instant::now();
                        match store.head().await {
                            Ok(head) if tx.receiver_count() == 0 => position = position.max(head),
                            Ok(_) => continue,
                            Err(e) => tracing::warn!(error = %e, "log tail cannot read the head"),
                        }
                    }
                    wake.wait().await;
                    continue;
                }
                match store.read_log(position, 500).await {
                    Ok(events) if !events.is_empty() => {
                        for e in events {
                            position = e.position;
                            // A stream that closed since is fine.
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
