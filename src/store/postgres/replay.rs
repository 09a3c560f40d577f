//! Rebuilding projections beside the live ones: the shadow tables, the pass that fills them in
//! bulk (PostgreSQL) or the batches that fill them, and the atomic swap. The orchestration
//! (progress, when to swap) is in `projections::replay`.
//!
//! The swap keeps the service answering throughout: the live tables are read until the very
//! transaction that replaces them commits, and the checkpoint moves forward only (the rebuilt
//! tables are caught up to the head under the checkpoint's row lock, which the live runner also
//! takes first, so no batch of the runner can slip in between).

use super::projections::apply;
use super::{KEYED_COLUMNS, KEYED_JOIN, PgStore, decode_keyed_row, to_i64, to_u64};
use crate::domain::{AdminId, StreamId, TenantId};
use crate::events::{DecodeError, RecordedEvent};
use crate::fold::bulk::BulkFold;
use crate::keys::{KeySlot, Keyring, WrappedKey};
use crate::store::StoreError;
use crate::store::keys::key_row;
use crate::store::projections::{Batch, Projection, Tables, names, table_pairs};
use bytes::Bytes;
use futures::{StreamExt, pin_mut};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_postgres::CopyOutStream;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::{IsNull, ToSql, Type, accepts, to_sql_checked};
use uuid::Uuid;

/// How many events the final catch-up reads per round trip.
const SWAP_BATCH: u32 = 2000;

/// Events per batch from the reader to a fold shard of a bulk replay (and per progress
/// report).
const READ_BATCH: usize = 1000;

/// Batches that may wait for a fold shard (memory stays bounded if it falls behind).
const READ_IN_FLIGHT: usize = 8;

