//! Command handling and queries, shared by every interface (HTTP today, NATS and the CLI later).
//! A command answers with a typed [`CommandOutcome`], which each interface renders, and fails
//! with an [`AppError`] whose [`Code`] each interface reports.
//!
//! A command is handled as: replay an idempotent answer if there is one; load the streams the
//! decision reads; fold them; decide; append with the expected version, the tenant's version
//! the decision read, and the idempotency record in one transaction. A conflict without
//! `If-Match` means another writer got in between our read and our append: the command is
//! decided again on the new state.
//!
//! The first attempt usually skips the load: it decides on the states this process folded
//! last, and the append's two version checks refuse a decision made on a stale one. What the
//! append does not check (a refusal, an `If-Match` mismatch, a command with nothing to
//! append) is only answered from loaded states.

use crate::domain::{
    AdminCommand, AdminId, AdminState, CommandOutcome, DomainError, DomainEvent, SetSettings,
    SettingsLimits, StreamId, TenantId, TenantState, Verdict, admin_decider, tenant_decider,
};
use crate::error::Code;
use crate::events::{Actor, PendingEvent, RecordedEvent};
use crate::fold::admins::{AdminFold, verdict_for};
use crate::projections::runner::Projections;
use crate::store::projections::Projection;
use crate::store::{
    BuildOutcome, HistoryQuery, IdempotencyKey, IdempotentAnswer, Store, StoreError,
};
use crate::store::{EventLog, Idempotency, ProjectionStorage};
use chrono::{DateTime, Utc};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

mod folded;
use folded::FoldedStates;

/// How often a command without `If-Match` is decided again after losing a race to a writer
/// in another process (writers in this process queue on the stream's lock instead).
const MAX_ATTEMPTS: usize = 16;

/// Stripes of the in-process stream locks.
const LOCK_STRIPES: usize = 256;

/// Why a command or query failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the stream is at version {actual}, not {expected} as If-Match requires")]
    PreconditionFailed { expected: u64, actual: u64 },
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("too many concurrent writers on this stream; retry")]
    Contention,
    #[error("the view has not reached position {wanted} yet (it is at {reached}); retry shortly")]
    NotFresh { wanted: u64, reached: u64 },
    #[error("position {wanted} is beyond the end of the log ({head})")]
    PositionBeyondLog { wanted: u64, head: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    /// The stable code of this failure, whichever interface reports it.
    pub fn code(&self) -> Code {
        match self {
            AppError::Domain(e) => e.code(),
            AppError::PreconditionFailed { .. } => Code::VersionMismatch,
            AppError::IdempotencyKeyReused => Code::IdempotencyKeyReused,
            AppError::Contention => Code::WriteContention,
            AppError::NotFresh { .. } => Code::ViewNotFresh,
            AppError::PositionBeyondLog { .. } => Code::PositionBeyondLog,
            AppError::Store(e) if e.is_unavailable() => Code::DatabaseUnavailable,
            AppError::Store(_) => Code::InternalError,
        }
    }
}

/// A point of the past a view is asked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PastPoint {
    /// An instant, by the clocks of the replicas that wrote the events (`?as_of=`).
    Instant(DateTime<Utc>),
    /// A log position (`?as_of_position=`): exact, whatever the clocks.
    Position(u64),
}

/// What was true at a point of the past: the admin's view, the tenant's settings and the
/// verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct AsOf {
    /// The position of the last event folded (0 if none).
    pub position: u64,
    pub admin: AdminState,
    pub tenant: TenantState,
    pub verdict: Verdict,
}

/// Who asks, and the request-scoped options of a command.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub tenant: TenantId,
    pub actor: Actor,
    pub correlation_id: Uuid,
    /// `If-Match`: the stream version the caller saw.
    pub if_match: Option<u64>,
    pub idempotency: Option<IdempotencyRequest>,
}

/// An `Idempotency-Key` and a hash of the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyRequest {
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// A command's answer: its outcome, and whether it is a replay of the first answer given
/// under the same idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub outcome: CommandOutcome,
    pub replayed: bool,
}

