//! Limits against abuse, on both stores: writes and eligibility queries per token and per
//! source address answered 429 `rate_limited` with `Retry-After` before anything is done (the
//! accepted writes are all in the log, the refused ones nowhere), and a cap on a tenant's open
//! event streams.

use crate::support::{Backend, Options, assert_problem, fresh_store, spawn_store};
use recovery_info::http::auth::Role;
use recovery_info::http::limits::{LimitsConfig, Rate};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

crate::on_both_backends!(
    writes_beyond_a_tokens_rate_are_refused_and_lose_nothing,
    a_source_address_is_limited_across_tokens,
    eligibility_queries_and_event_streams_have_their_limits,
    a_request_not_answered_in_time_is_a_503_request_timeout,
);

/// The service on a fresh store of `backend` with `options` and a request timeout of 1 s.
async fn timing_out_after_1s(backend: Backend, options: Options) -> crate::support::TestApp {
    let limits = LimitsConfig {
        request_timeout: Some(std::time::Duration::from_secs(1)),
        ..Default::default()
    };
    spawn_store(fresh_store(backend).await, Options { limits, ..options }).await
}

/// A view asked at a position no projection reaches (none runs) waits for its freshness
/// timeout (10 s); the request timeout (1 s) answers first.
async fn a_request_not_answered_in_time_is_a_503_request_timeout(backend: Backend) {
    let app = timing_out_after_1s(
        backend,
        Options {
            run_projections: false,
            freshness_timeout: std::time::Duration::from_secs(10),
            ..Options::default()
        },
    )
    .await;
    let admin = Uuid::now_v7();
    let r = app.add(admin, "email", "late@example.org").await;
    assert_eq!(r.status(), 201);
    let position = r.json::<serde_json::Value>().await.unwrap()["position"].clone();
    let started = std::time::Instant::now();
    let r = app
        .send(
            Method::GET,
            &format!(
                "{}?min_position={position}",
                app.admin_path(admin, "/methods")
            ),
            &app.admin_token(),
            None,
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(r.headers()["retry-after"], "1");
    let body = assert_problem(r, 503, "request_timeout").await;
    assert!(body["detail"].as_str().unwrap().contains("retry"), "{body}");
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
    // Quick answers are not touched, and the service answers on.
    let r = app
        .send(Method::GET, &app.url("/settings"), &app.admin_token(), None)
        .await;
    assert_eq!(r.status(), 200);
}

/// A write held up in the database past the request timeout is answered 503
/// `request_timeout`; its outcome is learnt with its Idempotency-Key, and nothing is written
/// twice or lost: the log has it once.
#[tokio::test]
async fn a_write_that_times_out_is_settled_by_its_idempotency_key() {
    let app = timing_out_after_1s(Backend::Postgres, Options::default()).await;
    let admin = Uuid::now_v7();
    let locker = crate::support::pg_client(&app.database_url()).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE events IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let write = || {
        app.client
            .post(app.admin_path(admin, "/methods"))
            .bearer_auth(app.admin_token())
            .header("idempotency-key", "held-up-write-1")
            .json(&json!({"kind": "email", "value": "held@example.org"}))
            .send()
    };
    let r = write().await.unwrap();
    let body = assert_problem(r, 503, "request_timeout").await;
    assert!(
        body["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{body}"
    );
    locker.batch_execute("COMMIT").await.unwrap();
    let r = write().await.unwrap();
    assert_eq!(r.status(), 201);
    let position = r.json::<serde_json::Value>().await.unwrap()["position"].clone();
    let feed = app.get_json(&app.url("/events")).await;
    assert_eq!(feed["events"].as_array().unwrap().len(), 1, "{feed}");
    // As fresh as the write (the projection may not have folded it yet).
    let view = app
        .get_json(&format!(
            "{}?min_position={position}",
            app.admin_path(admin, "/methods")
        ))
        .await;
    assert_eq!(view["methods"].as_array().unwrap().len(), 1, "{view}");
}

fn rate(per_second: u32, burst: u32) -> Option<Rate> {
    Some(Rate { per_second, burst })
}

async fn writes_beyond_a_tokens_rate_are_refused_and_lose_nothing(backend: Backend) {
    let app = spawn_store(
        fresh_store(backend).await,
        Options {
            limits: LimitsConfig {
                writes_per_token: rate(1, 3),
                ..Default::default()
            },
            ..Options::default()
        },
    )
    .await;
    let token = app.admin_token();
    let mut statuses = Vec::new();
    let mut refused = None;
    for i in 0..5 {
        let r = app
            .send(
                Method::POST,
                &app.admin_path(Uuid::now_v7(), "/methods"),
                &token,
                Some(json!({"kind": "email", "value": format!("u{i}@example.org")})),
            )
            .await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 && refused.is_none() {
            refused = Some(r);
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
    let r = refused.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body = assert_problem(r, 429, "rate_limited").await;
    assert!(
        body["detail"].as_str().unwrap().contains("too many writes"),
        "{body}"
    );
    // The three accepted writes are in the log, the refused ones nowhere.
    let feed = app.get_json(&app.url("/events")).await;
    assert_eq!(feed["events"].as_array().unwrap().len(), 3, "{feed}");
    // Another token is not held back; the same one is after the wait.
    let other = app.token("helpdesk-2", &[Role::AuthenticationAdmin]);
    let r = app
        .send(
            Method::POST,
            &app.admin_path(Uuid::now_v7(), "/methods"),
            &other,
            Some(json!({"kind": "email", "value": "v@example.org"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let r = app
        .send(
            Method::POST,
            &app.admin_path(Uuid::now_v7(), "/methods"),
            &token,
            Some(json!({"kind": "email", "value": "w@example.org"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    // Reads are not writes.
    let r = app
        .send(Method::GET, &app.url("/settings"), &token, None)
        .await;
    assert_eq!(r.status(), 200);
}

async fn a_source_address_is_limited_across_tokens(backend: Backend) {
    let app = spawn_store(
        fresh_store(backend).await,
        Options {
            limits: LimitsConfig {
                writes_per_address: rate(1, 2),
                ..Default::default()
            },
            ..Options::default()
        },
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let token = app.token(&format!("helpdesk-{i}"), &[Role::AuthenticationAdmin]);
        let r = app
            .send(
                Method::POST,
                &app.admin_path(Uuid::now_v7(), "/methods"),
                &token,
                Some(json!({"kind": "email", "value": format!("u{i}@example.org")})),
            )
            .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 429]);
}

async fn eligibility_queries_and_event_streams_have_their_limits(backend: Backend) {
    let app = spawn_store(
        fresh_store(backend).await,
        Options {
            limits: LimitsConfig {
                queries_per_token: rate(1, 2),
                streams_per_tenant: Some(1),
                ..Default::default()
            },
            ..Options::default()
        },
    )
    .await;
    let reset = app.token("reset-flow", &[Role::ResetService]);
    let url = app.admin_path(Uuid::now_v7(), "/reset-eligibility");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            app.send(Method::GET, &url, &reset, None)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
    // One open stream per tenant: a second is refused until the first closes.
    let dash = app.token("wallboard", &[Role::Dashboard]);
    let stream = app.url("/events/stream");
    let first = app.send(Method::GET, &stream, &dash, None).await;
    assert_eq!(first.status(), 200);
    let second = app.send(Method::GET, &stream, &dash, None).await;
    assert!(second.headers().contains_key("retry-after"));
    assert_problem(second, 429, "rate_limited").await;
    drop(first);
    let mut again = 0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = app.send(Method::GET, &stream, &dash, None).await;
        again = r.status().as_u16();
        if again == 200 {
            break;
        }
    }
    assert_eq!(again, 200, "the cap frees up when a stream closes");
}

#[tokio::test]
async fn cors_is_off_unless_configured_and_strict_when_it_is_and_hsts_when_asked() {
    let plain = crate::support::spawn_app().await;
    let r = plain
        .client
        .request(Method::OPTIONS, plain.url("/settings"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert!(!r.headers().contains_key("strict-transport-security"));

    let app = crate::support::spawn_app_with(Options {
        edge: recovery_info::http::Edge {
            hsts: true,
            cors_origins: vec!["https://admin.contoso.example".into()],
        },
        ..Options::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/settings"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "authorization, if-match")
            .send()
    };
    let r = preflight("https://admin.contoso.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://admin.contoso.example"
    );
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(methods.contains("put"), "{methods}");
    let r = preflight("https://evil.example").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = app
        .send(Method::GET, &app.url("/settings"), &app.admin_token(), None)
        .await;
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
}
