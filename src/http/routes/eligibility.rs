//! `/admins/{admin_id}/reset-eligibility`: may this admin reset now, and with which methods?

use crate::domain::{AdminId, TenantId};
use crate::http::HttpState;
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{ValidPath, ValidQuery};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilityQuery {
    /// Answer from a view that reflects at least this log position (read-your-writes).
    min_position: Option<u64>,
}

/// `GET …/reset-eligibility`.
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn get(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    ValidQuery(q): ValidQuery<EligibilityQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.authorize(tenant, Access::ReadEligibility(admin))?;
    let (position, verdict) = s.app.eligibility(tenant, admin, q.min_position).await?;
    Ok(Json(json!({
        "tenant_id": tenant,
        "admin_id": admin,
        "eligible": verdict.eligible,
        "policy": verdict.policy,
        "missing": verdict.missing,
        "usable_methods": verdict.usable_methods,
        "position": position,
    })))
}
