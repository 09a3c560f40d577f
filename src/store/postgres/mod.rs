//! The PostgreSQL event store: the log and its appends ([`append`], [`group_commit`]), the
//! projection's storage ([`projections`]) and rebuild ([`replay`]), what the publisher needs
//! ([`publisher`]), TLS ([`tls`]) and the schema ([`migrate`]).

mod append;
mod group_commit;
mod known_rows;
mod known_tips;
mod legacy;
mod migrate;
mod notifications;
pub mod projections;
pub mod publisher;
mod replay;
pub mod tls;
mod tree;

use crate::domain::StreamId;
use crate::events::RecordedEvent;
use crate::keys::Keyring;
use crate::keys::kek::{KekRing, KeyWrapper};
use crate::store::keys::{DATABASE_KEK_ID, KekSource, check_wrapper, key_row, open_event};
use crate::store::{BackendError, HistoryQuery, IdempotencyKey, StoreError, StoredAnswer};
use append::AppendJob;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use publisher::DedicatedTarget;
use tls::Tls;
use tokio_postgres::NoTls;

/// The event store and projection storage on PostgreSQL, behind a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    appender: tokio::sync::mpsc::Sender<AppendJob>,
    /// The admin rows this process's batches wrote last (see `known_rows`).
    known_rows: std::sync::Arc<known_rows::KnownRows>,
    /// Where the connections outside the pool go (shared: the settings are large).
    dedicated: std::sync::Arc<DedicatedTarget>,
    /// Where the KEKs come from, and the keyring once loaded (it needs the migrated schema).
    kek: KekSource,
    keyring: std::sync::Arc<tokio::sync::OnceCell<std::sync::Arc<Keyring>>>,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // No answer from the server, or a closed connection: not a refusal of the statement.
        let unavailable = e.is_closed() || e.as_db_error().is_none();
        BackendError::new("database", unavailable, e).into()
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        BackendError::new("database pool", true, e).into()
    }
}

/// Positions and versions are `bigint` in SQL and never negative.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A statement parameter, for arrays of parameters of different types.
pub(crate) type Param = dyn tokio_postgres::types::ToSql + Sync;

/// Opens a transaction whose commit does not wait for the WAL flush: for writes that a crash
/// may lose because they are derived and redone (projection rows with their checkpoint, the
/// publisher's checkpoint). Sent as the head of a pipeline.
pub(crate) const BEGIN_WITHOUT_FLUSH: &str = "BEGIN; SET LOCAL synchronous_commit = off";

