//! Who may do what: the role × endpoint matrix, tenants, and bad tokens.

use crate::support::{SECRET, TestApp, assert_problem, spawn_app};
use recovery_info::http::auth::{JwtKeys, Role};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

struct Endpoint {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
}

fn endpoints(app: &TestApp, admin: Uuid) -> Vec<Endpoint> {
    let m = Uuid::now_v7();
    let e = |name, method, path: String, body| Endpoint {
        name,
        method,
        path,
        body,
    };
    vec![
        e("view", Method::GET, app.admin_path(admin, "/methods"), None),
        e(
            "add",
            Method::POST,
            app.admin_path(admin, "/methods"),
            Some(json!({"kind": "email", "value": "x@example.com"})),
        ),
        e(
            "change",
            Method::PATCH,
            app.admin_path(admin, &format!("/methods/{m}")),
            Some(json!({"value": "+4520123456"})),
        ),
        e(
            "remove",
            Method::DELETE,
            app.admin_path(admin, &format!("/methods/{m}")),
            None,
        ),
        e(
            "offboard",
            Method::POST,
            app.admin_path(admin, "/offboard"),
            None,
        ),
        e(
            "eligibility",
            Method::GET,
            app.admin_path(admin, "/reset-eligibility"),
            None,
        ),
        e(
            "history",
            Method::GET,
            app.admin_path(admin, "/history"),
            None,
        ),
        e("feed", Method::GET, app.url("/events"), None),
        e(
            "put_settings",
            Method::PUT,
            app.url("/settings"),
            Some(json!({})),
        ),
        e("get_settings", Method::GET, app.url("/settings"), None),
    ]
}

/// Which endpoints each caller may use, in the order of `endpoints`.
const MATRIX: &[(&str, [bool; 10])] = &[
    //                   view   add    change remove offbrd elig   hist   feed   put_s  get_s
    (
        "self_own",
        [
            true, true, true, true, false, true, true, false, false, false,
        ],
    ),
    (
        "self_other",
        [
            false, false, false, false, false, false, false, false, false, false,
        ],
    ),
    (
        "authentication",
        [true, true, true, true, true, true, true, false, true, true],
    ),
    (
        "reset_service",
        [
            false, false, false, false, false, true, false, false, false, false,
        ],
    ),
    (
        "auditor",
        [
            true, false, false, false, false, true, true, true, false, true,
        ],
    ),
    (
        "dashboard",
        [
            false, false, false, false, false, true, false, true, false, false,
        ],
    ),
];

#[tokio::test]
async fn each_role_reaches_exactly_its_endpoints() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    for (caller, allowed) in MATRIX {
        let token = match *caller {
            "self_own" => app.token(&admin.to_string(), &[Role::SelfService]),
            "self_other" => app.token(&Uuid::now_v7().to_string(), &[Role::SelfService]),
            "authentication" => app.token("helpdesk", &[Role::AuthenticationAdmin]),
            "reset_service" => app.token("reset", &[Role::ResetService]),
            "auditor" => app.token("auditor", &[Role::Auditor]),
            "dashboard" => app.token("dash", &[Role::Dashboard]),
            other => unreachable!("{other}"),
        };
        for (endpoint, allowed) in endpoints(&app, admin).into_iter().zip(allowed) {
            let r = app
                .send(endpoint.method, &endpoint.path, &token, endpoint.body)
                .await;
            let status = r.status().as_u16();
            if *allowed {
                assert!(
                    status != 401 && status != 403,
                    "{caller} on {}: {status}",
                    endpoint.name
                );
            } else {
                assert_problem(r, 403, "forbidden").await;
            }
        }
    }
}

