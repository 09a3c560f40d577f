//! The service's publisher (outbox relay to NATS JetStream): its throughput and the latency
//! from a command's answer to the event's arrival at a subscriber.
//!
//! The publisher is not part of this branch. The bench finds out at run time whether the
//! service publishes — it subscribes to `recovery.v1.events.>`, sends one command and waits
//! briefly — and reports both rows as "not available (publisher not built)" when nothing
//! arrives. Once the publisher is merged, pass the NATS URL to the service where
//! `main::service_config` builds its `ServerConfig`; the measurements below then run as is.

use crate::load::{AdminSim, Service};
use crate::say;
use crate::stats::{Latencies, Rate, Rng, Summary};
use anyhow::Context;
use futures::StreamExt;
use recovery_info::events::RecordedEvent;
use recovery_info::fold::admins::AdminFold;
use recovery_info::publish::messages::{self, OutMessage};
use recovery_info::store::EventLog;
use recovery_info::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The run's own JetStream stream and subject prefix: a stream left by an earlier run (of
/// another database) must not be continued.
pub fn stream_name() -> String {
    format!("RECOVERY_BENCH_{}", std::process::id())
}

/// The subject prefix the bench's service publishes under.
pub fn prefix() -> String {
    format!("bench{}.v1", std::process::id())
}

/// The subject prefix of the raw publish of the relay's messages (another stream's).
pub fn raw_prefix() -> String {
    format!("benchraw{}.v1", std::process::id())
}

/// The messages the relay sends for the first `sample` events of the log (at most), built by
/// the relay's own code over an eligibility fold from position 0; and the number of events.
pub async fn relay_messages(
    store: &Store,
    sample: usize,
) -> anyhow::Result<(Vec<OutMessage>, usize)> {
    let (prefix, mut fold) = (raw_prefix(), AdminFold::default());
    let (mut out, mut events, mut after) = (Vec::new(), 0, 0);
    while events < sample {
        let limit = (sample - events).min(10_000) as u32;
        let batch = store.read_log(after, limit).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        events += batch.len();
        out.extend(messages::build(&prefix, false, &mut fold, &batch));
    }
    Ok((out, events))
}

/// The subjects the service publishes events on.
fn events_subjects() -> String {
    format!("{}.events.>", prefix())
}

/// Deletes the run's stream (at the end of the run).
pub async fn delete_stream(nats: &async_nats::Client) {
    let js = async_nats::jetstream::new(nats.clone());
    let _ = js.delete_stream(stream_name()).await;
}

/// Whether the service publishes, and if not, why.
pub enum Availability {
    Available,
    NotAvailable(String),
}

/// Sends one command and waits up to `wait` for an event on `recovery.v1.events.>`.
pub async fn probe(
    nats: Option<&async_nats::Client>,
    service: &Service,
    wait: Duration,
) -> anyhow::Result<Availability> {
    let Some(nats) = nats else {
        return Ok(Availability::NotAvailable("NATS unreachable".into()));
    };
    let mut sub = nats.subscribe(events_subjects()).await?;
    nats.flush().await?;
    let client = service.client();
    let mut admin = AdminSim::new(0);
    let outcome = service
        .command(&client, &mut admin, &mut Rng::new(99))
        .await;
    if !outcome.ok() {
        anyhow::bail!("the probe command failed with status {}", outcome.status);
    }
    Ok(match tokio::time::timeout(wait, sub.next()).await {
        Ok(Some(_)) => Availability::Available,
        _ => Availability::NotAvailable("publisher not built".into()),
    })
}

/// The number of messages in the JetStream stream that captures the service's events.
pub async fn stream_messages(nats: &async_nats::Client) -> anyhow::Result<u64> {
    Ok(stream_state(nats).await?.0)
}

