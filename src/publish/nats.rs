//! The outbox relay: publishes every committed event (and every eligibility change) to
//! JetStream, in log order, once.
//!
//! - **Leadership.** Only the replica holding the publisher's advisory lock publishes
//!   ([`Leadership`]); the others retry every [`PublisherConfig::leader_retry`], so a dead
//!   leader is replaced within about that long. Leading is also a lease the relay renews as
//!   its rounds go: a leader that hangs with its connection up is replaced once the lease
//!   ([`PublisherConfig::lease`]) runs out.
//! - **Never skip, never reorder.** Messages are published pipelined (a whole batch in flight),
//!   each with `Nats-Expected-Last-Sequence`: JetStream stores message *n* only right after
//!   message *n − 1*. If one is lost (NATS restarting mid-batch), every later one is refused
//!   instead of landing out of order, so the stream always holds a gap-free prefix of the
//!   message sequence. The expectation also fences a stale leader.
//! - **No duplicates.** After any failure the relay resumes from the stream itself: it reads
//!   the last stored message (its `Nats-Msg-Id` and position header) and skips what is already
//!   there. `Nats-Msg-Id` = event id de-duplicates as a second line of defence, within the
//!   stream's duplicate window.
//! - **Checkpoint after PubAck.** The PostgreSQL checkpoint moves only after every message of a
//!   batch is acknowledged; it is where a new leader starts reading.

use super::messages::{self, OutMessage, POSITION_HEADER};
use super::warm_fold::WarmFold;
use super::{PublishError, PublisherConfig, Wake};
use crate::events::RecordedEvent;
use crate::store::{Lease, PublisherLog, StoreError};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The shortest time between the starts of two rounds that reach the head: at most 5 ms added
/// to an event's way to JetStream, in exchange for a read and a checkpoint write per round
/// rather than per append under load.
const ROUND_INTERVAL: Duration = Duration::from_millis(5);

/// The relay over the log of `S` (PostgreSQL's): build it with [`Relay::new`], then
/// [`Relay::run`] forever.
pub struct Relay<S: PublisherLog> {
    store: S,
    config: PublisherConfig,
    js: jetstream::Context,
    wake: Wake,
    /// Since when publishing has been failing, and how many rounds failed: an outage logs one
    /// WARN when it starts and one INFO when a batch is acknowledged again.
    outage: std::sync::Mutex<Option<(Instant, u64)>>,
}

/// Where the stream ends: its last sequence, and the id and position of its last message.
#[derive(Clone, Debug, Default)]
struct StreamTip {
    sequence: u64,
    msg_id: String,
    position: u64,
}

/// How to reach NATS from a `NATS_URL`: one URL, or a cluster's URLs separated by commas (the
/// client tries them in turn, and also learns the cluster's other servers from the one it
/// reaches). A user and password (`nats://user:password@host:4222`, percent-encoded where
/// needed) or a token (`nats://token@host:4222`) in the first URL that has any authenticate the
/// connection to whichever server it reaches: the client library would otherwise drop them.
/// The servers come back without them, so that no log line the client writes about a server
/// carries a secret. `tls://` URLs (or a server that requires TLS) are verified against the
/// system's roots and `ca_file`, when given.
pub fn connect_options(
    url: &str,
    name: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<(async_nats::ConnectOptions, Vec<String>), PublishError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut options = async_nats::ConnectOptions::new().name(name);
    if let Some(ca) = ca_file {
        // Read here, so that a missing file is an error at start rather than at every retry.
        std::fs::metadata(ca)
            .map_err(|e| PublishError::Connect(format!("NATS_CA {}: {e}", ca.display())))?;
        options = options.add_root_certificates(ca.to_path_buf());
    }
    let mut servers = Vec::new();
    let mut authenticated = false;
    for server in url.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // `host:port` alone means NATS's own scheme, as the client library takes it.
        let server = if server.contains("://") {
            server.to_owned()
        } else {
            format!("nats://{server}")
        };
        let mut parsed = url::Url::parse(&server).map_err(|e| {
            PublishError::Connect(format!(
                "NATS_URL holds a malformed URL ({}): {e}",
                crate::config::redact_url(&server)
            ))
        })?;
        if !parsed.username().is_empty() && !authenticated {
            options = match parsed.password() {
                Some(password) => {
                    options.user_and_password(decode(parsed.username()), decode(password))
                }
                None => options.token(decode(parsed.username())),
            };
            authenticated = true;
        }
        // Infallible for the URLs with a host that NATS takes.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        servers.push(parsed.to_string());
    }
    if servers.is_empty() {
        return Err(PublishError::Connect("NATS_URL names no server".into()));
    }
    Ok((options, servers))
}

