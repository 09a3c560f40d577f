//! Seeding the log directly (binary COPY of events built with the service's own types), and
//! the operator's projection rebuild (`replay`) measured over it.

use crate::db::connect;
use crate::say;
use crate::stats::{Latencies, Rate, Rng};
use anyhow::{Context, bail};
use chrono::Utc;
use futures::pin_mut;
use recovery_info::domain::{
    AdminId, DomainEvent, MethodId, MethodKind, PhoneNumber, RemovedMethod, StreamId, TenantId,
};
use recovery_info::events::{Actor, PendingEvent, RecordedEvent};
use recovery_info::projections::replay::{DEFAULT_BATCH, replay};
use recovery_info::store::Store;
use recovery_info::store::chain_hash;
use recovery_info::store::projections::Projection;
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The projection runners held still: a transaction holding their checkpoint rows (`FOR
/// UPDATE`, which every runner batch takes first), until [`HeldProjections::release`].
pub struct HeldProjections(tokio_postgres::Client);

/// Holds the projection runners (see [`HeldProjections`]).
pub async fn hold_projections(url: &str) -> anyhow::Result<HeldProjections> {
    let client = connect(url).await?;
    client
        .batch_execute(
            "BEGIN;
             SELECT position FROM projection_checkpoints ORDER BY name FOR UPDATE;",
        )
        .await
        .context("cannot hold the projection runners")?;
    Ok(HeldProjections(client))
}

impl HeldProjections {
    /// Lets the runners go on.
    pub async fn release(self) -> anyhow::Result<()> {
        self.0.batch_execute("COMMIT").await?;
        Ok(())
    }
}

/// Events per seeded admin, on average.
const EVENTS_PER_ADMIN: usize = 8;
const KINDS: [MethodKind; 3] = [
    MethodKind::MobilePhone,
    MethodKind::OfficePhone,
    MethodKind::Email,
];

/// A seeded admin stream: its methods, version and chain tip.
struct Stream {
    id: StreamId,
    methods: [Option<(MethodId, String)>; 3],
    version: u64,
    prev_hash: Vec<u8>,
}

impl Stream {
    /// The next event: add an absent kind, or change / remove a present one (valid for the
    /// admin decider, which the projections fold with).
    fn next_event(&mut self, values: &Values, rng: &mut Rng) -> DomainEvent {
        let present: Vec<usize> = (0..3).filter(|&k| self.methods[k].is_some()).collect();
        let absent: Vec<usize> = (0..3).filter(|&k| self.methods[k].is_none()).collect();
        let add = present.is_empty() || (!absent.is_empty() && rng.below(3) == 0);
        let from = if add { &absent } else { &present };
        let k = from[rng.below(from.len() as u64) as usize];
        let kind = KINDS[k];
        match self.methods[k].take() {
            None => {
                let id = MethodId::from_uuid(Uuid::now_v7());
                let value = values.value_for(k, rng);
                self.methods[k] = Some((id, value.clone()));
                DomainEvent::MethodAdded {
                    method_id: id,
                    kind,
                    value,
                }
            }
            Some((id, old_value)) if rng.below(3) == 0 => {
                DomainEvent::MethodRemoved(RemovedMethod {
                    method_id: id,
                    kind,
                    old_value,
                })
            }
            Some((id, old_value)) => {
                let new_value = values.value_for(k, rng);
                self.methods[k] = Some((id, new_value.clone()));
                DomainEvent::MethodChanged {
                    method_id: id,
                    kind,
                    old_value,
                    new_value,
                }
            }
        }
    }
}

/// Stored (E.164) values valid for the service's own parser, drawn once: parsing a number
/// per seeded event would make the seeding slower than the COPY.
struct Values {
    phones: [Vec<String>; 2],
}

impl Values {
    fn new(rng: &mut Rng) -> Self {
        let draw = |lead: u32, rng: &mut Rng| -> Vec<String> {
            let mut v = Vec::with_capacity(4096);
            while v.len() < 4096 {
                let e164 = format!("+45{lead}{:07}", rng.below(10_000_000));
                if PhoneNumber::parse(&e164).is_ok() {
                    v.push(e164);
                }
            }
            v
        };
        Values {
            phones: [draw(2, rng), draw(3, rng)],
        }
    }

    fn value_for(&self, k: usize, rng: &mut Rng) -> String {
        match self.phones.get(k) {
            Some(list) => list[rng.below(list.len() as u64) as usize].clone(),
            None => format!("seed.{}@example.org", rng.below(1_000_000_000_000)),
        }
    }
}

