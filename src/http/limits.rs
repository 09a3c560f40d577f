//! Limits against abuse of the endpoints a reset flow and an attacker both call: rates per
//! token and per source address for writes (every non-GET under `/v1/tenants/`) and for
//! eligibility queries, answered with 429 `rate_limited` and `Retry-After` *before* anything is
//! done (a refused write has written nothing, an accepted one is never undone), and a cap on
//! the open event streams of a tenant.
//!
//! Rates are token buckets (`governor`, GCRA): `per_second` sustained with bursts of `burst`.
//! Tokens are keyed by a hash of the `Authorization` header (never the token itself); source
//! addresses by the peer's IP as the listener accepted it (behind a proxy, the proxy's: put
//! the limits there, or give each client its own token).

use super::error::ApiError;
use crate::domain::TenantId;
use crate::error::Code;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One rate: sustained per second, and the burst allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `<per second>` or `<per second>/<burst>`, e.g. `20/40`; `off` for none.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rate like 20 or 20/40 (per second / burst)");
        let (rate, burst) = match s.split_once('/') {
            Some((r, b)) => (r.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let per_second: u32 = rate.parse().map_err(|_| bad())?;
        let burst: u32 = burst.parse().map_err(|_| bad())?;
        if per_second == 0 || burst == 0 {
            return Err(bad());
        }
        Ok(Rate { per_second, burst })
    }
}

/// What is limited, and how much (none: no limit of that kind).
#[derive(Clone, Debug, Default)]
pub struct LimitsConfig {
    /// Writes per token, and per source address.
    pub writes_per_token: Option<Rate>,
    pub writes_per_address: Option<Rate>,
    /// Eligibility queries per token, and per source address.
    pub queries_per_token: Option<Rate>,
    pub queries_per_address: Option<Rate>,
    /// Open event streams per tenant.
    pub streams_per_tenant: Option<usize>,
    /// How long a request may take to be answered (not an event stream's body, nor an
    /// auditor's whole-tenant verification).
    pub request_timeout: Option<Duration>,
}

type ByToken = DefaultKeyedRateLimiter<[u8; 16]>;
type ByAddress = DefaultKeyedRateLimiter<IpAddr>;

fn limiter<K: std::hash::Hash + Eq + Clone>(
    rate: Option<Rate>,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = rate?;
    let quota = Quota::per_second(NonZeroU32::new(rate.per_second)?)
        .allow_burst(NonZeroU32::new(rate.burst)?);
    Some(RateLimiter::keyed(quota))
}

/// The limits in force.
pub struct Limits {
    writes: (Option<ByToken>, Option<ByAddress>),
    queries: (Option<ByToken>, Option<ByAddress>),
    streams_per_tenant: Option<usize>,
    streams: Mutex<HashMap<TenantId, usize>>,
    request_timeout: Option<Duration>,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Arc<Self> {
        Arc::new(Limits {
            writes: (
                limiter(config.writes_per_token),
                limiter(config.writes_per_address),
            ),
            queries: (
                limiter(config.queries_per_token),
                limiter(config.queries_per_address),
            ),
            streams_per_tenant: config.streams_per_tenant,
            streams: Mutex::default(),
            request_timeout: config.request_timeout,
        })
    }

    /// Opens a stream of `tenant`, if under its cap; the guard closes it when dropped.
    pub fn open_stream(self: &Arc<Self>, tenant: TenantId) -> Result<StreamGuard, ApiError> {
        let mut open = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(tenant).or_default();
        if let Some(cap) = self.streams_per_tenant
            && *n >= cap
        {
            return Err(ApiError::new(
                Code::RateLimited,
                format!("the tenant has {cap} event streams open already, the most allowed"),
            )
            .with_retry_after(5));
        }
        *n += 1;
        metrics::gauge!("recovery_sse_streams_open").increment(1.0);
        Ok(StreamGuard {
            limits: self.clone(),
            tenant,
        })
    }

