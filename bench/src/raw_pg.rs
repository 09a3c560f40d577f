//! Raw PostgreSQL baselines with the service's own client library (tokio-postgres): what the
//! engine gives on this machine, measured in the same run as the service.

use crate::db::connect;
use crate::say;
use crate::stats::{Latencies, Rate, Rng};
use anyhow::Context;
use chrono::Utc;
use futures::{StreamExt, pin_mut};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// A table shaped exactly like `events` (columns, primary key, unique constraints, indexes).
const CREATE_RAW_TABLE: &str = "CREATE TABLE raw_events (LIKE events INCLUDING ALL)";

/// Roughly the size of a stored envelope of a `MethodChanged` event.
const PAYLOAD_BYTES: usize = 240;

/// Creates the raw table (the service must have migrated the database first).
pub async fn prepare(url: &str) -> anyhow::Result<()> {
    connect(url)
        .await?
        .batch_execute(CREATE_RAW_TABLE)
        .await
        .context("cannot create the raw_events table")
}

/// The rows inserted so far (positions are 1..=n).
pub struct RawTable {
    next_position: Arc<AtomicI64>,
}

impl RawTable {
    pub fn new() -> Self {
        RawTable {
            next_position: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn rows(&self) -> i64 {
        self.next_position.load(Ordering::Relaxed)
    }

    /// 1-row INSERT transactions (autocommit) on `connections` connections for `duration`.
    pub async fn insert_tps(
        &self,
        url: &str,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Rate> {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(connect(url).await?);
        }
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for (i, client) in clients.into_iter().enumerate() {
            let next = self.next_position.clone();
            tasks.push(tokio::spawn(async move {
                let stmt = client
                    .prepare(
                        "INSERT INTO raw_events (position, stream_id, stream_version, event_id,
                             event_type, tenant_id, admin_id, occurred_at, payload, prev_hash, hash)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .await?;
                let tenant = Uuid::new_v4();
                let admin = Uuid::new_v4();
                let stream = format!("raw-{connections}-{i}-{admin}");
                let payload = vec![0x5a_u8; PAYLOAD_BYTES];
                let hash = vec![0x11_u8; 32];
                let mut lat = Latencies::with_capacity(4096);
                let mut version = 0_i64;
                while Instant::now() < deadline {
                    version += 1;
                    let position = next.fetch_add(1, Ordering::Relaxed) + 1;
                    let t = Instant::now();
                    client
                        .execute(
                            &stmt,
                            &[
                                &position,
                                &stream,
                                &version,
                                &Uuid::new_v4(),
                                &"MethodChanged",
                                &tenant,
                                &Some(admin),
                                &Utc::now(),
                                &payload,
                                &hash,
                                &hash,
                            ],
                        )
                        .await?;
                    lat.record(t.elapsed());
                }
                Ok::<_, tokio_postgres::Error>(lat)
            }));
        }
        let lat = join_latencies(tasks).await?;
        Ok(Rate::new(lat.len(), start.elapsed(), lat, 0))
    }

    /// Primary-key lookups of random rows on `connections` connections for `duration`.
    pub async fn pk_lookups(
        &self,
        url: &str,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Rate> {
        let rows = self.rows().max(1) as u64;
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(connect(url).await?);
        }
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for (i, client) in clients.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let stmt = client
                    .prepare("SELECT payload, hash FROM raw_events WHERE position = $1")
                    .await?;
                let mut rng = Rng::new(i as u64 + 7);
                let mut lat = Latencies::with_capacity(4096);
                while Instant::now() < deadline {
                    let position = rng.below(rows) as i64 + 1;
                    let t = Instant::now();
                    client.query_opt(&stmt, &[&position]).await?;
                    lat.record(t.elapsed());
                }
                Ok::<_, tokio_postgres::Error>(lat)
            }));
        }
        let lat = join_latencies(tasks).await?;
        Ok(Rate::new(lat.len(), start.elapsed(), lat, 0))
    }
}

async fn join_latencies(
    tasks: Vec<tokio::task::JoinHandle<Result<Latencies, tokio_postgres::Error>>>,
) -> anyhow::Result<Latencies> {
    let mut all = Latencies::default();
    for t in tasks {
        all.merge(t.await.context("a baseline task failed")??);
    }
    Ok(all)
}

/// The column types of the `events` table, in order (for binary COPY in and out).
pub const EVENT_COLUMN_TYPES: [Type; 11] = [
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TEXT,
    Type::UUID,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
];

/// `COPY events TO STDOUT (FORMAT binary)`: every row of the event log, decoded as the
/// binary row format (the payload column is touched so that nothing is skipped).
pub async fn copy_scan(url: &str) -> anyhow::Result<Rate> {
    let client = connect(url).await?;
    let types = EVENT_COLUMN_TYPES;
    let start = Instant::now();
    let stream = client
        .copy_out("COPY events TO STDOUT (FORMAT binary)")
        .await
        .context("COPY TO STDOUT failed")?;
    let rows = BinaryCopyOutStream::new(stream, &types);
    pin_mut!(rows);
    let (mut n, mut bytes) = (0_usize, 0_usize);
    while let Some(row) = rows.next().await {
        let row = row.context("COPY stream broke")?;
        bytes += row.get::<&[u8]>(8).len();
        n += 1;
        if n % 250_000 == 0 {
            say(&format!("  COPY scan: {n} rows"));
        }
    }
    let elapsed = start.elapsed();
    say(&format!(
        "  COPY scan: {n} rows, {:.1} MB of payload in {:.2} s",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64()
    ));
    Ok(Rate::new(n, elapsed, Latencies::default(), 0))
}
