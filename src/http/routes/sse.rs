//! `GET /v1/tenants/{tenant_id}/events/stream`: the tenant's events as Server-Sent Events for
//! browser dashboards. Each event's `id:` is its global position, so a reconnecting
//! `EventSource` resumes after the last one it saw (`Last-Event-ID`; one past the log's head,
//! e.g. after a database restore, is 409 `last_event_id_beyond_log` rather than a silent skip);
//! values are masked; each event's `event:` line is its type; `?type=` and `?admin_id=`
//! narrow the stream (any other parameter is a 400); `PiiRevealed` reaches auditors only; a
//! comment line every [`HEARTBEAT`] keeps proxies from closing an idle stream.
//!
//! A stream first back-fills from the store (the tenant's events after `Last-Event-ID`), then
//! follows the process's [`LiveLog`]. It subscribes to the tail *before* back-filling, so an
//! event committed in between is in one or the other (and deduplicated by position).
//!
//! With `?include=eligibility` the stream also carries an `EligibilityChanged` event (the
//! verdict, masked, of the `reset-eligibility` read) for every admin whose verdict an event
//! changed, right after that event: for a tenant's policy change, one per affected admin. The
//! stream then folds the tenant's whole log from its start, as the relay folds it for NATS, so
//! the verdicts do not depend on where the client resumed, and emits what follows
//! `Last-Event-ID`. A position's `id:` is on the last message of that position (an `EventSource`
//! keeps the last id it saw), so a resume never skips a position's eligibility changes.

use super::history::{admin_filter, entry_json, event_types};
use crate::domain::{AdminId, TenantId, Verdict};
use crate::error::Code;
use crate::events::RecordedEvent;
use crate::fold::admins::AdminFold;
use crate::http::HttpState;
use crate::http::auth::{Access, Caller, Role};
use crate::http::error::ApiError;
use crate::http::extract::{ValidPath, ValidQuery};
use crate::http::positions::Positions;
use crate::publish::tail::LiveLog;
use crate::store::EventLog;
use crate::store::HistoryQuery;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How often an idle stream sends a heartbeat comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Events read from the store per back-fill page.
const PAGE: u32 = 500;

struct Cursor {
    live: LiveLog,
    positions: Positions,
    rx: broadcast::Receiver<Arc<RecordedEvent>>,
    shutdown: watch::Receiver<bool>,
    tenant: TenantId,
    /// The last position read.
    after: u64,
    /// The client saw everything up to here (`Last-Event-ID`): read, but not sent.
    seen: u64,
    backlog: VecDeque<RecordedEvent>,
    caught_up: bool,
    filter: Filter,
    /// With `include=eligibility`: the tenant's verdicts, folded from the start of its log.
    eligibility: Option<AdminFold>,
    /// Messages of the last position read, not sent yet.
    pending: VecDeque<Event>,
    /// Counted against the tenant's cap of open streams while the stream lives.
    _open: crate::http::limits::StreamGuard,
}

/// The name of the eligibility message (`include=eligibility`).
const ELIGIBILITY_CHANGED: &str = "EligibilityChanged";

/// `GET …/events/stream`'s query: any other parameter is a 400, never ignored.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only these event types, comma-separated (e.g. `MethodChanged,MethodRemoved`).
    #[serde(rename = "type")]
    pub(crate) types: Option<String>,
    /// Only this admin's events.
    pub(crate) admin_id: Option<String>,
    /// `eligibility`: carry `EligibilityChanged` too.
    pub(crate) include: Option<String>,
}

/// Which of the tenant's events a stream carries.
struct Filter {
    admin: Option<AdminId>,
    /// Whether log events are sent at all (not with `type=EligibilityChanged` alone).
    log_events: bool,
    /// Log event types; empty for all.
    types: Vec<String>,
    /// `EligibilityChanged` messages (`include=eligibility`, and `type=` names it or is absent).
    eligibility: bool,
    /// `PiiRevealed` (an auditor's read of raw values) is the auditors' business, not a
    /// dashboard's: only callers with the auditor role see it.
    reveals: bool,
}

