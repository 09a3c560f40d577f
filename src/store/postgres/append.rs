//! Appends on PostgreSQL: each goes to the appender task as a job, which writes the jobs
//! waiting at that moment in one transaction (`group_commit`).

use super::PgStore;
use crate::store::{Append, Appended, StoreError};
use tokio::sync::oneshot;

/// One append waiting for the appender.
pub(super) struct AppendJob {
    pub append: Append,
    /// The store's keyring (the same for every job).
    pub keys: std::sync::Arc<crate::keys::Keyring>,
    pub reply: oneshot::Sender<Result<Appended, StoreError>>,
}

impl PgStore {
    /// Appends `events` to `stream` (see `EventLog::append_to`), with the idempotency record in
    /// the same transaction.
    ///
    /// Appends are serialised by the row lock on `log_head` (the global append lock): the lock
    /// is taken first, then the stream version is checked, so the check cannot race. Appends
    /// waiting at the same moment share one transaction (see `group_commit`).
    #[tracing::instrument(skip_all, fields(stream = %append.stream, expected = ?append.expected, n = append.events.len()))]
    pub async fn append_to(&self, append: Append) -> Result<Appended, StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let keys = self.keyring().await?;
        let job = AppendJob {
            append,
            keys,
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
