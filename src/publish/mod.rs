//! Live events: the log leaves the service through NATS JetStream ([`nats`], the outbox relay),
//! a NATS request/reply eligibility query ([`rpc`]) and the per-process [`tail`] of the log,
//! which feeds the HTTP API's Server-Sent Events (`http::routes::sse`). `recovery-info watch`
//! ([`watch`]) is the reference subscriber.
//!
//! Every follower of the log reads `events WHERE position > checkpoint ORDER BY position`
//! (gap-free thanks to the global append lock) and is woken by [`Wake`]: PostgreSQL
//! `NOTIFY recovery_log`, sent by a trigger in the append transaction, with polling as the
//! fallback.

pub mod messages;
pub mod nats;
pub mod rpc;
pub mod tail;
mod warm_fold;
pub mod watch;

use crate::store::postgres::publisher::{DedicatedTarget, LogListener};
use crate::store::{Store, StoreConfig, StoreError};
use std::time::Duration;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

/// Settings of the JetStream publisher.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// The NATS server, or a cluster's servers separated by commas, e.g.
    /// `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The JetStream stream (production: `RECOVERY_EVENTS`); also names the checkpoint.
    pub stream_name: String,
    /// The first tokens of every subject (production: `recovery.v1`).
    pub subject_prefix: String,
    /// How long JetStream remembers message ids to drop duplicates. It must exceed the
    /// publisher's worst retry ([`PublisherConfig::ack_timeout`] plus the longest backoff).
    pub duplicate_window: Duration,
    /// Copies of the stream JetStream keeps (1, or 3 or 5 on a cluster).
    pub replicas: usize,
    /// The CA that signed the NATS servers' certificates, beside the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Publish raw phone numbers and emails (for trusted internal consumers) instead of
    /// masked ones.
    pub reveal_values: bool,
    /// Events read and published per round.
    pub batch_size: u32,
    /// How long a PubAck may take before the round is retried.
    pub ack_timeout: Duration,
    /// How often an idle publisher looks at the log without a notification.
    pub poll_interval: Duration,
    /// How often a follower tries to become the leader.
    pub leader_retry: Duration,
    /// How long the leader may go without renewing its lease (it renews as its rounds go, at
    /// least every quarter of this) before a follower ends its session and takes over: the
    /// bound on a hung leader's outage. Longer than any round may take.
    pub lease: Duration,
    /// The admins whose eligibility the relay keeps folded between rounds, at most. Past it
    /// the fold is dropped, and each round loads again the history of the admins it touches.
    pub warm_capacity: usize,
}

/// The production stream name.
pub const DEFAULT_STREAM: &str = "RECOVERY_EVENTS";
/// The production subject prefix.
pub const DEFAULT_PREFIX: &str = "recovery.v1";

impl PublisherConfig {
    /// The production defaults for a NATS URL.
    pub fn new(nats_url: impl Into<String>) -> Self {
        PublisherConfig {
            nats_url: nats_url.into(),
            stream_name: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_PREFIX.to_owned(),
            duplicate_window: Duration::from_secs(10 * 60),
            replicas: 1,
            ca_file: None,
            reveal_values: false,
            batch_size: 2000,
            ack_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(500),
            leader_retry: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            warm_capacity: 200_000,
        }
    }
}

/// Wakes the followers of the log: a counter bumped on every `NOTIFY recovery_log`. Receivers
/// never miss a bump (it is a `watch`), and also poll in case a notification was lost while
/// the listening session reconnected.
#[derive(Clone)]
pub struct Wake {
    rx: tokio_watch::Receiver<u64>,
    poll_interval: Duration,
}

impl Wake {
    /// The wake signal of `app`: bumped by this process's own appends at once.
    pub fn local(app: &crate::app::App, poll_interval: Duration) -> Wake {
        Wake {
            rx: app.appended(),
            poll_interval,
        }
    }

