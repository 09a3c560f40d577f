//! `/settings`: the tenant's own domains and reset policy.

use crate::domain::{SetSettings, TenantId, TenantState};
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{CommandHeaders, JsonBody, ValidPath};
use crate::http::openapi::{
    CommandHeaderParams, Position, ReadProblems, TenantPath, WriteProblems,
};
use crate::http::{HttpState, answer_response, command_context};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A reset policy, by name.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// `email_and_mobile_phone` (the default) or `any_two_methods`.
    #[schema(value_type = crate::domain::ResetPolicy)]
    name: String,
}

/// What to set; what is absent stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// The tenant's own email domains (an alternate email inside them does not count).
    domains: Option<Vec<String>>,
    reset_policy: Option<PolicyBody>,
    notifications: Option<NotificationsBody>,
}

/// The notices to the old contact.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsBody {
    /// `en` or `da`.
    #[schema(pattern = "^(en|da)$")]
    language: Option<String>,
    /// The notice kinds turned off.
    disabled: Option<Vec<String>>,
}

/// The tenant's settings: domains, reset policy, and the notices' settings once set.
#[derive(Serialize, ToSchema)]
pub struct Settings {
    #[schema(value_type = Vec<String>)]
    domains: Vec<crate::domain::TenantDomain>,
    /// Shown once set (absent: English, every kind on), so that the answers of older builds
    /// and of this one have the same shape for a tenant that never set them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    notifications: Option<Value>,
    reset_policy: PolicyBody,
}

impl Settings {
    pub(crate) fn of(s: &TenantState) -> Self {
        Settings {
            domains: s.domains.clone(),
            reset_policy: PolicyBody {
                name: s.policy.name().to_owned(),
            },
            notifications: (!s.notices.is_default())
                .then(|| crate::events::notice_settings_json(&s.notices)),
        }
    }
}

/// The settings with the tenant stream's version and `position` (the stream's, as the tenant
/// sees it): a read, or a command's answer. Its fields in alphabetical order (see
/// `methods::MethodBody`), so not the flattened [`Settings`].
#[derive(Serialize, ToSchema)]
pub struct VersionedSettings {
    #[schema(value_type = Vec<String>)]
    domains: Vec<crate::domain::TenantDomain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    notifications: Option<Value>,
    #[schema(value_type = Position)]
    position: Value,
    reset_policy: PolicyBody,
    /// The tenant stream's version (the `ETag`).
    version: u64,
}

impl VersionedSettings {
    pub(crate) fn new(s: &TenantState, position: Value) -> Self {
        let Settings {
            domains,
            notifications,
            reset_policy,
        } = Settings::of(s);
        VersionedSettings {
            domains,
            notifications,
            position,
            reset_policy,
            version: s.version,
        }
    }
}

/// `GET …/settings`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/settings",
    tag = "settings",
    params(TenantPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's settings", body = VersionedSettings),
        ReadProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn get(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
) -> Result<Json<VersionedSettings>, ApiError> {
    caller.authorize(tenant, Access::ReadSettings)?;
    let settings = s.app.settings(tenant).await?;
    let position = s.positions.show(tenant, settings.last_position);
    Ok(Json(VersionedSettings::new(&settings, position)))
}

/// `PUT …/settings`: sets the domains and/or the reset policy; every admin of the tenant is
/// re-evaluated by the admin projection.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant_id}/settings",
    tag = "settings",
    params(TenantPath, CommandHeaderParams),
    request_body = SettingsBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Set", body = VersionedSettings),
        WriteProblems,
    )
)]
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
