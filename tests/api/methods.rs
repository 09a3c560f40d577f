//! The help page's flow and every rule of an admin's security methods.

use crate::support::{Backend, assert_problem, each, spawn_app, spawn_backend};
use recovery_info::store::EventLog;
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

/// The hostile test's inputs (issues 25 and 26): none may be stored as another, valid value.
async fn values_a_person_did_not_mean_are_refused_and_reach_no_log(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let refused = [
        (
            "mobile_phone",
            "+45 2O 12 34 56",
            "invalid_phone_number",
            "'O'",
        ),
        (
            "mobile_phone",
            "+45 20 I2 34 56",
            "invalid_phone_number",
            "'I'",
        ),
        (
            "mobile_phone",
            "+45 2l 12 34 56",
            "invalid_phone_number",
            "'l'",
        ),
        (
            "mobile_phone",
            "++4520123456",
            "invalid_phone_number",
            "more than one +",
        ),
        (
            "mobile_phone",
            "+4520123456\u{0}",
            "invalid_phone_number",
            "U+0000",
        ),
        (
            "mobile_phone",
            "+45 20\u{200B}12 34 56",
            "invalid_phone_number",
            "U+200B",
        ),
        (
            "office_phone",
            "+1 425 555 0100 x",
            "invalid_phone_number",
            "extension",
        ),
        (
            "mobile_phone",
            "+1 900 555 0199",
            "phone_number_type_not_allowed",
            "premium-rate",
        ),
        (
            "mobile_phone",
            "+44 909 879 0000",
            "phone_number_type_not_allowed",
            "premium-rate",
        ),
        (
            "mobile_phone",
            "+979 123456789",
            "phone_number_type_not_allowed",
            "premium-rate",
        ),
        (
            "mobile_phone",
            "+800 1234 5678",
            "phone_number_type_not_allowed",
            "freephone",
        ),
        (
            "mobile_phone",
            "+44 20 7183 8750",
            "phone_number_type_not_allowed",
            "fixed-line",
        ),
        (
            "email",
            "jane\u{200B}@example.com",
            "invalid_email",
            "U+200B",
        ),
        (
            "email",
            "\u{202E}jane@example.com",
            "invalid_email",
            "U+202E",
        ),
        ("email", "\"a@b\"@example.com", "invalid_email", "quoted"),
        ("email", "jane😀@example.com", "invalid_email", "U+1F600"),
        (
            "email",
            "j\u{301}\u{301}ane@example.com",
            "invalid_email",
            "combining mark",
        ),
    ];
    for (kind, value, code, named) in refused {
        let body = assert_problem(app.add(admin, kind, value).await, 422, code).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{value:?}: {detail}");
    }
    assert_eq!(
        app.store().head().await.unwrap(),
        0,
        "nothing refused reached the log"
    );

    // What a person types for their own number and address is kept, normalised.
    app.add_ok(admin, "mobile_phone", "+４５ ２０ １２ ３４ ５６")
        .await;
    app.add_ok(admin, "office_phone", "+44 (0)20 7183 8750 ext. 12")
        .await;
    app.add_ok(admin, "email", "jose\u{301}@Bücher.de").await;
    let view = app.view(admin).await;
    let values = each(&view, "methods", "value");
    assert_eq!(
        values,
        [
            "+4520123456",
            "+442071838750x12",
            "jos\u{e9}@xn--bcher-kva.de"
        ]
    );
    // The tenant's own domain, typed in Unicode, catches the address by its A-label.
    app.put_settings_ok(json!({"domains": ["BÜCHER.de"]})).await;
    assert_problem(
        app.add(Uuid::now_v7(), "email", "jane@xn--bcher-kva.de")
            .await,
        422,
        "email_in_tenant_domain",
    )
    .await;
    // A look-alike local part cannot mask like the real one.
    let other = Uuid::now_v7();
    app.add_ok(other, "mobile_phone", "+45 20 12 34 57").await;
    app.add_ok(other, "email", "j\u{430}ne@example.com").await;
    let masked = each(
        &app.eligibility(other).await,
        "usable_methods",
        "masked_value",
    )
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    assert_eq!(
        masked[1],
        "j•••@example.com (mixed scripts: Latin, Cyrillic)"
    );
}

crate::on_both_backends!(
    the_help_page_flow_is_recorded_step_by_step,
    each_domain_rule_is_refused_with_its_own_code,
    changing_a_method_to_its_current_value_appends_nothing,
    offboarding_removes_every_method_but_keeps_the_history,
    values_a_person_did_not_mean_are_refused_and_reach_no_log,
);
