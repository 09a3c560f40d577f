//! The event store: append with expected version and idempotency, a gap-free global log, and
//! the storage of the projections. One interface ([`Store`]), two backends: PostgreSQL for
//! production ([`PgStore`]) and an embedded SQLite store for a zero-setup start
//! ([`SqliteStore`]). Both pass the same conformance tests.

pub mod audit;
pub mod keys;
pub mod notifications;
mod place;
pub mod postgres;
pub mod projections;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{AdminId, AdminState, StreamId, TenantId, Verdict};
use crate::events::PendingEvent;
use projections::{Batch, Projected, Projection};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

use crate::domain::CommandOutcome;
use crate::events::RecordedEvent;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream moved on since the caller read it: an optimistic-concurrency conflict.
    #[error("stream is at version {actual}, not the expected {expected}")]
    Conflict { expected: u64, actual: u64 },
    /// A stream the command was decided on besides its own (the tenant's settings) moved on
    /// since it was read: the command must be decided again.
    #[error("{stream} is at version {now_at}, not {read_at} as the command was decided on")]
    DecidedOnStale {
        stream: String,
        read_at: u64,
        now_at: u64,
    },
    /// Another request stored an answer under the same idempotency key first.
    #[error("a concurrent request used the same idempotency key")]
    IdempotencyRace,
    /// The database driver failed (see [`BackendError`]).
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Decode(#[from] crate::events::DecodeError),
    #[error("corrupt projection row: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("{0}")]
    Config(String),
    #[error(
        "the database schema is at version {found}, newer than this build knows ({known}); upgrade recovery-info"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "the database schema is at version {found}, older than this build needs ({known}); run `recovery-info migrate` first"
    )]
    SchemaTooOld { found: i32, known: i32 },
}

impl StoreError {
    /// `Ok` when a database at schema version `found` is the one a build that knows `known`
    /// versions works on.
    pub(crate) fn check_schema(found: i32, known: i32) -> Result<(), StoreError> {
        match found.cmp(&known) {
            std::cmp::Ordering::Less => Err(StoreError::SchemaTooOld { found, known }),
            std::cmp::Ordering::Greater => Err(StoreError::SchemaTooNew { found, known }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }
}

impl StoreError {
    /// Whether the database could not be reached, or (the embedded store) written or read
    /// (as opposed to refusing a statement): a retry may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Backend(e) if e.unavailable)
    }
}

/// A database driver's failure, whichever the backend: the driver's own error as the source,
/// and whether it means the database could not be reached (or, embedded, written or read) — a
/// retry may succeed — rather than that it refused a statement. Each backend converts its
/// driver's errors into it (`store::postgres`, `store::sqlite`), so no driver type reaches the
/// layers above the store.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct BackendError {
    /// Which part failed, for the message: "database", "database pool", "embedded database".
    what: &'static str,
    unavailable: bool,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    pub(crate) fn new(
        what: &'static str,
        unavailable: bool,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError {
            what,
            unavailable,
            source: Box::new(source),
        }
    }
}

/// The hash that precedes the first event of every stream.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// `sha256(prev_hash || payload)`: the link of an event in its stream's hash chain.
pub fn chain_hash(prev_hash: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(payload);
    h.finalize().to_vec()
}

/// 32 bytes from the operating system's random generator, for a new server key.
pub(crate) fn random_key() -> Result<[u8; 32], StoreError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| StoreError::Config(format!("no random numbers for a new key: {e}")))?;
    Ok(key)
}

/// A stored server key, checked for its length.
pub(crate) fn key_of(name: &str, stored: &[u8]) -> Result<[u8; 32], StoreError> {
    stored
        .try_into()
        .map_err(|_| StoreError::Config(format!("the stored key {name:?} is not 32 bytes")))
}

/// The scope of an idempotency key: one tenant, one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub tenant_id: uuid::Uuid,
    pub subject: String,
    pub key: String,
}

/// The first answer given under an idempotency key: the command's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub request_hash: Vec<u8>,
    pub outcome: CommandOutcome,
}