/// Connects to NATS (the client keeps reconnecting in the background if NATS goes away).
pub async fn connect_nats(
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<async_nats::Client, PublishError> {
    let (options, servers) = connect_options(url, "recovery-info", ca_file)?;
    options
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|e| PublishError::Connect(e.to_string()))
}

impl<S: PublisherLog> Relay<S> {
    /// A relay over a NATS client.
    pub fn new(store: S, config: PublisherConfig, client: async_nats::Client, wake: Wake) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(config.ack_timeout)
            .max_ack_inflight(ack_window(&config))
            .backpressure_on_inflight(true)
            .build(client);
        Relay {
            store,
            config,
            js,
            wake,
            outage: std::sync::Mutex::new(None),
        }
    }

    /// Runs forever: contends for leadership, publishes while leading, and retries with
    /// backoff on failures.
    #[tracing::instrument(skip_all, fields(stream = %self.config.stream_name))]
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let leadership = match self
                .store
                .lead(&self.config.stream_name, self.config.lease)
                .await
            {
                Ok(Some(l)) => l,
                Ok(None) => {
                    metrics::gauge!("recovery_publisher_leader").set(0.0);
                    tokio::time::sleep(self.config.leader_retry).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot contend for publisher leadership");
                    tokio::time::sleep(self.config.leader_retry).await;
                    continue;
                }
            };
            tracing::info!("publisher leadership acquired");
            metrics::gauge!("recovery_publisher_leader").set(1.0);
            while leadership.is_held() {
                // Between tries too: failing rounds and their backoff are not a hung leader.
                if leadership.renew().await.is_err() {
                    break;
                }
                match self.lead(&leadership).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        self.failed(&e, backoff);
                        metrics::counter!("recovery_publish_failures_total").increment(1);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
            tracing::warn!("publisher leadership lost");
            metrics::gauge!("recovery_publisher_leader").set(0.0);
        }
    }

    /// A failed round: the first of an outage is a WARN, the retries that follow are DEBUG.
    fn failed(&self, e: &PublishError, backoff: Duration) {
        if matches!(e, PublishError::LostLeadership) {
            return; // logged by `run` as "publisher leadership lost"
        }
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match outage.as_mut() {
            None => {
                *outage = Some((Instant::now(), 1));
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "publishing stopped; retrying from the stream's tip until it resumes");
            }
            Some((_, rounds)) => {
                *rounds += 1;
                tracing::debug!(error = %e, retry_in_ms = backoff.as_millis() as u64, "publishing still failing");
            }
        }
    }

    /// A batch acknowledged: if publishing had stopped, one INFO with the outage and what is
    /// left to publish.
    async fn resumed(&self, position: u64) {
        let ended = self.outage.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((since, rounds)) = ended {
            let backlog = self.store.head().await.map(|h| h.saturating_sub(position));
            tracing::info!(
                outage_ms = since.elapsed().as_millis() as u64,
                failed_rounds = rounds,
                backlog_events = backlog.as_ref().ok().copied(),
                position,
                "publishing resumed"
            );
        }
    }

    /// Creates the stream, or brings an existing one to the settings this service owns: its
    /// subjects (an operator's extra subjects are kept), duplicate window and replicas. The
    /// rest of an existing stream's configuration (limits, placement, storage, ...) is the
    /// operator's and is left as found, and a stream already as wanted is not updated at all.
    async fn ensure_stream(&self) -> Result<stream::Stream, PublishError> {
        let failed = |e: &dyn std::fmt::Display| PublishError::Stream(e.to_string());
        let name = &self.config.stream_name;
        let prefix = &self.config.subject_prefix;
        let subjects = [
            format!("{prefix}.events.>"),
            format!("{prefix}.eligibility.>"),
        ];
        let found = match self.js.get_stream(name).await {
            Ok(stream) => stream,
            Err(e) if is_stream_not_found(&e) => {
                let config = stream::Config {
                    name: name.clone(),
                    subjects: subjects.to_vec(),
                    storage: stream::StorageType::File,
                    duplicate_window: self.config.duplicate_window,
                    num_replicas: self.config.replicas,
                    ..Default::default()
                };
                tracing::info!(
                    stream = %name,
                    replicas = config.num_replicas,
                    "creating the JetStream stream"
                );
                return self.js.create_stream(config).await.map_err(|e| failed(&e));
            }
            Err(e) => return Err(failed(&e)),
        };
        let current = &found.cached_info().config;
        let mut wanted = current.clone();
        for subject in subjects {
            if !wanted.subjects.contains(&subject) {
                wanted.subjects.push(subject);
            }
        }
        wanted.duplicate_window = self.config.duplicate_window;
        wanted.num_replicas = self.config.replicas;
        if wanted == *current {
            return Ok(found);
        }
        tracing::info!(
            stream = %name,
            replicas = wanted.num_replicas,
            "updating the JetStream stream's settings"
        );
        self.js
            .update_stream(wanted)
            .await
            .map_err(|e| failed(&e))?;
        self.js.get_stream(name).await.map_err(|e| failed(&e))
    }

    /// The stream's last message: what is already published.
    async fn tip(stream: &mut stream::Stream) -> Result<StreamTip, PublishError> {
        let info = stream
            .info()
            .await
            .map_err(|e| PublishError::Stream(e.to_string()))?;
        let sequence = info.state.last_sequence;
        if info.state.messages == 0 {
            return Ok(StreamTip {
                sequence,
                ..Default::default()
            });
        }
        let last = stream
            .get_raw_message(sequence)
            .await
            .map_err(|e| PublishError::Stream(e.to_string()))?;
        let header = |name: &str| {
            last.headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        Ok(StreamTip {
            sequence,
            msg_id: header(async_nats::header::NATS_MESSAGE_ID.as_ref()),
            position: header(POSITION_HEADER).parse().unwrap_or(0),
        })
    }

    /// Where publishing resumes: the stream's tip reconciled with the checkpoint. Everything
    /// up to the checkpoint is in the stream; past it, the stream may already hold a prefix of
    /// the next messages (a crash between PubAck and checkpoint): then publishing starts at the
    /// tip's position and skips its messages up to the tip's id.
    async fn resume(&self) -> Result<Resume, PublishError> {
        let mut stream = self.ensure_stream().await?;
        let tip = Self::tip(&mut stream).await?;
        let name = &self.config.stream_name;
        let checkpoint = self.store.checkpoint(name).await?;
        if tip.position <= checkpoint {
            return Ok(Resume {
                position: checkpoint,
                skip_through: None,
                sequence: tip.sequence,
            });
        }
        self.store.save_checkpoint(name, tip.position - 1).await?;
        Ok(Resume {
            position: tip.position - 1,
            skip_through: Some(tip.msg_id),
            sequence: tip.sequence,
        })
    }

    /// Publishes while leading, a round at a time: read a batch (the next one is read ahead
    /// meanwhile), build its messages, send them, and settle the batch sent before (its PubAcks
    /// are awaited while this one is read and sent). Returns on the first failure (the caller
    /// backs off and calls again, which resumes from the stream's tip).
    async fn lead(&mut self, leadership: &S::Lease) -> Result<(), PublishError> {
        let Resume {
            mut position,
            mut skip_through,
            mut sequence,
        } = self.resume().await?;
        // The eligibility fold stays warm across batches: an admin's (or a whole tenant's)
        // history is loaded once, the first time a batch touches it (again after the fold
        // is dropped at its capacity).
        let mut warm = WarmFold::default();
        let mut in_flight: Option<InFlight> = None;
        let mut reader = ReadAhead::new(self.store.clone(), self.config.batch_size);
        tracing::info!(
            position,
            stream_sequence = sequence,
            "publishing from position"
        );
        let mut last_round = None;
        let mut renewed = Instant::now();
        loop {
            // The lease is renewed by the rounds themselves, so a relay stuck anywhere in a
            // round stops renewing it.
            if renewed.elapsed() >= self.config.lease / 4 {
                leadership
                    .renew()
                    .await
                    .map_err(|_| PublishError::LostLeadership)?;
                renewed = Instant::now();
            }
            if reader.at_head {
                if let Some(previous) = in_flight.take() {
                    self.settle(previous).await?;
                }
                metrics::gauge!("recovery_publisher_lag_events").set(0.0);
                tokio::select! {
                    _ = self.wake.wait() => {}
                    _ = leadership.lost() => return Err(PublishError::LostLeadership),
                }
                // Under a steady stream of appends, a round per append would cost a read and a
                // checkpoint write per few events: rounds that reach the head start at most
                // every ROUND_INTERVAL (an idle log's first event goes out at once).
                if let Some(last) = last_round {
                    tokio::time::sleep_until(last + ROUND_INTERVAL).await;
                }
            }
            if !leadership.is_held() {
                return Err(PublishError::LostLeadership);
            }
            let batch = reader.next(position, &mut self.wake).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                continue;
            };
            let started = Instant::now();
            last_round = Some(tokio::time::Instant::from_std(started));
            let mut out = self.messages(&mut warm, &batch, position).await?;
            if let Some(id) = skip_through.take()
                && let Some(i) = out.iter().position(|m| m.msg_id == id)
            {
                out.drain(..=i);
            }
            let mut sent = InFlight {
                acks: VecDeque::new(),
                last_acked: None,
                expected_sequence: sequence,
                position: last,
                events: batch.len(),
                started,
            };
            self.send(out, &mut sent, &mut in_flight).await?;
            sequence = sent.expected_sequence;
            if let Some(previous) = in_flight.replace(sent) {
                self.settle(previous).await?;
            }
            position = last;
        }
    }

    /// The messages of `batch` (read after `position`): its events and the eligibility changes
    /// they make, folded on `warm` (primed with what the batch touches first).
    async fn messages(
        &self,
        warm: &mut WarmFold,
        batch: &[RecordedEvent],
        position: u64,
    ) -> Result<Vec<OutMessage>, PublishError> {
        warm.bound(self.config.warm_capacity);
        warm.prime(&self.store, batch, position).await?;
        Ok(messages::build(
            &self.config.subject_prefix,
            self.config.reveal_values,
            &mut warm.fold,
            batch,
        ))
    }

    /// Awaits a sent batch's PubAcks, then moves the checkpoint past it.
    async fn settle(&self, mut batch: InFlight) -> Result<(), PublishError> {
        while batch.await_oldest().await? {}
        if let Some(last) = batch.last_acked
            && last != batch.expected_sequence
        {
            // A duplicate (already stored) answers with its first sequence: resume from the tip.
            return Err(PublishError::Publish(format!(
                "the stream is at sequence {last}, not {} as sent",
                batch.expected_sequence
            )));
        }
        self.store
            .save_checkpoint(&self.config.stream_name, batch.position)
            .await?;
        metrics::counter!("recovery_published_events_total").increment(batch.events as u64);
        self.resumed(batch.position).await;
        metrics::histogram!("recovery_publish_batch_seconds")
            .record(batch.started.elapsed().as_secs_f64());
        // A batch shorter than asked for was read up to the head: no need to ask for it.
        let head = if batch.events >= self.config.batch_size as usize {
            self.store.head().await.ok()
        } else {
            Some(batch.position)
        };
        if let Some(head) = head {
            metrics::gauge!("recovery_publisher_lag_events")
                .set(head.saturating_sub(batch.position) as f64);
        }
        tracing::debug!(
            position = batch.position,
            events = batch.events,
            "published"
        );
        Ok(())
    }

    /// Sends every message of a batch, each expecting the one before it, into `batch`, without
    /// awaiting the PubAcks, except to stay within the client's window of unacknowledged
    /// publishes ([`ack_window`]): when it is full, the `previous` batch is settled first, then
    /// the batch's own oldest PubAcks are awaited. A batch may hold more messages than the
    /// window (a tenant's settings change re-evaluates every admin of the tenant): without
    /// this, the client would wait for a PubAck that nothing awaits, for ever.
    async fn send(
        &self,
        out: Vec<OutMessage>,
        batch: &mut InFlight,
        previous: &mut Option<InFlight>,
    ) -> Result<(), PublishError> {
        let window = ack_window(&self.config);
        for m in out {
            while previous.as_ref().map_or(0, |p| p.acks.len()) + batch.acks.len() >= window {
                match previous.take() {
                    Some(p) => self.settle(p).await?,
                    None => {
                        batch.await_oldest().await?;
                    }
                }
            }
            let publish = PublishMessage::build()
                .payload(m.payload)
                .message_id(&m.msg_id)
                .expected_last_sequence(batch.expected_sequence)
                .header(POSITION_HEADER, m.position.to_string().as_str());
            let ack = self
                .js
                .send_publish(m.subject, publish)
                .await
                .map_err(|e| PublishError::Publish(e.to_string()))?;
            batch.acks.push_back(ack);
            batch.expected_sequence += 1;
        }
        Ok(())
    }
}