impl Filter {
    fn keeps(&self, e: &RecordedEvent) -> bool {
        let name = e.type_name();
        self.log_events
            && (self.reveals || name != "PiiRevealed")
            && self.admin.is_none_or(|a| e.indexed_admin() == Some(a))
            && (self.types.is_empty() || self.types.iter().any(|t| t == name))
    }
}

/// An event as an SSE event: its `event:` is the event's type (so that
/// `EventSource.addEventListener('MethodChanged', …)` works). Its `id:`, the position as the
/// tenant sees it, is set by [`Cursor::read`].
fn sse_event(positions: &Positions, tenant: TenantId, e: &RecordedEvent) -> Event {
    let entry = entry_json(positions, tenant, e, false);
    Event::default()
        .event(e.type_name())
        .data(entry.to_string())
}

/// A position as an SSE `id:`.
fn sse_id(positions: &Positions, tenant: TenantId, position: u64) -> String {
    match positions.show(tenant, position) {
        serde_json::Value::String(token) => token,
        other => other.to_string(),
    }
}

impl Cursor {
    /// The next event of the tenant, or `None` when the stream should end.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(message);
            }
            if let Some(e) = self.backlog.pop_front() {
                self.read(&e);
                continue;
            }
            if !self.caught_up {
                match self
                    .live
                    .store()
                    .history(&HistoryQuery {
                        tenant: self.tenant,
                        // The verdicts fold every event of the tenant.
                        admin: self.filter.admin.filter(|_| self.eligibility.is_none()),
                        after: self.after,
                        limit: PAGE,
                        since: None,
                        until: None,
                        types: match self.eligibility {
                            None => self.filter.types.clone(),
                            Some(_) => Vec::new(),
                        },
                        upto: None,
                    })
                    .await
                {
                    Ok(page) => {
                        self.caught_up = page.len() < PAGE as usize;
                        self.backlog.extend(page);
                        continue;
                    }
                    Err(e) => {
                        // The client reconnects with Last-Event-ID and loses nothing.
                        tracing::warn!(error = %e, tenant_id = %self.tenant, "SSE back-fill failed; closing the stream");
                        return None;
                    }
                }
            }
            let received = tokio::select! {
                received = self.rx.recv() => received,
                _ = self.shutdown.wait_for(|s| *s) => return None,
            };
            match received {
                Ok(e) if e.stream.tenant() == self.tenant && e.position > self.after => {
                    self.read(&e);
                }
                Ok(_) => {}
                // Too slow for the buffer: catch up from the store again.
                Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up = false,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the tenant's next event: queues its message, if the filter keeps it, and the
    /// eligibility changes it caused; the last of them carries the position's `id:`.
    fn read(&mut self, e: &RecordedEvent) {
        self.after = e.position;
        let new = e.position > self.seen;
        let mut messages = Vec::new();
        if new && self.filter.keeps(e) {
            messages.push(sse_event(&self.positions, self.tenant, e));
        }
        if let Some(fold) = &mut self.eligibility {
            if new {
                // Verdicts were worked out at the end of the part the client had seen.
                fold.finish_verdicts();
            }
            fold.apply(e);
            if new && self.filter.eligibility {
                for (t, a) in fold.changed_by(e) {
                    if self.filter.admin.is_some_and(|only| only != a) {
                        continue;
                    }
                    if let Some(row) = fold.admins.get(&(t, a)) {
                        let data = eligibility_json(&self.positions, e, t, a, &row.verdict);
                        messages.push(
                            Event::default()
                                .event(ELIGIBILITY_CHANGED)
                                .data(data.to_string()),
                        );
                    }
                }
            }
        }
        if let Some(last) = messages.pop() {
            messages.push(last.id(sse_id(&self.positions, self.tenant, e.position)));
        }
        self.pending.extend(messages);
    }
}

