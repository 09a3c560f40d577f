//! The API's contract, OpenAPI 3.1, served at `/openapi.json`.
//!
//! It is built from the code, so that it cannot drift from it: every route is declared once,
//! with its `#[utoipa::path]` (method, path, parameters, bodies, answers), and the router is
//! made from those declarations (`utoipa_axum::routes!` in `http::router`); the bodies are the
//! types the handlers deserialize and serialize (`ToSchema`), the problem codes are
//! [`Code::ALL`]. What is declared here are the pieces many routes share: the path
//! parameters, the command headers, the position, and the problem answers by status.
//! `tests/api/schemathesis.rs` runs schemathesis against it on both stores.

use crate::error::Code;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::OnceLock;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};
use uuid::Uuid;

/// The document's frame: title, security scheme, tags. The paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "recovery-info",
        description = "The system of record for administrators' security info: their \
                       recovery methods, reset eligibility, history and audit proofs. Errors \
                       are `application/problem+json` (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem, Code, Position)),
    tags(
        (name = "methods", description = "An admin's security methods, offboarding, erasure"),
        (name = "eligibility", description = "May an admin reset their password now"),
        (name = "history", description = "The log: an admin's history, the tenant's feed and stream"),
        (name = "settings", description = "The tenant's domains, reset policy and notices"),
        (name = "audit", description = "Signed checkpoints, Merkle proofs, the chains' verification"),
        (name = "console", description = "The web console's pages and sign-in"),
        (name = "ops", description = "Health, readiness and the contract itself")
    )
)]
pub struct ApiDoc;

/// The bearer tokens (JWTs: the service's own HS256 ones, or an identity provider's).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The document as `/openapi.json` serves it (with `/metrics` or without), serialized once.
pub(crate) fn served(metrics: bool) -> &'static str {
    static WITH: OnceLock<String> = OnceLock::new();
    static WITHOUT: OnceLock<String> = OnceLock::new();
    let cell = if metrics { &WITH } else { &WITHOUT };
    cell.get_or_init(|| {
        // Serializing a document of strings, maps and numbers cannot fail.
        super::routes(metrics).1.to_json().unwrap_or_default()
    })
}

/// A tenant's routes: `/v1/tenants/{tenant_id}/…`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct TenantPath {
    /// The tenant (a UUID).
    tenant_id: Uuid,
}

/// An admin's routes: `…/admins/{admin_id}/…`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct AdminPath {
    /// The tenant (a UUID).
    tenant_id: Uuid,
    /// The admin (a UUID; their identity provider's object id).
    admin_id: Uuid,
}

/// A method's routes: `…/methods/{method_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct MethodPath {
    /// The tenant (a UUID).
    tenant_id: Uuid,
    /// The admin (a UUID).
    admin_id: Uuid,
    /// The method (a UUID, from the answer that added it).
    method_id: Uuid,
}

/// The headers of a command (`http::extract::CommandHeaders`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct CommandHeaderParams {
    /// The stream version the command expects, as an ETag of this API (`"3"`), or `*`: a
    /// mismatch is a 412 and nothing is written.
    #[param(rename = "If-Match", pattern = r#"^(\*|(W/)?"[0-9]{1,19}")$"#)]
    if_match: Option<String>,
    /// 1 to 255 visible ASCII characters: a repeat of the same request gets the first answer
    /// (`Idempotent-Replayed: true`) and writes nothing; another request with it is a 422.
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
    /// A UUID that the events of the command carry (default: the request id).
    #[param(rename = "X-Correlation-Id")]
    correlation_id: Option<Uuid>,
}

/// A log position as the tenant sees it: a sealed token (the default) or, with plain
/// positions, the global position itself.
pub struct Position;

impl PartialSchema for Position {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .description(Some("a sealed position token")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(0))
                    .description(Some("a plain global position")),
            )
            .into()
    }
}

impl ToSchema for Position {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Position")
    }
}

impl PartialSchema for Code {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(
                "The stable, machine-readable code of a refusal or a failure.",
            ))
            .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for Code {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Code")
    }
}

/// The body of every error answer (RFC 9457), `application/problem+json`.
#[derive(Serialize, ToSchema)]
pub struct Problem<'a> {
    pub code: Code,
    pub detail: &'a str,
    pub status: u16,
    pub title: &'a str,
    /// `urn:recovery-info:problem:{code}`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Declares an enum of problem answers by status, for `responses(...)`.
