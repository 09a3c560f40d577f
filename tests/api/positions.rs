//! Sealed positions: what a tenant is shown of the global log, and what it may hand back.

use crate::support::{
    Backend, Options, TestApp, assert_problem, fresh_store, read_sse, spawn_store,
};
use recovery_info::http::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// The app as `serve` runs it by default: positions sealed.
async fn sealed(backend: Backend) -> TestApp {
    let options = Options {
        plain_positions: false,
        ..Options::default()
    };
    spawn_store(fresh_store(backend).await, options).await
}

/// A token from an answer: a string, and not a number in disguise.
fn token(value: &Value) -> String {
    let token = value
        .as_str()
        .unwrap_or_else(|| panic!("a position token, not {value}"));
    assert!(token.starts_with('p') && token.len() == 23, "{token}");
    assert!(token[1..].parse::<u64>().is_err(), "{token}");
    token.to_owned()
}

async fn answer(r: reqwest::Response) -> Value {
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

async fn a_tenant_sees_tokens_that_it_hands_back_for_read_your_writes(backend: Backend) {
    let app = sealed(backend).await;
    // Another tenant's traffic first: the log is not this tenant's alone.
    let other = Uuid::now_v7();
    for i in 0..5 {
        let token = app.token_for(other, "helpdesk", &[Role::AuthenticationAdmin]);
        let url = format!(
            "{}/v1/tenants/{other}/admins/{}/methods",
            app.base,
            Uuid::now_v7()
        );
        let body = json!({"kind": "mobile_phone", "value": format!("+45 20 12 34 5{i}")});
        answer(app.send(Method::POST, &url, &token, Some(body)).await).await;
    }
    let admin = Uuid::now_v7();
    // An empty view says nothing of the others' five events.
    let empty = app.get_json(&app.admin_path(admin, "/methods")).await;
    let at_start = token(&empty["position"]);

    let phone = answer(app.add(admin, "mobile_phone", "+45 20 12 34 56").await).await;
    let first = token(&phone["position"]);
    assert_ne!(first, at_start);
    let email = answer(app.add(admin, "email", "jane@example.com").await).await;
    let second = token(&email["position"]);
    let e = app
        .get_json(&app.admin_path(admin, &format!("/reset-eligibility?min_position={second}")))
        .await;
    assert_eq!(
        e["eligible"], true,
        "read-your-writes through the token: {e}"
    );
    assert_eq!(e["position"], second.as_str());
    let view = app
        .get_json(&app.admin_path(admin, &format!("/methods?min_position={second}")))
        .await;
    assert_eq!(view["position"], second.as_str());
    assert_eq!(view["methods"].as_array().unwrap().len(), 2);

    // The history shows the same tokens, and pages by them.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = app
            .get_json(&app.admin_path(admin, &format!("/history?limit=1{after}")))
            .await;
        for entry in page["events"].as_array().unwrap() {
            seen.push(token(&entry["position"]));
        }
        match page["next_after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, [first.clone(), second.clone()]);

    // An idempotent replay repeats the token; settings answer with one too.
    let url = app.admin_path(admin, "/methods");
    let body = json!({"kind": "office_phone", "value": "+1 425 555 0100"});
    let send = || {
        app.client
            .post(&url)
            .bearer_auth(app.admin_token())
            .header("idempotency-key", "office-1")
            .json(&body)
            .send()
    };
    let once = answer(send().await.unwrap()).await;
    let again = answer(send().await.unwrap()).await;
    assert_eq!(token(&once["position"]), token(&again["position"]));
    let settings = answer(app.put_settings(json!({"domains": ["contoso.com"]})).await).await;
    token(&settings["position"]);
    token(&app.get_json(&app.url("/settings")).await["position"]);
}

async fn numbers_other_tenants_tokens_and_edited_tokens_are_refused(backend: Backend) {
    let app = sealed(backend).await;
    let admin = Uuid::now_v7();
    let phone = answer(app.add(admin, "mobile_phone", "+45 20 12 34 56").await).await;
    let mine = token(&phone["position"]);
    let mut edited = mine.clone().into_bytes();
    edited[10] = if edited[10] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    for bad in ["1", "0", &edited, "p", &mine[1..]] {
        for path in ["/methods", "/reset-eligibility"] {
            let url = app.admin_path(admin, &format!("{path}?min_position={bad}"));
            let r = app.send(Method::GET, &url, &app.all_roles(), None).await;
            let body = assert_problem(r, 400, "invalid_query").await;
            assert!(body["detail"].as_str().unwrap().contains("position token"));
        }
    }
    let url = app.admin_path(admin, "/history?after=1");
    let r = app.send(Method::GET, &url, &app.all_roles(), None).await;
    assert_problem(r, 400, "invalid_query").await;

    // Tenant B cannot use tenant A's token, not even on its own data.
    let b = Uuid::now_v7();
    let b_token = app.token_for(b, "root", &[Role::AuthenticationAdmin, Role::Auditor]);
    let url = format!(
        "{}/v1/tenants/{b}/admins/{admin}/methods?min_position={mine}",
        app.base
    );
    let r = app.send(Method::GET, &url, &b_token, None).await;
    assert_problem(r, 400, "invalid_query").await;
    let r = app
        .client
        .get(format!("{}/v1/tenants/{b}/events/stream", app.base))
        .bearer_auth(&b_token)
        .header("last-event-id", &mine)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_last_event_id").await;
}

async fn server_sent_events_carry_tokens_and_resume_after_one(backend: Backend) {
    let app = sealed(backend).await;
    let admin = Uuid::now_v7();
    let mut positions = Vec::new();
    for (kind, value) in [
        ("mobile_phone", "+45 20 12 34 56"),
        ("email", "jane@example.com"),
        ("office_phone", "+1 425 555 0100"),
    ] {
        positions.push(token(
            &answer(app.add(admin, kind, value).await).await["position"],
        ));
    }
    let dashboard = app.token("board", &[Role::Dashboard]);
    let url = app.url("/events/stream");
    let mut r = app
        .client
        .get(&url)
        .bearer_auth(&dashboard)
        .send()
        .await
        .unwrap();
    let events = read_sse(&mut r, 3, Duration::from_secs(10)).await;
    let ids: Vec<String> = events.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, positions);
    for (id, data) in &events {
        assert_eq!(data["position"], id.as_str());
    }
    let mut r = app
        .client
        .get(&url)
        .bearer_auth(&dashboard)
        .header("last-event-id", &positions[0])
        .send()
        .await
        .unwrap();
    let resumed = read_sse(&mut r, 2, Duration::from_secs(10)).await;
    assert_eq!(resumed[0].0, positions[1]);
    assert_eq!(resumed[1].0, positions[2]);
}

crate::on_both_backends!(
    a_tenant_sees_tokens_that_it_hands_back_for_read_your_writes,
    numbers_other_tenants_tokens_and_edited_tokens_are_refused,
    server_sent_events_carry_tokens_and_resume_after_one,
);
