//! The help page's flow and every rule of an admin's security methods.

use crate::support::{Backend, assert_problem, each, spawn_app, spawn_backend};
use serde_json::{Value, json};
use uuid::Uuid;

async fn the_help_page_flow_is_recorded_step_by_step(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();

    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let e = app.eligibility(admin).await;
    assert_eq!(e["eligible"], false);
    assert_eq!(e["missing"], json!(["email"]));

    let email = app.add_ok(admin, "email", "jane.doe@example.com").await;
    let e = app.eligibility(admin).await;
    assert_eq!(e["eligible"], true, "{e}");
    assert_eq!(e["policy"], "email_and_mobile_phone");
    let masked = each(&e, "usable_methods", "masked_value");
    assert_eq!(masked, ["+45 •• •• •• 56", "j•••@example.com"]);

    let r = app.change(admin, &phone, "+45 31 12 34 99").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["method"]["value"], "+4531123499");
    assert_eq!(body["version"], 3);

    let r = app.remove(admin, &email).await;
    assert_eq!(r.status(), 200);
    let e = app.eligibility(admin).await;
    assert_eq!(e["eligible"], false);
    assert_eq!(e["missing"], json!(["email"]));

    let view = app.view(admin).await;
    assert_eq!(view["version"], 4);
    assert_eq!(view["methods"].as_array().unwrap().len(), 1);
    assert_eq!(view["methods"][0]["value"], "+4531123499");

    let history = app.history(admin).await;
    let types: Vec<&str> = history
        .iter()
        .map(|h| h["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "MethodAdded",
            "MethodAdded",
            "MethodChanged",
            "MethodRemoved"
        ]
    );
    let change = &history[2];
    assert_eq!(change["data"]["old_value"], "+45 •• •• •• 56");
    assert_eq!(change["data"]["new_value"], "+45 •• •• •• 99");
    assert_eq!(change["actor"]["subject"], "helpdesk-1");
    assert_eq!(change["actor"]["roles"], json!(["authentication_admin"]));
    let versions: Vec<u64> = history
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
}

async fn each_domain_rule_is_refused_with_its_own_code(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();

    assert_problem(
        app.add(admin, "mobile_phone", "+45 1234").await,
        422,
        "invalid_phone_number",
    )
    .await;
    assert_problem(
        app.add(admin, "mobile_phone", "20 12 34 56").await,
        422,
        "invalid_phone_number",
    )
    .await;
    assert_problem(
        app.add(admin, "email", "not-an-address").await,
        422,
        "invalid_email",
    )
    .await;
    assert_problem(
        app.add(admin, "mobile_phone", "+1 425 555 0100 x12").await,
        422,
        "extension_not_allowed",
    )
    .await;
    assert_problem(
        app.add(admin, "alternate_phone", "+45 20 12 34 57").await,
        409,
        "alternate_phone_requires_mobile",
    )
    .await;
    assert_problem(
        app.add(admin, "fax", "+45 20 12 34 57").await,
        422,
        "unknown_method_kind",
    )
    .await;

    let mobile = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    assert_problem(
        app.add(admin, "mobile_phone", "+45 20 12 34 58").await,
        409,
        "method_kind_exists",
    )
    .await;
    let alternate = app
        .add_ok(admin, "alternate_phone", "+45 20 12 34 57")
        .await;
    assert_problem(
        app.remove(admin, &mobile).await,
        409,
        "mobile_phone_has_alternate",
    )
    .await;
    let office = app
        .add_ok(admin, "office_phone", "+1 (425) 555-0100 x123")
        .await;
    assert_problem(
        app.remove(admin, &Uuid::now_v7().to_string()).await,
        404,
        "method_not_found",
    )
    .await;
    assert_problem(
        app.change(admin, &office, "+45 9").await,
        422,
        "invalid_phone_number",
    )
    .await;

    // Nothing refused reached the log.
    assert_eq!(app.history(admin).await.len(), 3);
    assert_eq!(
        app.view(admin).await["methods"][2]["value"],
        "+14255550100x123"
    );

    assert_eq!(app.remove(admin, &alternate).await.status(), 200);
    assert_eq!(app.remove(admin, &mobile).await.status(), 200);
}

async fn changing_a_method_to_its_current_value_appends_nothing(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let r = app.change(admin, &phone, "+4520123456").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["position"], 1);
    assert_eq!(app.history(admin).await.len(), 1);
    assert_eq!(app.store().head().await.unwrap(), 1);
}

async fn offboarding_removes_every_method_but_keeps_the_history(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.com").await;
    let r = app
        .send(
            reqwest::Method::POST,
            &app.admin_path(admin, "/offboard"),
            &app.admin_token(),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.eligibility(admin).await["eligible"], false);
    let view = app.view(admin).await;
    assert_eq!(view["offboarded"], true);
    assert_eq!(view["methods"], json!([]));
    let history = app.history(admin).await;
    assert_eq!(history.len(), 3);
    assert_eq!(history[2]["type"], "AdminOffboarded");
    assert_eq!(history[2]["data"]["removed"].as_array().unwrap().len(), 2);
    assert_problem(
        app.add(admin, "email", "jane@example.com").await,
        409,
        "admin_offboarded",
    )
    .await;
}

#[tokio::test]
async fn a_view_as_of_a_past_instant_shows_what_was_true_then() {
    let app = spawn_app().await;
    let admin = Uuid::now_v7();
    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        app.change(admin, &phone, "+45 20 12 34 99").await.status(),
        200
    );

    let at = between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let url = app.admin_path(admin, &format!("/methods?as_of={}", at.replace('+', "%2B")));
    let then = app.get_json(&url).await;
    assert_eq!(then["version"], 1);
    assert_eq!(then["methods"][0]["value"], "+4520123456");
    let before = app
        .get_json(&app.admin_path(admin, "/methods?as_of=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(before["methods"], json!([]));
    assert_eq!(app.view(admin).await["methods"][0]["value"], "+4520123499");
}

crate::on_both_backends!(
    the_help_page_flow_is_recorded_step_by_step,
    each_domain_rule_is_refused_with_its_own_code,
    changing_a_method_to_its_current_value_appends_nothing,
    offboarding_removes_every_method_but_keeps_the_history,
);
