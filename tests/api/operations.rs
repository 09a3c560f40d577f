//! Health, readiness, metrics (on their own listener, or behind a token), request ids, and
//! the headers every answer carries.

use crate::support::{Options, assert_problem, spawn_app, spawn_app_with};
use recovery_info::http::metrics::MetricsToken;
use recovery_info::store::EventLog;
use reqwest::Method;
use uuid::Uuid;

/// A metrics token for the tests (32 bytes and more).
const METRICS_TOKEN: &str = "metrics-token-metrics-token-0123456789";

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
        "recovery_projection_lag_events{projection=\"admins\"}",
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
    for path in ["/metrics", "/healthz", "/no/such/route"] {
        let r = app.get_metrics_listener(path).await;
        assert_not_sniffed_nor_stored(&r, &format!("{path} on the metrics listener"));
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

#[tokio::test]
async fn the_api_listener_does_not_serve_metrics_without_a_metrics_token() {
    let app = spawn_app().await;
    assert_problem(app.get_service("/metrics").await, 404, "not_found").await;
}

#[tokio::test]
async fn with_a_metrics_token_the_api_listener_serves_metrics_to_its_bearer_only() {
    let app = spawn_app_with(Options {
        metrics_token: Some(MetricsToken::new(METRICS_TOKEN).unwrap()),
        ..Options::default()
    })
    .await;
    let get = async |authorization: Option<String>| {
        let mut req = app.client.get(format!("{}/metrics", app.base));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
    };
    for refused in [
        None,
        Some("Bearer not-the-metrics-token".to_owned()),
        Some(format!("Bearer {METRICS_TOKEN}x")),
        Some(format!(
            "Bearer {}",
            &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]
        )),
        Some(format!("Basic {METRICS_TOKEN}")),
        // A token of the API, even with every role, is not the metrics token.
        Some(format!("Bearer {}", app.all_roles())),
    ] {
        let r = get(refused.clone()).await;
        assert_problem(r, 401, "unauthorized").await;
    }
    let r = get(Some(format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("recovery_log_head_position"), "{text}");
    // The metrics listener serves them all the same, without the token.
    assert!(app.metrics().await.contains("recovery_log_head_position"));
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_health_and_readiness_and_no_api() {
    let app = spawn_app().await;
    let metrics_addr = app.server.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr.port(), app.server.addr.port());
    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 56")
        .await;
    let text = app.metrics().await;
    assert!(text.contains("recovery_events_appended_total"), "{text}");
    assert!(text.contains("recovery_log_head_position"), "{text}");
    assert_eq!(app.get_metrics_listener("/healthz").await.status(), 200);
    assert_eq!(app.get_metrics_listener("/readyz").await.status(), 200);
    // The API is on the API's listener only.
    let r = app
        .client
        .get(format!(
            "http://{metrics_addr}/v1/tenants/{}/admins/{}/methods",
            app.tenant,
            Uuid::now_v7()
        ))
        .bearer_auth(app.all_roles())
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn both_listeners_stop_with_the_server() {
    let app = spawn_app().await;
    let (api, metrics) = (app.server.addr, app.server.metrics_addr.unwrap());
    let crate::support::TestApp { server, .. } = app;
    server.stop().await.unwrap();
    for addr in [api, metrics] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts"
        );
    }
}

#[tokio::test]
async fn without_a_metrics_listener_the_server_binds_the_api_only() {
    let app = spawn_app_with(Options {
        metrics_listen: None,
        ..Options::default()
    })
    .await;
    assert_eq!(app.server.metrics_addr, None);
    assert_eq!(app.get_service("/healthz").await.status(), 200);
    assert_problem(app.get_service("/metrics").await, 404, "not_found").await;
}
