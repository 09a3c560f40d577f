//! Appends on PostgreSQL: each goes to the appender task as a job, which writes the jobs
//! waiting at that moment in one transaction (`group_commit`).

use super::PgStore;
use crate::domain::StreamId;
use crate::events::PendingEvent;
use crate::store::{Appended, IdempotentAnswer, StoreError};
use tokio::sync::oneshot;

/// One append waiting for the appender.
pub(super) struct AppendJob {
    pub stream: StreamId,
    /// `None`: append at whatever version the stream is (the audit stream).
    pub expected: Option<u64>,
    /// Another stream the command was decided on (the tenant's settings) and the version it
    /// was read at: the append is refused if that stream has moved since.
    pub guard: Option<(StreamId, u64)>,
    pub events: Vec<PendingEvent>,
    pub answer: Option<IdempotentAnswer>,
    pub reply: oneshot::Sender<Result<Appended, StoreError>>,
}

impl PgStore {
    /// Appends `events` to `stream` (see `EventLog::append_to`), with the idempotency record in
    /// the same transaction.
    ///
    /// Appends are serialised by the row lock on `log_head` (the global append lock): the lock
    /// is taken first, then the stream version is checked, so the check cannot race. Appends
    /// waiting at the same moment share one transaction (see `group_commit`).
    #[tracing::instrument(skip(self, events, answer), fields(stream = %stream, ?expected, n = events.len()))]
    pub async fn append_to(
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
