//! Rebuilding projections beside the live ones: the shadow tables, the pass that fills them in
//! bulk (PostgreSQL) or the batches that fill them, and the atomic swap. The orchestration
//! (progress, when to swap) is in `projections::replay`.
//!
//! The swap keeps the service answering throughout: the live tables are read until the very
//! transaction that replaces them commits, and the checkpoint moves forward only (the rebuilt
//! tables are caught up to the head under the checkpoint's row lock, which the live runner also
//! takes first, so no batch of the runner can slip in between).

use super::postgres::{to_i64, to_u64};
use super::projections::{self, Batch, Projection, Tables};
use super::sqlite;
use super::{PgStore, SqliteStore, StoreError};
use crate::events::RecordedEvent;
use crate::projections::bulk::BulkFold;
use bytes::Bytes;
use futures::{StreamExt, pin_mut};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::mpsc;
use tokio_postgres::CopyOutStream;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::{Json, ToSql, Type};
use uuid::Uuid;

/// The pairs `(live, shadow)` of table names of `projections`.
fn table_pairs(projections: &[Projection]) -> Vec<(&'static str, &'static str)> {
    projections
        .iter()
        .flat_map(|p| Tables::LIVE.of(*p).into_iter().zip(Tables::SHADOW.of(*p)))
        .collect()
}