/// An `EligibilityChanged` message: the admin's verdict after `cause`, as the
/// `reset-eligibility` read shows it, with the causing event's position, id and time.
fn eligibility_json(
    positions: &Positions,
    cause: &RecordedEvent,
    tenant: TenantId,
    admin: AdminId,
    verdict: &Verdict,
) -> serde_json::Value {
    let mut body = serde_json::to_value(verdict).unwrap_or_default();
    body["type"] = ELIGIBILITY_CHANGED.into();
    body["tenant_id"] = tenant.to_string().into();
    body["admin_id"] = admin.to_string().into();
    body["position"] = positions.show(tenant, cause.position);
    body["event_id"] = cause.event_id.to_string().into();
    body["occurred_at"] = serde_json::to_value(cause.occurred_at).unwrap_or_default();
    body
}

/// `GET …/events/stream` (roles `dashboard`, `auditor`).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/events/stream",
    tag = "history",
    params(
        crate::http::openapi::TenantPath,
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (the `id` of the last one received)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-sent events: each `data` is an entry of the feed (`EventEntry`), its `id` the position; with `include=eligibility`, `EligibilityChanged` messages too. The stream does not end.", content_type = "text/event-stream", body = String),
        crate::http::openapi::StreamProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn stream(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
    query: Result<ValidQuery<StreamQuery>, ApiError>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.authorize(tenant, Access::ReadFeed)?;
    let ValidQuery(query) = query?;
    let admin = admin_filter("admin_id", query.admin_id.as_deref())?;
    let include_eligibility = match query.include.as_deref().map(str::trim) {
        None => false,
        Some("eligibility") => true,
        Some(other) => {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("include {other:?} is not known; expected \"eligibility\""),
            ));
        }
    };
    // `type=` names log event types and, with include=eligibility, EligibilityChanged.
    let mut names: Vec<&str> = query
        .types
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let typed = !names.is_empty();
    let named_eligibility = names.contains(&ELIGIBILITY_CHANGED);
    if named_eligibility && !include_eligibility {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "type=EligibilityChanged needs include=eligibility",
        ));
    }
    names.retain(|t| *t != ELIGIBILITY_CHANGED);
    let types = event_types(Some(&names.join(",")))?;
    let filter = Filter {
        admin,
        // `type=EligibilityChanged` alone: no log event at all.
        log_events: !(typed && names.is_empty()),
        types,
        eligibility: include_eligibility && (!typed || named_eligibility),
        reveals: caller.roles.contains(&Role::Auditor),
    };
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|text| s.positions.read(tenant, text).ok())
            .ok_or_else(|| {
                ApiError::new(
                    Code::InvalidLastEventId,
                    format!("Last-Event-ID must be {}", s.positions.expected()),
                )
            })?,
    };
    // An id past the head (a restored database, another deployment's id) would silently skip
    // every event up to it: refuse it, so the client restarts from the beginning.
    let head = s.live.store().head().await?;
    if after > head {
        return Err(ApiError::new(
            Code::LastEventIdBeyondLog,
            "Last-Event-ID is past the end of the log; reconnect without it".to_string(),
        ));
    }
    metrics::gauge!("recovery_sse_streams").increment(1.0);
    let live = s.live.clone();
    let cursor = Cursor {
        _open: s.limits.open_stream(tenant)?,
        rx: live.subscribe(),
        live,
        positions: s.positions.clone(),
        shutdown: s.stream_shutdown.0.clone(),
        tenant,
        after: if include_eligibility { 0 } else { after },
        seen: after,
        backlog: VecDeque::new(),
        caught_up: false,
        filter,
        // Folds the part the client has seen without working out every verdict on the way.
        eligibility: include_eligibility.then(AdminFold::verdicts_at_the_end),
        pending: VecDeque::new(),
    };
    let events = futures::stream::unfold(cursor, |mut c| async move {
        match c.next().await {
            Some(e) => Some((Ok(e), c)),
            None => {
                metrics::gauge!("recovery_sse_streams").decrement(1.0);
                None
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}