    /// Forgets the buckets that are full again (memory stays bounded by the active keys).
    pub fn shrink(&self) {
        for l in [&self.writes.0, &self.queries.0].into_iter().flatten() {
            l.retain_recent();
        }
        for l in [&self.writes.1, &self.queries.1].into_iter().flatten() {
            l.retain_recent();
        }
    }
}

/// An open event stream, counted against its tenant's cap.
pub struct StreamGuard {
    limits: Arc<Limits>,
    tenant: TenantId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
        metrics::gauge!("recovery_sse_streams_open").decrement(1.0);
    }
}

fn refused(kind: &str, wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u32;
    metrics::counter!("recovery_rate_limited_total", "kind" => kind.to_owned()).increment(1);
    ApiError::new(
        Code::RateLimited,
        format!("too many {kind}; retry in {seconds} s"),
    )
    .with_retry_after(seconds)
    .into_response()
}

/// The middleware: classifies the request, and refuses it when a bucket of its token or its
/// source address is empty.
pub async fn limit(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let (kind, buckets) = if !path.starts_with("/v1/tenants/") {
        return next.run(req).await;
    } else if req.method() != Method::GET {
        ("writes", &limits.writes)
    } else if path.ends_with("/reset-eligibility") {
        ("eligibility queries", &limits.queries)
    } else {
        return next.run(req).await;
    };
    let clock = DefaultClock::default();
    if let (Some(by_token), Some(auth)) = (&buckets.0, req.headers().get("authorization")) {
        let digest = Sha256::digest(auth.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        if let Err(not_until) = by_token.check_key(&key) {
            return refused(kind, not_until.wait_time_from(clock.now()));
        }
    }
    if let (Some(by_address), Some(ConnectInfo(peer))) = (
        &buckets.1,
        req.extensions().get::<ConnectInfo<SocketAddr>>(),
    ) && let Err(not_until) = by_address.check_key(&peer.ip())
    {
        return refused(kind, not_until.wait_time_from(clock.now()));
    }
    next.run(req).await
}

/// The request timeout: an answer not ready in time is 503 `request_timeout`, its work
/// dropped. A write dropped so may have committed (the append runs on in the store's own task)
/// or not; its `Idempotency-Key` tells which on a retry, and nothing acknowledged is undone.
/// An event stream's body is not bounded (only the handler that opens it), nor an auditor's
/// verification of a whole tenant.
pub async fn deadline(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let Some(timeout) = limits.request_timeout else {
        return next.run(req).await;
    };
    if req.uri().path().ends_with("/audit/verify") {
        return next.run(req).await;
    }
    let write = req.method() != Method::GET && req.method() != Method::HEAD;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("recovery_http_timeouts_total").increment(1);
            let seconds = timeout.as_secs_f64();
            let detail = if write {
                format!(
                    "the request was not answered within {seconds} s; the write may or may not \
                     have been made: repeat it with the same Idempotency-Key to learn which"
                )
            } else {
                format!("the request was not answered within {seconds} s; retry shortly")
            };
            tracing::warn!(seconds, write, "request timed out");
            ApiError::new(Code::RequestTimeout, detail).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_bad_ones_are_refused() {
        assert_eq!(
            "20/40".parse::<Rate>().unwrap(),
            Rate {
                per_second: 20,
                burst: 40
            }
        );
        assert_eq!("5".parse::<Rate>().unwrap().burst, 5);
        for bad in ["0", "x", "5/0", "-1/3", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenant_opens_at_most_its_cap_of_streams() {
        let limits = Limits::new(&LimitsConfig {
            streams_per_tenant: Some(2),
            ..Default::default()
        });
        let t = TenantId::from_uuid(uuid::Uuid::now_v7());
        let a = limits.open_stream(t).unwrap();
        let _b = limits.open_stream(t).unwrap();
        assert!(limits.open_stream(t).is_err());
        assert!(
            limits
                .open_stream(TenantId::from_uuid(uuid::Uuid::now_v7()))
                .is_ok()
        );
        drop(a);
        assert!(limits.open_stream(t).is_ok());
    }
}
