//! History for auditors: filters, paging, reveal with an audit trail, and time travel.

use crate::support::{Backend, TestApp, assert_problem, each, spawn_backend};
use chrono::{DateTime, SecondsFormat, Utc};
use recovery_info::http::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

async fn get(app: &TestApp, token: &str, url: &str) -> Value {
    let r = app.send(Method::GET, url, token, None).await;
    assert_eq!(r.status(), 200, "GET {url}");
    r.json().await.unwrap()
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A moment strictly between the previous step and the next one.
async fn instant() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(15)).await;
    let t = Utc::now();
    tokio::time::sleep(Duration::from_millis(15)).await;
    t
}

async fn history_is_filtered_and_paged(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let auditor = app.token("auditor-1", &[Role::Auditor]);
    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let t1 = instant().await;
    app.add_ok(admin, "email", "jane@example.com").await;
    assert_eq!(
        app.change(admin, &phone, "+45 20 12 34 57").await.status(),
        200
    );
    let t2 = instant().await;
    assert_eq!(
        app.change(admin, &phone, "+45 20 12 34 58").await.status(),
        200
    );

    let base = app.admin_path(admin, "/history");
    let all = get(&app, &auditor, &base).await;
    let entry = &all["events"][0];
    for field in [
        "position",
        "version",
        "event_id",
        "type",
        "occurred_at",
        "actor",
        "correlation_id",
        "data",
    ] {
        assert!(!entry[field].is_null(), "{field} in {entry}");
    }
    assert_eq!(all["revealed"], false);

    let changes = get(&app, &auditor, &format!("{base}?type=MethodChanged")).await;
    let olds: Vec<&str> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["old_value"].as_str().unwrap())
        .collect();
    assert_eq!(olds, ["+45 •• •• •• 56", "+45 •• •• •• 57"]);

    let window = get(
        &app,
        &auditor,
        &format!("{base}?since={}&until={}", at(t1), at(t2)),
    )
    .await;
    let types = each(&window, "events", "type");
    assert_eq!(types, ["MethodAdded", "MethodChanged"]);

    let mut seen = Vec::new();
    let mut url = format!("{base}?limit=3");
    loop {
        let page = get(&app, &auditor, &url).await;
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["version"].as_u64().unwrap()),
        );
        match page["next_after"].as_u64() {
            Some(after) => url = format!("{base}?limit=3&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, [1, 2, 3, 4]);

    let r = app
        .send(
            Method::GET,
            &format!("{base}?type=Nonsense"),
            &auditor,
            None,
        )
        .await;
    assert_problem(r, 400, "invalid_query").await;
}

async fn a_reveal_shows_raw_values_and_leaves_an_audit_event(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let auditor = app.token("auditor-1", &[Role::Auditor]);
    let helpdesk = app.admin_token();

    let r = app
        .send(
            Method::GET,
            &app.admin_path(admin, "/history?reveal=true"),
            &helpdesk,
            None,
        )
        .await;
    assert_problem(r, 403, "reveal_requires_auditor").await;
    let feed = get(&app, &auditor, &app.url("/events?type=PiiRevealed")).await;
    assert_eq!(
        feed["events"],
        json!([]),
        "a refused reveal leaves no trace and shows nothing"
    );

    let revealed = get(
        &app,
        &auditor,
        &app.admin_path(admin, "/history?reveal=true&type=MethodAdded"),
    )
    .await;
    assert_eq!(revealed["revealed"], true);
    assert_eq!(revealed["events"][0]["data"]["value"], "+4520123456");

    let feed = get(&app, &auditor, &app.url("/events?type=PiiRevealed")).await;
    let trace = &feed["events"][0];
    assert_eq!(trace["type"], "PiiRevealed");
    assert_eq!(trace["actor"]["subject"], "auditor-1");
    assert_eq!(trace["data"]["scope"], "admin_history");
    assert_eq!(trace["data"]["admin_id"], admin.to_string());
    assert_eq!(trace["data"]["query"], "reveal=true&type=MethodAdded");
    assert_eq!(feed["events"].as_array().unwrap().len(), 1);

    // The audit stream does not disturb the admin's stream or its ETag.
    assert_eq!(app.view(admin).await["version"], 1);
}

async fn as_of_answers_match_the_scripted_history(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let reader = app.all_roles();
    let t0 = instant().await;
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let t1 = instant().await;
    app.add_ok(admin, "email", "jane@contoso.com").await;
    let t2 = instant().await;
    app.put_settings_ok(json!({"domains": ["contoso.com"]}))
        .await;
    let t3 = instant().await;
    app.put_settings_ok(json!({"reset_policy": {"name": "any_two_methods"}}))
        .await;
    let t4 = instant().await;
    app.add_ok(admin, "office_phone", "+1 425 555 0100 x7")
        .await;
    let t5 = instant().await;

    // (instant, methods, eligible, missing, domains, policy), computed by hand.
    let expected = [
        (
            t0,
            0,
            false,
            json!(["email", "mobile_phone"]),
            json!([]),
            "email_and_mobile_phone",
        ),
        (
            t1,
            1,
            false,
            json!(["email"]),
            json!([]),
            "email_and_mobile_phone",
        ),
        (t2, 2, true, json!([]), json!([]), "email_and_mobile_phone"),
        (
            t3,
            2,
            false,
            json!(["email"]),
            json!(["contoso.com"]),
            "email_and_mobile_phone",
        ),
        (
            t4,
            2,
            false,
            json!(["another_method"]),
            json!(["contoso.com"]),
            "any_two_methods",
        ),
        (
            t5,
            3,
            true,
            json!([]),
            json!(["contoso.com"]),
            "any_two_methods",
        ),
    ];
    for (i, (t, methods, eligible, missing, domains, policy)) in expected.into_iter().enumerate() {
        let q = format!("?as_of={}", at(t));
        let view = get(
            &app,
            &reader,
            &app.admin_path(admin, &format!("/methods{q}")),
        )
        .await;
        assert_eq!(
            view["methods"].as_array().unwrap().len(),
            methods,
            "t{i}: {view}"
        );
        assert_eq!(view["tenant_settings"]["domains"], domains, "t{i}");
        let e = get(
            &app,
            &reader,
            &app.admin_path(admin, &format!("/reset-eligibility{q}")),
        )
        .await;
        assert_eq!(e["eligible"], eligible, "t{i}: {e}");
        assert_eq!(e["missing"], missing, "t{i}: {e}");
        assert_eq!(e["policy"], policy, "t{i}");
        assert_eq!(e["tenant_settings"]["reset_policy"]["name"], policy, "t{i}");
    }
}

/// A read of an admin's raw values is in that admin's own history (as well as the feed), and
/// `/events?admin=` finds one admin's events and the reads of them; reveals recorded before the
/// admin was indexed are found after the upgrade's backfill; `audit verify` accepts the index.
async fn a_reveal_is_in_the_revealed_admins_history_and_the_feed_filters_by_admin(
    backend: Backend,
) {
    let app = spawn_backend(backend).await;
    let (jane, john) = (Uuid::now_v7(), Uuid::now_v7());
    app.add_ok(jane, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(john, "mobile_phone", "+45 20 12 34 57").await;
    let auditor = app.token("auditor-7", &[Role::Auditor]);
    get(
        &app,
        &auditor,
        &app.admin_path(jane, "/history?reveal=true"),
    )
    .await;
    let admin = app.admin_token();
    let kinds = |page: &Value| -> Vec<String> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{}:{}", e["type"].as_str().unwrap(), e["position"]))
            .collect()
    };
    let janes = get(&app, &admin, &app.admin_path(jane, "/history")).await;
    assert_eq!(kinds(&janes), ["MethodAdded:1", "PiiRevealed:3"]);
    let reveal = &janes["events"][1];
    assert_eq!(reveal["actor"]["subject"], "auditor-7");
    assert_eq!(reveal["data"]["admin_id"], jane.to_string());
    let johns = get(&app, &admin, &app.admin_path(john, "/history")).await;
    assert_eq!(kinds(&johns), ["MethodAdded:2"]);
    let feed = get(&app, &auditor, &app.url(&format!("/events?admin={jane}"))).await;
    assert_eq!(kinds(&feed), ["MethodAdded:1", "PiiRevealed:3"]);
    let all = get(&app, &auditor, &app.url("/events")).await;
    assert_eq!(all["events"].as_array().unwrap().len(), 3);
    for (url, code) in [
        (app.url("/events?admin=nope"), "invalid_query"),
        (
            app.admin_path(jane, &format!("/history?admin={jane}")),
            "invalid_query",
        ),
    ] {
        let r = app.send(Method::GET, &url, &auditor, None).await;
        assert_problem(r, 400, code).await;
    }
    let out = crate::support::run(&app.store_config, &["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");

    // As a build before the index left it: the reveal's row names no admin.
    let (forget, upgrade) = (
        "UPDATE events SET admin_id = NULL WHERE event_type = 'PiiRevealed'",
        "INSERT INTO reveal_index_upgrade (up_to) SELECT position FROM log_head",
    );
    crate::support::execute_sql(&app.store_config, &[forget, upgrade]).await;
    let janes = get(&app, &admin, &app.admin_path(jane, "/history")).await;
    assert_eq!(kinds(&janes), ["MethodAdded:1"]);
    let out = crate::support::run(&app.store_config, &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    let janes = get(&app, &admin, &app.admin_path(jane, "/history")).await;
    assert_eq!(kinds(&janes), ["MethodAdded:1", "PiiRevealed:3"]);
    let out = crate::support::run(&app.store_config, &["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}

/// `as_of_position` answers the view, verdict and history at a log position exactly; `as_of`
/// by time answers the longest prefix of the log stamped at or before the instant, so a clock
/// that was behind never yields a state that did not exist.
async fn as_of_position_is_exact_and_as_of_time_a_state_that_existed(backend: Backend) {
    use recovery_info::domain::{AdminId, DomainEvent, MethodId, MethodKind, RemovedMethod};
    use recovery_info::domain::{StreamId, TenantId};
    use recovery_info::events::{Actor, PendingEvent};
    let app = spawn_backend(backend).await;
    let jane = Uuid::now_v7();
    let stream = StreamId::Admin(TenantId::from_uuid(app.tenant), AdminId::from_uuid(jane));
    let base = Utc::now() - chrono::Duration::hours(1);
    let at = |s: i64| base + chrono::Duration::seconds(s);
    let (phone, email) = (
        MethodId::from_uuid(Uuid::now_v7()),
        MethodId::from_uuid(Uuid::now_v7()),
    );
    // Phone added at +1 s, email at +3 s, then the phone removed by a replica whose clock was
    // behind: stamped +2 s, logged last.
    let events = [
        (
            1,
            DomainEvent::MethodAdded {
                method_id: phone,
                kind: MethodKind::MobilePhone,
                value: "+4520123456".into(),
            },
        ),
        (
            3,
            DomainEvent::MethodAdded {
                method_id: email,
                kind: MethodKind::Email,
                value: "jane@example.org".into(),
            },
        ),
        (
            2,
            DomainEvent::MethodRemoved(RemovedMethod {
                method_id: phone,
                kind: MethodKind::MobilePhone,
                old_value: "+4520123456".into(),
            }),
        ),
    ];
    for (version, (second, event)) in events.into_iter().enumerate() {
        let pending = PendingEvent {
            event_id: Uuid::now_v7(),
            occurred_at: at(second),
            actor: Actor::default(),
            correlation_id: Uuid::now_v7(),
            idempotency_key: None,
            event,
        };
        app.store()
            .append(stream, version as u64, vec![pending], None)
            .await
            .unwrap();
    }
    let admin = app.admin_token();
    let kinds = |view: &Value| each(view, "methods", "kind").join(",");
    let app = &app;
    let view_at = |query: String| {
        let url = app.admin_path(jane, &format!("/methods?{query}"));
        let admin = admin.clone();
        async move { get(app, &admin, &url).await }
    };
    // By time, at +2.5 s: the prefix before the email (stamped +3 s): the phone alone, which
    // was true then; the removal stamped +2 s is logged after the email and is not in it.
    let instant = (at(2) + chrono::Duration::milliseconds(500))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
        .replace('+', "%2B");
    let view = view_at(format!("as_of={instant}")).await;
    assert_eq!(kinds(&view), "mobile_phone", "{view}");
    // By position: exact.
    for (position, want) in [(1, "mobile_phone"), (2, "mobile_phone,email"), (3, "email")] {
        let view = view_at(format!("as_of_position={position}")).await;
        assert_eq!(kinds(&view), want, "{view}");
        assert_eq!(view["as_of_position"], json!(position));
    }
    let url = app.admin_path(jane, "/reset-eligibility?as_of_position=2");
    let verdict = get(app, &admin, &url).await;
    assert_eq!(verdict["eligible"], json!(true), "{verdict}");
    assert_eq!(verdict["as_of_position"], json!(2));
    let url = app.admin_path(jane, "/history?as_of_position=2");
    let history = get(app, &admin, &url).await;
    assert_eq!(
        each(&history, "events", "type"),
        ["MethodAdded", "MethodAdded"]
    );
    for (query, status, code) in [
        (
            format!("as_of={instant}&as_of_position=2"),
            400,
            "invalid_query",
        ),
        (
            "as_of_position=2&min_position=2".to_owned(),
            400,
            "as_of_with_min_position",
        ),
        ("as_of_position=99".to_owned(), 400, "position_beyond_log"),
        ("as_of_position=two".to_owned(), 400, "invalid_query"),
    ] {
        let url = app.admin_path(jane, &format!("/methods?{query}"));
        let r = app.send(Method::GET, &url, &admin, None).await;
        assert_problem(r, status, code).await;
    }
}

crate::on_both_backends!(
    as_of_position_is_exact_and_as_of_time_a_state_that_existed,
    a_reveal_is_in_the_revealed_admins_history_and_the_feed_filters_by_admin,
    history_is_filtered_and_paged,
    a_reveal_shows_raw_values_and_leaves_an_audit_event,
    as_of_answers_match_the_scripted_history,
);
