//! The notifier (docs/notifications.md): a checkpointed consumer of the log that turns
//! changes of security info into notices to the old contact, and a sender that delivers them
//! at least once through the configured channels.
//!
//! **Enqueue.** The log after the notifier's checkpoint, a batch at a time: for each event of
//! a notice kind the tenant has on, the admin's state just before it decides who is told
//! (`domain::notices`); the notices go into the outbox and the checkpoint moves, in one
//! transaction that fails when another replica moved the checkpoint first.
//!
//! **Send.** Due notices are claimed with a lease (a replica that dies mid-send lets the lease
//! run out, and another sends again). The recipient and the words are read from the log at
//! send time — the outbox holds no contact value — so a retry sends the same message, with
//! the same Message-ID. A failure is tried again with exponential backoff and jitter up to
//! `max_attempts`, then stays as a dead letter (`recovery-info notifications list --failed`,
//! `retry`). Without a channel for it, a notice is recorded as skipped ("not delivered: no
//! channel configured"); an erased admin's notices are skipped too.

pub mod channels;
pub mod templates;
mod warm;

pub use warm::Warm;

use crate::domain::{
    AdminState, NoticeKind, StreamId, TenantState, admin_decider, needs_state, notices,
    tenant_decider,
};
use crate::events::RecordedEvent;
use crate::keys::ERASED;
use crate::store::notifications::{Channel, Delivery, Notification, Status};
use crate::store::{EventLog, NotificationStorage, Store, StoreError};
use channels::Channels;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How the notifier runs.
#[derive(Clone)]
pub struct NotifierConfig {
    pub channels: Channels,
    /// Where to report a change that was not the owner's, as the notices say.
    pub report_to: String,
    /// Tries before a notice is a dead letter.
    pub max_attempts: u32,
    /// The first retry's wait; each next one doubles, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a sender holds a notice it took.
    pub lease: Duration,
    /// How often the log and the outbox are looked at.
    pub poll: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            channels: Channels::default(),
            report_to: "your IT help desk".into(),
            max_attempts: 8,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }
}

/// Events read per enqueue batch.
const BATCH: u32 = 500;
/// Notices claimed per send round.
const CLAIM: u32 = 20;
/// How often the gauges of notices by status are read again when nothing changed.
const COUNTS_EVERY: Duration = Duration::from_secs(5);
/// How often they are read again, at most, while the notices change.
const COUNTS_BUSY: Duration = Duration::from_secs(1);

/// The wait before try `attempt + 1` after `attempt` failed: `backoff × 2^(attempt − 1)`, at
/// most `max_backoff`, less up to a fifth at random (so that notices that failed together do
/// not retry together).
pub fn backoff(config: &NotifierConfig, attempt: u32, random: f64) -> Duration {
    let exp = 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let full = (config.backoff.as_secs_f64() * exp).min(config.max_backoff.as_secs_f64());
    Duration::from_secs_f64(full * (1.0 - 0.2 * random.clamp(0.0, 1.0)))
}

/// A tenant's state as of position `at` (exclusive), folded from the tenant's events read.
fn tenant_before(tenant_events: &[RecordedEvent], at: u64) -> TenantState {
    tenant_events
        .iter()
        .take_while(|e| e.position < at)
        .fold(Default::default(), |s, e| {
            tenant_decider::evolve(s, &e.event, &e.meta())
        })
}

/// The admin's state just before position `at`, folded from the admin's events read.
fn before_state(admin_events: &[RecordedEvent], at: u64) -> AdminState {
    admin_events
        .iter()
        .take_while(|e| e.position < at)
        .fold(AdminState::default(), |s, e| {
            admin_decider::evolve(s, &e.event, &e.meta())
        })
}

/// The events of `streams`, whole, each stream's in log order (one read).
async fn load_by_stream(
    store: &Store,
    streams: Vec<StreamId>,
) -> Result<HashMap<StreamId, Vec<RecordedEvent>>, StoreError> {
    let mut by_stream: HashMap<StreamId, Vec<RecordedEvent>> = HashMap::new();
    if streams.is_empty() {
        return Ok(by_stream);
    }
    let wanted: Vec<(StreamId, u64)> = streams.into_iter().map(|s| (s, 0)).collect();
    for e in store.load_streams(&wanted).await? {
        by_stream.entry(e.stream).or_default().push(e);
    }
    Ok(by_stream)
}

