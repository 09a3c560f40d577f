//! Reset eligibility: the default policy, tenant domains and policies, read-your-writes.

use crate::support::{
    Backend, Options, assert_problem, method_id, spawn_app, spawn_app_with, spawn_backend,
    two_replicas,
};
use recovery_info::http::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn the_alternate_phone_does_not_count_by_default() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "alternate_phone", "+45 20 12 34 57")
        .await;
    app.add_ok(admin, "office_phone", "+45 33 12 34 56").await;
    let e = app.eligibility(admin).await;
    assert_eq!(e["eligible"], false);
    assert_eq!(e["missing"], json!(["email"]));
    assert_eq!(e["usable_methods"].as_array().unwrap().len(), 3);
}

async fn an_email_inside_a_newly_added_tenant_domain_stops_counting(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@contoso.com").await;
    assert_eq!(app.eligibility(admin).await["eligible"], true);

    let r = app.put_settings(json!({"domains": ["Contoso.com"]})).await;
    assert_eq!(r.status(), 200);
    let settings: Value = r.json().await.unwrap();
    assert_eq!(settings["domains"], json!(["contoso.com"]));

    let e = app.eligibility(admin).await;
    assert_eq!(e["eligible"], false, "{e}");
    assert_eq!(e["missing"], json!(["email"]));
    // A new email in the domain is refused outright.
    let other = Uuid::now_v7();
    assert_problem(
        app.add(other, "email", "joe@sales.contoso.com").await,
        422,
        "email_in_tenant_domain",
    )
    .await;
}

