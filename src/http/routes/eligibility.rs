//! `/admins/{admin_id}/reset-eligibility`: may this admin reset now, and with which methods?

use super::settings::Settings;
use crate::app::PastPoint;
use crate::domain::{AdminId, TenantId, Verdict};
use crate::http::HttpState;
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{ValidPath, ValidQuery, past_point, query_instant};
use crate::http::openapi::{AdminPath, Position, ReadProblems};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EligibilityQuery {
    /// Answer from a view that reflects at least this log position (read-your-writes; a
    /// token when sealed).
    pub(crate) min_position: Option<String>,
    /// The verdict as it was at this instant (RFC 3339), under the tenant's policy then.
    #[serde(default, deserialize_with = "query_instant")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub(crate) as_of: Option<DateTime<Utc>>,
    /// The verdict as it was at this log position (a token when sealed).
    pub(crate) as_of_position: Option<String>,
}

/// `GET …/reset-eligibility`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/reset-eligibility",
    tag = "eligibility",
    params(AdminPath, EligibilityQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verdict, and the position it reflects", body = VerdictBody),
        ReadProblems,
    )
)]
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
            tenant_settings: Some(Settings::of(&then.tenant)),
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
#[derive(Serialize, ToSchema)]
pub struct VerdictBody {
    tenant_id: TenantId,
    admin_id: AdminId,
    /// Shared with the in-memory verdicts.
    #[serde(flatten)]
    #[schema(value_type = Verdict)]
    verdict: Arc<Verdict>,
    /// The position as the tenant sees it (a token, or a number when plain).
    #[schema(value_type = Position)]
    position: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Position>)]
    as_of_position: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_settings: Option<Settings>,
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