/// Passes `result` on, first rolling back what a failed pipelined transaction (`BEGIN` … `COMMIT`
/// sent as one pipeline) may have left open, so that the connection goes back to the pool clean.
/// Outside a transaction the `ROLLBACK` is only a warning.
pub(crate) async fn rolled_back_on_error<T, E>(
    client: &tokio_postgres::Client,
    result: Result<T, E>,
) -> Result<T, E> {
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

/// Turns PostgreSQL's JIT compilation off for the service's sessions, unless the URL's
/// `options` set `jit` themselves. Every statement here is a short index lookup or write whose
/// plan can still be costed above `jit_above_cost` (a relay's history read over many streams of
/// a large log, say): compiling it took longer than running it, and loading LLVM into each
/// pooled backend showed in the profile of the publisher over a large backlog.
fn without_jit(config: &mut tokio_postgres::Config) {
    let options = config.get_options().unwrap_or_default();
    if !options.contains("jit") {
        let options = format!("{options} -c jit=off");
        config.options(options.trim_start());
    }
}

impl PgStore {
    /// Builds a pool for `url` and checks that the database answers; the KEK is the one the
    /// database keeps (see [`KekSource::Generated`]).
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect_with(url, pool_size, KekSource::Generated).await
    }

    /// [`PgStore::connect`] with the KEKs from `kek`.
    pub async fn connect_with(
        url: &str,
        pool_size: usize,
        kek: KekSource,
    ) -> Result<Self, StoreError> {
        let (mut config, tls) = tls::parse(url)?;
        let dedicated = std::sync::Arc::new(DedicatedTarget::with(config.clone(), tls.clone()));
        without_jit(&mut config);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Tls::Plain => Manager::from_config(config, NoTls, manager_config),
            Tls::Verified(tls) => Manager::from_config(config, tls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let appender = group_commit::spawn(pool.clone());
        let store = PgStore {
            pool,
            appender,
            known_rows: Default::default(),
            dedicated,
            kek,
            keyring: Default::default(),
        };
        store.ping().await?;
        Ok(store)
    }

    /// The keyring: the KEKs checked against the database (see `store::keys`), loaded at the
    /// first call after the schema is migrated.
    pub async fn keyring(&self) -> Result<std::sync::Arc<Keyring>, StoreError> {
        self.keyring
            .get_or_try_init(|| async {
                let ring = match crate::store::keys::configured(&self.kek)? {
                    Some(ring) => ring,
                    None => KekRing::single(DATABASE_KEK_ID, &self.server_key("kek").await?),
                };
                let client = self.pool.get().await?;
                let checks = || async {
                    let rows = client
                        .query("SELECT id, check_value FROM key_encryption_keys", &[])
                        .await?;
                    Ok::<Vec<(String, Vec<u8>)>, StoreError>(
                        rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
                    )
                };
                let stored = checks().await?;
                let wrapping: Vec<String> = client
                    .query(
                        "SELECT DISTINCT kek_id FROM data_keys WHERE kek_id IS NOT NULL",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for (id, check) in check_wrapper(&ring, &stored, &wrapping)? {
                    client
                        .execute(
                            "INSERT INTO key_encryption_keys (id, check_value) VALUES ($1, $2)
                             ON CONFLICT (id) DO NOTHING",
                            &[&id, &check],
                        )
                        .await?;
                }
                // A replica that raced us to the first insert stored its check: compare again.
                check_wrapper(&ring, &checks().await?, &wrapping)?;
                tracing::debug!(active = ring.active_id(), "key-encryption keys checked");
                Ok::<_, StoreError>(std::sync::Arc::new(Keyring::new(Box::new(ring))))
            })
            .await
            .cloned()
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Where the connections outside the pool (the publisher's lock, `LISTEN`) go.
    pub fn dedicated(&self) -> &DedicatedTarget {
        &self.dedicated
    }

    fn known_rows(&self) -> &known_rows::KnownRows {
        &self.known_rows
    }

    /// Applies pending migrations; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        migrate::run(&mut client).await
    }

    /// Fails unless the schema is the one this build knows.
    pub async fn schema_is_current(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        migrate::check(&client).await
    }

    /// One round trip to the database (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool.get().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub async fn server_key(&self, name: &'static str) -> Result<[u8; 32], StoreError> {
        let client = self.pool.get().await?;
        let read = "SELECT key FROM server_keys WHERE name = $1";
        // Read first: a hot standby (read-only) has the primary's keys.
        if let Some(row) = client.query_opt(read, &[&name]).await? {
            return super::key_of(name, row.get::<_, &[u8]>(0));
        }
        let candidate = super::random_key()?;
        // The first replica's key stays; every other replica reads it back.
        client
            .execute(
                "INSERT INTO server_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate.as_slice()],
            )
            .await?;
        let row = client
            .query_one("SELECT key FROM server_keys WHERE name = $1", &[&name])
            .await?;
        super::key_of(name, row.get::<_, &[u8]>(0))
    }

    /// See `Maintenance::rewrap_data_keys`.
    pub async fn rewrap_data_keys(&self, limit: u32) -> Result<u64, StoreError> {
        let keys = self.keyring().await?;
        let active = keys.wrapper().active_id().to_owned();
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT tenant_id, admin_id, kek_id, wrapped FROM data_keys
                 WHERE kek_id IS NOT NULL AND kek_id <> $1 LIMIT $2",
                &[&active, &i64::from(limit)],
            )
            .await?;
        let mut moved = 0;
        for r in rows {
            let (t, a) = (
                crate::domain::TenantId::from_uuid(r.get(0)),
                crate::domain::AdminId::from_uuid(r.get(1)),
            );
            let old = crate::keys::WrappedKey {
                kek_id: r.get(2),
                wrapped: r.get(3),
            };
            let Some(new) = keys.rewrap(t, a, &old)? else {
                continue;
            };
            // Only if it is still the row read: an erasure in between wins.
            moved += client
                .execute(
                    "UPDATE data_keys SET kek_id = $3, wrapped = $4
                     WHERE tenant_id = $1 AND admin_id = $2 AND kek_id = $5 AND wrapped = $6",
                    &[
                        &t.as_uuid(),
                        &a.as_uuid(),
                        &new.kek_id,
                        &new.wrapped,
                        &old.kek_id,
                        &old.wrapped,
                    ],
                )
                .await?;
        }
        Ok(moved)
    }

    /// See `Maintenance::data_key_counts`.
    pub async fn data_key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT kek_id, count(*) FROM data_keys GROUP BY kek_id ORDER BY kek_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), to_u64(r.get(1))))
            .collect())
    }

    /// The position of the last committed event (0 for an empty log).
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn head(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT position FROM log_head")
            .await?;
        Ok(to_u64(client.query_one(&stmt, &[]).await?.get(0)))
    }

    /// The events of the given streams after the given versions (0: all of them), in log
    /// order, in one round trip (an admin and its tenant).
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn load_streams(
        &self,
        streams: &[(StreamId, u64)],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        let (names, after): (Vec<String>, Vec<i64>) = streams
            .iter()
            .map(|(s, v)| (s.to_string(), to_i64(*v)))
            .unzip();
        // LATERAL with OFFSET 0: an index scan per stream whatever the plan. As a plain join,
        // the generic plan of this prepared statement is a hash join over the whole log.
        let stmt = client
            .prepare_cached(
                "SELECT e.payload, k.kek_id, k.wrapped, k.admin_id IS NOT NULL
                 FROM unnest($1::text[], $2::bigint[]) AS s(name, after)
                 CROSS JOIN LATERAL (SELECT position, tenant_id, admin_id, payload FROM events
                                     WHERE stream_id = s.name AND stream_version > s.after
                                     OFFSET 0) e
                 LEFT JOIN data_keys k ON k.tenant_id = e.tenant_id AND k.admin_id = e.admin_id
                 ORDER BY e.position",
            )
            .await?;
        let rows = client.query(&stmt, &[&names, &after]).await?;
        self.decode_rows(rows).await
    }

    /// The global log after `after`, oldest first. Never skips an event: see the comment on
    /// `log_head` in the first migration.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
                 WHERE e.position > $1 ORDER BY e.position LIMIT $2"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[&to_i64(after), &i64::from(limit)])
            .await?;
        self.decode_rows(rows).await
    }

    /// A page of a tenant's (or one admin's) history matching `query`, oldest first.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        // Two statements, so that each uses its index: (stream_id, ...) for one admin,
        // (tenant_id, position) for a tenant.
        // An admin's history: their stream, and the reads of their values (`PiiRevealed` rows
        // index the admin read: `RecordedEvent::indexed_admin`).
        let scope = match query.admin {
            Some(_) => {
                "(e.stream_id = $1 OR (e.event_type = 'PiiRevealed' AND e.admin_id = $7::uuid
                                      AND e.tenant_id = $8::uuid))"
            }
            None => "e.tenant_id = ($1::text)::uuid AND $7::uuid IS NULL AND $8::uuid IS NULL",
        };
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
                 WHERE {scope} AND e.position > $2
                   AND ($3::timestamptz IS NULL OR e.occurred_at >= $3)
                   AND ($4::timestamptz IS NULL OR e.occurred_at < $4)
                   AND (cardinality($5::text[]) = 0 OR e.event_type = ANY($5))
                   AND ($9::bigint IS NULL OR e.position <= $9)
                 ORDER BY e.position LIMIT $6"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &query.scope_key(),
                    &to_i64(query.after),
                    &query.since,
                    &query.until,
                    &query.types,
                    &i64::from(query.limit),
                    &query.admin.map(|a| a.as_uuid()),
                    &query.admin.map(|_| query.tenant.as_uuid()),
                    &query.upto.map(to_i64),
                ],
            )
            .await?;
        self.decode_rows(rows).await
    }

    /// The first answer stored under an idempotency key, if any.
    #[tracing::instrument(skip(self, key), level = "debug")]
    pub async fn idempotent_answer(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT request_hash, response FROM idempotency_keys
                 WHERE tenant_id = $1 AND subject = $2 AND key = $3",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&key.tenant_id, &key.subject, &key.key])
            .await?;
        row.map(|r| {
            Ok(StoredAnswer {
                request_hash: r.get(0),
                outcome: serde_json::from_value(r.get(1))?,
            })
        })
        .transpose()
    }
}