/// JetStream's answer that there is no such stream (as opposed to no answer at all).
fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// How many publishes may await their PubAck at once (the client's window).
fn ack_window(config: &PublisherConfig) -> usize {
    (config.batch_size as usize * 4).max(1)
}

/// Where publishing resumes ([`Relay::resume`]).
struct Resume {
    /// The log position after which to read.
    position: u64,
    /// The id of the stream's last message, when the stream holds messages past the
    /// checkpoint: the messages up to it are already published.
    skip_through: Option<String>,
    /// The stream's last sequence.
    sequence: u64,
}

/// The relay's reads of the log: a batch that did not reach the head starts the read of the
/// next one at once, so that it overlaps that batch's fold, encoding and sending.
struct ReadAhead<S> {
    store: S,
    limit: u32,
    ahead: Option<tokio::task::JoinHandle<Result<Vec<RecordedEvent>, StoreError>>>,
    /// Whether the last read reached the head: then the next round waits for an append.
    at_head: bool,
}

impl<S: PublisherLog> ReadAhead<S> {
    fn new(store: S, limit: u32) -> Self {
        ReadAhead {
            store,
            limit,
            ahead: None,
            at_head: false,
        }
    }

    /// The batch after `position`: the one read ahead, or read now.
    async fn next(
        &mut self,
        position: u64,
        wake: &mut Wake,
    ) -> Result<Vec<RecordedEvent>, PublishError> {
        let batch = match self.ahead.take() {
            Some(read) => crate::task::unwound(read.await)
                .map_err(|e| PublishError::Publish(format!("a read stopped: {e}")))??,
            None => {
                // Before the read: an append committed after it wakes the wait at once.
                wake.mark_seen();
                self.store.read_log(position, self.limit).await?
            }
        };
        self.at_head = batch.len() < self.limit as usize;
        if let Some(last) = batch.last().map(|e| e.position)
            && !self.at_head
        {
            // Marked before this read as before any: a wait after it misses no append.
            wake.mark_seen();
            let (store, limit) = (self.store.clone(), self.limit);
            self.ahead = Some(tokio::spawn(
                async move { store.read_log(last, limit).await },
            ));
        }
        Ok(batch)
    }
}

