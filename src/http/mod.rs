//! The HTTP API: router, shared state, middleware (request ids, traces, metrics, body limit,
//! the headers every answer carries).

pub mod auth;
pub mod console;
pub(crate) mod error;
pub(crate) mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub(crate) mod listener;
pub mod metrics;
pub mod openapi;
pub(crate) mod positions;
pub(crate) mod routes;

use crate::app::{Answer, App, CommandContext, IdempotencyRequest};
use crate::domain::CommandOutcome;
use crate::error::Code;
use crate::publish::tail::{LiveLog, StreamShutdown};
use auth::{Authenticator, Caller};
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use error::ApiError;
use extract::{CommandHeaders, MAX_BODY_BYTES, etag};
use metrics::MetricsToken;
use metrics_exporter_prometheus::PrometheusHandle;
use positions::Positions;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tower::{Service, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

/// What every handler can reach: a handle, cloned for every request, to [`Shared`].
#[derive(Clone)]
pub struct HttpState(Arc<Shared>);

/// The state behind [`HttpState`].
pub struct Shared {
    pub app: App,
    /// How bearer tokens are verified, and what writes need of the sign-in.
    pub auth: Authenticator,
    pub metrics: PrometheusHandle,
    /// With it, `/metrics` on the API's listener too, for requests bearing it.
    pub metrics_token: Option<MetricsToken>,
    /// What the SSE streams follow, and what ends them.
    pub live: LiveLog,
    pub stream_shutdown: StreamShutdown,
    /// How log positions appear to tenants.
    pub positions: Positions,
    /// The key that signs the log's checkpoints (none: the server does not sign).
    pub audit_key: Option<crate::audit::note::NoteVerifier>,
    /// The console's development sign-in mints with these (none: off).
    pub dev_sign_in: Option<auth::JwtKeys>,
    /// The console's sign-in with the organisation's identity provider (none: off).
    pub console_oidc: Option<console::ConsoleOidc>,
    /// Rates and caps (`limits`).
    pub limits: Arc<limits::Limits>,
    /// HSTS and CORS.
    pub edge: Edge,
}

/// What the API's answers say to browsers about where they come from.
#[derive(Clone, Debug, Default)]
pub struct Edge {
    /// `Strict-Transport-Security` on every answer (the service is reached over TLS only,
    /// through a terminating proxy).
    pub hsts: bool,
    /// The origins whose pages may call the API from a browser (CORS); none: no CORS headers,
    /// so browsers refuse cross-origin reads.
    pub cors_origins: Vec<String>,
}

impl Edge {
    fn cors(&self) -> Option<tower_http::cors::CorsLayer> {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        if self.cors_origins.is_empty() {
            return None;
        }
        let origins: Vec<HeaderValue> = self
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    axum::http::Method::GET,
                    axum::http::Method::POST,
                    axum::http::Method::PUT,
                    axum::http::Method::PATCH,
                    axum::http::Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::IF_MATCH,
                    HeaderName::from_static("idempotency-key"),
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    header::ETAG,
                    header::LOCATION,
                    header::RETRY_AFTER,
                    HeaderName::from_static("idempotent-replayed"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }

    fn hsts(&self) -> Option<SetResponseHeaderLayer<HeaderValue>> {
        self.hsts.then(|| {
            SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            )
        })
    }
}

impl HttpState {
    pub fn new(
        app: App,
        auth: Authenticator,
        metrics: PrometheusHandle,
        metrics_token: Option<MetricsToken>,
        live: LiveLog,
        stream_shutdown: StreamShutdown,
        positions: Positions,
    ) -> Self {
        HttpState(Arc::new(Shared {
            app,
            auth,
            metrics,
            metrics_token,
            live,
            stream_shutdown,
            positions,
            audit_key: None,
            dev_sign_in: None,
            console_oidc: None,
            limits: limits::Limits::new(&Default::default()),
            edge: Edge::default(),
        }))
    }

    /// With HSTS and CORS as `edge` says (before the state is shared).
    pub fn with_edge(mut self, edge: Edge) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.edge = edge;
        }
        self
    }

    /// With these limits (before the state is shared).
    pub fn with_limits(mut self, config: &limits::LimitsConfig) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.limits = limits::Limits::new(config);
        }
        self
    }

    /// With the console's sign-in at an identity provider (before the state is shared).
    pub fn with_console_oidc(mut self, oidc: console::ConsoleOidc) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.console_oidc = Some(oidc);
        }
        self
    }

    /// With the console's development sign-in, minting with `keys` (before the state is
    /// shared).
    pub fn with_dev_sign_in(mut self, keys: auth::JwtKeys) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.dev_sign_in = Some(keys);
        }
        self
    }

    /// With the key that signs the log's checkpoints (before the state is shared).
    pub fn with_audit_key(mut self, key: crate::audit::note::NoteVerifier) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.audit_key = Some(key);
        }
        self
    }

    /// The key that signs the checkpoints, or a 404 where none does.
    pub fn audit_key(&self) -> Result<&crate::audit::note::NoteVerifier, ApiError> {
        self.audit_key
            .as_ref()
            .ok_or_else(|| ApiError::new(Code::NotFound, "this server signs no checkpoints"))
    }
}

