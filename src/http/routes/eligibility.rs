//! `/admins/{admin_id}/reset-eligibility`: may this admin reset now, and with which methods?

use super::settings::settings_json;
use crate::app::PastPoint;
use crate::domain::{AdminId, TenantId, Verdict};
use crate::http::HttpState;
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{ValidPath, ValidQuery, past_point, query_instant};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilityQuery {
    /// Answer from a view that reflects at least this log position (read-your-writes; a
    /// token when sealed).
    min_position: Option<String>,
    /// The verdict as it was at this instant (RFC 3339), under the tenant's policy then.
    #[serde(default, deserialize_with = "query_instant")]
    as_of: Option<DateTime<Utc>>,
    /// The verdict as it was at this log position (a token when sealed).
    as_of_position: Option<String>,
}

/// `GET …/reset-eligibility`.
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn get(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    query: Result<ValidQuery<EligibilityQuery>, ApiError>,
) -> Result<Json<VerdictBody>, ApiError> {
    caller.authorize(tenant, Access::ReadEligibility(admin))?;
    let ValidQuery(q) = query?;
    let point = past_point(
        &s.positions,
        tenant,
        q.as_of,
        q.as_of_position.as_deref(),
        &q.min_position,
    )?;
    if let Some(point) = point {
        let then = s.app.as_of(tenant, admin, point).await?;
        let (as_of, as_of_position) = match point {
            PastPoint::Instant(at) => (Some(at), None),
            PastPoint::Position(n) => (None, Some(s.positions.show(tenant, n))),
        };
        return Ok(Json(VerdictBody {
            as_of,
            as_of_position,
            tenant_settings: Some(settings_json(&then.tenant)),
            ..VerdictBody::new(
                tenant,
                admin,
                s.positions.show(tenant, then.position),
                Arc::new(then.verdict),
            )
        }));
    }
    let min_position = s
        .positions
        .query(tenant, "min_position", q.min_position.as_deref())?;
    let (position, verdict) = s.app.eligibility(tenant, admin, min_position).await?;
    Ok(Json(VerdictBody::new(
        tenant,
        admin,
        s.positions.show(tenant, position),
        verdict,
    )))
}

/// The eligibility answer: the verdict and the log position it reflects (serialized directly,
/// without building a JSON tree: this is the hottest read).
#[derive(Serialize)]
pub struct VerdictBody {
    tenant_id: TenantId,
    admin_id: AdminId,
    /// Shared with the in-memory verdicts.
    #[serde(flatten)]
    verdict: Arc<Verdict>,
    /// The position as the tenant sees it (a token, or a number when plain).
    position: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of_position: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_settings: Option<Value>,
}

impl VerdictBody {
    fn new(tenant: TenantId, admin: AdminId, position: Value, verdict: Arc<Verdict>) -> Self {
        VerdictBody {
            tenant_id: tenant,
            admin_id: admin,
            verdict,
            position,
            as_of: None,
            as_of_position: None,
            tenant_settings: None,
        }
    }
}
