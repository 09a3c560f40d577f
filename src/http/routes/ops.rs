//! `/healthz`, `/readyz`, `/metrics`: for load balancers and Prometheus.

use crate::error::Code;
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::http::openapi::PublicProblems;
use crate::store::projections::Projection;
use crate::store::{EventLog, Maintenance, ProjectionStorage};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok` (healthz) or `ready` (readyz).
    status: &'static str,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "Up", body = Status), PublicProblems)
)]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The process can serve: the database answers (PostgreSQL), or answers and, after a write
/// failed because it could not be written, writes again (the embedded store).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses((status = 200, description = "Ready", body = Status), PublicProblems)
)]
pub async fn readyz(State(s): State<HttpState>) -> Result<Json<Status>, ApiError> {
    s.app
        .store
        .ping()
        .await
        .map_err(|e| ApiError::new(Code::NotReady, format!("the database is not ready: {e}")))?;
    Ok(Json(Status { status: "ready" }))
}

/// Prometheus text format. The log head and each projection's lag are read at scrape time,
/// so they are right whichever replica runs the projections.
pub async fn metrics(State(s): State<HttpState>) -> String {
    if let Ok(head) = s.app.store.head().await {
        metrics::gauge!("recovery_log_head_position").set(head as f64);
        for p in Projection::ALL {
            if let Ok(cp) = s.app.store.checkpoint(p).await {
                metrics::gauge!("recovery_projection_checkpoint", "projection" => p.name())
                    .set(cp as f64);
                metrics::gauge!("recovery_projection_lag_events", "projection" => p.name())
                    .set(head.saturating_sub(cp) as f64);
            }
        }
    }
    s.metrics.render()
}
