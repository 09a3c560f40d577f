//! The web console (`console/`): plain ES modules compiled into the binary and served at `/`,
//! with a Content-Security-Policy that allows nothing inline, and — where no identity provider
//! is configured and the service listens on loopback — a development sign-in that mints a
//! short-lived token for the tenant, subject and role the user picks.
//!
//! No build step: the console is four files a browser runs as they are, so the README's two
//! commands (run, test) stay the only ones and nothing from the npm registry ships in the
//! binary (only the tests fetch Playwright and axe-core).

use super::HttpState;
use super::auth::Caller;
use super::auth::{JwtKeys, Role};
use super::error::ApiError;
use super::extract::JsonBody;
use super::openapi::{PublicProblems, ReadProblems};
use crate::error::Code;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The console's files: name, content type, text.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/i18n.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../console/style.css"),
    ),
];

const INDEX: &str = include_str!("../../console/index.html");

/// Scripts and styles from this origin only, nothing inline, no framing, requests to the API
/// only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// How long a development token lasts.
pub const DEV_TOKEN_SECONDS: i64 = 15 * 60;

/// The policy, with the identity provider the console signs in with allowed to be fetched.
fn policy(s: &HttpState) -> String {
    match &s.console_oidc {
        Some(oidc) => CONTENT_SECURITY_POLICY.replace(
            "connect-src 'self'",
            &format!("connect-src 'self' {}", origin(&oidc.issuer)),
        ),
        None => CONTENT_SECURITY_POLICY.to_owned(),
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// How the console signs in with the organisation's identity provider: authorization code
/// with PKCE, as a public client.
#[derive(Clone, Debug)]
pub struct ConsoleOidc {
    pub issuer: String,
    pub client_id: String,
}

fn page(s: &HttpState, content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(csp) = HeaderValue::from_str(&policy(s)) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    // `nosniff` and `Cache-Control: no-store` are the API middleware's, on every answer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `GET /`: the console's page.
#[utoipa::path(
    get,
    path = "/",
    tag = "console",
    responses((status = 200, description = "The console's page", content_type = "text/html", body = String))
)]
pub async fn index(State(s): State<HttpState>) -> Response {
    page(&s, "text/html; charset=utf-8", INDEX)
}

/// `GET /console/{file}`.
#[utoipa::path(
    get,
    path = "/console/{file}",
    tag = "console",
    params(("file" = String, Path, description = "`app.js`, `i18n.js` or `style.css`")),
    responses(
        (status = 200, description = "A script or the style sheet", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        PublicProblems,
    )
)]
pub async fn file(
    State(s): State<HttpState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| page(&s, ct, body))
        .ok_or_else(|| ApiError::new(Code::NotFound, "no such file of the console"))
}

/// How the console signs in.
#[derive(Serialize, ToSchema)]
pub struct ConsoleConfig {
    /// Whether `POST /console/dev-sign-in` mints tokens here.
    dev_sign_in: bool,
    /// The identity provider to sign in with, if one is configured.
    oidc: Option<ConsoleOidcConfig>,
}

/// The identity provider the console signs in with (authorization code with PKCE).
#[derive(Serialize, ToSchema)]
pub struct ConsoleOidcConfig {
    client_id: String,
    issuer: String,
    scope: &'static str,
}

/// `GET /console/config.json`: how the console signs in.
#[utoipa::path(
    get,
    path = "/console/config.json",
    tag = "console",
    responses((status = 200, description = "How the console signs in", body = ConsoleConfig), PublicProblems)
)]
pub async fn config(State(s): State<HttpState>) -> Json<ConsoleConfig> {
    let oidc = s.console_oidc.as_ref().map(|o| ConsoleOidcConfig {
        issuer: o.issuer.clone(),
        client_id: o.client_id.clone(),
        scope: "openid",
    });
    Json(ConsoleConfig {
        dev_sign_in: s.dev_sign_in.is_some(),
        oidc,
    })
}

/// A token's tenant, subject and roles, as the service reads them.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    roles: Vec<Role>,
    sub: String,
    #[schema(value_type = String, format = Uuid)]
    tid: crate::domain::TenantId,
}

/// `GET /console/whoami`: the caller as the service reads its token (tenant, subject, roles),
/// whatever signed it.
#[utoipa::path(
    get,
    path = "/console/whoami",
    tag = "console",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = WhoAmI), ReadProblems)
)]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        tid: caller.tenant,
        sub: caller.subject.clone(),
        roles: caller.roles.clone(),
    })
}

/// What a development token is for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevSignIn {
    tenant_id: Uuid,
    subject: String,
    roles: Vec<Role>,
}

/// `POST /console/dev-sign-in`: a token for the tenant, subject and roles asked for, minted
/// with the service's own key, lasting 15 minutes; 404 where the development sign-in is off.
#[utoipa::path(
    post,
    path = "/console/dev-sign-in",
    tag = "console",
    request_body = DevSignIn,
    responses(
        (status = 200, description = "A token", body = DevToken),
        super::openapi::SignInProblems,
    )
)]
pub async fn dev_sign_in(
    State(s): State<HttpState>,
    body: Result<JsonBody<DevSignIn>, ApiError>,
) -> Result<Json<DevToken>, ApiError> {
    let keys: &JwtKeys = s
        .dev_sign_in
        .as_ref()
        .ok_or_else(|| ApiError::new(Code::NotFound, "the development sign-in is off"))?;
    let body = body?.value;
    let subject = body.subject.trim();
    if subject.is_empty() || subject.len() > 200 || subject.chars().any(char::is_control) {
        return Err(ApiError::new(
            Code::InvalidBody,
            "the subject is 1 to 200 characters, no control characters",
        ));
    }
    if body.roles.is_empty() {
        return Err(ApiError::new(Code::InvalidBody, "at least one role"));
    }
    let token = keys
        .mint(body.tenant_id, subject, &body.roles, DEV_TOKEN_SECONDS)
        .map_err(|e| ApiError::new(Code::InternalError, e.to_string()))?;
    tracing::info!(tenant_id = %body.tenant_id, subject, "development sign-in");
    Ok(Json(DevToken {
        token,
        expires_in: DEV_TOKEN_SECONDS,
        claims: DevClaims {
            tid: body.tenant_id,
            sub: subject.to_owned(),
            roles: body.roles,
        },
    }))
}

/// A development token and what it says.
#[derive(Serialize, ToSchema)]
pub struct DevToken {
    claims: DevClaims,
    /// Seconds.
    expires_in: i64,
    token: String,
}

/// The claims of a development token.
#[derive(Serialize, ToSchema)]
pub struct DevClaims {
    roles: Vec<Role>,
    sub: String,
    tid: Uuid,
}