/// The messages and the bytes stored in the JetStream stream that captures the service's
/// events (what a deployment's stream grows by: docs/scaling.md).
pub async fn stream_state(nats: &async_nats::Client) -> anyhow::Result<(u64, u64)> {
    let js = async_nats::jetstream::new(nats.clone());
    let name = js
        .stream_by_subject(format!("{}.events.probe.probe.Probe", prefix()))
        .await
        .context("no JetStream stream captures the service's events")?;
    let mut stream = js.get_stream(name).await?;
    let state = &stream.info().await?.state;
    Ok((state.messages, state.bytes))
}

/// Waits until the publisher's checkpoint (moved only after every PubAck of a batch) reaches
/// `head`; the rate is the `backlog` events over the time since `committed_at`. Also gives
/// the messages it took (events and eligibility changes) since `messages_before`.
pub async fn throughput(
    nats: &async_nats::Client,
    store: &Store,
    head: u64,
    backlog: u64,
    messages_before: u64,
    committed_at: Instant,
    timeout: Duration,
) -> anyhow::Result<(Rate, u64)> {
    let Store::Postgres(pg) = store else {
        anyhow::bail!("the publisher needs PostgreSQL");
    };
    let mut last_report = Instant::now();
    loop {
        let at = pg.publisher_checkpoint(&stream_name()).await?;
        if at >= head {
            let elapsed = committed_at.elapsed();
            let messages = stream_messages(nats).await? - messages_before;
            return Ok((
                Rate::new(backlog as usize, elapsed, Latencies::default(), 0),
                messages,
            ));
        }
        let done = backlog.saturating_sub(head - at);
        if committed_at.elapsed() > timeout {
            anyhow::bail!(
                "the publisher published {done} of {backlog} events within {} s",
                timeout.as_secs()
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            say(&format!("  publisher: {done} of {backlog}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Commands at a fixed `rate` per second for `duration`; each answer's position is matched
/// with the arrival of its event at a subscriber of `recovery.v1.events.>`.
pub async fn commit_to_subscriber(
    nats: &async_nats::Client,
    service: &Arc<Service>,
    admins: Vec<AdminSim>,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<(Summary, usize)> {
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut sub = nats.subscribe(events_subjects()).await?;
    nats.flush().await?;
    let collector = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let at = Instant::now();
                if let Ok(event) = RecordedEvent::decode(&msg.payload)
                    && let Ok(mut map) = arrivals.lock()
                {
                    map.insert(event.position, at);
                }
            }
        })
    };

    let answers: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(64));
    // Each admin is used by one command at a time, and each keep-alive client carries one
    // request at a time: pools of both are handed around.
    let pool = Arc::new(Mutex::new(admins));
    let clients = Arc::new(Mutex::new(
        (0..64).map(|_| service.client()).collect::<Vec<_>>(),
    ));
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    let mut i = 0_u64;
    while Instant::now() < deadline {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let Some(mut admin) = pool.lock().ok().and_then(|mut p| p.pop()) else {
            continue;
        };
        i += 1;
        let Some(client) = clients.lock().ok().and_then(|mut c| c.pop()) else {
            // Not reached: a permit means a client is free. Keep the admin anyway.
            if let Ok(mut p) = pool.lock() {
                p.push(admin);
            }
            continue;
        };
        let (service, answers) = (service.clone(), answers.clone());
        let (pool, clients) = (pool.clone(), clients.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = service.command(&client, &mut admin, &mut Rng::new(i)).await;
            if let (true, Some(p)) = (outcome.ok(), outcome.position)
                && let Ok(mut a) = answers.lock()
            {
                a.push((p, Instant::now()));
            }
            if let Ok(mut p) = pool.lock() {
                p.push(admin);
            }
            if let Ok(mut c) = clients.lock() {
                c.push(client);
            }
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    collector.abort();
    let answers = answers.lock().map(|a| a.clone()).unwrap_or_default();
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let mut lat = Latencies::with_capacity(answers.len());
    let mut missing = 0;
    for (position, answered) in answers {
        match arrivals.get(&position) {
            Some(at) => lat.record(at.saturating_duration_since(answered)),
            None => missing += 1,
        }
    }
    Ok((lat.summary(), missing))
}