/// Builds the outcome of a command from its events as placed in the log. It may be called
/// more than once (a group commit that fails is retried one command at a time); only the
/// outcome of the transaction that commits is kept.
pub type BuildOutcome = Box<dyn Fn(&[RecordedEvent]) -> CommandOutcome + Send + Sync>;

/// An idempotency record to write in the same transaction as the append. `build` makes the
/// outcome from the events as placed in the log (their versions and positions).
pub struct IdempotentAnswer {
    pub key: IdempotencyKey,
    pub request_hash: Vec<u8>,
    pub build: BuildOutcome,
}

/// What the `status` column of `idempotency_keys` holds in the records written since they keep
/// typed outcomes. Earlier builds kept the HTTP status of the answer there (and its JSON body
/// in `response`, which is the outcome's serde form); the interface now decides the status
/// from the command, so nothing reads the column: it stays so that those records, and the
/// builds that wrote them, keep working across an upgrade.
pub(crate) const NO_STATUS: i16 = 0;

/// One append to the log.
pub struct Append {
    pub stream: StreamId,
    /// The version the stream must be at; `None`: whatever it is (the audit stream).
    pub expected: Option<u64>,
    /// Another stream the command was decided on (the tenant's settings) and the version it
    /// was read at: the append is refused if that stream has moved since.
    pub guard: Option<(StreamId, u64)>,
    pub events: Vec<PendingEvent>,
    /// The idempotency record to write in the same transaction.
    pub answer: Option<IdempotentAnswer>,
}

/// What an append placed in the log, and the outcome stored with it.
#[derive(Debug)]
pub struct Appended {
    pub events: Vec<RecordedEvent>,
    /// The outcome, when an idempotency record was written.
    pub answer: Option<CommandOutcome>,
}

/// A page of history: one tenant's events, or one admin's, filtered.
#[derive(Clone, Debug)]
pub struct HistoryQuery {
    pub tenant: TenantId,
    /// Only this admin's stream.
    pub admin: Option<AdminId>,
    /// Only events after this global position (the paging cursor).
    pub after: u64,
    pub limit: u32,
    /// Only events that occurred at or after this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events that occurred before this instant.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only these event types (all when empty).
    pub types: Vec<String>,
    /// Only events at or before this global position (the history as of a position).
    pub upto: Option<u64>,
}

impl HistoryQuery {
    /// The stream name for an admin's history, the tenant id otherwise.
    pub(crate) fn scope_key(&self) -> String {
        match self.admin {
            Some(a) => StreamId::Admin(self.tenant, a).to_string(),
            None => self.tenant.to_string(),
        }
    }
}

/// Which backend to open.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// PostgreSQL at `url` with a pool of `pool_size` connections.
    Postgres {
        url: String,
        pool_size: usize,
        kek: keys::KekSource,
    },
    /// The embedded store in `data_dir`.
    Embedded {
        data_dir: PathBuf,
        kek: keys::KekSource,
    },
}

impl StoreConfig {
    /// A one-line description for the start banner, without secrets.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Postgres { url, .. } => {
                format!("PostgreSQL at {}", crate::config::redact_url(url))
            }
            StoreConfig::Embedded { data_dir, .. } => {
                format!("embedded SQLite in {}", data_dir.display())
            }
        }
    }
}

/// The event store, on either backend.
#[derive(Clone)]
pub enum Store {
    Postgres(PgStore),
    Embedded(SqliteStore),
}

impl Store {
    /// Opens the configured backend and checks that it answers.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        Ok(match config {
            StoreConfig::Postgres {
                url,
                pool_size,
                kek,
            } => Store::Postgres(PgStore::connect_with(url, *pool_size, kek.clone()).await?),
            StoreConfig::Embedded { data_dir, kek } => {
                Store::Embedded(SqliteStore::open_with(data_dir, kek.clone()).await?)
            }
        })
    }
}

impl Store {
    /// Sizes the store's caches in this process for a service that runs for long (the
    /// embedded store's page cache: `SqliteStore::cache_for_serving`; PostgreSQL's cache is the
    /// server's).
    pub async fn cache_for_serving(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(_) => Ok(()),
            Store::Embedded(s) => s.cache_for_serving().await,
        }
    }

    /// The keyring (see `store::keys`): loads and checks the KEKs at the first call, which
    /// needs the migrated schema.
    pub async fn keyring(&self) -> Result<std::sync::Arc<crate::keys::Keyring>, StoreError> {
        match self {
            Store::Postgres(s) => s.keyring().await,
            Store::Embedded(s) => s.keyring().await,
        }
    }
}

