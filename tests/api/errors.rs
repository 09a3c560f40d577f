//! Bad input gets a clear problem+json and changes nothing.

use crate::support::{assert_problem, spawn_app};
use reqwest::Method;
use uuid::Uuid;

#[tokio::test]
async fn malformed_bodies_are_refused_with_stable_codes() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    let url = app.admin_path(admin, "/methods");
    let token = app.admin_token();
    let post = |body: String, ct: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body)
            .send()
    };

    assert_problem(
        post("{\"kind\": ".into(), "application/json")
            .await
            .unwrap(),
        400,
        "malformed_json",
    )
    .await;
    assert_problem(
        post("kind=email".into(), "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    let r = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415, "unsupported_media_type").await;
    let huge = format!(
        "{{\"kind\": \"email\", \"value\": \"{}\"}}",
        "a".repeat(70 * 1024)
    );
    assert_problem(
        post(huge, "application/json").await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    assert_problem(
        post("{\"kind\": \"email\"}".into(), "application/json")
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    assert_problem(
        post("{\"kind\": 5, \"value\": \"x\"}".into(), "application/json")
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    assert_problem(
        post(
            "{\"kind\": \"email\", \"value\": \"a@example.com\", \"extra\": 1}".into(),
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    assert_problem(
        post("[]".into(), "application/json").await.unwrap(),
        422,
        "invalid_body",
    )
    .await;

    assert!(app.history(admin).await.is_empty(), "nothing was appended");
}

#[tokio::test]
async fn bad_ids_queries_routes_and_headers_are_refused() {
    let app = spawn_app().await;
    let token = app.all_roles();
    let get = async |url: String| app.send(Method::GET, &url, &token, None).await;

    let r = get(format!(
        "{}/v1/tenants/not-a-uuid/admins/{}/methods",
        app.base,
        Uuid::now_v7()
    ))
    .await;
    assert_problem(r, 400, "invalid_path").await;
    let r = get(app.url("/admins/123/methods")).await;
    assert_problem(r, 400, "invalid_path").await;
    let r = get(app.admin_path(Uuid::now_v7(), "/methods/also-bad")).await;
    assert_problem(r, 405, "method_not_allowed").await;
    let r = app
        .send(
            Method::DELETE,
            &app.admin_path(Uuid::now_v7(), "/methods/also-bad"),
            &token,
            None,
        )
        .await;
    assert_problem(r, 400, "invalid_path").await;
    let r = get(app.admin_path(Uuid::now_v7(), "/reset-eligibility?min_position=-1")).await;
    assert_problem(r, 400, "invalid_query").await;
    let r = get(app.admin_path(Uuid::now_v7(), "/methods?as_of=yesterday")).await;
    assert_problem(r, 400, "invalid_query").await;
    let r = get(app.url("/events?limit=0")).await;
    assert_problem(r, 400, "invalid_query").await;
    let r = get(app.url("/events?limit=5000")).await;
    assert_problem(r, 400, "invalid_query").await;
    let r = get(format!("{}/v2/nothing", app.base)).await;
    assert_problem(r, 404, "not_found").await;

    let url = app.admin_path(Uuid::now_v7(), "/methods");
    let body = serde_json::json!({"kind": "email", "value": "a@example.com"});
    let r = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .header("if-match", "v-three")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_if_match").await;
    let r = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .header("idempotency-key", "has space")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_idempotency_key").await;
    let r = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .header("idempotency-key", "k".repeat(300))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_idempotency_key").await;
}
