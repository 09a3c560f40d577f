//! Reset eligibility: the default policy, tenant domains and policies, read-your-writes.

use crate::support::{
    Backend, Options, assert_problem, fresh_store, method_id, spawn_app, spawn_app_with,
    spawn_backend, spawn_store, two_replicas,
};
use recovery_info::domain::{AdminId, TenantId};
use recovery_info::http::auth::Role;
use recovery_info::projections::runner::{Projections, RunnerConfig};
use recovery_info::store::ProjectionStorage;
use recovery_info::store::projections::Projection;
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
    // Another admin's: the command's own admin is answered from what the command left
    // (`eligibility_after_own_command_is_the_projections_answer`).
    let url = app.admin_path(
        Uuid::now_v7(),
        &format!("/reset-eligibility?min_position={}", r["position"]),
    );
    let r = app.send(Method::GET, &url, &app.all_roles(), None).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_problem(r, 503, "view_not_fresh").await;
}

/// Eligibility asked right after an own command, before any projection has folded it, is
/// answered from what the command left (`app::folded`): the answer must be the projection's
/// once it has folded exactly that far. The service runs no projection, so only the command's
/// own states can answer; a runner started here beside it then folds the log to the
/// command's position, and its verdict (in memory and in the table) is compared.
async fn eligibility_after_own_command_is_the_projections_answer(backend: Backend) {
    let app = spawn_store(
        fresh_store(backend).await,
        Options {
            run_projections: false,
            freshness_timeout: Duration::from_millis(200),
            ..Options::default()
        },
    )
    .await;
    let store = app.store().clone();
    let (projections, tasks) = Projections::spawn(store.clone(), RunnerConfig::default());
    let reset = app.token("reset-flow", &[Role::ResetService]);
    let tenant = TenantId::from_uuid(app.tenant);
    let admins: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let mut methods: Vec<[Option<String>; 4]> = vec![Default::default(); admins.len()];
    let kinds = ["mobile_phone", "alternate_phone", "office_phone", "email"];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut compared, mut settings, mut head) = (0, 0, 0);
    for step in 0..120 {
        if step % 30 == 29 {
            // The tenant's settings change under the admins: a policy, a domain that makes
            // the contoso addresses stop counting.
            let body = match settings % 3 {
                0 => json!({"domains": ["contoso.com"]}),
                1 => json!({"reset_policy": {"name": "any_two_methods"}}),
                _ => json!({"domains": [], "reset_policy": {"name": "email_and_mobile_phone"}}),
            };
            settings += 1;
            app.put_settings_ok(body).await;
            continue;
        }
        let i = next(admins.len() as u64) as usize;
        let k = next(4) as usize;
        let value = if kinds[k] == "email" {
            let domain = ["example.com", "contoso.com"][next(2) as usize];
            format!("a{}@{domain}", next(1000))
        } else {
            format!("+45 20 12 {:02} {:02}", next(100), next(100))
        };
        let (admin, slot) = (admins[i], &mut methods[i][k]);
        let r = match slot.clone() {
            None => app.add(admin, kinds[k], &value).await,
            Some(id) if next(3) == 0 => app.remove(admin, &id).await,
            Some(id) => app.change(admin, &id, &value).await,
        };
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match status {
            // A removal's answer shows no method.
            200 | 201 => *slot = body["method"]["id"].as_str().map(str::to_owned),
            // A change the rules refuse (an email inside the tenant's domain, an alternate
            // phone before a mobile one): nothing was appended.
            409 | 422 => {
                assert!(body["code"].is_string(), "{body}");
                continue;
            }
            _ => panic!("step {step}: {status} {body}"),
        }
        let position = body["position"].as_u64().unwrap();
        if position <= head {
            // A change to the value it had: nothing appended, nothing to compare.
            continue;
        }
        head = position;
        let url = app.admin_path(
            admin,
            &format!("/reset-eligibility?min_position={position}"),
        );
        let r = app.send(Method::GET, &url, &reset, None).await;
        assert_eq!(r.status(), 200, "step {step}");
        let own: Value = r.json().await.unwrap();
        assert_eq!(own["position"], position, "step {step}: {own}");

        assert!(
            projections
                .wait_for(Projection::Admins, position, Duration::from_secs(10))
                .await
                .unwrap(),
            "step {step}: the runner did not reach {position}"
        );
        let admin_id = AdminId::from_uuid(admin);
        let (at, table) = store.eligibility(tenant, admin_id).await.unwrap();
        assert_eq!(at, position, "step {step}: nothing else was appended");
        // `wait_for` may see the checkpoint in the store a moment before the runner has moved
        // its verdicts in memory to it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let memory = loop {
            if let Some((_, v)) = projections
                .verdicts()
                .and_then(|v| v.get(tenant, admin_id, Some(position)))
            {
                break v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "step {step}: the runner holds no verdict at {position}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(*memory, table, "step {step}");
        let folded = serde_json::to_value(&table).unwrap();
        for (field, value) in folded.as_object().unwrap() {
            assert_eq!(&own[field], value, "step {step}: {field} in {own}");
        }
        compared += 1;
    }
    for t in tasks {
        t.abort();
    }
    assert!(compared >= 80, "only {compared} answers compared");
}

crate::on_both_backends!(
    an_email_inside_a_newly_added_tenant_domain_stops_counting,
    a_policy_change_re_evaluates_every_admin_of_the_tenant,
    a_command_answer_position_gives_read_your_writes,
    eligibility_after_own_command_is_the_projections_answer,
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