/// The service: the store and the running projections.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub projections: Projections,
    /// How long a query waits for a projection to reach a requested position.
    pub freshness_timeout: Duration,
    /// Bounds on what a tenant's settings may hold.
    pub settings_limits: SettingsLimits,
    /// Commands on one stream in this process take turns, so that they do not spin on
    /// version conflicts; the expected version still guards against other processes.
    stream_locks: Arc<Vec<Mutex<()>>>,
    /// Bumped after every append in this process (and, with PostgreSQL, on every NOTIFY
    /// from other replicas): wakes the followers of the log.
    appended: watch::Sender<u64>,
    /// The admin and tenant states last folded by a command, and where this process's
    /// commands left each admin (see `folded`).
    folded: Arc<FoldedStates>,
}

fn fold_admin(events: &[RecordedEvent], state: AdminState) -> AdminState {
    events
        .iter()
        .filter(|e| matches!(e.stream, StreamId::Admin(..)))
        .fold(state, |s, e| admin_decider::evolve(s, &e.event, &e.meta()))
}

fn fold_tenant(events: &[RecordedEvent], state: TenantState) -> TenantState {
    events
        .iter()
        .filter(|e| matches!(e.stream, StreamId::Tenant(..)))
        .fold(state, |s, e| tenant_decider::evolve(s, &e.event, &e.meta()))
}

impl App {
    /// The service over a store and its projections.
    pub fn new(store: Store, projections: Projections, freshness_timeout: Duration) -> Self {
        App {
            store,
            projections,
            freshness_timeout,
            settings_limits: SettingsLimits::default(),
            stream_locks: Arc::new((0..LOCK_STRIPES).map(|_| Mutex::new(())).collect()),
            appended: watch::channel(0).0,
            folded: Arc::default(),
        }
    }

    /// The admin's and the tenant's current states: what was folded before, and the events
    /// appended after it (one round trip).
    async fn load_admin(
        &self,
        admin: StreamId,
        tenant: StreamId,
    ) -> Result<(AdminState, TenantState), AppError> {
        let (admin_state, tenant_state) = self.folded.kept(admin, tenant);
        let (admin_state, tenant_state) = (
            admin_state.unwrap_or_default(),
            tenant_state.unwrap_or_default(),
        );
        let loaded = self
            .store
            .load_streams(&[(admin, admin_state.version), (tenant, tenant_state.version)])
            .await?;
        let admin_state = fold_admin(&loaded, admin_state);
        let tenant_state = fold_tenant(&loaded, tenant_state);
        self.folded.remember_admin(admin, admin_state.clone());
        self.folded.remember_tenant(tenant, tenant_state.clone());
        Ok((admin_state, tenant_state))
    }

    /// A signal that changes whenever the log may have grown.
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// The sender of [`App::appended`], for a listener that hears of other replicas' appends.
    pub fn appended_sender(&self) -> watch::Sender<u64> {
        self.appended.clone()
    }

    fn log_grew(&self) {
        self.projections.wake();
        self.appended.send_modify(|c| *c = c.wrapping_add(1));
    }

    fn stream_lock(&self, stream: &StreamId) -> &Mutex<()> {
        let mut h = std::hash::DefaultHasher::new();
        stream.hash(&mut h);
        &self.stream_locks[(h.finish() as usize) % LOCK_STRIPES]
    }

