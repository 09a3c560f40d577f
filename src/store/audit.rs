//! Raw reads of the log for the audit tools: each row exactly as stored, with the columns the
//! hash chain and the indexes rely on, so that `audit verify` can check them against each other.

use super::postgres::{to_i64, to_u64};
use super::{PgStore, SqliteStore, StoreError};
use rusqlite::params;

/// One row of the `events` table, as stored (nothing decoded, nothing trusted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub position: u64,
    pub stream_id: String,
    pub stream_version: u64,
    /// The indexed copies of envelope fields, in their text form.
    pub event_id: String,
    pub event_type: String,
    pub tenant_id: String,
    pub admin_id: Option<String>,
    pub occurred_at_ms: i64,
    /// The protobuf `Envelope`: the bytes the hash covers.
    pub payload: Vec<u8>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl PgStore {
    /// Up to `limit` raw rows after `after`, in position order.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn raw_events(&self, after: u64, limit: u32) -> Result<Vec<RawEvent>, StoreError> {
        let client = self.pool().get().await?;
        // `extract(epoch …)` is numeric (exact) since PostgreSQL 14; times are whole ms.
        let stmt = client
            .prepare_cached(
                "SELECT position, stream_id, stream_version, event_id::text, event_type,
                        tenant_id::text, admin_id::text,
                        (extract(epoch FROM occurred_at) * 1000)::bigint,
                        payload, prev_hash, hash
                 FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&to_i64(after), &i64::from(limit)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| RawEvent {
                position: to_u64(r.get(0)),
                stream_id: r.get(1),
                stream_version: to_u64(r.get(2)),
                event_id: r.get(3),
                event_type: r.get(4),
                tenant_id: r.get(5),
                admin_id: r.get(6),
                occurred_at_ms: r.get(7),
                payload: r.get(8),
                prev_hash: r.get(9),
                hash: r.get(10),
            })
            .collect())
    }
}

impl SqliteStore {
    /// Up to `limit` raw rows after `after`, in position order.
    pub async fn raw_events(&self, after: u64, limit: u32) -> Result<Vec<RawEvent>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT position, stream_id, stream_version, event_id, event_type, tenant_id,
                        admin_id, occurred_at_ms, payload, prev_hash, hash
                 FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![to_i64(after), limit], |r| {
                Ok(RawEvent {
                    position: to_u64(r.get(0)?),
                    stream_id: r.get(1)?,
                    stream_version: to_u64(r.get(2)?),
                    event_id: r.get(3)?,
                    event_type: r.get(4)?,
                    tenant_id: r.get(5)?,
                    admin_id: r.get(6)?,
                    occurred_at_ms: r.get(7)?,
                    payload: r.get(8)?,
                    prev_hash: r.get(9)?,
                    hash: r.get(10)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