#[tokio::test]
async fn a_token_of_another_tenant_gets_403_and_no_data() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let foreign = app.token_for(
        Uuid::now_v7(),
        &admin.to_string(),
        &[
            Role::SelfService,
            Role::AuthenticationAdmin,
            Role::Auditor,
            Role::Dashboard,
            Role::ResetService,
        ],
    );
    for endpoint in endpoints(&app, admin) {
        let r = app
            .send(endpoint.method, &endpoint.path, &foreign, endpoint.body)
            .await;
        let body = assert_problem(r, 403, "tenant_mismatch").await;
        assert!(
            !body.to_string().contains("4520123456"),
            "{}",
            endpoint.name
        );
        assert_eq!(
            body.as_object().unwrap().len(),
            5,
            "only the problem fields: {body}"
        );
    }
    assert_eq!(app.history(admin).await.len(), 1, "nothing was written");
}

#[tokio::test]
async fn missing_malformed_expired_and_forged_tokens_get_401() {
    let app = spawn_app().await;
    let url = app.admin_path(Uuid::now_v7(), "/methods");
    let r = app.client.get(&url).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .client
        .get(&url)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .client
        .get(&url)
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;

    let expired = app
        .keys
        .mint(app.tenant, "a", &[Role::Auditor], -120)
        .unwrap();
    let r = app
        .client
        .get(&url)
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 401, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    let forged = JwtKeys::new(b"another-secret-another-secret-another-secret")
        .mint(app.tenant, "a", &[Role::Auditor], 600)
        .unwrap();
    let r = app
        .client
        .get(&url)
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;

    let good = JwtKeys::new(SECRET.as_bytes())
        .mint(app.tenant, "a", &[Role::Auditor], 600)
        .unwrap();
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth(good)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_self_service_subject_is_compared_as_a_uuid() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let url = app.admin_path(admin, "/methods");
    for subject in [admin.to_string().to_uppercase(), format!("{{{admin}}}")] {
        let token = app.token(&subject, &[Role::SelfService]);
        let r = app.send(Method::GET, &url, &token, None).await;
        assert_eq!(r.status(), 200, "{subject}");
    }
    let other = app.token(&Uuid::now_v7().to_string(), &[Role::SelfService]);
    let r = app.send(Method::GET, &url, &other, None).await;
    assert_problem(r, 403, "forbidden").await;
}

#[tokio::test]
async fn two_authorization_headers_are_refused_not_first_wins() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.admin_path(Uuid::now_v7(), "/methods"))
        .header("authorization", format!("Bearer {}", app.all_roles()))
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "duplicate_authorization").await;
}

#[tokio::test]
async fn a_caller_of_another_tenant_learns_nothing_of_how_a_request_is_parsed() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    let foreign = app.token_for(
        Uuid::now_v7(),
        "x",
        &[Role::AuthenticationAdmin, Role::Auditor],
    );
    let path = |rest: &str| app.admin_path(admin, rest);
    let bad = [
        (Method::GET, path("/methods?as_of=yesterday"), None),
        (
            Method::GET,
            path("/reset-eligibility?min_position=-1"),
            None,
        ),
        (Method::GET, path("/history?limit=0&unknown=1"), None),
        (Method::GET, app.url("/events?type=Nope"), None),
        (Method::POST, path("/methods"), Some(json!({"kind": 5}))),
        (
            Method::PATCH,
            path(&format!("/methods/{}", Uuid::now_v7())),
            Some(json!([])),
        ),
        (
            Method::PUT,
            app.url("/settings"),
            Some(json!({"domains": "x"})),
        ),
    ];
    for (method, url, body) in bad {
        let r = app.send(method.clone(), &url, &foreign, body.clone()).await;
        assert_problem(r, 403, "tenant_mismatch").await;
        // The same request by the tenant's own caller is refused for its input.
        let r = app.send(method, &url, &app.all_roles(), body).await;
        assert!(
            matches!(r.status().as_u16(), 400 | 422),
            "{url}: {}",
            r.status()
        );
    }
    let r = app
        .client
        .post(path("/methods"))
        .bearer_auth(&foreign)
        .header("if-match", "not-an-etag")
        .header("idempotency-key", "has space")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "tenant_mismatch").await;
    let r = app
        .client
        .get(app.url("/events/stream"))
        .bearer_auth(&foreign)
        .header("last-event-id", "not-a-position")
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "tenant_mismatch").await;
}
