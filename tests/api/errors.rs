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

/// Sends raw bytes to the service and returns its whole answer (it closes the connection).
async fn raw_request(app: &crate::support::TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the service answers and closes")
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_the_http_parser_refuses_still_gets_a_problem() {
    let app = spawn_app().await;
    let path = format!(
        "/v1/tenants/{}/admins/{}/methods",
        app.tenant,
        Uuid::now_v7()
    );
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nIdempotency-Key: ab\x7fc\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = raw_request(&app, request.as_bytes()).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["code"], "malformed_request");
    assert_eq!(body["status"], 400);
    // A healthy request on a connection of its own is still served.
    let answer = raw_request(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test]
async fn a_body_in_another_charset_than_utf8_is_refused() {
    let app = spawn_app().await;
    let url = app.admin_path(Uuid::now_v7(), "/methods");
    let send = async |content_type: &str| {
        app.client
            .post(&url)
            .bearer_auth(app.admin_token())
            .header("content-type", content_type)
            .body(r#"{"kind": "email", "value": "jane@example.com"}"#)
            .send()
            .await
            .unwrap()
    };
    let body = assert_problem(
        send("application/json; charset=utf-16").await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("charset=utf-16"));
    assert_problem(
        send("application/json; charset=\"latin1\"").await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(send("application/json; charset=UTF-8").await.status(), 201);
}

#[tokio::test]
async fn an_offsets_plus_sent_unencoded_is_read_as_a_plus() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        app.change(admin, &phone, "+45 20 12 34 99").await.status(),
        200
    );

    // `…+01:00` written as is: the query string's + arrives as a space.
    let at = between.to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    assert!(at.ends_with("+01:00"), "{at}");
    for path in [
        format!("/methods?as_of={at}"),
        format!("/reset-eligibility?as_of={at}"),
    ] {
        let then = app.get_json(&app.admin_path(admin, &path)).await;
        assert_eq!(then["tenant_id"], app.tenant.to_string(), "{path}");
        let view = app
            .get_json(&app.admin_path(admin, &format!("/methods?as_of={at}")))
            .await;
        assert_eq!(view["methods"][0]["value"], "+4520123456");
    }
    let history = app
        .get_json(&app.admin_path(admin, &format!("/history?until={at}")))
        .await;
    assert_eq!(history["events"].as_array().unwrap().len(), 1);

    let r = app
        .send(
            Method::GET,
            &app.admin_path(admin, "/methods?as_of=yesterday"),
            &app.all_roles(),
            None,
        )
        .await;
    let body = assert_problem(r, 400, "invalid_query").await;
    assert!(body["detail"].as_str().unwrap().contains("%2B"), "{body}");
    for path in ["/methods", "/reset-eligibility"] {
        let url = app.admin_path(
            admin,
            &format!("{path}?as_of=2026-01-01T00:00:00Z&min_position=1"),
        );
        let r = app.send(Method::GET, &url, &app.all_roles(), None).await;
        assert_problem(r, 400, "as_of_with_min_position").await;
    }
}

#[tokio::test]
async fn a_tenant_lists_at_most_the_configured_number_of_domains() {
    let app = spawn_app().await;
    let domains: Vec<String> = (0..501).map(|i| format!("d{i}.example.com")).collect();
    let r = app
        .put_settings(serde_json::json!({"domains": domains}))
        .await;
    let body = assert_problem(r, 422, "too_many_domains").await;
    assert!(
        body["detail"].as_str().unwrap().contains("at most 500"),
        "{body}"
    );
    app.put_settings_ok(serde_json::json!({"domains": domains[..500]}))
        .await;
}