/// Appends `n` events (interleaved over `n / 8` new admins of `tenants` tenants) in one
/// transaction: the log head is moved first, under the same row lock the store's appends
/// take, then the rows are streamed with binary COPY. Returns the new head.
pub async fn seed(url: &str, n: usize, tenants: usize) -> anyhow::Result<u64> {
    if n == 0 || tenants == 0 {
        bail!("nothing to seed");
    }
    let mut client = connect(url).await?;
    let tx = client.transaction().await?;
    let last: i64 = tx
        .query_one(
            "UPDATE log_head SET position = position + $1 RETURNING position",
            &[&(n as i64)],
        )
        .await
        .context("cannot move the log head")?
        .get(0);
    let first = (last - n as i64 + 1) as u64;
    let sink = tx
        .copy_in(
            "COPY events (position, stream_id, stream_version, event_id, event_type, tenant_id,
                          admin_id, occurred_at, payload, prev_hash, hash)
             FROM STDIN (FORMAT binary)",
        )
        .await
        .context("COPY FROM STDIN failed")?;
    let writer = BinaryCopyInWriter::new(sink, &crate::raw_pg::EVENT_COLUMN_TYPES);
    pin_mut!(writer);

    let tenants: Vec<TenantId> = (0..tenants)
        .map(|_| TenantId::from_uuid(Uuid::new_v4()))
        .collect();
    let mut streams: Vec<Stream> = (0..(n / EVENTS_PER_ADMIN).max(1))
        .map(|i| Stream {
            id: StreamId::Admin(
                tenants[i % tenants.len()],
                AdminId::from_uuid(Uuid::new_v4()),
            ),
            methods: [None, None, None],
            version: 0,
            prev_hash: vec![0; 32],
        })
        .collect();
    let actor = Actor {
        subject: "recovery-bench-seed".into(),
        roles: vec!["authentication_admin".into()],
        ..Actor::default()
    };
    let mut rng = Rng::new(42);
    let values = Values::new(&mut rng);
    let now = Utc::now();
    for i in 0..n {
        let s = rng.below(streams.len() as u64) as usize;
        let stream = &mut streams[s];
        let event = stream.next_event(&values, &mut rng);
        stream.version += 1;
        let pending = PendingEvent {
            event_id: Uuid::now_v7(),
            occurred_at: now,
            actor: actor.clone(),
            correlation_id: Uuid::now_v7(),
            idempotency_key: None,
            event,
        };
        let recorded = RecordedEvent::place(pending, stream.id, stream.version, first + i as u64);
        let payload = recorded.encode();
        let hash = chain_hash(&stream.prev_hash, &payload);
        let stream_name = stream.id.to_string();
        let admin = stream.id.admin().map(|a| a.as_uuid());
        let row: [&(dyn ToSql + Sync); 11] = [
            &(recorded.position as i64),
            &stream_name,
            &(recorded.version as i64),
            &recorded.event_id,
            &recorded.type_name(),
            &stream.id.tenant().as_uuid(),
            &admin,
            &recorded.occurred_at,
            &payload,
            &stream.prev_hash,
            &hash,
        ];
        writer
            .as_mut()
            .write(&row)
            .await
            .context("COPY row failed")?;
        stream.prev_hash = hash;
        if (i + 1) % 200_000 == 0 {
            say(&format!("  seeded {} / {n} events", i + 1));
        }
    }
    writer.finish().await.context("COPY did not finish")?;
    tx.commit().await.context("cannot commit the seed")?;
    Ok(last as u64)
}

/// The operator's rebuild measured over the seeded log.
pub struct Rebuild {
    /// Events folded over the whole `replay`: shadow tables created, the bulk pass, the
    /// catch-up and the swap.
    pub rate: Rate,
    /// The position the rebuilt tables were swapped in at.
    pub checkpoint: u64,
}

/// Runs `replay` of the projection, as `recovery-info replay` does, while the service (and
/// its runner) keeps running; it must reach `head` within `timeout`.
pub async fn rebuild(store: &Store, head: u64, timeout: Duration) -> anyhow::Result<Rebuild> {
    let start = Instant::now();
    let replayed = tokio::time::timeout(timeout, replay(store, &Projection::ALL, DEFAULT_BATCH))
        .await
        .with_context(|| format!("the replay did not finish within {} s", timeout.as_secs()))?
        .context("the replay failed")?;
    let elapsed = start.elapsed();
    if replayed.checkpoint < head {
        bail!(
            "the replay swapped in at position {}, before the head {head}",
            replayed.checkpoint
        );
    }
    Ok(Rebuild {
        rate: Rate::new(replayed.events as usize, elapsed, Latencies::default(), 0),
        checkpoint: replayed.checkpoint,
    })
}
