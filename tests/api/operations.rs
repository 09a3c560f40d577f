//! Health, readiness, metrics and request ids.

use crate::support::spawn_app;
use reqwest::Method;
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

/// The headers every answer must carry, whatever produced it: `nosniff`, so that a browser
/// never reads a JSON answer (which may echo a caller's input) as HTML or script, and
/// `no-store`, so that no browser or proxy keeps a copy of contact values, a token's view or a
/// history.
fn assert_not_sniffed_nor_stored(r: &reqwest::Response, what: &str) {
    let headers = r.headers();
    let all = |name: &str| -> Vec<_> { headers.get_all(name).iter().collect() };
    assert_eq!(all("x-content-type-options"), ["nosniff"], "{what}");
    assert_eq!(all("cache-control"), ["no-store"], "{what}");
}

#[tokio::test]
async fn every_answer_says_nosniff_and_none_may_be_stored() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let token = app.all_roles();
    let get = async |url: String| app.send(Method::GET, &url, &token, None).await;

    let r = get(app.admin_path(admin, "/methods")).await;
    assert_eq!(r.status(), 200);
    assert_not_sniffed_nor_stored(&r, "a contact view");
    let r = app.add(admin, "mobile_phone", "+45 20 12 34 57").await;
    assert_eq!(r.status(), 409);
    assert_not_sniffed_nor_stored(&r, "a problem answer");
    let r = app
        .client
        .get(app.admin_path(admin, "/methods"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_not_sniffed_nor_stored(&r, "an answer without a token");
    let r = get(format!("{}/no/such/route", app.base)).await;
    assert_eq!(r.status(), 404);
    assert_not_sniffed_nor_stored(&r, "the fallback");
    let r = app
        .send(
            Method::PUT,
            &app.admin_path(admin, "/methods"),
            &token,
            None,
        )
        .await;
    assert_eq!(r.status(), 405);
    assert_not_sniffed_nor_stored(&r, "the method fallback");
    for path in ["/healthz", "/readyz"] {
        let r = app.get_service(path).await;
        assert_eq!(r.status(), 200);
        assert_not_sniffed_nor_stored(&r, path);
    }
    // The event stream too (whose own `no-cache` the stricter rule replaces), read as soon as
    // its headers arrive.
    let r = get(app.url("/events/stream")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_not_sniffed_nor_stored(&r, "the event stream");
}
