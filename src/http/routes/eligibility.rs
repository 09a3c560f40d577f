//! `/admins/{admin_id}/reset-eligibility`: may this admin reset now, and with which methods?

use super::settings::settings_json;
use crate::domain::{AdminId, TenantId, Verdict};
use crate::http::HttpState;
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{ValidPath, ValidQuery};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilityQuery {
    /// Answer from a view that reflects at least this log position (read-your-writes).
    min_position: Option<u64>,
    /// The verdict as it was at this instant (RFC 3339), under the tenant's policy then.
    as_of: Option<DateTime<Utc>>,
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
    if let Some(at) = q.as_of {
        let then = s.app.as_of(tenant, admin, at).await?;
        let mut body = verdict_json(tenant, admin, then.position, &then.verdict);
        body["as_of"] = json!(at);
        body["tenant_settings"] = settings_json(&then.tenant);
        return Ok(Json(body));
    }
    let (position, verdict) = s.app.eligibility(tenant, admin, q.min_position).await?;
    Ok(Json(verdict_json(tenant, admin, position, &verdict)))
}

/// The eligibility answer: the verdict and the log position it reflects.
fn verdict_json(tenant: TenantId, admin: AdminId, position: u64, verdict: &Verdict) -> Value {
    json!({
        "tenant_id": tenant,
        "admin_id": admin,
        "eligible": verdict.eligible,
        "policy": verdict.policy,
        "missing": verdict.missing,
        "usable_methods": verdict.usable_methods,
        "position": position,
    })
}