    /// Handles a command on an admin's stream. The outcome shows the admin's stream after
    /// the command and the method it leaves in place ([`AdminCommand::method_shown`]).
    #[tracing::instrument(skip_all, fields(tenant_id = %ctx.tenant, admin_id = %admin))]
    pub async fn admin_command(
        &self,
        ctx: &CommandContext,
        admin: AdminId,
        command: AdminCommand,
    ) -> Result<Answer, AppError> {
        let shown = command.method_shown();
        let stream = StreamId::Admin(ctx.tenant, admin);
        let tenant_stream = StreamId::Tenant(ctx.tenant);
        let _turn = self.stream_lock(&stream).lock().await;
        let mut remembered = match self.folded.kept(stream, tenant_stream) {
            (Some(admin), Some(tenant)) => Some((admin, tenant)),
            _ => None,
        };
        for _ in 0..MAX_ATTEMPTS {
            let loaded = remembered.is_none();
            let (state, tenant) = match remembered.take() {
                Some(states) => states,
                None => self.load_admin(stream, tenant_stream).await?,
            };
            // After the load: an answer committed before it is found here; one committed
            // after it moved the stream, and the append below will conflict.
            if let Some(answer) = self.replay(ctx).await? {
                return Ok(answer);
            }
            let decided = check_if_match(ctx, state.version)
                .and_then(|()| Ok(admin_decider::decide(&command, &state, &tenant)?));
            let events = match decided {
                Ok(events) if loaded || !events.is_empty() => events,
                Err(e) if loaded => return Err(e),
                // Decided on remembered states, and nothing for the append to check: decide
                // again on loaded ones.
                _ => continue,
            };
            let version = state.version;
            let guard = (tenant_stream, tenant.version);
            let after = state.clone();
            let build: BuildOutcome = Box::new(move |recorded: &[RecordedEvent]| {
                CommandOutcome::admin(&fold_admin(recorded, state.clone()), shown)
            });
            match self
                .commit(ctx, stream, version, Some(guard), events, build)
                .await
            {
                Ok((answer, recorded)) => {
                    if let Some(last) = recorded.last() {
                        self.folded.remember_written(
                            stream,
                            fold_admin(&recorded, after),
                            last.position,
                            tenant.version,
                        );
                    }
                    return Ok(answer);
                }
                Err(AppError::Store(
                    StoreError::Conflict { .. } | StoreError::DecidedOnStale { .. },
                )) => {}
                Err(e) => return Err(e),
            }
        }
        Err(AppError::Contention)
    }