impl std::ops::Deref for HttpState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<HttpState> for Authenticator {
    fn from_ref(state: &HttpState) -> Self {
        state.auth.clone()
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API with its middleware, as `serve` runs it on its listener (the metrics
/// listener runs [`metrics::service`]).
pub fn service(
    state: HttpState,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    let edge = state.edge.clone();
    with_middleware(router(state), edge)
}

/// `router` with the middleware of every listener.
///
/// The routes are flat (full paths, no nested router) and the middleware that does not need
/// the matched route (request ids, traces, body limit) wraps the router once,
/// rather than every route through `Router::layer`: a request then passes through it once
/// instead of cloning a boxed copy of each layer for the route it matched (measured: the
/// eligibility query's CPU, docs/benchmarks.md round 8). Only the metrics, labelled with the
/// matched route, wrap the routes.
///
/// Every answer, whichever handler, extractor or fallback made it (problems, 404s, the event
/// stream), leaves with two headers set here once rather than by each handler:
/// `X-Content-Type-Options: nosniff`, so that a browser never takes a JSON answer, which may
/// echo what a caller sent, for HTML or script; and `Cache-Control: no-store`, so that no
/// browser or proxy keeps a copy. The whole API is no-store because nearly all of it carries
/// contact values, a token's view of an admin or a history, and the rest (health, counters)
/// loses nothing by it; versions still travel as `ETag` for `If-Match`. It replaces the
/// event stream's own `no-cache`, which allows storing. With `edge`: `Strict-Transport-Security`
/// and CORS for the configured origins only (neither by default).
fn with_middleware(
    router: Router,
    edge: Edge,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .option_layer(edge.hsts())
        .option_layer(edge.cors())
        .map_response(IntoResponse::into_response)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .service(router)
}

/// The routes with their contract ([`openapi`]), each with its request metrics: every route
/// is declared by its handler's `#[utoipa::path]`, and `routes!` makes both the axum route and
/// the document's path of it, so `/openapi.json` describes exactly what is served. `/metrics`
/// is among them only with a metrics token (see [`metrics`]); without, it is a path like any
/// other that matches nothing.
pub fn routes(metrics_token: bool) -> (Router<HttpState>, utoipa::openapi::OpenApi) {
    use routes::{audit, eligibility, history, methods, ops, settings, sse};
    use utoipa::OpenApi;
    use utoipa_axum::routes;
    let routes = utoipa_axum::router::OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(methods::list, methods::add))
        .routes(routes!(methods::change, methods::remove))
        .routes(routes!(methods::offboard))
        .routes(routes!(methods::erase))
        .routes(routes!(eligibility::get))
        .routes(routes!(history::admin))
        .routes(routes!(history::tenant))
        .routes(routes!(sse::stream))
        .routes(routes!(settings::get, settings::put))
        .routes(routes!(audit::inclusion))
        .routes(routes!(audit::consistency))
        .routes(routes!(audit::verify))
        .routes(routes!(console::index))
        .routes(routes!(console::config))
        .routes(routes!(console::dev_sign_in))
        .routes(routes!(console::whoami))
        .routes(routes!(console::file))
        .routes(routes!(audit::public_key))
        .routes(routes!(audit::checkpoints))
        .routes(routes!(audit::latest_checkpoint))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(openapi_json));
    let routes = if metrics_token {
        routes.routes(routes!(metrics::behind_token))
    } else {
        routes
    };
    routes.split_for_parts()
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The API's contract, OpenAPI 3.1", content_type = "application/json", body = Object))
)]
async fn openapi_json(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi::served(s.metrics_token.is_some()),
    )
}

fn router(state: HttpState) -> Router {
    let (routes, _) = routes(state.metrics_token.is_some());
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.limits.clone(),
            limits::deadline,
        ))
        .layer(middleware::from_fn_with_state(
            state.limits.clone(),
            limits::limit,
        ))
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this resource does not support the request method",
    )
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    ::metrics::counter!("recovery_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    ::metrics::histogram!("recovery_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The command context of a request: who, which tenant, `If-Match`, and the idempotency key
/// with a hash of the request (method, path and body) it came with.
pub(crate) fn command_context(
    caller: &Caller,
    tenant: crate::domain::TenantId,
    headers: CommandHeaders,
    request_line: &str,
    body: &[u8],
) -> CommandContext {
    let idempotency = headers.idempotency_key.map(|key| {
        let mut h = Sha256::new();
        h.update(request_line.as_bytes());
        h.update([0]);
        h.update(body);
        IdempotencyRequest {
            key,
            request_hash: h.finalize().to_vec(),
        }
    });
    CommandContext {
        tenant,
        actor: caller.actor(),
        correlation_id: headers.correlation_id,
        if_match: headers.if_match,
        idempotency,
    }
}

/// A command's answer as a response: `status` (the route's, also when the answer repeats a
/// first one), the outcome's JSON with the position as the tenant sees it, the new `ETag` (the
/// outcome's version), and `Idempotent-Replayed: true` when it repeats a first answer.
pub(crate) fn answer_response(
    positions: &Positions,
    tenant: crate::domain::TenantId,
    status: StatusCode,
    answer: &Answer,
) -> Response {
    let outcome = &answer.outcome;
    let position = positions.show(tenant, outcome.position());
    let mut response = match outcome {
        CommandOutcome::Admin {
            version, method, ..
        } => (
            status,
            Json(routes::methods::CommandAnswer::new(
                method.as_ref(),
                *version,
                position,
            )),
        )
            .into_response(),
        CommandOutcome::Settings(settings) => (
            status,
            Json(routes::settings::VersionedSettings::new(settings, position)),
        )
            .into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(outcome.version())) {
        headers.insert(header::ETAG, v);
    }
    if answer.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