/// A batch sent and not yet acknowledged.
struct InFlight {
    /// The PubAcks not awaited yet, oldest first.
    acks: VecDeque<PublishAckFuture>,
    /// The stream sequence of the last PubAck awaited.
    last_acked: Option<u64>,
    /// The stream's last sequence once every message of the batch is stored.
    expected_sequence: u64,
    /// The batch's last log position: the checkpoint once acknowledged.
    position: u64,
    events: usize,
    started: Instant,
}

impl InFlight {
    /// Awaits the oldest PubAck not awaited yet; whether there was one.
    async fn await_oldest(&mut self) -> Result<bool, PublishError> {
        let Some(ack) = self.acks.pop_front() else {
            return Ok(false);
        };
        let ack = ack
            .await
            .map_err(|e| PublishError::Publish(e.to_string()))?;
        self.last_acked = Some(ack.sequence);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::connect_options;

    fn servers(url: &str) -> Vec<String> {
        connect_options(url, "t", None).map(|(_, s)| s).unwrap()
    }

    #[test]
    fn a_nats_url_lists_servers_and_keeps_their_credentials_out_of_them() {
        assert_eq!(
            servers("nats://u:p%40ss@n1:4222, nats://u:p%40ss@n2:4222,n3:4222"),
            ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]
        );
        assert_eq!(servers("nats://s3cr3t@n1:4222"), ["nats://n1:4222"]);
        assert_eq!(servers("tls://n1:4222"), ["tls://n1:4222"]);
        let Err(e) = connect_options("nats://u:s3cr3t@n1:99999", "t", None) else {
            panic!("a port out of range is refused");
        };
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(connect_options(" , ", "t", None).is_err());
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        assert!(connect_options("tls://n1:4222", "t", Some(missing)).is_err());
    }
}