macro_rules! problems {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $status:literal: $what:literal,)* }) => {
        $(#[$doc])*
        #[derive(IntoResponses)]
        #[allow(dead_code)]
        pub(crate) enum $name {
            $(
                #[response(status = $status, description = $what, content_type = "application/problem+json")]
                $variant(#[to_schema] Problem<'static>),
            )*
        }
    };
}

problems! {
    /// What any route of a tenant may answer besides its own.
    ReadProblems {
        BadRequest = 400: "A malformed path, query or header (`invalid_path`, `invalid_query`, …)",
        Unauthorized = 401: "No valid bearer token (`unauthorized`)",
        Forbidden = 403: "The token's roles or tenant do not allow it (`forbidden`, `tenant_mismatch`, …)",
        NotFound = 404: "No such resource (`not_found`, `method_not_found`)",
        RateLimited = 429: "Too many requests of the token or address (`rate_limited`, with Retry-After)",
        Internal = 500: "A failure of the service's own (`internal_error`, `log_diverged`)",
        Unavailable = 503: "Retry shortly: the database, a projection's freshness or the request timeout (with Retry-After)",
    }
}

problems! {
    /// What a command may answer besides its own.
    WriteProblems {
        BadRequest = 400: "A malformed path, body or header (`malformed_json`, `invalid_if_match`, …)",
        Unauthorized = 401: "No valid bearer token, or a sign-in not recent or strong enough (`step_up_required`)",
        Forbidden = 403: "The token's roles or tenant do not allow it (`forbidden`, `tenant_mismatch`)",
        NotFound = 404: "No such resource (`not_found`, `method_not_found`)",
        Conflict = 409: "The security info does not allow the change (`method_kind_exists`, `admin_offboarded`, …)",
        PreconditionFailed = 412: "If-Match names another version (`version_mismatch`)",
        PayloadTooLarge = 413: "The body is too large (`payload_too_large`)",
        UnsupportedMediaType = 415: "The body is not `application/json` (`unsupported_media_type`)",
        Unprocessable = 422: "An invalid value or body, or an Idempotency-Key reused (`invalid_phone_number`, `invalid_body`, …)",
        RateLimited = 429: "Too many writes of the token or address (`rate_limited`, with Retry-After)",
        Internal = 500: "A failure of the service's own (`internal_error`)",
        Unavailable = 503: "Retry (with the same Idempotency-Key): the database, contention or the request timeout",
    }
}

problems! {
    /// What a public route (no token) may answer besides its own.
    PublicProblems {
        BadRequest = 400: "A malformed query (`invalid_query`)",
        NotFound = 404: "Nothing of the kind here (`not_found`)",
        Internal = 500: "A failure of the service's own (`internal_error`)",
        Unavailable = 503: "Retry shortly (`database_unavailable`, `not_ready`, `request_timeout`)",
    }
}

/// An entry of a history, of the tenant's feed and of its stream: the event and where it is
/// in the log (`events::RecordedEvent::to_json`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct EventEntry {
    #[schema(value_type = Position)]
    position: (),
    /// The event's version in its stream.
    version: u64,
    event_id: Uuid,
    /// The event's type (`MethodAdded`, `MethodChanged`, …).
    #[schema(rename = "type")]
    kind: String,
    occurred_at: chrono::DateTime<chrono::Utc>,
    tenant_id: Uuid,
    /// The admin of an admin stream's event; `null` for a tenant's.
    admin_id: Option<Uuid>,
    /// Who did it (the token's subject and roles, and how they signed in).
    actor: crate::events::Actor,
    correlation_id: Uuid,
    /// What changed; values masked unless revealed.
    #[schema(value_type = Object)]
    data: (),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_problem_schema() {
        let RefOr::T(Schema::Object(schema)) = Code::schema() else {
            panic!("Code's schema is an object schema");
        };
        let values = schema.enum_values.expect("an enum");
        assert_eq!(values.len(), Code::ALL.len());
        for code in Code::ALL {
            assert!(values.contains(&serde_json::json!(code.as_str())), "{code}");
        }
    }
}
