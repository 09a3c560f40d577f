//! `GET /v1/tenants/{tenant_id}/events/stream`: the tenant's events as Server-Sent Events for
//! browser dashboards. Each event's `id:` is its global position, so a reconnecting
//! `EventSource` resumes after the last one it saw (`Last-Event-ID`; one past the log's head,
//! e.g. after a database restore, is 409 `last_event_id_beyond_log` rather than a silent skip);
//! values are masked; a
//! comment line every [`HEARTBEAT`] keeps proxies from closing an idle stream.
//!
//! A stream first back-fills from the store (the tenant's events after `Last-Event-ID`), then
//! follows the process's [`LiveLog`]. It subscribes to the tail *before* back-filling, so an
//! event committed in between is in one or the other (and deduplicated by position).

use super::history::entry_json;
use crate::domain::TenantId;
use crate::error::Code;
use crate::events::RecordedEvent;
use crate::http::HttpState;
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::ValidPath;
use crate::http::positions::Positions;
use crate::publish::tail::LiveLog;
use crate::store::EventLog;
use crate::store::HistoryQuery;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
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
}

/// An event as an SSE event: its `id:` is its position as the tenant sees it.
fn sse_event(positions: &Positions, tenant: TenantId, e: &RecordedEvent) -> Event {
    let entry = entry_json(positions, tenant, e, false);
    let id = match &entry["position"] {
        serde_json::Value::String(token) => token.clone(),
        other => other.to_string(),
    };
    Event::default().id(id).data(entry.to_string())
}

impl Cursor {
    /// The next event of the tenant, or `None` when the stream should end.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.after = e.position;
                return Some(sse_event(&self.positions, self.tenant, &e));
            }
            if !self.caught_up {
                match self
                    .live
                    .store()
                    .history(&HistoryQuery {
                        tenant: self.tenant,
                        admin: None,
                        after: self.after,
                        limit: PAGE,
                        since: None,
                        until: None,
                        types: Vec::new(),
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
                        return Some(sse_event(&self.positions, self.tenant, &e));
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
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.authorize(tenant, Access::ReadFeed)?;
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
