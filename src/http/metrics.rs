//! The metrics listener, and `/metrics` on the API's listener behind a token.
//!
//! The counters are not one tenant's: requests by route and status, the log's head, events
//! appended, the projections' lag and the publisher's — enough to follow every tenant's
//! activity from outside. So they are not on the API's listener, which faces the tenants'
//! clients, but on a listener of their own (`--metrics-listen`, loopback by default), for a
//! Prometheus on this machine or on a private network, with `/healthz` and `/readyz` beside
//! them. Where Prometheus can reach only the API's address, `--metrics-token` puts `/metrics`
//! back on the API's listener for requests that bear that token, and for no other.

use super::error::ApiError;
use super::routes::ops;
use super::{HttpState, method_not_allowed, not_found};
use crate::config::MIN_SECRET_BYTES;
use crate::error::Code;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::fmt;
use subtle::ConstantTimeEq;
use tower::Service;

/// The metrics listener's service: `/metrics`, `/healthz` and `/readyz`, with the middleware
/// of the API's (request ids, traces, the headers every answer carries). Its requests are not
/// counted in the request metrics, which describe the API: a scrape every few seconds would
/// outnumber the traffic of a quiet installation.
pub fn service(
    state: HttpState,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    super::with_middleware(router(state), super::Edge::default())
}

fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// `GET /metrics` on the API's listener, routed only when a [`MetricsToken`] is set: the
/// counters for `Authorization: Bearer <the token>`, 401 `unauthorized` for anything else (no
/// header, another scheme, another token, an API token).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        super::openapi::ReadProblems,
    )
)]
pub(super) async fn behind_token(
    State(s): State<HttpState>,
    headers: HeaderMap,
) -> Result<String, ApiError> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match (&s.metrics_token, presented) {
        (Some(expected), Some(token)) if expected.admits(token) => {
            Ok(ops::metrics(State(s.clone())).await)
        }
        _ => Err(ApiError::new(
            Code::Unauthorized,
            "/metrics on this listener needs Authorization: Bearer <the metrics token>",
        )),
    }
}

/// The bearer token that opens `/metrics` on the API's listener (`--metrics-token`). Only its
/// SHA-256 digest is kept, and it never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct MetricsToken {
    digest: [u8; 32],
}

impl MetricsToken {
    /// The token, refused when shorter than [`MIN_SECRET_BYTES`]: it is a shared secret like the
    /// JWT secret, and as open to guessing.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            token.len() >= MIN_SECRET_BYTES,
            "RECOVERY_METRICS_TOKEN must be at least {MIN_SECRET_BYTES} bytes long (got {})",
            token.len()
        );
        Ok(MetricsToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token. The digests are compared, in constant time: how long
    /// the answer takes says nothing of how much of a guess was right, nor of the token's
    /// length.
    pub fn admits(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "metrics-token-metrics-token-0123456789";

    #[test]
    fn the_metrics_token_admits_itself_only() {
        let token = MetricsToken::new(TOKEN).unwrap();
        assert!(token.admits(TOKEN));
        for other in ["", "metrics-token", &format!("{TOKEN}x"), &TOKEN[1..]] {
            assert!(!token.admits(other), "{other:?}");
        }
    }

    #[test]
    fn a_short_metrics_token_is_refused_and_none_is_shown() {
        let e = MetricsToken::new("too-short").unwrap_err();
        assert!(e.to_string().contains("at least 32 bytes"), "{e}");
        let token = MetricsToken::new(TOKEN).unwrap();
        assert!(!format!("{token:?}").contains(TOKEN));
    }
}
