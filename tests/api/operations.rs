//! Health, readiness, metrics and request ids.

use crate::support::spawn_app;
use uuid::Uuid;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get_service("/healthz").await.status(), 200);
    assert_eq!(app.get_service("/readyz").await.status(), 200);

    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 56")
        .await;
    let head = app.store().head().await.unwrap();
    app.get_json(&app.admin_path(
        Uuid::now_v7(),
        &format!("/reset-eligibility?min_position={head}"),
    ))
    .await;
    assert_eq!(app.get_service("/no/such/route").await.status(), 404);
    let text = app.metrics().await;
    // Requests are labelled with the route they matched, not with their path (whose ids
    // would grow the series without bound); a path matching nothing, as unmatched.
    for label in [
        "route=\"/v1/tenants/{tenant_id}/admins/{admin_id}/reset-eligibility\"",
        "route=\"/v1/tenants/{tenant_id}/admins/{admin_id}/methods\"",
        "route=\"unmatched\"",
    ] {
        assert!(text.contains(label), "no request counted with {label}");
    }
    for metric in [
        "recovery_http_requests_total",
        "recovery_http_request_duration_seconds",
        "recovery_events_appended_total",
        "recovery_projection_lag_events{projection=\"eligibility\"}",
        "recovery_projection_lag_events{projection=\"contact_view\"}",
        "recovery_log_head_position",
    ] {
        assert!(text.contains(metric), "missing {metric}");
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let r = app.get_service("/healthz").await;
    assert!(Uuid::parse_str(r.headers()["x-request-id"].to_str().unwrap()).is_ok());
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "caller-chosen-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "caller-chosen-1");
}