fn names(projections: &[Projection]) -> Vec<&'static str> {
    projections.iter().map(|p| p.name()).collect()
}

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
        let events = pg_read(&tx, after, limit).await?;
        for p in &projections {
            projections::apply(&tx, *p, Tables::SHADOW, &events).await?;
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
    /// The log is read in one transaction (one snapshot). Each table is written in a
    /// transaction of its own, on a connection of its own, so that PostgreSQL parses the
    /// tables' JSON on both cores at once; the shadow tables are not served before the swap,
    /// and a replay that fails leaves them for the next one to drop.
    #[tracing::instrument(skip_all, fields(projections = ?names(&projections)))]
    pub async fn replay_bulk(
        &self,
        projections: Vec<Projection>,
        on_read: impl FnMut(u64) + Send,
    ) -> Result<Batch, StoreError> {
        let started = std::time::Instant::now();
        let (head, decoded, fold) = self.fold_log(&projections, on_read).await?;
        let folded = started.elapsed();
        let written = self.write_fold(&fold).await?;
        // Freeing every admin's state takes a while (a fifth of a second per million events
        // here): the swap need not wait for it.
        tokio::task::spawn_blocking(move || drop(fold));
        tracing::info!(
            events = decoded,
            position = head,
            rows = written,
            fold_ms = folded.as_millis() as u64,
            write_ms = (started.elapsed() - folded).as_millis() as u64,
            "bulk replay: shadow tables filled"
        );
        Ok(Batch {
            applied: decoded as usize,
            checkpoint: head,
        })
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
        projections: &[Projection],
        mut on_read: impl FnMut(u64) + Send,
    ) -> Result<(u64, u64, BulkFold), StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
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
            let mut fold = BulkFold::new(projections);
            to_shards.push(shard);
            folds.push(tokio::task::spawn_blocking(move || {
                while let Some(batch) = payloads.blocking_recv() {
                    for payload in batch {
                        let event = RecordedEvent::decode_for_fold(&payload)?;
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
        let read = route_rows(stream, &to_shards, &mut on_read).await;
        // Closing the channels ends the shards' loops.
        drop(to_shards);
        let mut fold = BulkFold::new(projections);
        for shard in folds {
            match shard.await {
                Ok(part) => fold.merge(part?),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(StoreError::Config(format!("a fold shard stopped: {e}"))),
            }
        }
        let decoded = read?;
        tx.commit().await?;
        Ok((head, decoded, fold))
    }

    /// Writes every row of `fold` into the (empty) shadow tables, the tables at once; returns
    /// the number of rows.
    async fn write_fold(&self, fold: &BulkFold) -> Result<u64, StoreError> {
        let tables = Tables::SHADOW;
        let views: Vec<_> = fold
            .contact_views()
            .into_iter()
            .map(|((t, a), state)| (t.as_uuid(), a.as_uuid(), Json(state)))
            .collect();
        let eligibility = fold.eligibility();
        let tenants: Vec<_> = eligibility
            .tenants
            .into_iter()
            .map(|(t, state)| (t.as_uuid(), Json(state)))
            .collect();
        let admins: Vec<_> = eligibility
            .admins
            .into_iter()
            .map(|((t, a), e)| {
                let changed = to_i64(e.changed_position);
                (
                    t.as_uuid(),
                    a.as_uuid(),
                    Json(&e.state),
                    Json(&e.verdict),
                    changed,
                )
            })
            .collect();
        let (views, tenants, admins) = futures::try_join!(
            self.copy_rows(
                tables.contact_views,
                "tenant_id, admin_id, state",
                &[Type::UUID, Type::UUID, Type::JSON],
                views.iter().map(|(t, a, s)| [t as _, a as _, s as _]),
            ),
            self.copy_rows(
                tables.eligibility_tenants,
                "tenant_id, state",
                &[Type::UUID, Type::JSON],
                tenants.iter().map(|(t, s)| [t as _, s as _]),
            ),
            self.copy_rows(
                tables.eligibility_admins,
                "tenant_id, admin_id, state, verdict, changed_position",
                &[Type::UUID, Type::UUID, Type::JSON, Type::JSON, Type::INT8],
                admins
                    .iter()
                    .map(|(t, a, s, v, c)| [t as _, a as _, s as _, v as _, c as _]),
            ),
        )?;
        Ok(views + tenants + admins)
    }

    /// Writes `rows` into `table` with binary `COPY`, on a connection and in a transaction of
    /// its own; nothing (not even a connection) when there are none.
    async fn copy_rows<'a, const N: usize>(
        &self,
        table: &str,
        columns: &str,
        types: &[Type],
        rows: impl Iterator<Item = [&'a (dyn ToSql + Sync); N]> + Send,
    ) -> Result<u64, StoreError> {
        let mut rows = rows.peekable();
        if rows.peek().is_none() {
            return Ok(0);
        }
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        // The swap's commit waits for the WAL flush, and so for this transaction's too.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        // Building the primary key once over the loaded rows is cheaper than inserting each
        // row into it (a tenth to a fifth of a second per 100k admins here); the key is back
        // before the commit, for the swap's catch-up and for the live runner after it.
        let key = tx
            .query_opt(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE conrelid = $1::text::regclass AND contype = 'p'",
                &[&table],
            )
            .await?
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)));
        if let Some((name, _)) = &key {
            tx.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
                .await?;
        }
        let sink = tx
            .copy_in(&format!(
                "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, types);
        pin_mut!(writer);
        for row in rows {
            writer.as_mut().write(&row).await?;
        }
        let written = writer.finish().await?;
        if let Some((name, definition)) = &key {
            tx.batch_execute(&format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(written)
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
            let events = pg_read(&tx, folded, limit).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            for p in &projections {
                projections::apply(&tx, *p, Tables::SHADOW, &events).await?;
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
    shards: &[mpsc::Sender<Vec<Bytes>>],
    on_read: &mut (impl FnMut(u64) + Send),
) -> Result<u64, StoreError> {
    let rows = BinaryCopyOutStream::new(stream, &[Type::UUID, Type::BYTEA]);
    pin_mut!(rows);
    let batch = || Vec::with_capacity(READ_BATCH);
    let mut parts: Vec<Vec<Bytes>> = shards.iter().map(|_| batch()).collect();
    let mut read = 0;
    while let Some(row) = rows.next().await {
        let row = row?;
        let shard = shard_of(row.try_get(0)?, shards.len());
        parts[shard].push(Bytes::copy_from_slice(row.try_get::<&[u8]>(1)?));
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
    after: u64,
    limit: u32,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let read = tx
        .prepare_cached("SELECT payload FROM events WHERE position > $1 ORDER BY position LIMIT $2")
        .await?;
    tx.query(&read, &[&to_i64(after), &i64::from(limit)])
        .await?
        .iter()
        .map(|r| RecordedEvent::decode(r.get::<_, &[u8]>(0)).map_err(StoreError::from))
        .collect()
}

impl SqliteStore {
    /// Drops any shadow tables an interrupted replay left and creates empty ones with the live
    /// tables' own `CREATE TABLE` text.
    pub async fn replay_prepare(&self, projections: Vec<Projection>) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (live, shadow) in table_pairs(&projections) {
                tx.execute_batch(&format!("DROP TABLE IF EXISTS {shadow}"))?;
                tx.execute_batch(&shadow_ddl(&tx, live, shadow)?)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Folds up to `limit` events after `after` into the shadow tables, in one transaction.
    pub async fn replay_batch(
        &self,
        projections: Vec<Projection>,
        after: u64,
        limit: u32,
    ) -> Result<Batch, StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let events = sqlite::read_log(&tx, after, limit)?;
            for p in &projections {
                sqlite::apply(&tx, *p, Tables::SHADOW, &events)?;
            }
            tx.commit()?;
            Ok(Batch {
                applied: events.len(),
                checkpoint: events.last().map_or(after, |e| e.position),
            })
        })
        .await
    }

    /// Catches the shadow tables up to the head and swaps them in, under `BEGIN IMMEDIATE`
    /// (the database's write lock: no append and no live batch can run meanwhile).
    pub async fn replay_swap(
        &self,
        projections: Vec<Projection>,
        after: u64,
    ) -> Result<Batch, StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut live_max = 0;
            for p in &projections {
                live_max = live_max.max(sqlite::checkpoint(&tx, *p)?);
            }
            let (mut folded, mut applied) = (after, 0);
            loop {
                let events = sqlite::read_log(&tx, folded, SWAP_BATCH)?;
                let Some(last) = events.last().map(|e| e.position) else {
                    break;
                };
                for p in &projections {
                    sqlite::apply(&tx, *p, Tables::SHADOW, &events)?;
                }
                applied += events.len();
                folded = last;
            }
            if folded < live_max {
                return Err(StoreError::Config(format!(
                    "the rebuild reached position {folded}, behind the live checkpoint {live_max}"
                )));
            }
            for (live, shadow) in table_pairs(&projections) {
                tx.execute_batch(&format!(
                    "DROP TABLE {live}; ALTER TABLE {shadow} RENAME TO {live};"
                ))?;
            }
            for p in &projections {
                tx.execute(
                    "UPDATE projection_checkpoints SET position = ?2 WHERE name = ?1",
                    params![p.name(), to_i64(folded)],
                )?;
            }
            tx.commit()?;
            Ok(Batch {
                applied,
                checkpoint: folded,
            })
        })
        .await
    }
}

/// The live table's `CREATE TABLE` statement, renamed to `shadow`. Refuses tables with
/// secondary indexes, which this copy would not carry over.
fn shadow_ddl(c: &Connection, live: &str, shadow: &str) -> Result<String, StoreError> {
    let sql: String = c.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [live],
        |r| r.get(0),
    )?;
    let indexes: i64 = c.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1
         AND sql IS NOT NULL",
        [live],
        |r| r.get(0),
    )?;
    if indexes > 0 {
        return Err(StoreError::Config(format!(
            "{live} has secondary indexes, which replay does not copy yet"
        )));
    }
    // SQLite keeps the text as written, with the name quoted after an `ALTER TABLE … RENAME`.
    let rest = [
        format!("CREATE TABLE {live} "),
        format!("CREATE TABLE \"{live}\" "),
    ]
    .iter()
    .find_map(|prefix| sql.strip_prefix(prefix.as_str()))
    .ok_or_else(|| StoreError::Config(format!("unexpected definition of {live}: {sql}")))?;
    Ok(format!("CREATE TABLE {shadow} {rest}"))
}