/// Turns the next batch of the log into notices; returns the events read (0: none new).
/// `warm` holds what earlier batches folded (see `warm`).
pub async fn enqueue_batch(store: &Store, warm: &mut Warm) -> Result<usize, StoreError> {
    let from = store.notifier_checkpoint().await?;
    let batch = store.read_log(from, BATCH).await?;
    let Some(to) = batch.last().map(|e| e.position) else {
        return Ok(0);
    };
    warm.begin(from);
    let telling =
        |e: &RecordedEvent| NoticeKind::of(&e.event).is_some() && e.stream.admin().is_some();
    // What the batch's notices need and is not held, in one read: the tenants' settings, and
    // the admins' states where a notice depends on one (an addition tells the other methods).
    let wanted = batch.iter().filter(|e| telling(e)).flat_map(|e| {
        let admin = needs_state(&e.event).then_some(e.stream);
        admin
            .into_iter()
            .chain(std::iter::once(StreamId::Tenant(e.stream.tenant())))
    });
    let missing = warm.missing(wanted);
    warm.load(&load_by_stream(store, missing).await?, from);
    let mut rows = Vec::new();
    let now = Utc::now();
    for event in &batch {
        if let (true, StreamId::Admin(tenant, admin)) = (telling(event), event.stream) {
            let settings = warm.settings(event.stream);
            let state = warm.admin(event.stream);
            for notice in notices(&event.event, &state) {
                if !settings.enabled(notice.kind) {
                    continue;
                }
                rows.push(Notification {
                    id: Notification::id_of(event.event_id, notice.method_id, notice.recipient),
                    position: event.position,
                    tenant,
                    admin,
                    event_id: event.event_id,
                    kind: notice.kind,
                    method_id: notice.method_id,
                    recipient: notice.recipient,
                    channel: Channel::for_kind(notice.to_kind),
                    status: Status::Pending,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    created_at: now,
                    sent_at: None,
                });
            }
        }
        warm.apply(event);
    }
    let queued = rows.len();
    if store.enqueue_notifications(from, to, rows).await? {
        warm.stored(to);
        metrics::counter!("recovery_notifications_queued_total").increment(queued as u64);
    }
    Ok(batch.len())
}

/// A notice read back from the log: to whom, and what it says.
enum Prepared {
    Ready {
        to: String,
        message: templates::Rendered,
        language: &'static str,
    },
    Skip(String),
}

async fn prepare(
    store: &Store,
    config: &NotifierConfig,
    n: &Notification,
) -> Result<Prepared, StoreError> {
    let admin_stream = StreamId::Admin(n.tenant, n.admin);
    let tenant_stream = StreamId::Tenant(n.tenant);
    let event = store
        .read_log(n.position.saturating_sub(1), 1)
        .await?
        .into_iter()
        .find(|e| e.position == n.position && e.stream == admin_stream);
    let Some(event) = event else {
        return Ok(Prepared::Skip("its event is not in the log".into()));
    };
    // One read: the tenant's stream (its settings), and of the admin's the events after this
    // one (an erasure since) or, for a notice that depends on the state before it, the whole.
    let after = if needs_state(&event.event) {
        0
    } else {
        event.version
    };
    let (admin_events, tenant_events): (Vec<_>, Vec<_>) = store
        .load_streams(&[(admin_stream, after), (tenant_stream, 0)])
        .await?
        .into_iter()
        .partition(|e| e.stream == admin_stream);
    let state = before_state(&admin_events, n.position);
    let Some(notice) = notices(&event.event, &state)
        .into_iter()
        .find(|x| x.method_id == n.method_id && x.recipient == n.recipient)
    else {
        return Ok(Prepared::Skip("its event names no such recipient".into()));
    };
    if notice.to == ERASED
        || admin_events
            .iter()
            .any(|e| e.position > n.position && e.event.type_name() == "AdminErased")
    {
        return Ok(Prepared::Skip(
            "not delivered: the admin's values were erased".into(),
        ));
    }
    let settings = tenant_before(&tenant_events, n.position).notices;
    let new_value = match &event.event {
        crate::domain::DomainEvent::MethodChanged { new_value, .. } => Some(new_value.as_str()),
        crate::domain::DomainEvent::MethodAdded { value, .. } => Some(value.as_str()),
        _ => None,
    };
    let message = templates::render(&templates::Context {
        kind: notice.kind,
        about: notice.about,
        new_value,
        at: event.occurred_at,
        actor: &event.actor.subject,
        report_to: &config.report_to,
        language: settings.language,
    });
    Ok(Prepared::Ready {
        to: notice.to,
        message,
        language: settings.language.name(),
    })
}

