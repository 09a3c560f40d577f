//! Rebuilding the projection beside the live one on the embedded store: shadow tables made from
//! the live tables' own `CREATE TABLE` text, filled in batches, and swapped in under the write
//! lock. See `store::postgres::replay` for the design.

use super::projections::{apply, checkpoint};
use super::{SqliteStore, i64_of, read_log};
use crate::store::StoreError;
use crate::store::projections::{Batch, Projection, Tables, table_pairs};

/// How many events the final catch-up reads per transaction.
const SWAP_BATCH: u32 = 2000;
use rusqlite::{Connection, TransactionBehavior, params};

impl SqliteStore {
    /// The embedded store folds a replay in batches only: no bulk pass.
    pub async fn replay_bulk(
        &self,
        _projections: Vec<Projection>,
        _on_read: impl FnMut(u64) + Send,
    ) -> Result<Option<Batch>, StoreError> {
        Ok(None)
    }

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
        let keys = self.keyring().await?;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let events = read_log(&tx, &keys, after, limit)?;
            for p in &projections {
                apply(&tx, *p, Tables::SHADOW, &events)?;
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
        let keys = self.keyring().await?;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut live_max = 0;
            for p in &projections {
                live_max = live_max.max(checkpoint(&tx, *p)?);
            }
            let (mut folded, mut applied) = (after, 0);
            loop {
                let events = read_log(&tx, &keys, folded, SWAP_BATCH)?;
                let Some(last) = events.last().map(|e| e.position) else {
                    break;
                };
                for p in &projections {
                    apply(&tx, *p, Tables::SHADOW, &events)?;
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
                    params![p.name(), i64_of(folded)],
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
