//! The PostgreSQL event store.

use super::group_commit::{self, AppendJob};
use super::publish::DedicatedTarget;
use super::tls::Tls;
use super::{
    Appended, HistoryQuery, IdempotencyKey, IdempotentAnswer, StoreError, StoredAnswer, migrate,
};
use crate::domain::StreamId;
use crate::events::{PendingEvent, RecordedEvent};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;

/// The hash that precedes the first event of every stream.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The event store and projection storage on PostgreSQL, behind a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    appender: tokio::sync::mpsc::Sender<AppendJob>,
    /// The eligibility rows this process's batches wrote last (`projections::KnownRows`).
    known_rows: std::sync::Arc<std::sync::Mutex<super::projections::KnownRows>>,
    /// Where the connections outside the pool go (shared: the settings are large).
    dedicated: std::sync::Arc<DedicatedTarget>,
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

/// `sha256(prev_hash || payload)`: the link of an event in its stream's hash chain.
pub fn chain_hash(prev_hash: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(payload);
    h.finalize().to_vec()
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
    /// Builds a pool for `url` and checks that the database answers.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let (mut config, tls) = super::tls::parse(url)?;
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
        };
        store.ping().await?;
        Ok(store)
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Where the connections outside the pool (the publisher's lock, `LISTEN`) go.
    pub fn dedicated(&self) -> &DedicatedTarget {
        &self.dedicated
    }

    pub(super) fn known_rows(&self) -> &std::sync::Mutex<super::projections::KnownRows> {
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
        let candidate = super::random_key()?;
        let client = self.pool.get().await?;
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
                "SELECT e.payload FROM unnest($1::text[], $2::bigint[]) AS s(name, after)
                 CROSS JOIN LATERAL (SELECT position, payload FROM events
                                     WHERE stream_id = s.name AND stream_version > s.after
                                     OFFSET 0) e
                 ORDER BY e.position",
            )
            .await?;
        decode_rows(client.query(&stmt, &[&names, &after]).await?)
    }

    /// The global log after `after`, oldest first. Never skips an event: see the comment on
    /// `log_head` in the first migration.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT payload FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .await?;
        decode_rows(
            client
                .query(&stmt, &[&to_i64(after), &i64::from(limit)])
                .await?,
        )
    }

    /// A page of a tenant's (or one admin's) history matching `query`, oldest first.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        // Two statements, so that each uses its index: (stream_id, ...) for one admin,
        // (tenant_id, position) for a tenant.
        let scope = match query.admin {
            Some(_) => "stream_id = $1",
            None => "tenant_id = ($1::text)::uuid",
        };
        let stmt = client
            .prepare_cached(&format!(
                "SELECT payload FROM events
                 WHERE {scope} AND position > $2
                   AND ($3::timestamptz IS NULL OR occurred_at >= $3)
                   AND ($4::timestamptz IS NULL OR occurred_at < $4)
                   AND (cardinality($5::text[]) = 0 OR event_type = ANY($5))
                 ORDER BY position LIMIT $6"
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
                ],
            )
            .await?;
        decode_rows(rows)
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

    /// Appends `events` to `stream` if the stream is at `expected_version`, and stores the
    /// idempotent answer in the same transaction. Returns the events as placed in the log.
    ///
    /// Appends are serialised by the row lock on `log_head` (the global append lock): the lock
    /// is taken first, then the stream version is checked, so the check cannot race. Appends
    /// waiting at the same moment share one transaction (see `group_commit`).
    pub async fn append(
        &self,
        stream: StreamId,
        expected_version: u64,
        events: Vec<PendingEvent>,
        answer: Option<IdempotentAnswer>,
    ) -> Result<Appended, StoreError> {
        self.submit(stream, Some(expected_version), None, events, answer)
            .await
    }

    pub async fn append_guarded(
        &self,
        stream: StreamId,
        expected_version: u64,
        guard: Option<(StreamId, u64)>,
        events: Vec<PendingEvent>,
        answer: Option<IdempotentAnswer>,
    ) -> Result<Appended, StoreError> {
        self.submit(stream, Some(expected_version), guard, events, answer)
            .await
    }

    /// Appends to a stream without invariants (the audit stream), at whatever version it is.
    pub async fn append_any(
        &self,
        stream: StreamId,
        events: Vec<PendingEvent>,
    ) -> Result<Appended, StoreError> {
        self.submit(stream, None, None, events, None).await
    }

    #[tracing::instrument(skip(self, events, answer), fields(stream = %stream, ?expected, n = events.len()))]
    async fn submit(
        &self,
        stream: StreamId,
        expected: Option<u64>,
        guard: Option<(StreamId, u64)>,
        events: Vec<PendingEvent>,
        answer: Option<IdempotentAnswer>,
    ) -> Result<Appended, StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job = AppendJob {
            stream,
            expected,
            guard,
            events,
            answer,
            reply,
        };
        self.appender
            .send(job)
            .await
            .map_err(|_| StoreError::Config("the appender has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Config("the appender dropped an append".into()))?
    }
}

fn decode_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter()
        .map(|r| RecordedEvent::decode(r.get::<_, &[u8]>(0)).map_err(StoreError::from))
        .collect()
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