impl PgStore {
    /// Drops any shadow tables an interrupted replay left and creates empty ones shaped like
    /// the live tables (columns, keys, indexes).
    pub async fn replay_prepare(&self, projections: Vec<Projection>) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        let mut sql = String::new();
        for (live, shadow) in table_pairs(&projections) {
            sql.push_str(&format!(
                "DROP TABLE IF EXISTS {shadow};
                 CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL);"
            ));
        }
        client.batch_execute(&sql).await?;
        Ok(())
    }

    /// Folds up to `limit` events after `after` into the shadow tables, in one transaction.
    pub async fn replay_batch(
        &self,
        projections: Vec<Projection>,
        after: u64,
        limit: u32,
    ) -> Result<Batch, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let keys = self.keyring().await?;
        let events = pg_read(&tx, &keys, after, limit).await?;
        for p in &projections {
            apply(&tx, *p, Tables::SHADOW, &events).await?;
        }
        tx.commit().await?;
        Ok(Batch {
            applied: events.len(),
            checkpoint: events.last().map_or(after, |e| e.position),
        })
    }

    /// Fills the empty shadow tables with the whole log up to the committed head: one binary
    /// `COPY` reads the payloads in log order, every projection is folded in memory as they
    /// arrive ([`BulkFold`]), and one binary `COPY` per table writes the rows, with the same
    /// contents as the batches write. `on_read` counts the events as they are read.
    ///
    /// Run it on a worker of the runtime (the binary runs every command as a task): the
    /// connection's task hands the reader each row, and waking a thread outside the workers
    /// took a system call per row.
    ///
    /// The log is read in one transaction (one snapshot). Each table is written in a
    /// transaction of its own, on a connection of its own, so that PostgreSQL parses the
    /// tables' JSON on both cores at once; the shadow tables are not served before the swap,
    /// and a replay that fails leaves them for the next one to drop.
    #[tracing::instrument(skip_all, fields(projections = ?names(&projections)))]
    pub async fn replay_bulk(
        &self,
        projections: Vec<Projection>,
        on_read: impl FnMut(u64) + Send,
    ) -> Result<Option<Batch>, StoreError> {
        let started = std::time::Instant::now();
        let (head, decoded, fold) = self.fold_log(on_read).await?;
        let folded = started.elapsed();
        let written = self.write_fold(fold).await?;
        tracing::info!(
            events = decoded,
            position = head,
            rows = written,
            fold_ms = folded.as_millis() as u64,
            write_ms = (started.elapsed() - folded).as_millis() as u64,
            "bulk replay: shadow tables filled"
        );
        Ok(Some(Batch {
            applied: decoded as usize,
            checkpoint: head,
        }))
    }

    /// Reads the log up to the committed head and folds it; returns the head, the number of
    /// events and the fold.
    ///
    /// Two stages: this task reads the `COPY` stream and hands each payload to its tenant's
    /// shard (by the row's `tenant_id`); one blocking thread per shard decodes and folds (an
    /// eligibility verdict per event). Tenants' folds are independent of each other, so the
    /// shards are merged at the end by moving their maps (docs/benchmarks.md).
    async fn fold_log(
        &self,
        mut on_read: impl FnMut(u64) + Send,
    ) -> Result<(u64, u64, BulkFold), StoreError> {
        let keys = self.keyring().await?;
        let mut client = self.pool().get().await?;
        // One snapshot for the data keys and the log: every sealed event read has its key.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let data_keys = Arc::new(all_data_keys(&tx).await?);
        // The log is read in position order straight off its primary key: a sort of the whole
        // log would spill to disk, and the planner may choose one when its statistics are
        // stale (right after a bulk load).
        tx.batch_execute("SET LOCAL enable_sort = off").await?;
        // Every position up to the committed head is committed (the append lock), and the
        // COPY's snapshot is taken after this read: it sees all of them.
        let head = to_u64(
            tx.query_one("SELECT position FROM log_head", &[])
                .await?
                .get(0),
        );
        tracing::info!(head, "bulk replay: reading the log");
        let stream = tx
            .copy_out(&format!(
                "COPY (SELECT tenant_id, payload FROM events WHERE position <= {head}
                       ORDER BY position)
                 TO STDOUT (FORMAT binary)"
            ))
            .await?;
        let shards = fold_shards();
        let (mut to_shards, mut folds) = (Vec::new(), Vec::new());
        for index in 0..shards {
            let (shard, mut payloads) = mpsc::channel::<Vec<Bytes>>(READ_IN_FLIGHT);
            let mut fold = BulkFold::new();
            to_shards.push(shard);
            let (keys, data_keys) = (keys.clone(), data_keys.clone());
            folds.push(tokio::task::spawn_blocking(move || {
                // The shard's admins' data keys, unwrapped once each.
                let mut slots: HashMap<(TenantId, AdminId), KeySlot> = HashMap::new();
                while let Some(batch) = payloads.blocking_recv() {
                    for payload in batch {
                        let event = RecordedEvent::decode_for_fold_with(&payload, |stream| {
                            bulk_slot(&keys, &data_keys, &mut slots, stream)
                        })?;
                        // A tenant folded on two shards would lose one part at the merge.
                        if shard_of(event.stream.tenant().as_uuid(), shards) != index {
                            return Err(StoreError::Config(format!(
                                "the event at position {} is not in its row's tenant_id",
                                event.position
                            )));
                        }
                        fold.apply(&event);
                    }
                }
                fold.finish();
                Ok::<_, StoreError>(fold)
            }));
        }
        // Closes the shards' channels when it returns, which ends their loops.
        let read = route_rows(stream, to_shards, &mut on_read).await;
        let mut fold = BulkFold::new();
        for shard in folds {
            fold.merge(joined(shard.await, "a fold shard")??);
        }
        let decoded = read?;
        tx.commit().await?;
        Ok((head, decoded, fold))
    }

    /// Writes the rows of `fold` into the (empty) shadow tables, the tables at once; returns
    /// the number of rows.
    ///
    /// A blocking thread serializes the rows' JSON documents a chunk ahead of the writes
    /// ([`serialize_rows`]), and this task writes each chunk into the tables' `COPY`s; a table
    /// without rows gets no `COPY` (nor a connection). The fold is freed on that thread once
    /// serialized (a fifth of a second per million events here): the writes do not wait for it.
    async fn write_fold(&self, fold: BulkFold) -> Result<u64, StoreError> {
        let tables = Tables::SHADOW;
        let (to_writer, mut chunks) = mpsc::channel(CHUNKS_AHEAD);
        let serializer = tokio::task::spawn_blocking(move || serialize_rows(fold, to_writer));
        let (mut tenants, mut admins) = (None, None);
        loop {
            let chunk = match chunks.recv().await {
                Some(chunk) => chunk?,
                // The serializer stopped without its last message: it panicked.
                None => {
                    joined(serializer.await, "serializing the rows")?;
                    return Err(StoreError::Config("serializing the rows stopped".into()));
                }
            };
            let Some(chunk) = chunk else {
                break;
            };
            if !chunk.tenants.is_empty() {
                let copy = ShadowCopy::opened(
                    &mut tenants,
                    self,
                    tables.tenants,
                    "tenant_id, state",
                    &[Type::UUID, Type::JSON],
                )
                .await?;
                for (t, state) in chunk.tenants.iter().zip(chunk.tenant_states.all()) {
                    copy.write(&[t, &state]).await?;
                }
            }
            if !chunk.admins.is_empty() {
                let copy = ShadowCopy::opened(
                    &mut admins,
                    self,
                    tables.admins,
                    "tenant_id, admin_id, state, verdict, changed_position",
                    &[Type::UUID, Type::UUID, Type::JSON, Type::JSON, Type::INT8],
                )
                .await?;
                let rows = chunk
                    .admins
                    .iter()
                    .zip(chunk.admin_states.all())
                    .zip(chunk.verdicts.all());
                for (((t, a, changed), state), verdict) in rows {
                    copy.write(&[t, a, &state, &verdict, changed]).await?;
                }
            }
        }
        let finish = |copy: Option<ShadowCopy>| async move {
            match copy {
                Some(copy) => copy.finish().await,
                None => Ok(0),
            }
        };
        let (tenants, admins) = futures::try_join!(finish(tenants), finish(admins))?;
        Ok(tenants + admins)
    }

    /// Catches the shadow tables up from `after` to the head and swaps them in, in one
    /// transaction: lock the live checkpoints (`FOR UPDATE`: the live runners wait), fold the
    /// rest of the log into the shadow tables, drop the live tables, rename the shadow ones,
    /// and set the checkpoints to the position folded. Readers see the old tables until the
    /// commit and the new ones after it.
    pub async fn replay_swap(
        &self,
        projections: Vec<Projection>,
        after: u64,
    ) -> Result<Batch, StoreError> {
        let keys = self.keyring().await?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let live: Vec<i64> = tx
            .query(
                "SELECT position FROM projection_checkpoints WHERE name = ANY($1)
                 ORDER BY name FOR UPDATE",
                &[&names(&projections)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Every position up to the committed head is committed (the append lock): read up to
        // it, and leave later appends to the live runner.
        let head = to_u64(
            tx.query_one("SELECT position FROM log_head", &[])
                .await?
                .get(0),
        );
        let (mut folded, mut applied) = (after, 0);
        while folded < head {
            let limit = u32::try_from(head - folded)
                .unwrap_or(SWAP_BATCH)
                .min(SWAP_BATCH);
            let events = pg_read(&tx, &keys, folded, limit).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            for p in &projections {
                apply(&tx, *p, Tables::SHADOW, &events).await?;
            }
            applied += events.len();
            folded = last;
        }
        let live_max = live.iter().copied().map(to_u64).max().unwrap_or(0);
        if folded < live_max {
            return Err(StoreError::Config(format!(
                "the rebuild reached position {folded}, behind the live checkpoint {live_max}"
            )));
        }
        let mut sql = String::new();
        for (live, shadow) in table_pairs(&projections) {
            sql.push_str(&format!(
                "DROP TABLE {live};
                 ALTER TABLE {shadow} RENAME TO {live};
                 ALTER INDEX IF EXISTS {shadow}_pkey RENAME TO {live}_pkey;"
            ));
        }
        tx.batch_execute(&sql).await?;
        tx.execute(
            "UPDATE projection_checkpoints SET position = $2 WHERE name = ANY($1)",
            &[&names(&projections), &to_i64(folded)],
        )
        .await?;
        tx.commit().await?;
        Ok(Batch {
            applied,
            checkpoint: folded,
        })
    }
}

/// Rows per table in a chunk of [`serialize_rows`].
const CHUNK_ROWS: usize = 1024;

/// Chunks that may wait for the writes.
const CHUNKS_AHEAD: usize = 4;

/// The rows `i..j` of each shadow table (a table may have fewer), with their JSON documents.
#[derive(Debug, Default)]
struct Chunk {
    tenants: Vec<Uuid>,
    tenant_states: Documents,
    /// `(tenant, admin, changed_position)`.
    admins: Vec<(Uuid, Uuid, i64)>,
    admin_states: Documents,
    verdicts: Documents,
}

/// Serializes the rows of `fold` in key order, a chunk at a time, into `out`, then `None`;
/// frees the fold.
fn serialize_rows(fold: BulkFold, out: mpsc::Sender<Result<Option<Chunk>, StoreError>>) {
    let all = fold.rows();
    let (tenants, admins) = (&all.tenants, &all.admins);
    let rows = tenants.len().max(admins.len());
    for start in (0..rows).step_by(CHUNK_ROWS) {
        let range = |len: usize| start.min(len)..(start + CHUNK_ROWS).min(len);
        let (tenants, admins) = (&tenants[range(tenants.len())], &admins[range(admins.len())]);
        let chunk = (|| {
            Ok(Chunk {
                tenants: tenants.iter().map(|(t, _)| t.as_uuid()).collect(),
                tenant_states: Documents::of(tenants.iter().map(|(_, state)| *state))?,
                admins: admins
                    .iter()
                    .map(|((t, a), e)| (t.as_uuid(), a.as_uuid(), to_i64(e.changed_position)))
                    .collect(),
                admin_states: Documents::of(admins.iter().map(|(_, e)| &e.state))?,
                verdicts: Documents::of(admins.iter().map(|(_, e)| &e.verdict))?,
            })
        })();
        let failed = chunk.is_err();
        if out.blocking_send(chunk.map(Some)).is_err() || failed {
            return;
        }
    }
    let _ = out.blocking_send(Ok(None));
}

/// JSON documents serialized back to back.
#[derive(Debug, Default)]
struct Documents {
    text: Vec<u8>,
    /// Where each document ends in `text`.
    ends: Vec<usize>,
}

impl Documents {
    /// Serializes `values` in order.
    fn of<'a, T: serde::Serialize + 'a>(
        values: impl Iterator<Item = &'a T>,
    ) -> Result<Documents, StoreError> {
        let mut all = Documents::default();
        for value in values {
            serde_json::to_writer(&mut all.text, value).map_err(|e| {
                StoreError::Config(format!("a projection row does not serialize: {e}"))
            })?;
            all.ends.push(all.text.len());
        }
        Ok(all)
    }

    fn all(&self) -> impl Iterator<Item = RawJson<'_>> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, end)| RawJson(&self.text[start..*end]))
    }
}

