//! The Merkle tree's tables and the signed tree heads (migration 8; `store::TreeStorage`).

use super::{PgStore, to_i64, to_u64};
use crate::store::StoreError;
use crate::store::audit::{TreeHead, TreeNode};

const HEAD_COLUMNS: &str = "size, root, signed_at, key, note";

fn head_of(r: &tokio_postgres::Row) -> Result<TreeHead, StoreError> {
    Ok(TreeHead {
        size: to_u64(r.get(0)),
        root: hash_of(r.get(1))?,
        signed_at: r.get(2),
        key: r.get(3),
        note: r.get(4),
    })
}

fn hash_of(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Config("a stored tree hash is not 32 bytes".into()))
}

impl PgStore {
    /// See `TreeStorage::chain_hashes`.
    pub async fn chain_hashes(&self, after: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT hash FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&to_i64(after), &i64::from(limit)])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// See `TreeStorage::tree_built`.
    pub async fn tree_built(&self) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_one("SELECT leaves FROM tree_built", &[])
            .await?;
        Ok(to_u64(row.get(0)))
    }

    /// See `TreeStorage::tree_chunks`.
    pub async fn tree_chunks(&self, chunks: Vec<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let client = self.pool().get().await?;
        let ids: Vec<i64> = chunks.into_iter().map(to_i64).collect();
        let rows = client
            .query(
                "SELECT chunk, leaves FROM tree_chunks WHERE chunk = ANY($1) ORDER BY chunk",
                &[&ids],
            )
            .await?;
        Ok(rows.iter().map(|r| (to_u64(r.get(0)), r.get(1))).collect())
    }

    /// See `TreeStorage::tree_nodes`.
    pub async fn tree_nodes(&self, keys: Vec<(u32, u64)>) -> Result<Vec<TreeNode>, StoreError> {
        let client = self.pool().get().await?;
        let levels: Vec<i16> = keys.iter().map(|k| k.0 as i16).collect();
        let idxs: Vec<i64> = keys.iter().map(|k| to_i64(k.1)).collect();
        let rows = client
            .query(
                "SELECT n.level, n.idx, n.hash
                 FROM unnest($1::smallint[], $2::bigint[]) AS k(level, idx)
                 JOIN tree_nodes n USING (level, idx)",
                &[&levels, &idxs],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get::<_, i16>(0) as u32,
                    to_u64(r.get(1)),
                    hash_of(r.get(2))?,
                ))
            })
            .collect()
    }

    /// See `TreeStorage::save_tree`.
    pub async fn save_tree(
        &self,
        chunks: Vec<(u64, Vec<u8>)>,
        nodes: Vec<TreeNode>,
        built: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (ids, leaves): (Vec<i64>, Vec<Vec<u8>>) =
            chunks.into_iter().map(|(c, l)| (to_i64(c), l)).unzip();
        // A stored chunk is replaced only by a longer one that begins with it.
        tx.execute(
            "INSERT INTO tree_chunks (chunk, leaves) SELECT * FROM unnest($1::bigint[], $2::bytea[])
             ON CONFLICT (chunk) DO UPDATE SET leaves = excluded.leaves
             WHERE length(excluded.leaves) > length(tree_chunks.leaves)
               AND substring(excluded.leaves FROM 1 FOR length(tree_chunks.leaves))
                   = tree_chunks.leaves",
            &[&ids, &leaves],
        )
        .await?;
        let levels: Vec<i16> = nodes.iter().map(|n| n.0 as i16).collect();
        let idxs: Vec<i64> = nodes.iter().map(|n| to_i64(n.1)).collect();
        let hashes: Vec<&[u8]> = nodes.iter().map(|n| n.2.as_slice()).collect();
        tx.execute(
            "INSERT INTO tree_nodes (level, idx, hash)
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
             ON CONFLICT DO NOTHING",
            &[&levels, &idxs, &hashes],
        )
        .await?;
        tx.execute(
            "UPDATE tree_built SET leaves = greatest(leaves, $1)",
            &[&to_i64(built)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// See `TreeStorage::insert_tree_head`.
    pub async fn insert_tree_head(&self, head: TreeHead) -> Result<bool, StoreError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "INSERT INTO tree_heads (size, root, signed_at, key, note)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (size) DO NOTHING",
                &[
                    &to_i64(head.size),
                    &head.root.as_slice(),
                    &head.signed_at,
                    &head.key,
                    &head.note,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// See `TreeStorage::tree_heads`.
    pub async fn tree_heads(&self, after: u64, limit: u32) -> Result<Vec<TreeHead>, StoreError> {
        self.heads(
            &format!(
                "SELECT {HEAD_COLUMNS} FROM tree_heads WHERE size > $1 ORDER BY size LIMIT $2"
            ),
            after,
            limit,
        )
        .await
    }

    /// See `TreeStorage::latest_tree_head`.
    pub async fn latest_tree_head(&self) -> Result<Option<TreeHead>, StoreError> {
        let latest = self
            .heads(
                &format!(
                    "SELECT {HEAD_COLUMNS} FROM tree_heads WHERE size > $1
                     ORDER BY size DESC LIMIT $2"
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
            &format!(
                "SELECT {HEAD_COLUMNS} FROM tree_heads
                 WHERE published_at IS NULL AND size > $1 ORDER BY size LIMIT $2"
            ),
            0,
            limit,
        )
        .await
    }

    async fn heads(&self, sql: &str, after: u64, limit: u32) -> Result<Vec<TreeHead>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(sql, &[&to_i64(after), &i64::from(limit)])
            .await?;
        rows.iter().map(head_of).collect()
    }

    /// See `TreeStorage::mark_tree_head_published`.
    pub async fn mark_tree_head_published(&self, size: u64) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "UPDATE tree_heads SET published_at = now() WHERE size = $1",
                &[&to_i64(size)],
            )
            .await?;
        Ok(())
    }
}