/// Sends the due notices, a claim at a time; returns how many it settled.
pub async fn send_due(store: &Store, config: &NotifierConfig) -> Result<usize, StoreError> {
    let claimed = store
        .claim_notifications(Utc::now(), CLAIM, config.lease)
        .await?;
    let count = claimed.len();
    for n in claimed {
        let attempts = n.attempts + 1;
        let delivery = match prepare(store, config, &n).await? {
            Prepared::Skip(reason) => Delivery::Skipped { reason },
            Prepared::Ready { .. } if !config.channels.has(n.channel) => Delivery::Skipped {
                reason: format!("not delivered: no {} channel configured", n.channel.name()),
            },
            Prepared::Ready {
                to,
                message,
                language,
            } => {
                let sent = match (&config.channels.smtp, &config.channels.webhook, n.channel) {
                    (Some(smtp), _, Channel::Email) => smtp.send(&n, &to, &message).await,
                    (_, Some(hook), Channel::Sms | Channel::Voice) => {
                        hook.send(&n, &to, &message, language).await
                    }
                    _ => Err("no channel".into()),
                };
                match sent {
                    Ok(()) => Delivery::Sent,
                    Err(error) if attempts >= config.max_attempts => Delivery::Failed { error },
                    Err(error) => Delivery::Retry {
                        at: retry_at(config, attempts),
                        error,
                    },
                }
            }
        };
        record(&n, &delivery);
        store.settle_notification(n.id, attempts, delivery).await?;
    }
    Ok(count)
}

fn retry_at(config: &NotifierConfig, attempts: u32) -> DateTime<Utc> {
    let mut random = [0u8; 1];
    let _ = getrandom::fill(&mut random);
    let wait = backoff(config, attempts, f64::from(random[0]) / 255.0);
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
}

fn record(n: &Notification, delivery: &Delivery) {
    let outcome = match delivery {
        Delivery::Sent => "sent",
        Delivery::Retry { .. } => "retry",
        Delivery::Failed { .. } => "failed",
        Delivery::Skipped { .. } => "skipped",
    };
    metrics::counter!("recovery_notification_tries_total", "outcome" => outcome).increment(1);
    match delivery {
        Delivery::Failed { error } => tracing::warn!(
            notification = %n.id, channel = n.channel.name(), attempts = n.attempts + 1,
            error = %error, "notification failed for the last time (dead letter)"
        ),
        Delivery::Retry { at, error } => tracing::info!(
            notification = %n.id, channel = n.channel.name(), retry_at = %at,
            error = %error, "notification failed; retrying"
        ),
        _ => tracing::debug!(notification = %n.id, outcome, "notification settled"),
    }
}

/// Runs the notifier until aborted: enqueue and send, every `poll` when idle.
pub fn spawn(store: Store, config: NotifierConfig) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        // The counts by status are a scan of the outbox, which keeps every notice: read again
        // at most every second while rounds change the outbox, and every few seconds
        // otherwise (a `notifications retry` of another process), not on every round (under
        // a steady load every round changes it, and the scan grows with the outbox).
        let mut counted = std::time::Instant::now() - COUNTS_EVERY;
        let mut warm = Warm::default();
        loop {
            let round = async {
                let queued = enqueue_batch(&store, &mut warm).await?;
                let sent = send_due(&store, &config).await?;
                let due = if queued + sent > 0 {
                    COUNTS_BUSY
                } else {
                    COUNTS_EVERY
                };
                if counted.elapsed() >= due {
                    counted = std::time::Instant::now();
                    for (status, n) in store.notification_counts().await? {
                        metrics::gauge!("recovery_notifications", "status" => status.name())
                            .set(n as f64);
                    }
                }
                Ok::<_, StoreError>(queued + sent)
            }
            .await;
            match round {
                Ok(busy) => {
                    if failing {
                        failing = false;
                        tracing::info!("notifier resumed");
                    }
                    if busy > 0 {
                        continue;
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "notifier: a round failed; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "notifier: a round failed again"),
            }
            tokio::time::sleep(config.poll).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        let config = NotifierConfig {
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
            ..Default::default()
        };
        assert_eq!(backoff(&config, 1, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(&config, 2, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(&config, 3, 0.0), Duration::from_secs(120));
        assert_eq!(backoff(&config, 10, 0.0), Duration::from_secs(600));
        assert_eq!(backoff(&config, 1, 1.0), Duration::from_secs(24));
        assert!(backoff(&config, 60, 0.5) <= Duration::from_secs(600));
    }
}
