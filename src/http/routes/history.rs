//! `/admins/{admin_id}/history` and `/events`: the log, oldest first, paged by position and
//! filtered by time and type. Values are masked unless an auditor asks for `reveal=true`,
//! and every reveal is itself recorded (a `PiiRevealed` event in the tenant's audit stream).

use crate::domain::{AdminId, DomainEvent, TenantId};
use crate::error::Code;
use crate::events::RecordedEvent;
use crate::http::HttpState;
use crate::http::auth::{Access, Caller, Role};
use crate::http::command_context;
use crate::http::error::ApiError;
use crate::http::extract::{CommandHeaders, ValidPath, ValidQuery, query_instant};
use crate::http::openapi::{AdminPath, EventEntry, Position, ReadProblems, TenantPath};
use crate::http::positions::Positions;
use crate::store::HistoryQuery;
use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Only events after this log position (the cursor: `next_after` of the previous page).
    after: Option<String>,
    /// At most this many events (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only events that occurred at or after this instant (RFC 3339).
    #[serde(default, deserialize_with = "query_instant")]
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<DateTime<Utc>>,
    /// Only events that occurred before this instant (RFC 3339).
    #[serde(default, deserialize_with = "query_instant")]
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<DateTime<Utc>>,
    /// Only these event types, comma-separated (e.g. `MethodChanged,MethodRemoved`).
    #[serde(rename = "type")]
    types: Option<String>,
    /// Raw values instead of masked ones (auditors only; the read is recorded).
    #[serde(default)]
    reveal: bool,
    /// Why the raw values are read (with `reveal=true`): recorded, as the whole query is, in
    /// the `PiiRevealed` event.
    reason: Option<String>,
    /// `/events` only: one admin's events and the reads of their values (documented there).
    #[param(ignore)]
    pub(crate) admin: Option<String>,
    /// Only events at or before this log position (a token when sealed): the history as of
    /// that position.
    as_of_position: Option<String>,
}

impl Page {
    pub(crate) fn query(
        &self,
        positions: &Positions,
        tenant: TenantId,
        admin: Option<AdminId>,
    ) -> Result<HistoryQuery, ApiError> {
        let after = positions
            .query(tenant, "after", self.after.as_deref())?
            .unwrap_or(0);
        let limit = match self.limit.unwrap_or(DEFAULT_LIMIT) {
            l @ 1..=MAX_LIMIT => l,
            _ => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("limit must be between 1 and {MAX_LIMIT}"),
                ));
            }
        };
        let types = event_types(self.types.as_deref())?;
        let upto = positions.query(tenant, "as_of_position", self.as_of_position.as_deref())?;
        Ok(HistoryQuery {
            tenant,
            admin,
            after,
            limit,
            since: self.since,
            until: self.until,
            types,
            upto,
        })
    }
}

/// The admin of an `admin=` (feed) or `admin_id=` (SSE) filter; not a UUID is a 400.
pub(crate) fn admin_filter(name: &str, text: Option<&str>) -> Result<Option<AdminId>, ApiError> {
    text.map(|a| {
        a.trim()
            .parse::<AdminId>()
            .map_err(|_| ApiError::new(Code::InvalidQuery, format!("{name} {a:?} is not a UUID")))
    })
    .transpose()
}

/// The event types of a `type=` filter, comma-separated; an unknown name is a 400.
pub(crate) fn event_types(filter: Option<&str>) -> Result<Vec<String>, ApiError> {
    let types: Vec<String> = filter
        .iter()
        .flat_map(|t| t.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(bad) = types
        .iter()
        .find(|t| !DomainEvent::TYPE_NAMES.contains(&t.as_str()))
    {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!(
                "unknown event type {bad:?}; expected one of {}",
                DomainEvent::TYPE_NAMES.join(", ")
            ),
        ));
    }
    Ok(types)
}

