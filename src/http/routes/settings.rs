//! `/settings`: the tenant's own domains and reset policy.

use crate::domain::{SetSettings, TenantId, TenantState};
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{CommandHeaders, JsonBody, ValidPath};
use crate::http::{HttpState, answer_response, command_context};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    domains: Option<Vec<String>>,
    reset_policy: Option<PolicyBody>,
    notifications: Option<NotificationsBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsBody {
    /// `en` or `da`.
    language: Option<String>,
    /// The notice kinds turned off.
    disabled: Option<Vec<String>>,
}

/// The tenant's settings: domains, reset policy, and the notices' settings once set.
pub(crate) fn settings_json(s: &TenantState) -> Value {
    let mut body = json!({"domains": s.domains, "reset_policy": {"name": s.policy.name()}});
    // Shown once set (absent: English, every kind on), so that the answers of older builds and
    // of this one have the same shape for a tenant that never set them.
    if !s.notices.is_default() {
        body["notifications"] = crate::events::notice_settings_json(&s.notices);
    }
    body
}

/// The settings with the tenant stream's version and `position` (the stream's, as the tenant
/// sees it): a read, or a command's answer.
pub(crate) fn versioned_settings_json(s: &TenantState, position: Value) -> Value {
    let mut body = settings_json(s);
    body["version"] = json!(s.version);
    body["position"] = position;
    body
}

/// `GET …/settings`.
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn get(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
) -> Result<Json<Value>, ApiError> {
    caller.authorize(tenant, Access::ReadSettings)?;
    let settings = s.app.settings(tenant).await?;
    let position = s.positions.show(tenant, settings.last_position);
    Ok(Json(versioned_settings_json(&settings, position)))
}

/// `PUT …/settings`: sets the domains and/or the reset policy; every admin of the tenant is
/// re-evaluated by the admin projection.
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn put(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
    headers: Result<CommandHeaders, ApiError>,
    body: Result<JsonBody<SettingsBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.authorize(tenant, Access::ManageSettings)?;
    let headers = headers?;
    let body = body?;
    let ctx = command_context(&caller, tenant, headers, "PUT settings", &body.raw);
    let (notice_language, notices_disabled) = match body.value.notifications {
        Some(n) => (n.language, n.disabled),
        None => (None, None),
    };
    let command = SetSettings {
        domains: body.value.domains,
        reset_policy: body.value.reset_policy.map(|p| p.name),
        notice_language,
        notices_disabled,
    };
    let answer = s.app.tenant_command(&ctx, command).await?;
    Ok(answer_response(
        &s.positions,
        tenant,
        StatusCode::OK,
        &answer,
    ))
}
