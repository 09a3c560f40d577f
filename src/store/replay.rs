//! Rebuilding projections beside the live ones: the shadow tables, the batches that fill them
//! and the atomic swap. The orchestration (progress, when to swap) is in
//! `projections::replay`.
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
use rusqlite::{Connection, TransactionBehavior, params};

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