/// The columns of an event read with its admin's data-key row ([`KEYED_JOIN`]).
pub(super) const KEYED_COLUMNS: &str = "e.payload, k.kek_id, k.wrapped, k.admin_id IS NOT NULL";

/// The join that reads an event's data-key row (see `store::keys`).
pub(super) const KEYED_JOIN: &str =
    "LEFT JOIN data_keys k ON k.tenant_id = e.tenant_id AND k.admin_id = e.admin_id";

/// Decodes one row of [`KEYED_COLUMNS`], from column `first` on.
pub(super) fn decode_keyed_row(
    keys: &Keyring,
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<RecordedEvent, StoreError> {
    let key = key_row(row.get(first + 3), row.get(first + 1), row.get(first + 2));
    open_event(keys, row.get::<_, &[u8]>(first), key)
}

impl PgStore {
    /// Decodes rows of [`KEYED_COLUMNS`].
    pub(super) async fn decode_rows(
        &self,
        rows: Vec<tokio_postgres::Row>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let keys = self.keyring().await?;
        rows.iter().map(|r| decode_keyed_row(&keys, r, 0)).collect()
    }
}

impl PgStore {
    /// Up to `limit` raw rows after `after`, in position order.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn raw_events(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::store::audit::RawEvent>, StoreError> {
        self.raw_rows(None, after, limit).await
    }

    /// See `AuditReads::tenant_raw_events`.
    pub async fn tenant_raw_events(
        &self,
        tenant: crate::domain::TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::store::audit::RawEvent>, StoreError> {
        self.raw_rows(Some(tenant), after, limit).await
    }

    async fn raw_rows(
        &self,
        tenant: Option<crate::domain::TenantId>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::store::audit::RawEvent>, StoreError> {
        let client = self.pool().get().await?;
        // `extract(epoch …)` is numeric (exact) since PostgreSQL 14; times are whole ms.
        const COLUMNS: &str = "SELECT position, stream_id, stream_version, event_id::text,
                event_type, tenant_id::text, admin_id::text,
                (extract(epoch FROM occurred_at) * 1000)::bigint, payload, prev_hash, hash
             FROM events";
        let rows = match tenant {
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "{COLUMNS} WHERE position > $1 ORDER BY position LIMIT $2"
                    ))
                    .await?;
                client
                    .query(&stmt, &[&to_i64(after), &i64::from(limit)])
                    .await?
            }
            Some(tenant) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "{COLUMNS} WHERE tenant_id = $3 AND position > $1 ORDER BY position
                         LIMIT $2"
                    ))
                    .await?;
                client
                    .query(
                        &stmt,
                        &[&to_i64(after), &i64::from(limit), &tenant.as_uuid()],
                    )
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| crate::store::audit::RawEvent {
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

#[cfg(test)]
mod tests {
    use super::without_jit;

    fn options_after(url: &str) -> Option<String> {
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        without_jit(&mut config);
        config.get_options().map(str::to_owned)
    }

    #[test]
    fn the_pool_turns_jit_off_unless_the_url_sets_it() {
        assert_eq!(
            options_after("postgres://u@h/db").as_deref(),
            Some("-c jit=off")
        );
        assert_eq!(
            options_after("postgres://u@h/db?options=-c%20statement_timeout%3D5s").as_deref(),
            Some("-c statement_timeout=5s -c jit=off")
        );
        assert_eq!(
            options_after("postgres://u@h/db?options=-c%20jit%3Don").as_deref(),
            Some("-c jit=on")
        );
    }
}
