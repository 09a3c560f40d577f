//! `/admins/{admin_id}/methods`: an admin's security methods, offboarding and erasure.

use super::settings::Settings;
use crate::app::PastPoint;
use crate::domain::{
    AdminCommand, AdminId, AdminState, Method, MethodId, MethodInput, MethodKind, TenantId,
};
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{
    CommandHeaders, JsonBody, ValidPath, ValidQuery, etag, past_point, query_instant,
};
use crate::http::openapi::{
    AdminPath, CommandHeaderParams, MethodPath, Position, ReadProblems, WriteProblems,
};
use crate::http::positions::Positions;
use crate::http::{HttpState, answer_response, command_context};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A method to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// `mobile_phone`, `alternate_phone`, `office_phone` or `email` (another is a 422,
    /// `unknown_method_kind`).
    #[schema(value_type = crate::domain::MethodKind)]
    kind: String,
    /// A phone number (E.164, or national with the tenant's region) or an email address.
    #[schema(example = "+45 20 12 34 56")]
    value: String,
}

/// A method's new value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    value: String,
}

/// Why an offboarded admin's values are erased.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseBody {
    /// Why (a ticket, the request's reference): 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// The view as it was at this instant (RFC 3339).
    #[serde(default, deserialize_with = "query_instant")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub(crate) as_of: Option<DateTime<Utc>>,
    /// The view as it was at this log position (a token when sealed): exact, whatever the
    /// writers' clocks.
    pub(crate) as_of_position: Option<String>,
    /// Answer from a view that reflects at least this log position (a token when sealed).
    pub(crate) min_position: Option<String>,
}

/// An admin's contact view: their methods now, or as they were (`as_of`, `as_of_position`,
/// with the tenant's settings then).
#[derive(Serialize, ToSchema)]
pub struct ContactView {
    admin_id: AdminId,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Position>)]
    as_of_position: Option<Value>,
    methods: Vec<MethodBody<'static>>,
    offboarded: bool,
    /// The log position the view reflects.
    #[schema(value_type = Position)]
    position: Value,
    tenant_id: TenantId,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_settings: Option<Settings>,
    /// The stream's version (the `ETag`).
    version: u64,
}

/// A method. The fields of this and of every answer built as a `serde_json::Value` before these
/// types are in alphabetical order, so that answers keep their bytes (a retry's answer is the
/// first one's, byte for byte, whichever build stored it: `concurrency.rs`).
#[derive(Serialize, ToSchema)]
pub struct MethodBody<'a> {
    added_at: DateTime<Utc>,
    changed_at: DateTime<Utc>,
    id: MethodId,
    kind: MethodKind,
    /// In a view: the value masked, for a console that shows it to someone not its owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    masked_value: Option<String>,
    /// Canonical: E.164 for a phone number (with `x` and the extension), the address for an
    /// email.
    #[schema(value_type = String)]
    value: std::borrow::Cow<'a, str>,
}

impl MethodBody<'_> {
    fn of(m: &Method) -> MethodBody<'_> {
        MethodBody {
            added_at: m.added_at,
            changed_at: m.changed_at,
            id: m.id,
            kind: m.kind,
            masked_value: None,
            value: std::borrow::Cow::Borrowed(&m.value),
        }
    }

    fn masked(m: &Method) -> MethodBody<'static> {
        MethodBody {
            added_at: m.added_at,
            changed_at: m.changed_at,
            id: m.id,
            kind: m.kind,
            masked_value: Some(crate::domain::mask(m.kind, &m.value)),
            value: std::borrow::Cow::Owned(m.value.clone()),
        }
    }
}

impl ContactView {
    fn new(
        positions: &Positions,
        tenant: TenantId,
        admin: AdminId,
        position: u64,
        state: &AdminState,
    ) -> Self {
        ContactView {
            tenant_id: tenant,
            admin_id: admin,
            version: state.version,
            position: positions.show(tenant, position),
            offboarded: state.offboarded,
            methods: state.methods.iter().map(MethodBody::masked).collect(),
            as_of: None,
            as_of_position: None,
            tenant_settings: None,
        }
    }
}

/// A command's answer: the method it left in place (none after a removal or an offboarding),
/// the stream's version and `position` (as the tenant sees it).
#[derive(Serialize, ToSchema)]
pub struct CommandAnswer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<MethodBody<'a>>,
    /// The command's position in the log: ask a read for `min_position` of it to see it.
    #[schema(value_type = Position)]
    position: Value,
    /// The stream's new version (the `ETag`).
    version: u64,
}

impl<'a> CommandAnswer<'a> {
    pub(crate) fn new(method: Option<&'a Method>, version: u64, position: Value) -> Self {
        CommandAnswer {
            method: method.map(MethodBody::of),
            position,
            version,
        }
    }
}

