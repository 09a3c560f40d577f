//! `/admins/{admin_id}/history` and `/events`: the log, oldest first, paged by position.

use crate::domain::{AdminId, StreamId, TenantId};
use crate::events::RecordedEvent;
use crate::http::HttpState;
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{ValidPath, ValidQuery};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Only events after this log position.
    #[serde(default)]
    after: u64,
    /// At most this many events (1 to 1000, default 100).
    limit: Option<u32>,
}

impl Page {
    fn limit(&self) -> Result<u32, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            l @ 1..=MAX_LIMIT => Ok(l),
            _ => Err(ApiError::bad_request(
                "invalid_query",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            )),
        }
    }
}

/// A page of entries; `next_after` is the cursor for the next page, `null` at the end.
fn page_json(events: &[RecordedEvent], limit: u32) -> Value {
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.position))
        .flatten();
    json!({
        "events": events.iter().map(|e| e.to_json(false)).collect::<Vec<_>>(),
        "next_after": next,
    })
}

/// `GET …/admins/{admin_id}/history`: one admin's events, values masked.
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn admin(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    ValidQuery(page): ValidQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    caller.authorize(tenant, Access::ReadHistory(admin))?;
    let limit = page.limit()?;
    let events = s
        .app
        .store
        .read_stream(StreamId::Admin(tenant, admin), page.after, limit)
        .await?;
    Ok(Json(page_json(&events, limit)))
}

/// `GET …/events`: the tenant's feed (admin and tenant events), values masked.
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn tenant(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
    ValidQuery(page): ValidQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    caller.authorize(tenant, Access::ReadFeed)?;
    let limit = page.limit()?;
    let events = s
        .app
        .store
        .read_tenant(tenant.as_uuid(), page.after, limit)
        .await?;
    Ok(Json(page_json(&events, limit)))
}