    /// Starts a task that keeps a `LISTEN recovery_log` session open (reconnecting when it
    /// drops) and bumps `tx` on every notification: appends made by other replicas.
    pub fn listen(target: DedicatedTarget, tx: tokio_watch::Sender<u64>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match LogListener::start(&target, tx.clone()).await {
                    Ok(listener) => {
                        backoff = Duration::from_millis(100);
                        // A notification may have been missed while reconnecting.
                        tx.send_modify(|c| *c = c.wrapping_add(1));
                        listener.closed().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for appends; polling meanwhile");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }

    /// A wake that only polls (for tests and tools without a database session of their own).
    pub fn polling(poll_interval: Duration) -> (Wake, tokio_watch::Sender<u64>) {
        let (tx, rx) = tokio_watch::channel(0u64);
        (Wake { rx, poll_interval }, tx)
    }

    /// Waits for the next notification or the poll interval, whichever comes first.
    pub async fn wait(&mut self) {
        let _ = tokio::time::timeout(self.poll_interval, self.rx.changed()).await;
    }

    /// Forgets notifications received so far (call before reading the log).
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }
}

/// Why live publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("JetStream stream setup: {0}")]
    Stream(String),
    #[error("publish: {0}")]
    Publish(String),
    #[error("lost the publisher leadership")]
    LostLeadership,
    #[error("NATS service: {0}")]
    Service(String),
    #[error("{0}")]
    Unsupported(String),
}

/// Whether `publisher` can run on `store`: the relay keeps its checkpoint and its
/// leadership in PostgreSQL. Checked before anything starts.
pub fn check_store(
    publisher: Option<&PublisherConfig>,
    store: &StoreConfig,
) -> Result<(), PublishError> {
    match (publisher, store) {
        (Some(_), StoreConfig::Embedded { .. }) => Err(PublishError::Unsupported(
            "publishing to NATS needs the PostgreSQL store (set DATABASE_URL)".into(),
        )),
        _ => Ok(()),
    }
}

/// The live side of a running service: the log tail for SSE on every replica and, when NATS
/// is configured, the JetStream relay (led by one replica) and the eligibility service.
pub struct Live {
    /// The process's tail of the log (feeds SSE).
    pub log: tail::LiveLog,
    /// The NATS connection, when publishing is configured.
    pub nats: Option<async_nats::Client>,
    shutdown: tokio_watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Live {
    /// Starts the tail, and with a publisher configuration the relay and the NATS service, which
    /// answers failures as `errors` reads them. NATS being down does not fail the start: the
    /// client keeps connecting in the background and the relay catches up once it is there.
    pub async fn start(
        app: &crate::app::App,
        store: &StoreConfig,
        publisher: Option<&PublisherConfig>,
        errors: rpc::ErrorMapping,
    ) -> Result<Live, PublishError> {
        check_store(publisher, store)?;
        let pg = match &app.store {
            Store::Postgres(pg) => Some(pg),
            _ => None,
        };
        let poll = publisher.map_or(Duration::from_millis(500), |p| p.poll_interval);
        let wake = Wake::local(app, poll);
        let mut tasks = Vec::new();
        if let Some(pg) = pg {
            tasks.push(Wake::listen(pg.dedicated().clone(), app.appended_sender()));
        }
        let (log, tail_task) = tail::LiveLog::spawn(app.store.clone(), wake.clone());
        tasks.push(tail_task);
        let mut nats = None;
        if let (Some(config), Some(pg)) = (publisher, pg) {
            let client = nats::connect_nats(&config.nats_url, config.ca_file.as_deref()).await?;
            nats = Some(client.clone());
            let relay = nats::Relay::new(pg.clone(), config.clone(), client.clone(), wake);
            tasks.push(tokio::spawn(relay.run()));
            let rpc = rpc::serve(client, app.clone(), &config.subject_prefix, errors);
            tasks.push(rpc.await?);
        }
        let (shutdown, _) = tokio_watch::channel(false);
        Ok(Live {
            log,
            nats,
            shutdown,
            tasks,
        })
    }

    /// The signal that ends open SSE streams when the server stops.
    pub fn stream_shutdown(&self) -> tail::StreamShutdown {
        tail::StreamShutdown(self.shutdown.subscribe())
    }

    /// Ends the SSE streams and stops the tasks (the relay's leadership is released with its
    /// connection).
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