/// `GET …/methods`: the current view (`?min_position=`) or the view at `?as_of=`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/methods",
    tag = "methods",
    params(AdminPath, ViewQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The contact view; `ETag` is its version", body = ContactView),
        ReadProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn list(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    query: Result<ValidQuery<ViewQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller.authorize(tenant, Access::ReadView(admin))?;
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
        let mut body = ContactView::new(&s.positions, tenant, admin, then.position, &then.admin);
        match point {
            PastPoint::Instant(at) => body.as_of = Some(at),
            PastPoint::Position(n) => body.as_of_position = Some(s.positions.show(tenant, n)),
        }
        body.tenant_settings = Some(Settings::of(&then.tenant));
        return Ok(Json(body).into_response());
    }
    let min_position = s
        .positions
        .query(tenant, "min_position", q.min_position.as_deref())?;
    let (position, state) = s.app.contact_view(tenant, admin, min_position).await?;
    let mut response = Json(ContactView::new(
        &s.positions,
        tenant,
        admin,
        position,
        &state,
    ))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(state.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// `POST …/methods`: adds a method → 201.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/methods",
    tag = "methods",
    params(AdminPath, CommandHeaderParams),
    request_body = AddBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Added; `Location` names the method, `ETag` is the new version", body = CommandAnswer),
        WriteProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn add(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    headers: Result<CommandHeaders, ApiError>,
    body: Result<JsonBody<AddBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.authorize(tenant, Access::ManageAdmin(admin))?;
    caller.stepped_up(&s.auth.step_up)?;
    let headers = headers?;
    let body = body?;
    let kind = MethodKind::parse(&body.value.kind)?;
    let method_id = MethodId::from_uuid(uuid::Uuid::now_v7());
    let ctx = command_context(
        &caller,
        tenant,
        headers,
        &format!("POST {admin}/methods"),
        &body.raw,
    );
    let command = AdminCommand::AddMethod {
        method_id,
        kind,
        value: MethodInput::parse(&body.value.value),
    };
    let answer = s.app.admin_command(&ctx, admin, command).await?;
    // The outcome's method: a replayed answer's is the first request's.
    let location = answer
        .outcome
        .method()
        .map(|m| format!("/v1/tenants/{tenant}/admins/{admin}/methods/{}", m.id));
    let mut response = answer_response(&s.positions, tenant, StatusCode::CREATED, &answer);
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `PATCH …/methods/{method_id}`: changes a method's value.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/methods/{method_id}",
    tag = "methods",
    params(MethodPath, CommandHeaderParams),
    request_body = ChangeBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = CommandAnswer),
        WriteProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin, method_id = %method))]
pub async fn change(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin, method)): ValidPath<(TenantId, AdminId, MethodId)>,
    headers: Result<CommandHeaders, ApiError>,
    body: Result<JsonBody<ChangeBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.authorize(tenant, Access::ManageAdmin(admin))?;
    caller.stepped_up(&s.auth.step_up)?;
    let headers = headers?;
    let body = body?;
    let ctx = command_context(
        &caller,
        tenant,
        headers,
        &format!("PATCH {admin}/methods/{method}"),
        &body.raw,
    );
    let command = AdminCommand::ChangeMethod {
        method_id: method,
        value: MethodInput::parse(&body.value.value),
    };
    let answer = s.app.admin_command(&ctx, admin, command).await?;
    Ok(answer_response(
        &s.positions,
        tenant,
        StatusCode::OK,
        &answer,
    ))
}

/// `DELETE …/methods/{method_id}`: removes a method.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/methods/{method_id}",
    tag = "methods",
    params(MethodPath, CommandHeaderParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed", body = CommandAnswer),
        WriteProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin, method_id = %method))]
pub async fn remove(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin, method)): ValidPath<(TenantId, AdminId, MethodId)>,
    headers: Result<CommandHeaders, ApiError>,
) -> Result<Response, ApiError> {
    caller.authorize(tenant, Access::ManageAdmin(admin))?;
    caller.stepped_up(&s.auth.step_up)?;
    let headers = headers?;
    let ctx = command_context(
        &caller,
        tenant,
        headers,
        &format!("DELETE {admin}/methods/{method}"),
        &[],
    );
    let command = AdminCommand::RemoveMethod { method_id: method };
    let answer = s.app.admin_command(&ctx, admin, command).await?;
    Ok(answer_response(
        &s.positions,
        tenant,
        StatusCode::OK,
        &answer,
    ))
}

/// `POST …/offboard`: removes every method of a former employee; the history stays.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/offboard",
    tag = "methods",
    params(AdminPath, CommandHeaderParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Offboarded", body = CommandAnswer),
        WriteProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn offboard(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    headers: Result<CommandHeaders, ApiError>,
) -> Result<Response, ApiError> {
    caller.authorize(tenant, Access::Offboard)?;
    caller.stepped_up(&s.auth.step_up)?;
    let headers = headers?;
    let ctx = command_context(
        &caller,
        tenant,
        headers,
        &format!("POST {admin}/offboard"),
        &[],
    );
    let answer = s
        .app
        .admin_command(&ctx, admin, AdminCommand::Offboard)
        .await?;
    Ok(answer_response(
        &s.positions,
        tenant,
        StatusCode::OK,
        &answer,
    ))
}

/// `POST …/erase {"reason"}`: erases an offboarded admin's contact values (their data key is
/// destroyed with the `AdminErased` event; the history stays, its values read as erased).
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant_id}/admins/{admin_id}/erase",
    tag = "methods",
    params(AdminPath, CommandHeaderParams),
    request_body = EraseBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Erased", body = CommandAnswer),
        WriteProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant, admin_id = %admin))]
pub async fn erase(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath((tenant, admin)): ValidPath<(TenantId, AdminId)>,
    headers: Result<CommandHeaders, ApiError>,
    body: Result<JsonBody<EraseBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.authorize(tenant, Access::Erase)?;
    caller.stepped_up(&s.auth.step_up)?;
    let headers = headers?;
    let body = body?;
    let ctx = command_context(
        &caller,
        tenant,
        headers,
        &format!("POST {admin}/erase"),
        &body.raw,
    );
    let command = AdminCommand::Erase {
        reason: body.value.reason,
    };
    let answer = s.app.admin_command(&ctx, admin, command).await?;
    Ok(answer_response(
        &s.positions,
        tenant,
        StatusCode::OK,
        &answer,
    ))
}