/// A JSON document already serialized, for a `json` column (whose binary form is the text).
#[derive(Clone, Copy, Debug)]
struct RawJson<'a>(&'a [u8]);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    accepts!(JSON);
    to_sql_checked!();
}

/// A binary `COPY` into an empty shadow table, in a transaction of its own on a connection of
/// its own. The table's primary key is dropped before the rows and built once over them at the
/// end (cheaper than inserting each row into it: a tenth to a fifth of a second per 100k
/// admins here); it is back before the commit, for the swap's catch-up and the live runner.
///
/// The connection leaves the pool for good: a copy that fails or is dropped half way closes it
/// with its transaction open (the server rolls it back), rather than hand it to the next user.
struct ShadowCopy {
    client: deadpool_postgres::ClientWrapper,
    writer: Pin<Box<BinaryCopyInWriter>>,
    table: &'static str,
    /// The primary key's name and definition.
    key: Option<(String, String)>,
}

impl ShadowCopy {
    async fn begin(
        store: &PgStore,
        table: &'static str,
        columns: &str,
        types: &[Type],
    ) -> Result<ShadowCopy, StoreError> {
        let client = deadpool_postgres::Object::take(store.pool().get().await?);
        // The swap's commit waits for the WAL flush, and so for this transaction's too.
        client
            .batch_execute("BEGIN; SET LOCAL synchronous_commit = off")
            .await?;
        let key = client
            .query_opt(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE conrelid = $1::text::regclass AND contype = 'p'",
                &[&table],
            )
            .await?
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)));
        if let Some((name, _)) = &key {
            client
                .batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
                .await?;
        }
        let sink = client
            .copy_in(&format!(
                "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        Ok(ShadowCopy {
            client,
            writer: Box::pin(BinaryCopyInWriter::new(sink, types)),
            table,
            key,
        })
    }

    /// The copy in `slot`, begun on first use.
    async fn opened<'s>(
        slot: &'s mut Option<ShadowCopy>,
        store: &PgStore,
        table: &'static str,
        columns: &str,
        types: &[Type],
    ) -> Result<&'s mut ShadowCopy, StoreError> {
        Ok(match slot {
            Some(copy) => copy,
            None => slot.insert(ShadowCopy::begin(store, table, columns, types).await?),
        })
    }

    async fn write(&mut self, row: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
        Ok(self.writer.as_mut().write(row).await?)
    }

    /// Ends the `COPY`, builds the primary key and commits; returns the number of rows.
    async fn finish(mut self) -> Result<u64, StoreError> {
        let rows = self.writer.as_mut().finish().await?;
        if let Some((name, definition)) = &self.key {
            self.client
                .batch_execute(&format!(
                    "ALTER TABLE {} ADD CONSTRAINT {name} {definition}",
                    self.table
                ))
                .await?;
        }
        self.client.batch_execute("COMMIT").await?;
        Ok(rows)
    }
}