async fn a_policy_change_re_evaluates_every_admin_of_the_tenant(backend: Backend) {
    let app = spawn_backend(backend).await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    app.add_ok(a, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(a, "office_phone", "+45 33 12 34 56").await;
    app.add_ok(b, "email", "b@example.com").await;
    app.add_ok(c, "mobile_phone", "+45 20 12 34 58").await;
    app.add_ok(c, "email", "c@example.com").await;
    assert_eq!(app.eligibility(a).await["eligible"], false);
    assert_eq!(app.eligibility(c).await["eligible"], true);
    // Asked before the change too, so that a verdict kept in memory would be stale after it.
    let nobody_id = Uuid::now_v7();
    assert_eq!(
        app.eligibility(nobody_id).await["policy"],
        "email_and_mobile_phone"
    );

    let r = app
        .put_settings(json!({"reset_policy": {"name": "any_two_methods"}}))
        .await;
    assert_eq!(r.status(), 200);
    let ea = app.eligibility(a).await;
    assert_eq!(ea["eligible"], true, "{ea}");
    assert_eq!(ea["policy"], "any_two_methods");
    let eb = app.eligibility(b).await;
    assert_eq!(eb["eligible"], false);
    assert_eq!(eb["missing"], json!(["another_method"]));
    assert_eq!(app.eligibility(c).await["eligible"], true);
    // An admin with no methods at all answers under the tenant's policy too.
    let nobody = app.eligibility(nobody_id).await;
    assert_eq!(nobody["policy"], "any_two_methods");
    assert_eq!(
        nobody["missing"],
        json!(["another_method", "another_method"])
    );

    assert_problem(
        app.put_settings(json!({"reset_policy": {"name": "yolo"}}))
            .await,
        422,
        "unknown_reset_policy",
    )
    .await;
    assert_problem(
        app.put_settings(json!({"domains": ["not a domain"]})).await,
        422,
        "invalid_domain",
    )
    .await;
}

async fn a_command_answer_position_gives_read_your_writes(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let reset = app.token("reset-flow", &[Role::ResetService]);
    for _ in 0..20 {
        let r = app.add(admin, "email", "jane@example.com").await;
        let body: Value = r.json().await.unwrap();
        let position = body["position"].as_u64().unwrap();
        let url = app.admin_path(
            admin,
            &format!("/reset-eligibility?min_position={position}"),
        );
        let e: Value = app
            .send(Method::GET, &url, &reset, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(e["eligible"], true, "{e}");
        assert!(e["position"].as_u64().unwrap() >= position);
        let email = body["method"]["id"].as_str().unwrap();
        let r: Value = app.remove(admin, email).await.json().await.unwrap();
        let position = r["position"].as_u64().unwrap();
        let url = app.admin_path(
            admin,
            &format!("/reset-eligibility?min_position={position}"),
        );
        let e: Value = app
            .send(Method::GET, &url, &reset, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(e["eligible"], false, "{e}");
    }
}

#[tokio::test]
async fn a_position_beyond_the_log_is_refused_at_once() {
    let app = spawn_app().await;
    let url = app.admin_path(Uuid::now_v7(), "/reset-eligibility?min_position=99");
    let r = app.send(Method::GET, &url, &app.all_roles(), None).await;
    assert_problem(r, 400, "position_beyond_log").await;
}

#[tokio::test]
async fn a_view_that_cannot_catch_up_in_time_says_so() {
    let app = spawn_app_with(Options {
        run_projections: false,
        freshness_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let admin = Uuid::now_v7();
    let r: Value = app
        .add(admin, "mobile_phone", "+45 20 12 34 56")
        .await
        .json()
        .await
        .unwrap();
    let url = app.admin_path(
        admin,
        &format!("/reset-eligibility?min_position={}", r["position"]),
    );
    let r = app.send(Method::GET, &url, &app.all_roles(), None).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_problem(r, 503, "view_not_fresh").await;
}

crate::on_both_backends!(
    an_email_inside_a_newly_added_tenant_domain_stops_counting,
    a_policy_change_re_evaluates_every_admin_of_the_tenant,
    a_command_answer_position_gives_read_your_writes,
);

/// Verdicts answered from memory must follow the log even when another replica projects it:
/// every answer reflects exactly the position it reports, and a later position shows up.
#[tokio::test]
async fn answers_follow_writes_made_through_another_replica() {
    let (reader, writer) = two_replicas().await;
    let reset = reader.token("reset-flow", &[Role::ResetService]);
    let admin = Uuid::now_v7();
    writer
        .add_ok(admin, "mobile_phone", "+45 20 12 34 56")
        .await;
    let url = reader.admin_path(admin, "/reset-eligibility");
    let get = |url: String| {
        let (reader, reset) = (&reader, &reset);
        async move {
            let e: Value = reader
                .send(Method::GET, &url, reset, None)
                .await
                .json()
                .await
                .unwrap();
            (e["position"].as_u64().unwrap(), e["eligible"] == true)
        }
    };
    for round in 0..10 {
        // The reader asks first, so that it holds the verdict before the writer's change.
        let (_, before) = get(url.clone()).await;
        let r = if round % 2 == 0 {
            writer.add(admin, "email", "jane@example.com").await
        } else {
            let email = method_id(&writer.view(admin).await, "email");
            writer.remove(admin, &email).await
        };
        assert!(r.status().is_success());
        let body: Value = r.json().await.unwrap();
        let position = body["position"].as_u64().unwrap();
        let now_eligible = round % 2 == 0;
        assert_ne!(before, now_eligible, "round {round}");
        // Without min_position: an answer at or past the change must show it, and one must
        // come (the reader notices the other replica's progress).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (at, eligible) = get(url.clone()).await;
            if at >= position {
                assert_eq!(eligible, now_eligible, "round {round}: answer at {at}");
                break;
            }
            assert_eq!(
                eligible, before,
                "round {round}: answer at {at} < {position}"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: the reader stayed at {at}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // With min_position: at once.
        let (at, eligible) = get(format!("{url}?min_position={position}")).await;
        assert!(at >= position);
        assert_eq!(eligible, now_eligible);
    }
    let memory = reader.server.app.projections.verdicts().unwrap();
    assert!(!memory.is_empty(), "the reader never answered from memory");
}
