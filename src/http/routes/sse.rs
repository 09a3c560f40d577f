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

use super::history::{entry_json, event_types};
use crate::domain::{AdminId, TenantId};
use crate::error::Code;
use crate::events::RecordedEvent;
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
    after: u64,
    backlog: VecDeque<RecordedEvent>,
    caught_up: bool,
    filter: Filter,
}

/// `GET …/events/stream`'s query: any other parameter is a 400, never ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only these event types, comma-separated (e.g. `MethodChanged,MethodRemoved`).
    #[serde(rename = "type")]
    types: Option<String>,
    /// Only this admin's events.
    admin_id: Option<String>,
}

/// Which of the tenant's events a stream carries.
struct Filter {
    admin: Option<AdminId>,
    types: Vec<String>,
    /// `PiiRevealed` (an auditor's read of raw values) is the auditors' business, not a
    /// dashboard's: only callers with the auditor role see it.
    reveals: bool,
}

impl Filter {
    fn keeps(&self, e: &RecordedEvent) -> bool {
        let name = e.type_name();
        (self.reveals || name != "PiiRevealed")
            && self.admin.is_none_or(|a| e.stream.admin() == Some(a))
            && (self.types.is_empty() || self.types.iter().any(|t| t == name))
    }
}

/// An event as an SSE event: its `event:` is the event's type (so that
/// `EventSource.addEventListener('MethodChanged', …)` works), its `id:` its position as the
/// tenant sees it.
fn sse_event(positions: &Positions, tenant: TenantId, e: &RecordedEvent) -> Event {
    let entry = entry_json(positions, tenant, e, false);
    let id = match &entry["position"] {
        serde_json::Value::String(token) => token.clone(),
        other => other.to_string(),
    };
    Event::default()
        .event(e.type_name())
        .id(id)
        .data(entry.to_string())
}

impl Cursor {
    /// The next event of the tenant, or `None` when the stream should end.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.after = e.position;
                if self.filter.keeps(&e) {
                    return Some(sse_event(&self.positions, self.tenant, &e));
                }
                continue;
            }
            if !self.caught_up {
                match self
                    .live
                    .store()
                    .history(&HistoryQuery {
                        tenant: self.tenant,
                        admin: self.filter.admin,
                        after: self.after,
                        limit: PAGE,
                        since: None,
                        until: None,
                        types: self.filter.types.clone(),
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
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(e) if e.stream.tenant() == self.tenant && e.position > self.after => {
                        self.after = e.position;
                        if self.filter.keeps(&e) {
                            return Some(sse_event(&self.positions, self.tenant, &e));
                        }
                    }
                    Ok(_) => {}
                    // Too slow for the buffer: catch up from the store again.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up = false,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.shutdown.wait_for(|s| *s) => return None,
            }
        }
    }
}

/// `GET …/events/stream` (roles `dashboard`, `auditor`).
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
    let admin = query
        .admin_id
        .as_deref()
        .map(|a| {
            a.trim().parse::<AdminId>().map_err(|_| {
                ApiError::new(Code::InvalidQuery, format!("admin_id {a:?} is not a UUID"))
            })
        })
        .transpose()?;
    let filter = Filter {
        admin,
        types: event_types(query.types.as_deref())?,
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
        rx: live.subscribe(),
        live,
        positions: s.positions.clone(),
        shutdown: s.stream_shutdown.0.clone(),
        tenant,
        after,
        backlog: VecDeque::new(),
        caught_up: false,
        filter,
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