/// Declares one role of the store — a trait whose methods each take `&self` and answer a
/// `Result<_, StoreError>` — and implements it for [`Store`] by forwarding each method to the
/// backend's method of the same name.
macro_rules! role {
    ($(#[$tdoc:meta])* pub trait $role:ident {
        $($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*
    }) => {
        $(#[$tdoc])*
        pub trait $role {
            $(
                $(#[$doc])*
                fn $name(&self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$ret, StoreError>> + Send;
            )*
        }

        impl $role for Store {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    match self {
                        Store::Postgres(s) => s.$name($($arg),*).await,
                        Store::Embedded(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

role! {
    /// The log: its head, its streams, its global order, a tenant's history, and appends. The
    /// commands and queries (`app`), the live tail and the audit export use it.
    pub trait EventLog {
        /// The position of the last committed event (0 for an empty log).
        fn head(&self) -> u64;
        /// The events of the given streams after the given versions (0: all), in log order.
        fn load_streams(&self, streams: &[(StreamId, u64)]) -> Vec<RecordedEvent>;
        /// The global log after a position, oldest first; never skips an event.
        fn read_log(&self, after: u64, limit: u32) -> Vec<RecordedEvent>;
        /// A filtered page of a tenant's or an admin's history.
        fn history(&self, query: &HistoryQuery) -> Vec<RecordedEvent>;
        /// Writes an [`Append`]: its events if its stream is at the expected version and its
        /// guard has not moved, with its idempotency record, in one transaction. A stale
        /// version is [`StoreError::Conflict`], a moved guard [`StoreError::DecidedOnStale`].
        fn append_to(&self, append: Append) -> Appended;
    }
}

role! {
    /// The first answers of commands, kept under their idempotency keys (written by
    /// [`EventLog::append_to`] in the append's transaction).
    pub trait Idempotency {
        /// The first answer stored under an idempotency key.
        fn idempotent_answer(&self, key: &IdempotencyKey) -> Option<StoredAnswer>;
    }
}

role! {
    /// The projection's storage: the batches that fold the log into it, the reads of its rows,
    /// and the rebuild beside the live tables. The runner, the queries and `replay` use it.
    pub trait ProjectionStorage {
        /// Folds the next events into a projection and moves its checkpoint, in one
        /// transaction.
        fn project_batch(&self, projection: Projection, limit: u32) -> Projected;
        /// A projection's checkpoint.
        fn checkpoint(&self, projection: Projection) -> u64;
        /// Empties a projection and zeroes its checkpoint, so that it is rebuilt.
        fn reset_projection(&self, projection: Projection) -> ();
        /// An admin's contact view and the checkpoint it reflects.
        fn contact_view(&self, tenant: TenantId, admin: AdminId) -> (u64, Option<AdminState>);
        /// An admin's eligibility verdict and the checkpoint it reflects.
        fn eligibility(&self, tenant: TenantId, admin: AdminId) -> (u64, Verdict);
        /// Creates empty shadow tables for a replay of `projections`.
        fn replay_prepare(&self, projections: Vec<Projection>) -> ();
        /// Fills the empty shadow tables with the log up to the head in one pass where the
        /// backend can (PostgreSQL); `None` where it folds in batches only (the embedded
        /// store). `on_read` counts the events as they are read.
        fn replay_bulk(
            &self,
            projections: Vec<Projection>,
            on_read: impl FnMut(u64) + Send,
        ) -> Option<Batch>;
        /// Folds the events after `after` into the shadow tables.
        fn replay_batch(&self, projections: Vec<Projection>, after: u64, limit: u32) -> Batch;
        /// Catches the shadow tables up to the head and swaps them in atomically.
        fn replay_swap(&self, projections: Vec<Projection>, after: u64) -> Batch;
    }
}

role! {
    /// The log's rows exactly as stored, for `audit verify`.
    pub trait AuditReads {
        /// Raw rows of the log after a position, as stored.
        fn raw_events(&self, after: u64, limit: u32) -> Vec<audit::RawEvent>;
        /// Raw rows of one tenant's events after a position, as stored.
        fn tenant_raw_events(
            &self,
            tenant: TenantId,
            after: u64,
            limit: u32,
        ) -> Vec<audit::RawEvent>;
        /// The rewrites of hash chains the store recorded (the sealing of legacy values).
        fn reanchors(&self) -> Vec<audit::Reanchor>;
    }
}

role! {
    /// The Merkle tree over the log and the signed tree heads (`audit::tree`).
    pub trait TreeStorage {
        /// The chain hashes (the `hash` column) of the events after position `after`, at most
        /// `limit`, in position order.
        fn chain_hashes(&self, after: u64, limit: u32) -> Vec<Vec<u8>>;
        /// How many leaves the stored whole chunks cover.
        fn tree_built(&self) -> u64;
        /// The stored leaves of `chunks` (one not stored is left out).
        fn tree_chunks(&self, chunks: Vec<u64>) -> Vec<(u64, Vec<u8>)>;
        /// The stored roots of the subtrees `(level, index)` (one not stored is left out).
        fn tree_nodes(&self, keys: Vec<(u32, u64)>) -> Vec<audit::TreeNode>;
        /// Stores chunks (a stored one is only extended, never changed) and subtree roots, and
        /// moves the count of built leaves up to `built` (never down), in one transaction.
        fn save_tree(
            &self,
            chunks: Vec<(u64, Vec<u8>)>,
            nodes: Vec<audit::TreeNode>,
            built: u64,
        ) -> ();
        /// Records a signed tree head; `false` when one of its size is recorded already.
        fn insert_tree_head(&self, head: audit::TreeHead) -> bool;
        /// The signed tree heads above size `after`, smallest first, at most `limit`.
        fn tree_heads(&self, after: u64, limit: u32) -> Vec<audit::TreeHead>;
        /// The largest signed tree head.
        fn latest_tree_head(&self) -> Option<audit::TreeHead>;
        /// The signed tree heads not yet published on NATS, smallest first.
        fn unpublished_tree_heads(&self, limit: u32) -> Vec<audit::TreeHead>;
        /// Marks a tree head published.
        fn mark_tree_head_published(&self, size: u64) -> ();
    }
}

role! {
    /// The outbox of notices and the notifier's checkpoint (`notify`).
    pub trait NotificationStorage {
        /// The position up to which the log was turned into notices.
        fn notifier_checkpoint(&self) -> u64;
        /// Stores `rows` (one already stored is left alone) and moves the checkpoint from
        /// `from` to `to`, in one transaction; `false` (nothing stored) when the checkpoint was
        /// not at `from` (another replica went first).
        fn enqueue_notifications(
            &self,
            from: u64,
            to: u64,
            rows: Vec<notifications::Notification>,
        ) -> bool;
        /// Takes up to `limit` pending notices due at `now` that no sender holds, and holds
        /// them until `now + lease`.
        fn claim_notifications(
            &self,
            now: chrono::DateTime<chrono::Utc>,
            limit: u32,
            lease: std::time::Duration,
        ) -> Vec<notifications::Notification>;
        /// Records what became of a try of notice `id` (its `attempts`-th).
        fn settle_notification(
            &self,
            id: uuid::Uuid,
            attempts: u32,
            delivery: notifications::Delivery,
        ) -> ();
        /// The notices of a status (all: `None`), newest first, at most `limit`.
        fn notifications(
            &self,
            status: Option<notifications::Status>,
            limit: u32,
        ) -> Vec<notifications::Notification>;
        /// Makes failed notices pending again with their tries reset: those of `ids`, or every
        /// failed one when `ids` is empty; returns how many.
        fn retry_notifications(&self, ids: Vec<uuid::Uuid>) -> u64;
        /// How many notices are in each status.
        fn notification_counts(&self) -> Vec<(notifications::Status, u64)>;
    }
}

role! {
    /// The schema, readiness and the keys the service keeps in the store.
    pub trait Maintenance {
        /// Applies pending migrations; returns how many ran.
        fn migrate(&self) -> usize;
        /// Fails unless the schema is the one this build knows: for the commands that work on
        /// a database without migrating it (`replay`, `audit`).
        fn schema_is_current(&self) -> ();
        /// One round trip to the database (readiness).
        fn ping(&self) -> ();
        /// The 32-byte key of `name` that every replica shares, generated by the first that
        /// asks.
        fn server_key(&self, name: &'static str) -> [u8; 32];
        /// Moves up to `limit` data keys wrapped by an older KEK to the active one; returns
        /// how many it moved (0: none is left).
        fn rewrap_data_keys(&self, limit: u32) -> u64;
        /// How many data keys each KEK wraps, and how many were destroyed (id `None`).
        fn data_key_counts(&self) -> Vec<(Option<String>, u64)>;
        /// Seals the contact values of events written before values were sealed, once (the
        /// first call after the upgrade), and records the chains' re-anchoring; returns the
        /// streams and events it sealed (docs/audit.md).
        fn seal_legacy_values(&self) -> (u64, u64);
    }
}

impl Store {
    /// Appends if the stream is at the expected version, with the idempotency record.
    pub async fn append(
        &self,
        stream: StreamId,
        expected_version: u64,
        events: Vec<PendingEvent>,
        answer: Option<IdempotentAnswer>,
    ) -> Result<Appended, StoreError> {
        self.append_guarded(stream, expected_version, None, events, answer)
            .await
    }

    /// [`Store::append`], and with a `guard` only if that stream (the tenant's settings the
    /// command was decided on) is still at its version: [`StoreError::DecidedOnStale`]
    /// otherwise.
    pub async fn append_guarded(
        &self,
        stream: StreamId,
        expected_version: u64,
        guard: Option<(StreamId, u64)>,
        events: Vec<PendingEvent>,
        answer: Option<IdempotentAnswer>,
    ) -> Result<Appended, StoreError> {
        self.append_to(Append {
            stream,
            expected: Some(expected_version),
            guard,
            events,
            answer,
        })
        .await
    }

    /// Appends to a stream without invariants (the audit stream) at its current version.
    pub async fn append_any(
        &self,
        stream: StreamId,
        events: Vec<PendingEvent>,
    ) -> Result<Appended, StoreError> {
        self.append_to(Append {
            stream,
            expected: None,
            guard: None,
            events,
            answer: None,
        })
        .await
    }
}

/// What the publisher needs of the store, and no more: the log, its own checkpoint, the history
/// its eligibility fold starts from, and leadership among the replicas. PostgreSQL implements
/// it (`store::publish`); the embedded store has no publisher (see `publish::check_store`).
pub trait PublisherLog: Clone + Send + Sync + 'static {
    /// Leadership of a publisher, held until lost.
    type Lease: Lease + Send + Sync;

    /// Tries once to lead publisher `name`; `None` if another replica leads. A leader that
    /// has not renewed its lease for `lease` is displaced on the way.
    fn lead(
        &self,
        name: &str,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Option<Self::Lease>, StoreError>> + Send;

    /// The global log after `after`, oldest first; never skips an event.
    fn read_log(
        &self,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The position of the last committed event.
    fn head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Publisher `name`'s checkpoint: every event up to it was acknowledged downstream.
    fn checkpoint(&self, name: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Moves publisher `name`'s checkpoint forward (never back).
    fn save_checkpoint(
        &self,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The events up to `up_to` of the streams of `admins` and their tenants, and every event
    /// of `tenants`, in log order: what the eligibility fold needs before it folds a batch.
    fn fold_history(
        &self,
        admins: &[(TenantId, AdminId)],
        tenants: &[TenantId],
        up_to: u64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;
}

/// Leadership of one publisher among the replicas.
pub trait Lease {
    /// Whether it is still held, as this process last saw it.
    fn is_held(&self) -> bool;
    /// Renews the lease (and proves it is still held).
    fn renew(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Resolves when it is lost.
    fn lost(&self) -> impl Future<Output = ()> + Send;
}