/// What a task of the replay returned ([`crate::task::unwound`]); a task cancelled is an error
/// naming `what`.
fn joined<T>(outcome: Result<T, tokio::task::JoinError>, what: &str) -> Result<T, StoreError> {
    crate::task::unwound(outcome).map_err(|e| StoreError::Config(format!("{what} stopped: {e}")))
}

/// How many shards of tenants the bulk fold runs on: one per core.
fn fold_shards() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8))
}

/// The shard of an event's tenant (the random low bits of its id).
fn shard_of(tenant: Uuid, shards: usize) -> usize {
    (tenant.as_u128() as u64 % shards as u64) as usize
}

/// Reads the rows `(tenant_id, payload)` of a binary `COPY` and sends each payload to its
/// tenant's shard, which decodes and folds it (decoding takes as long as the rest of the
/// reading: it runs on the shards' threads), in batches of up to [`READ_BATCH`]; returns how
/// many it read. Stops at the first error, or early if a shard is gone (it failed or panicked:
/// its join says so).
async fn route_rows(
    stream: CopyOutStream,
    shards: Vec<mpsc::Sender<Vec<Bytes>>>,
    on_read: &mut (impl FnMut(u64) + Send),
) -> Result<u64, StoreError> {
    let rows = BinaryCopyOutStream::new(stream, &[Type::UUID, Type::BYTEA]);
    pin_mut!(rows);
    let batch = || Vec::with_capacity(READ_BATCH);
    let mut parts: Vec<Vec<Bytes>> = shards.iter().map(|_| batch()).collect();
    let mut read = 0;
    while let Some(row) = rows.next().await {
        let row = row?;
        let tenant = row.try_get(0)?;
        let payload = Bytes::copy_from_slice(row.try_get::<&[u8]>(1)?);
        let shard = shard_of(tenant, shards.len());
        parts[shard].push(payload);
        read += 1;
        if read % READ_BATCH as u64 == 0 {
            on_read(READ_BATCH as u64);
        }
        if parts[shard].len() == READ_BATCH {
            let full = std::mem::replace(&mut parts[shard], batch());
            if shards[shard].send(full).await.is_err() {
                return Ok(read);
            }
        }
    }
    on_read(read % READ_BATCH as u64);
    for (shard, part) in shards.iter().zip(parts) {
        if !part.is_empty() && shard.send(part).await.is_err() {
            break;
        }
    }
    Ok(read)
}