    /// Handles a change of tenant settings. The outcome is the settings after it.
    #[tracing::instrument(skip_all, fields(tenant_id = %ctx.tenant))]
    pub async fn tenant_command(
        &self,
        ctx: &CommandContext,
        command: SetSettings,
    ) -> Result<Answer, AppError> {
        let stream = StreamId::Tenant(ctx.tenant);
        let _turn = self.stream_lock(&stream).lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let state = fold_tenant(
                &self.store.load_streams(&[(stream, 0)]).await?,
                TenantState::default(),
            );
            if let Some(answer) = self.replay(ctx).await? {
                return Ok(answer);
            }
            check_if_match(ctx, state.version)?;
            let events = tenant_decider::decide(&command, &state, self.settings_limits)?;
            let version = state.version;
            let after = state.clone();
            let build: BuildOutcome = Box::new(move |recorded: &[RecordedEvent]| {
                CommandOutcome::Settings(fold_tenant(recorded, after.clone()))
            });
            match self.commit(ctx, stream, version, None, events, build).await {
                Ok((answer, recorded)) => {
                    if !recorded.is_empty() {
                        // Admin commands then decide on the new settings without a load.
                        self.folded
                            .remember_tenant(stream, fold_tenant(&recorded, state));
                    }
                    return Ok(answer);
                }
                Err(AppError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Err(AppError::Contention)
    }

    /// The first answer given under the context's idempotency key, if the same request was
    /// made before; an error if the key was used for a different request.
    async fn replay(&self, ctx: &CommandContext) -> Result<Option<Answer>, AppError> {
        let Some(idem) = &ctx.idempotency else {
            return Ok(None);
        };
        match self
            .store
            .idempotent_answer(&idempotency_key(ctx, idem))
            .await?
        {
            None => Ok(None),
            Some(stored) if stored.request_hash == idem.request_hash => Ok(Some(Answer {
                outcome: stored.outcome,
                replayed: true,
            })),
            Some(_) => Err(AppError::IdempotencyKeyReused),
        }
    }

    /// Appends a decided command; the answer, and the events it placed in the log (none
    /// when it appended nothing or an earlier answer was replayed).
    async fn commit(
        &self,
        ctx: &CommandContext,
        stream: StreamId,
        expected_version: u64,
        guard: Option<(StreamId, u64)>,
        events: Vec<DomainEvent>,
        build: BuildOutcome,
    ) -> Result<(Answer, Vec<RecordedEvent>), AppError> {
        let fresh = |outcome| Answer {
            outcome,
            replayed: false,
        };
        if events.is_empty() && ctx.idempotency.is_none() {
            // Nothing to append and no answer to keep: the store need not be involved.
            return Ok((fresh(build(&[])), Vec::new()));
        }
        let now = Utc::now();
        let pending: Vec<PendingEvent> = events
            .into_iter()
            .map(|event| PendingEvent {
                event_id: Uuid::now_v7(),
                occurred_at: now,
                actor: ctx.actor.clone(),
                correlation_id: ctx.correlation_id,
                idempotency_key: ctx.idempotency.as_ref().map(|i| i.key.clone()),
                event,
            })
            .collect();
        // The outcome is built in the append's transaction when it is kept under a key.
        let (answer, keep) = match &ctx.idempotency {
            Some(idem) => (
                Some(IdempotentAnswer {
                    key: idempotency_key(ctx, idem),
                    request_hash: idem.request_hash.clone(),
                    build,
                }),
                None,
            ),
            None => (None, Some(build)),
        };
        let result = self
            .store
            .append_guarded(stream, expected_version, guard, pending, answer)
            .await;
        match result {
            Ok(appended) => {
                self.log_grew();
                let outcome = match keep {
                    Some(build) => build(&appended.events),
                    None => appended.answer.ok_or_else(|| {
                        StoreError::Config("the append kept no outcome under its key".into())
                    })?,
                };
                Ok((fresh(outcome), appended.events))
            }
            Err(StoreError::Conflict { expected, actual }) => {
                // The same request, retried concurrently, may be the writer that got in first.
                if let Some(answer) = self.replay(ctx).await? {
                    return Ok((answer, Vec::new()));
                }
                if ctx.if_match.is_some() {
                    return Err(AppError::PreconditionFailed { expected, actual });
                }
                // Without If-Match, the caller asked for the command on the current state:
                // the caller's loop decides it again.
                Err(StoreError::Conflict { expected, actual }.into())
            }
            Err(StoreError::IdempotencyRace) => {
                // A concurrent retry with the same key committed first: answer as it did.
                let answer = self.replay(ctx).await?.ok_or(AppError::Contention)?;
                Ok((answer, Vec::new()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An admin's current contact view and the log position it reflects, at least
    /// `min_position` fresh.
    #[tracing::instrument(skip(self))]
    pub async fn contact_view(
        &self,
        tenant: TenantId,
        admin: AdminId,
        min_position: Option<u64>,
    ) -> Result<(u64, AdminState), AppError> {
        self.ensure_fresh(Projection::Admins, min_position).await?;
        let (position, state) = self.store.contact_view(tenant, admin).await?;
        Ok((position, state.unwrap_or_default()))
    }

    /// An admin's reset-eligibility verdict and the log position it reflects, at least
    /// `min_position` fresh.
    #[tracing::instrument(skip(self))]
    pub async fn eligibility(
        &self,
        tenant: TenantId,
        admin: AdminId,
        min_position: Option<u64>,
    ) -> Result<(u64, Arc<Verdict>), AppError> {
        // From memory when this process's runner holds the verdict at a fresh enough position
        // (see `projections::verdicts`); from the table otherwise.
        let cache = self.projections.verdicts();
        if let Some(hit) = cache.and_then(|c| c.get(tenant, admin, min_position)) {
            return Ok(hit);
        }
        // Right after this process's own command on the admin, before the projection has
        // folded it: the verdict the command left, exact at its position (see `folded`).
        if let Some(wanted) = min_position
            && !self.projections.reached(Projection::Admins, wanted)
            && let Some((position, verdict)) = self.folded.written_verdict(
                StreamId::Admin(tenant, admin),
                StreamId::Tenant(tenant),
                wanted,
            )
        {
            return Ok((position, Arc::new(verdict)));
        }
        self.ensure_fresh(Projection::Admins, min_position).await?;
        if let Some(hit) = cache.and_then(|c| c.get(tenant, admin, min_position)) {
            return Ok(hit);
        }
        let (position, verdict) = self.store.eligibility(tenant, admin).await?;
        if let Some(cache) = cache {
            cache.remember(tenant, admin, position, &verdict);
        }
        Ok((position, Arc::new(verdict)))
    }

    /// An admin's contact view and the tenant's settings as they were at `at`: the events up
    /// to that instant, folded with the same `evolve` functions as the projections.
    #[tracing::instrument(skip(self))]
    pub async fn as_of(
        &self,
        tenant: TenantId,
        admin: AdminId,
        at: PastPoint,
    ) -> Result<AsOf, AppError> {
        if let PastPoint::Position(wanted) = at {
            let head = self.store.head().await?;
            if wanted > head {
                return Err(AppError::PositionBeyondLog { wanted, head });
            }
        }
        let events = self
            .store
            .load_streams(&[
                (StreamId::Admin(tenant, admin), 0),
                (StreamId::Tenant(tenant), 0),
            ])
            .await?;
        // The longest prefix of the two streams' events (in log order) up to the point: always
        // a state that existed. By time, an event logged after one stamped later than the
        // instant is left out even if its own stamp is earlier (a replica's clock behind).
        let until: Vec<RecordedEvent> = events
            .into_iter()
            .take_while(|e| match at {
                PastPoint::Instant(at) => e.occurred_at <= at,
                PastPoint::Position(upto) => e.position <= upto,
            })
            .collect();
        let mut fold = AdminFold::default();
        for e in &until {
            fold.apply(e);
        }
        // The admin fold holds the admin's and the tenant's states too.
        let tenant_state = fold.tenants.remove(&tenant).unwrap_or_default();
        let (admin_state, verdict) = match fold.admins.remove(&(tenant, admin)) {
            Some(entry) => (entry.state, entry.verdict),
            None => {
                let verdict = verdict_for(&tenant_state, &AdminState::default());
                (AdminState::default(), verdict)
            }
        };
        Ok(AsOf {
            position: until.last().map_or(0, |e| e.position),
            admin: admin_state,
            tenant: tenant_state,
            verdict,
        })
    }

    /// A page of history. With `reveal`, the read is first recorded as a `PiiRevealed`
    /// event in the tenant's audit stream; if that cannot be recorded, nothing is read.
    #[tracing::instrument(skip(self, reveal), fields(tenant_id = %query.tenant, reveal = reveal.is_some()))]
    pub async fn history(
        &self,
        query: &HistoryQuery,
        reveal: Option<(&CommandContext, &str, &str)>,
    ) -> Result<Vec<RecordedEvent>, AppError> {
        if let Some((ctx, scope, filters)) = reveal {
            let event = PendingEvent {
                event_id: Uuid::now_v7(),
                occurred_at: Utc::now(),
                actor: ctx.actor.clone(),
                correlation_id: ctx.correlation_id,
                idempotency_key: None,
                event: DomainEvent::PiiRevealed {
                    scope: scope.to_owned(),
                    admin: query.admin,
                    query: filters.to_owned(),
                },
            };
            self.store
                .append_any(StreamId::Audit(query.tenant), vec![event])
                .await?;
            self.log_grew();
        }
        Ok(self.store.history(query).await?)
    }

    /// The tenant's current settings, folded from its stream.
    pub async fn settings(&self, tenant: TenantId) -> Result<TenantState, AppError> {
        let events = self
            .store
            .load_streams(&[(StreamId::Tenant(tenant), 0)])
            .await?;
        Ok(fold_tenant(&events, TenantState::default()))
    }

    async fn ensure_fresh(&self, projection: Projection, min: Option<u64>) -> Result<(), AppError> {
        let Some(wanted) = min else { return Ok(()) };
        // A position from a command answer is always committed; one beyond the head is a
        // mistake of the caller's, and waiting would not help.
        let head = self.store.head().await?;
        if wanted > head {
            return Err(AppError::PositionBeyondLog { wanted, head });
        }
        if self
            .projections
            .wait_for(projection, wanted, self.freshness_timeout)
            .await?
        {
            return Ok(());
        }
        let reached = self.store.checkpoint(projection).await?;
        Err(AppError::NotFresh { wanted, reached })
    }
}

fn check_if_match(ctx: &CommandContext, actual: u64) -> Result<(), AppError> {
    match ctx.if_match {
        Some(expected) if expected != actual => {
            Err(AppError::PreconditionFailed { expected, actual })
        }
        _ => Ok(()),
    }
}

fn idempotency_key(ctx: &CommandContext, idem: &IdempotencyRequest) -> IdempotencyKey {
    IdempotencyKey {
        tenant_id: ctx.tenant.as_uuid(),
        subject: ctx.actor.subject.clone(),
        key: idem.key.clone(),
    }
}
