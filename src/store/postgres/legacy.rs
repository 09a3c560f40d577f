//! Sealing the values of events written before values were sealed (schema 1 and 2), once, at
//! `migrate`: under the append lock, each such admin stream's values are sealed under the
//! admin's data key and its chain linked again from the first rewritten event; the anchors
//! before and after are recorded in `chain_reanchors` for `audit verify` (docs/audit.md).

use super::{PgStore, to_i64, to_u64};
use crate::domain::{AdminId, StreamId, TenantId};
use crate::events::RecordedEvent;
use crate::store::StoreError;
use crate::store::audit::SEAL_LEGACY_VALUES;
use crate::store::keys::{ChainRow, VALUE_TYPES, anchor_text, key_row, reseal_chain};
use std::collections::{BTreeMap, BTreeSet};

/// Fills the `admin_id` of reveals recorded before migration 7 (see its file), once.
async fn index_older_reveals(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let Some(up_to) = tx
        .query_opt("SELECT max(up_to) FROM reveal_index_upgrade", &[])
        .await?
        .and_then(|r| r.get::<_, Option<i64>>(0))
    else {
        return Ok(());
    };
    let rows = tx
        .query(
            "SELECT position, payload FROM events
             WHERE event_type = 'PiiRevealed' AND admin_id IS NULL AND position <= $1",
            &[&up_to],
        )
        .await?;
    for r in &rows {
        if let Some(admin) = RecordedEvent::revealed_admin(r.get::<_, &[u8]>(1))? {
            tx.execute(
                "UPDATE events SET admin_id = $2 WHERE position = $1",
                &[&r.get::<_, i64>(0), &admin.as_uuid()],
            )
            .await?;
        }
    }
    tx.execute("DELETE FROM reveal_index_upgrade", &[]).await?;
    Ok(())
}

/// Value-carrying events read per round trip while looking for plain ones.
const SCAN_PAGE: i64 = 5000;

impl PgStore {
    /// Seals the legacy values unless that ran already; returns the streams and events sealed.
    pub async fn seal_legacy_values(&self) -> Result<(u64, u64), StoreError> {
        let keys = self.keyring().await?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let head = to_u64(
            tx.query_one("SELECT position FROM log_head FOR UPDATE", &[])
                .await?
                .get(0),
        );
        index_older_reveals(&tx).await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM chain_reanchors WHERE reason = $1",
                &[&SEAL_LEGACY_VALUES],
            )
            .await?;
        if done.is_some() {
            tx.commit().await?;
            return Ok((0, 0));
        }
        let types: Vec<String> = VALUE_TYPES.iter().map(|t| t.to_string()).collect();
        let mut streams = BTreeSet::new();
        let mut after = 0i64;
        loop {
            let rows = tx
                .query(
                    "SELECT position, stream_id, payload FROM events
                     WHERE position > $1 AND admin_id IS NOT NULL AND event_type = ANY($2)
                     ORDER BY position LIMIT $3",
                    &[&after, &types, &SCAN_PAGE],
                )
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            for r in &rows {
                if RecordedEvent::has_plain_values(r.get::<_, &[u8]>(2))? {
                    streams.insert(r.get::<_, String>(1));
                }
            }
        }
        let tips = |rows: Vec<tokio_postgres::Row>| -> BTreeMap<String, (u64, Vec<u8>)> {
            rows.iter()
                .map(|r| (r.get(0), (to_u64(r.get(1)), r.get(2))))
                .collect()
        };
        let tips_query = "SELECT DISTINCT ON (stream_id) stream_id, stream_version, hash
                          FROM events ORDER BY stream_id, stream_version DESC";
        let before = anchor_text(head, &tips(tx.query(tips_query, &[]).await?));
        let mut sealed = 0;
        for name in &streams {
            let Some(StreamId::Admin(t, a)) = StreamId::parse(name) else {
                continue;
            };
            let key = self.legacy_key(&tx, &keys, t, a).await?;
            let rows: Vec<ChainRow> = tx
                .query(
                    "SELECT position, stream_version, payload, prev_hash, hash FROM events
                     WHERE stream_id = $1 ORDER BY stream_version",
                    &[name],
                )
                .await?
                .iter()
                .map(|r| ChainRow {
                    position: to_u64(r.get(0)),
                    version: to_u64(r.get(1)),
                    payload: r.get(2),
                    prev_hash: r.get(3),
                    hash: r.get(4),
                })
                .collect();
            let (changed, n) = reseal_chain(name, &rows, &key)?;
            sealed += n;
            for row in changed {
                tx.execute(
                    "UPDATE events SET payload = $2, prev_hash = $3, hash = $4 WHERE position = $1",
                    &[
                        &to_i64(row.position),
                        &row.payload,
                        &row.prev_hash,
                        &row.hash,
                    ],
                )
                .await?;
            }
        }
        let after = anchor_text(head, &tips(tx.query(tips_query, &[]).await?));
        tx.execute(
            "INSERT INTO chain_reanchors
                 (reason, position, streams, events, anchor_before, anchor_after)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &SEAL_LEGACY_VALUES,
                &to_i64(head),
                &(streams.len() as i64),
                &to_i64(sealed),
                &before,
                &after,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok((streams.len() as u64, sealed))
    }

    /// The data key of an admin with legacy events: stored, or made and stored now.
    async fn legacy_key(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        keys: &crate::keys::Keyring,
        t: TenantId,
        a: AdminId,
    ) -> Result<crate::keys::DataKey, StoreError> {
        let row = tx
            .query_opt(
                "SELECT kek_id, wrapped FROM data_keys WHERE tenant_id = $1 AND admin_id = $2",
                &[&t.as_uuid(), &a.as_uuid()],
            )
            .await?;
        let stored = row.map(|r| key_row(true, r.get(0), r.get(1)).flatten());
        match stored {
            Some(Some(wrapped)) => Ok(keys.unwrap(t, a, &wrapped)?),
            Some(None) => Err(StoreError::Config(format!(
                "admin {a} of tenant {t} was erased but has values in plain: cannot seal them"
            ))),
            None => {
                let (key, wrapped) = keys.generate(t, a)?;
                tx.execute(
                    "INSERT INTO data_keys (tenant_id, admin_id, kek_id, wrapped)
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &t.as_uuid(),
                        &a.as_uuid(),
                        &wrapped.kek_id,
                        &wrapped.wrapped,
                    ],
                )
                .await?;
                Ok(key)
            }
        }
    }

    /// The chain rewrites recorded (`AuditReads::reanchors`).
    pub async fn reanchors(&self) -> Result<Vec<crate::store::audit::Reanchor>, StoreError> {
        let client = self.pool().get().await?;
        Ok(client
            .query(
                "SELECT reason, position, streams, events, anchor_before, anchor_after, at
                 FROM chain_reanchors WHERE streams > 0 ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| crate::store::audit::Reanchor {
                reason: r.get(0),
                position: to_u64(r.get(1)),
                streams: to_u64(r.get(2)),
                events: to_u64(r.get(3)),
                anchor_before: r.get(4),
                anchor_after: r.get(5),
                at: r.get(6),
            })
            .collect())
    }
}