/// A page of entries, oldest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    #[schema(value_type = Vec<EventEntry>)]
    events: Vec<Value>,
    /// The cursor for the next page (`after=`), `null` at the end.
    #[schema(value_type = Option<Position>)]
    next_after: Option<Value>,
    /// Whether the values are raw (`reveal=true`) rather than masked.
    revealed: bool,
}

impl HistoryPage {
    fn new(
        positions: &Positions,
        tenant: TenantId,
        events: &[RecordedEvent],
        limit: u32,
        reveal: bool,
    ) -> Self {
        let next_after = (events.len() == limit as usize)
            .then(|| events.last().map(|e| positions.show(tenant, e.position)))
            .flatten();
        HistoryPage {
            events: events
                .iter()
                .map(|e| entry_json(positions, tenant, e, reveal))
                .collect(),
            next_after,
            revealed: reveal,
        }
    }
}

/// An entry of the history or the feed, its position as the tenant sees it.
pub(crate) fn entry_json(
    positions: &Positions,
    tenant: TenantId,
    event: &RecordedEvent,
    reveal: bool,
) -> Value {
    let mut entry = event.to_json(reveal);
    entry["position"] = positions.show(tenant, event.position);
    entry
}

#[allow(clippy::too_many_arguments)]
async fn read(
    s: &HttpState,
    caller: &Caller,
    tenant: TenantId,
    admin: Option<AdminId>,
    page: Page,
    headers: CommandHeaders,
    raw_query: Option<String>,
    scope: &str,
) -> Result<Json<HistoryPage>, ApiError> {
    let query = page.query(&s.positions, tenant, admin)?;
    if page.reveal && !caller.roles.contains(&Role::Auditor) {
        return Err(ApiError::new(
            Code::RevealRequiresAuditor,
            "only an auditor may read raw values (reveal=true)",
        ));
    }
    if page.reason.is_some() && !page.reveal {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "reason= says why raw values are read: it goes with reveal=true",
        ));
    }
    if page
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "reason= is at most 500 characters",
        ));
    }
    let ctx = command_context(caller, tenant, headers, "", &[]);
    let filters = raw_query.unwrap_or_default();
    let reveal = page.reveal.then_some((&ctx, scope, filters.as_str()));
    let events = s.app.history(&query, reveal).await?;
    Ok(Json(HistoryPage::new(
        &s.positions,
        tenant,
        &events,
        query.limit,
        page.reveal,
    )))
}

/// `GET …/admins/{admin_id}/history`: one admin's events.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/history",
    tag = "history",
    params(AdminPath, Page),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the admin's events", body = HistoryPage),
        ReadProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn admin(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    query: Result<ValidQuery<Page>, ApiError>,
    headers: Result<CommandHeaders, ApiError>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistoryPage>, ApiError> {
    caller.authorize(tenant, Access::ReadHistory(admin))?;
    let ValidQuery(page) = query?;
    if page.admin.is_some() {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "admin= filters the tenant's feed (/events); this history is already one admin's",
        ));
    }
    let headers = headers?;
    read(
        &s,
        &caller,
        tenant,
        Some(admin),
        page,
        headers,
        raw,
        "admin_history",
    )
    .await
}

/// `GET …/events`: the tenant's feed (admin, tenant and audit events); `?admin=` narrows it to
/// one admin's events and the reads of their values.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/events",
    tag = "history",
    params(
        TenantPath,
        Page,
        ("admin" = Option<uuid::Uuid>, Query, description = "One admin's events and the reads of their values"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the tenant's feed", body = HistoryPage),
        ReadProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn tenant(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
    query: Result<ValidQuery<Page>, ApiError>,
    headers: Result<CommandHeaders, ApiError>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistoryPage>, ApiError> {
    caller.authorize(tenant, Access::ReadFeed)?;
    let ValidQuery(page) = query?;
    let admin = admin_filter("admin", page.admin.as_deref())?;
    let headers = headers?;
    read(
        &s,
        &caller,
        tenant,
        admin,
        page,
        headers,
        raw,
        "tenant_events",
    )
    .await
}
