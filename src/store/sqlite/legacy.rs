//! Sealing the values of events written before values were sealed, once, at `migrate`: the
//! embedded side of `store::postgres::legacy` (the same steps under SQLite's write lock).

use super::{SqliteStore, i64_of, u64_of};
use crate::domain::{AdminId, StreamId, TenantId};
use crate::events::RecordedEvent;
use crate::keys::{DataKey, Keyring};
use crate::store::StoreError;
use crate::store::audit::{Reanchor, SEAL_LEGACY_VALUES};
use crate::store::keys::{ChainRow, VALUE_TYPES, anchor_text, reseal_chain};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use std::collections::{BTreeMap, BTreeSet};

impl SqliteStore {
    /// Seals the legacy values unless that ran already; returns the streams and events sealed.
    pub async fn seal_legacy_values(&self) -> Result<(u64, u64), StoreError> {
        let keys = self.keyring().await?;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            index_older_reveals(&tx)?;
            let done: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM chain_reanchors WHERE reason = ?1",
                    [SEAL_LEGACY_VALUES],
                    |r| r.get(0),
                )
                .optional()?;
            if done.is_some() {
                tx.commit()?;
                return Ok((0, 0));
            }
            let head = u64_of(tx.query_row("SELECT position FROM log_head", [], |r| r.get(0))?);
            let mut streams = BTreeSet::new();
            {
                let types = VALUE_TYPES.map(|t| format!("'{t}'")).join(", ");
                let mut scan = tx.prepare(&format!(
                    "SELECT stream_id, payload FROM events
                     WHERE admin_id IS NOT NULL AND event_type IN ({types})"
                ))?;
                let mut rows = scan.query([])?;
                while let Some(r) = rows.next()? {
                    if RecordedEvent::has_plain_values(&r.get::<_, Vec<u8>>(1)?)? {
                        streams.insert(r.get::<_, String>(0)?);
                    }
                }
            }
            let tips = |tx: &rusqlite::Transaction<'_>| -> Result<String, StoreError> {
                let mut tips = BTreeMap::new();
                let mut stmt = tx.prepare(
                    "SELECT stream_id, max(stream_version), hash FROM events GROUP BY stream_id",
                )?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    tips.insert(r.get::<_, String>(0)?, (u64_of(r.get(1)?), r.get(2)?));
                }
                Ok(anchor_text(head, &tips))
            };
            let before = tips(&tx)?;
            let mut sealed = 0;
            for name in &streams {
                let Some(StreamId::Admin(t, a)) = StreamId::parse(name) else {
                    continue;
                };
                let key = legacy_key(&tx, &keys, t, a)?;
                let rows: Vec<ChainRow> = tx
                    .prepare(
                        "SELECT position, stream_version, payload, prev_hash, hash FROM events
                         WHERE stream_id = ?1 ORDER BY stream_version",
                    )?
                    .query_map([name], |r| {
                        Ok(ChainRow {
                            position: u64_of(r.get(0)?),
                            version: u64_of(r.get(1)?),
                            payload: r.get(2)?,
                            prev_hash: r.get(3)?,
                            hash: r.get(4)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                let (changed, n) = reseal_chain(name, &rows, &key)?;
                sealed += n;
                for row in changed {
                    tx.execute(
                        "UPDATE events SET payload = ?2, prev_hash = ?3, hash = ?4
                         WHERE position = ?1",
                        params![i64_of(row.position), row.payload, row.prev_hash, row.hash],
                    )?;
                }
            }
            let after = tips(&tx)?;
            tx.execute(
                "INSERT INTO chain_reanchors
                     (reason, position, streams, events, anchor_before, anchor_after, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    SEAL_LEGACY_VALUES,
                    i64_of(head),
                    streams.len() as i64,
                    i64_of(sealed),
                    before,
                    after,
                    chrono::Utc::now().timestamp_millis()
                ],
            )?;
            tx.commit()?;
            if sealed > 0 {
                // The plain values' old pages leave the WAL too (see `projections`).
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok((streams.len() as u64, sealed))
        })
        .await
    }

    /// The chain rewrites recorded (`AuditReads::reanchors`).
    pub async fn reanchors(&self) -> Result<Vec<Reanchor>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare(
                "SELECT reason, position, streams, events, anchor_before, anchor_after, at_ms
                 FROM chain_reanchors WHERE streams > 0 ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Reanchor {
                    reason: r.get(0)?,
                    position: u64_of(r.get(1)?),
                    streams: u64_of(r.get(2)?),
                    events: u64_of(r.get(3)?),
                    anchor_before: r.get(4)?,
                    anchor_after: r.get(5)?,
                    at: chrono::DateTime::from_timestamp_millis(r.get(6)?).unwrap_or_default(),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// Fills the `admin_id` of reveals recorded before migration 6 (see its file), once.
fn index_older_reveals(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let up_to: Option<i64> =
        tx.query_row("SELECT max(up_to) FROM reveal_index_upgrade", [], |r| {
            r.get(0)
        })?;
    let Some(up_to) = up_to else {
        return Ok(());
    };
    let rows: Vec<(i64, Vec<u8>)> = tx
        .prepare(
            "SELECT position, payload FROM events
             WHERE event_type = 'PiiRevealed' AND admin_id IS NULL AND position <= ?1",
        )?
        .query_map([up_to], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (position, payload) in rows {
        if let Some(admin) = RecordedEvent::revealed_admin(&payload)? {
            tx.execute(
                "UPDATE events SET admin_id = ?2 WHERE position = ?1",
                params![position, admin.to_string()],
            )?;
        }
    }
    tx.execute("DELETE FROM reveal_index_upgrade", [])?;
    Ok(())
}

/// The data key of an admin with legacy events: stored, or made and stored now.
fn legacy_key(
    tx: &rusqlite::Transaction<'_>,
    keys: &Keyring,
    t: TenantId,
    a: AdminId,
) -> Result<DataKey, StoreError> {
    let (key, new) = super::data_key_for(tx, keys, StreamId::Admin(t, a))?;
    if let Some(new) = &new {
        super::insert_data_key(tx, t, a, new)?;
    }
    key.ok_or_else(|| {
        StoreError::Config(format!(
            "admin {a} of tenant {t} was erased but has values in plain: cannot seal them"
        ))
    })
}
