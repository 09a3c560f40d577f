//! The event store: append with expected version and idempotency, a gap-free global log, and
//! the storage of the projections. PostgreSQL is the production backend ([`PgStore`]).

mod migrate;
mod postgres;
pub mod projections;
pub mod publish;

pub use postgres::PgStore;

use crate::events::RecordedEvent;
use serde_json::Value;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream moved on since the caller read it: an optimistic-concurrency conflict.
    #[error("stream is at version {actual}, not the expected {expected}")]
    Conflict { expected: u64, actual: u64 },
    /// Another request stored an answer under the same idempotency key first.
    #[error("a concurrent request used the same idempotency key")]
    IdempotencyRace,
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
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
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to refusing a statement).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Db(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// The scope of an idempotency key: one tenant, one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub tenant_id: uuid::Uuid,
    pub subject: String,
    pub key: String,
}

/// The first answer given under an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub body: Value,
}

/// Builds the answer of a command from its events as placed in the log.
pub type RenderAnswer<'a> = Box<dyn FnOnce(&[RecordedEvent]) -> (u16, Value) + Send + 'a>;

/// An idempotency record to write in the same transaction as the append. `render` builds the
/// answer from the events as placed in the log (their versions and positions).
pub struct IdempotentAnswer<'a> {
    pub key: IdempotencyKey,
    pub request_hash: Vec<u8>,
    pub render: RenderAnswer<'a>,
}
