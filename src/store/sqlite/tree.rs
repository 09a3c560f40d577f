//! The Merkle tree's tables and the signed tree heads (migration 7; `store::TreeStorage`).

use super::{SqliteStore, i64_of, u64_of};
use crate::store::StoreError;
use crate::store::audit::{TreeHead, TreeNode};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

const HEAD_COLUMNS: &str = "size, root, signed_at_ms, key, note";

fn head_of(r: &Row<'_>) -> rusqlite::Result<(i64, Vec<u8>, i64, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn hash_of(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Config("a stored tree hash is not 32 bytes".into()))
}

fn into_head(
    (size, root, at, key, note): (i64, Vec<u8>, i64, String, String),
) -> Result<TreeHead, StoreError> {
    Ok(TreeHead {
        size: u64_of(size),
        root: hash_of(root)?,
        signed_at: chrono::DateTime::from_timestamp_millis(at).unwrap_or_default(),
        key,
        note,
    })
}

impl SqliteStore {
    /// See `TreeStorage::chain_hashes`.
    pub async fn chain_hashes(&self, after: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT hash FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![i64_of(after), limit], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// See `TreeStorage::tree_built`.
    pub async fn tree_built(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let n: i64 = c.query_row("SELECT leaves FROM tree_built", [], |r| r.get(0))?;
            Ok(u64_of(n))
        })
        .await
    }

    /// See `TreeStorage::tree_chunks`.
    pub async fn tree_chunks(&self, chunks: Vec<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached("SELECT leaves FROM tree_chunks WHERE chunk = ?1")?;
            let mut out = Vec::new();
            for chunk in chunks {
                if let Some(leaves) = stmt
                    .query_row([i64_of(chunk)], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                {
                    out.push((chunk, leaves));
                }
            }
            Ok(out)
        })
        .await
    }

    /// See `TreeStorage::tree_nodes`.
    pub async fn tree_nodes(&self, keys: Vec<(u32, u64)>) -> Result<Vec<TreeNode>, StoreError> {
        self.run(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT hash FROM tree_nodes WHERE level = ?1 AND idx = ?2")?;
            let mut out = Vec::new();
            for (level, idx) in keys {
                if let Some(hash) = stmt
                    .query_row(params![level, i64_of(idx)], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                {
                    out.push((level, idx, hash_of(hash)?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// See `TreeStorage::save_tree`.
    pub async fn save_tree(
        &self,
        chunks: Vec<(u64, Vec<u8>)>,
        nodes: Vec<TreeNode>,
        built: u64,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                // A stored chunk is replaced only by a longer one that begins with it.
                let mut chunk = tx.prepare_cached(
                    "INSERT INTO tree_chunks (chunk, leaves) VALUES (?1, ?2)
                     ON CONFLICT (chunk) DO UPDATE SET leaves = excluded.leaves
                     WHERE length(excluded.leaves) > length(tree_chunks.leaves)
                       AND substr(excluded.leaves, 1, length(tree_chunks.leaves))
                           = tree_chunks.leaves",
                )?;
                for (id, leaves) in &chunks {
                    chunk.execute(params![i64_of(*id), leaves])?;
                }
                let mut node = tx.prepare_cached(
                    "INSERT OR IGNORE INTO tree_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
                )?;
                for (level, idx, hash) in &nodes {
                    node.execute(params![level, i64_of(*idx), hash.as_slice()])?;
                }
            }
            tx.execute(
                "UPDATE tree_built SET leaves = max(leaves, ?1)",
                [i64_of(built)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// See `TreeStorage::insert_tree_head`.
    pub async fn insert_tree_head(&self, head: TreeHead) -> Result<bool, StoreError> {
        self.run(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO tree_heads (size, root, signed_at_ms, key, note)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    i64_of(head.size),
                    head.root.as_slice(),
                    head.signed_at.timestamp_millis(),
                    head.key,
                    head.note
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// See `TreeStorage::tree_heads`.
    pub async fn tree_heads(&self, after: u64, limit: u32) -> Result<Vec<TreeHead>, StoreError> {
        self.heads(
            format!("SELECT {HEAD_COLUMNS} FROM tree_heads WHERE size > ?1 ORDER BY size LIMIT ?2"),
            after,
            limit,
        )
        .await
    }

    /// See `TreeStorage::latest_tree_head`.
    pub async fn latest_tree_head(&self) -> Result<Option<TreeHead>, StoreError> {
        let latest = self
            .heads(
                format!(
                    "SELECT {HEAD_COLUMNS} FROM tree_heads WHERE size > ?1
                     ORDER BY size DESC LIMIT ?2"
                ),
                0,
                1,
            )
            .await?;
        Ok(latest.into_iter().next())
    }

    /// See `TreeStorage::unpublished_tree_heads`.
    pub async fn unpublished_tree_heads(&self, limit: u32) -> Result<Vec<TreeHead>, StoreError> {
        self.heads(
            format!(
                "SELECT {HEAD_COLUMNS} FROM tree_heads
                 WHERE published_at_ms IS NULL AND size > ?1 ORDER BY size LIMIT ?2"
            ),
            0,
            limit,
        )
        .await
    }

    async fn heads(
        &self,
        sql: String,
        after: u64,
        limit: u32,
    ) -> Result<Vec<TreeHead>, StoreError> {
        let rows = self
            .run(move |c| {
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map(params![i64_of(after), limit], head_of)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        rows.into_iter().map(into_head).collect()
    }

    /// See `TreeStorage::mark_tree_head_published`.
    pub async fn mark_tree_head_published(&self, size: u64) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                "UPDATE tree_heads SET published_at_ms = ?2 WHERE size = ?1",
                params![i64_of(size), chrono::Utc::now().timestamp_millis()],
            )?;
            Ok(())
        })
        .await
    }
}
