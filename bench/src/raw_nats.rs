//! Raw NATS JetStream baseline with the client library a publisher uses (async-nats):
//! pipelined publishes with `Nats-Msg-Id`, as the outbox relay must send them.

use crate::stats::{Latencies, Rate};
use anyhow::Context;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use recovery_info::publish::messages::{OutMessage, POSITION_HEADER};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Publishes in flight before the oldest acknowledgement is awaited.
pub const WINDOW: usize = 256;

/// Connects to NATS, failing fast when it does not answer.
pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}

/// Publishes `messages` messages of `payload_bytes` each to a private file-backed stream,
/// `WINDOW` in flight, each with a fresh `Nats-Msg-Id`; the stream is deleted afterwards.
pub async fn publish_rate(
    client: &async_nats::Client,
    messages: usize,
    payload_bytes: usize,
) -> anyhow::Result<Rate> {
    let subject = format!("recovery-bench.{}.raw", std::process::id());
    let payload = Bytes::from(vec![0x5a_u8; payload_bytes]);
    let sends = (0..messages).map(|i| {
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(Uuid::new_v4().to_string().as_str());
        (format!("{subject}.{}", i % 64), message)
    });
    let name = format!("RECOVERY_BENCH_RAW_{}", std::process::id());
    on_scratch_stream(client, name, format!("{subject}.>"), sends, messages).await
}

/// Publishes the relay's own `messages` (those of `events` log events: the same subjects,
/// payloads and headers, each expecting the one before it) to a private file-backed stream,
/// `WINDOW` in flight: what JetStream can take of the message stream the relay sends, without
/// the relay's reading and folding. The stream is deleted afterwards.
pub async fn publish_messages_rate(
    client: &async_nats::Client,
    prefix: &str,
    messages: Vec<OutMessage>,
    events: usize,
) -> anyhow::Result<Rate> {
    let sends = (0_u64..).zip(messages).map(|(sequence, m)| {
        let message = PublishMessage::build()
            .payload(m.payload)
            .message_id(&m.msg_id)
            .expected_last_sequence(sequence)
            .header(POSITION_HEADER, m.position.to_string().as_str());
        (m.subject, message)
    });
    let name = format!("RECOVERY_BENCH_RAW_RELAY_{}", std::process::id());
    on_scratch_stream(client, name, format!("{prefix}.>"), sends, events).await
}

/// Creates the file-backed stream `name` over `subjects`, sends `sends` to it with `WINDOW`
/// in flight (awaiting the oldest acknowledgement beyond that), and deletes it; the rate is
/// `ops` over the sending time.
async fn on_scratch_stream(
    client: &async_nats::Client,
    name: String,
    subjects: String,
    sends: impl Iterator<Item = (String, PublishMessage)>,
    ops: usize,
) -> anyhow::Result<Rate> {
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subjects],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("cannot create the JetStream stream for the baseline")?;
    let result = async {
        let mut in_flight = VecDeque::with_capacity(WINDOW);
        let mut lat = Latencies::with_capacity(ops);
        let start = Instant::now();
        for (subject, message) in sends {
            let ack = js
                .send_publish(subject, message)
                .await
                .context("JetStream publish failed")?;
            in_flight.push_back((Instant::now(), ack));
            if in_flight.len() >= WINDOW {
                drain_one(&mut in_flight, &mut lat).await?;
            }
        }
        while !in_flight.is_empty() {
            drain_one(&mut in_flight, &mut lat).await?;
        }
        Ok(Rate::new(ops, start.elapsed(), lat, 0))
    }
    .await;
    let _ = js.delete_stream(&name).await;
    result
}

async fn drain_one(
    in_flight: &mut VecDeque<(Instant, jetstream::context::PublishAckFuture)>,
    lat: &mut Latencies,
) -> anyhow::Result<()> {
    if let Some((sent, ack)) = in_flight.pop_front() {
        ack.await.context("JetStream did not acknowledge")?;
        lat.record(sent.elapsed());
    }
    Ok(())
}
