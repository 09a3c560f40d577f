//! The API's contract, OpenAPI 3.1, served at `/openapi.json`.
//!
//! It is built from the code, so that it cannot drift from it: every route is declared once,
//! with its `#[utoipa::path]` (method, path, parameters, bodies, answers), and the router is
//! made from those declarations (`utoipa_axum::routes!` in `http::router`); the bodies are the
//! types the handlers deserialize and serialize (`ToSchema`), the problem codes are
//! [`Code::ALL`]. What is declared here are the pieces many routes share: the path
//! parameters, the command headers, the position, and the problem answers by status.
//! `tests/api/schemathesis.rs` runs schemathesis against it on both stores.

use super::error::problem;
use crate::error::Code;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::openapi::ContentBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Ref, Schema, SchemaType, Type};
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

/// The problem answers of a route that can give `codes`, by status: each code's status from
/// [`problem`] (the one mapping of codes to statuses), each status's description naming its
/// codes. A route's document lists exactly the statuses its codes map to.
fn problem_responses(codes: &[Code]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for &code in codes {
        by_status
            .entry(problem(code).0.as_u16())
            .or_default()
            .push(code.as_str());
    }
    by_status
        .into_iter()
        .map(|(status, names)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(format!("`{}`", names.join("`, `")))
                .content("application/problem+json", content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// Declares a set of problem answers for `responses(...)`: the codes a kind of route can give.
macro_rules! problems {
    ($(#[$doc:meta])* $name:ident = [$($code:ident),* $(,)?] $(+ $base:ident)?) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl $name {
            /// Its codes, with those of the set it extends.
            pub(crate) fn codes() -> Vec<Code> {
                let own: &[Code] = &[$(Code::$code),*];
                [problems!(@base $($base)?), own.to_vec()].concat()
            }
        }

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problem_responses(&Self::codes())
            }
        }
    };
    (@base) => { Vec::new() };
    (@base $base:ident) => { $base::codes() };
}

problems! {
    /// What any route may answer: the listener's refusals, an unknown resource, the request
    /// timeout, a failure of the service's own.
    AnyProblems = [
        MalformedRequest, UriTooLong, HeadersTooLarge, NotFound, RequestTimeout, InternalError,
    ]
}

problems! {
    /// What a public route (no token) may answer besides its own.
    PublicProblems = [InvalidQuery, DatabaseUnavailable, NotReady] + AnyProblems
}

problems! {
    /// What the console's development sign-in may answer besides a token.
    SignInProblems = [
        MalformedJson, UnreadableBody, PayloadTooLarge, UnsupportedMediaType, InvalidBody,
    ] + PublicProblems
}

problems! {
    /// What any route of a tenant may answer besides its own.
    ReadProblems = [
        InvalidPath, InvalidQuery, AsOfWithMinPosition, DuplicateAuthorization, PositionBeyondLog,
        Unauthorized, Forbidden, TenantMismatch, RevealRequiresAuditor, MethodNotFound,
        RateLimited, ViewNotFresh, DatabaseUnavailable, LogDiverged,
    ] + AnyProblems
}

problems! {
    /// What the tenant's event stream may answer besides the stream.
    StreamProblems = [InvalidLastEventId, LastEventIdBeyondLog] + ReadProblems
}

problems! {
    /// What a command may answer besides its own.
    WriteProblems = [
        InvalidPath, DuplicateAuthorization, MalformedJson, UnreadableBody, PayloadTooLarge,
        UnsupportedMediaType, InvalidBody, InvalidIfMatch, InvalidIdempotencyKey, Unauthorized,
        StepUpRequired, Forbidden, TenantMismatch, MethodNotFound, MethodKindExists,
        AlternatePhoneRequiresMobile, MobilePhoneHasAlternate, AdminOffboarded,
        AdminNotOffboarded, AdminErased, InvalidEraseReason, InvalidPhoneNumber,
        PhoneNumberTypeNotAllowed, InvalidEmail, EmailInTenantDomain, ExtensionNotAllowed,
        UnknownMethodKind, InvalidDomain, TooManyDomains, UnknownResetPolicy,
        UnknownNoticeKind, UnknownLanguage, VersionMismatch, IdempotencyKeyReused,
        WriteContention, RateLimited, DatabaseUnavailable,
    ] + AnyProblems
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
    fn every_code_is_documented_where_it_can_occur_at_the_status_it_is_answered_with() {
        let mut documented: Vec<Code> = [
            ReadProblems::codes(),
            WriteProblems::codes(),
            StreamProblems::codes(),
            SignInProblems::codes(),
        ]
        .concat();
        documented.sort_by_key(|c| c.as_str());
        documented.dedup();
        // Only the 405 of an undocumented method is not a route's answer.
        let missing: Vec<&str> = Code::ALL
            .iter()
            .filter(|c| !documented.contains(c) && **c != Code::MethodNotAllowed)
            .map(|c| c.as_str())
            .collect();
        assert!(missing.is_empty(), "no route documents {missing:?}");
        let responses = WriteProblems::responses();
        let RefOr::T(conflict) = &responses["409"] else {
            panic!("409 is inline");
        };
        assert!(conflict.description.contains("`method_kind_exists`"));
        assert!(!responses.contains_key("200"));
    }

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