async fn pg_read(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &Keyring,
    after: u64,
    limit: u32,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let read = tx
        .prepare_cached(&format!(
            "SELECT {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
             WHERE e.position > $1 ORDER BY e.position LIMIT $2"
        ))
        .await?;
    tx.query(&read, &[&to_i64(after), &i64::from(limit)])
        .await?
        .iter()
        .map(|r| decode_keyed_row(keys, r, 0))
        .collect()
}

/// The key slot of a stream's events in a bulk fold, from the rows read before the `COPY`.
fn bulk_slot(
    keys: &Keyring,
    rows: &HashMap<(Uuid, Uuid), Option<WrappedKey>>,
    slots: &mut HashMap<(TenantId, AdminId), KeySlot>,
    stream: &StreamId,
) -> Result<KeySlot, DecodeError> {
    let StreamId::Admin(t, a) = *stream else {
        return Ok(KeySlot::None);
    };
    if let Some(slot) = slots.get(&(t, a)) {
        return Ok(slot.clone());
    }
    let slot = match rows.get(&(t.as_uuid(), a.as_uuid())) {
        None => KeySlot::None,
        Some(None) => KeySlot::Erased,
        Some(Some(row)) => KeySlot::Live(
            keys.unwrap_uncached(t, a, row)
                .map_err(|e| DecodeError(e.to_string()))?,
        ),
    };
    slots.insert((t, a), slot.clone());
    Ok(slot)
}

/// Every data-key row, for a bulk fold (read in the snapshot of its `COPY`).
async fn all_data_keys(
    tx: &deadpool_postgres::Transaction<'_>,
) -> Result<HashMap<(Uuid, Uuid), Option<WrappedKey>>, StoreError> {
    Ok(tx
        .query(
            "SELECT tenant_id, admin_id, kek_id, wrapped FROM data_keys",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let row = key_row(true, r.get(2), r.get(3)).flatten();
            ((r.get(0), r.get(1)), row)
        })
        .collect())
}
