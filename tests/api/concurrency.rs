//! Optimistic concurrency, idempotency, the gap-free global log and exactly-once projections.

use crate::support::{Backend, TestApp, assert_problem, each, spawn_backend, two_replicas};
use futures::future::join_all;
use recovery_info::domain::{AdminId, DomainEvent, StreamId, TenantId};
use recovery_info::store::StoreConfig;
use recovery_info::store::projections::{Projected, Projection};
use recovery_info::store::sqlite::DB_FILE;
use recovery_info::store::{EventLog, ProjectionStorage};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

async fn two_writers_with_the_same_if_match_exactly_one_wins(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let r = app
        .send(
            Method::GET,
            &app.admin_path(admin, "/methods?min_position=1"),
            &app.all_roles(),
            None,
        )
        .await;
    assert_eq!(r.headers()["etag"], "\"1\"");

    let url = app.admin_path(admin, &format!("/methods/{phone}"));
    let token = app.admin_token();
    let writers = (0..8).map(|i| {
        app.client
            .patch(&url)
            .bearer_auth(&token)
            .header("if-match", "\"1\"")
            .json(&json!({"value": format!("+45 20 12 34 {:02}", 60 + i)}))
            .send()
    });
    let statuses: Vec<u16> = join_all(writers)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(app.history(admin).await.len(), 2);

    // A stale ETag is refused before anything is decided.
    let r = app
        .client
        .patch(&url)
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"value": "+45 20 12 34 99"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 412, "version_mismatch").await;
    let r = app
        .client
        .delete(&url)
        .bearer_auth(&token)
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"3\"");
}

async fn concurrent_writers_without_if_match_lose_no_update(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let values: Vec<String> = (0..12)
        .map(|i| format!("+45 20 12 34 {:02}", 70 + i))
        .collect();
    let changes = values.iter().map(|v| app.change(admin, &phone, v));
    for r in join_all(changes).await {
        assert_eq!(r.status(), 200);
    }
    let history = app.history(admin).await;
    assert_eq!(history.len(), 13, "every change is in the log");
    let versions: Vec<u64> = history
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=13).collect::<Vec<_>>());
    // Each change's old value is the previous change's new value: none was decided on stale state.
    let values: Vec<(String, String)> = app
        .store()
        .load_streams(&[(
            StreamId::Admin(TenantId::from_uuid(app.tenant), AdminId::from_uuid(admin)),
            0,
        )])
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            DomainEvent::MethodChanged {
                old_value,
                new_value,
                ..
            } => Some((old_value, new_value)),
            _ => None,
        })
        .collect();
    for pair in values.windows(2) {
        assert_eq!(pair[0].1, pair[1].0);
    }
}

async fn a_retried_command_returns_the_first_answer_and_appends_nothing(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let url = app.admin_path(admin, "/methods");
    let token = app.admin_token();
    let post = |key: &'static str, value: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({"kind": "email", "value": value}))
            .send()
    };
    let first = post("k-1", "jane@example.com").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = post("k-1", "jane@example.com").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.store().head().await.unwrap(), 1);

    assert_problem(
        post("k-1", "other@example.com").await.unwrap(),
        422,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(app.store().head().await.unwrap(), 1);

    // Keys are scoped per subject: another caller's key of the same name is independent.
    let other = app.token(
        "helpdesk-2",
        &[recovery_info::http::auth::Role::AuthenticationAdmin],
    );
    let r = app
        .client
        .post(app.admin_path(Uuid::now_v7(), "/methods"))
        .bearer_auth(other)
        .header("idempotency-key", "k-1")
        .json(&json!({"kind": "email", "value": "jane@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn concurrent_retries_with_one_key_append_once(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let url = app.admin_path(admin, "/methods");
    let token = app.admin_token();
    let tries = (0..8).map(|_| {
        app.client
            .post(&url)
            .bearer_auth(&token)
            .header("idempotency-key", "same-key")
            .json(&json!({"kind": "mobile_phone", "value": "+45 20 12 34 56"}))
            .send()
    });
    let mut bodies = Vec::new();
    for r in join_all(tries).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 201);
        bodies.push(r.json::<Value>().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(app.history(admin).await.len(), 1);
}

/// A command sent under an idempotency key: the status, the headers and the body's text.
async fn keyed(
    app: &TestApp,
    method: Method,
    url: &str,
    key: &str,
    body: Option<&Value>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = app
        .client
        .request(method, url)
        .bearer_auth(app.admin_token())
        .header("idempotency-key", key);
    if let Some(body) = body {
        req = req.json(body);
    }
    let r = req.send().await.unwrap();
    (
        r.status().as_u16(),
        r.headers().clone(),
        r.text().await.unwrap(),
    )
}

/// Raw SQL on a test app's store, behind the service's back.
enum Sql {
    Pg(tokio_postgres::Client),
    Lite(rusqlite::Connection),
}

impl Sql {
    async fn open(app: &TestApp) -> Sql {
        match &app.store_config {
            StoreConfig::Postgres { url, .. } => Sql::Pg(crate::support::pg_client(url).await),
            StoreConfig::Embedded { data_dir, .. } => {
                let c = rusqlite::Connection::open(data_dir.join(DB_FILE)).unwrap();
                c.busy_timeout(Duration::from_secs(5)).unwrap();
                Sql::Lite(c)
            }
        }
    }

    /// The `response` of the idempotency record under `key`, as JSON.
    async fn response(&self, key: &str) -> Value {
        let sql = "SELECT response FROM idempotency_keys WHERE key = ";
        match self {
            Sql::Pg(c) => c
                .query_one(&format!("{sql}$1"), &[&key])
                .await
                .unwrap()
                .get(0),
            Sql::Lite(c) => {
                let text: String = c
                    .query_row(&format!("{sql}?1"), [key], |r| r.get(0))
                    .unwrap();
                serde_json::from_str(&text).unwrap()
            }
        }
    }

    /// Inserts a record under `key` as builds before typed outcomes wrote them: the answer's
    /// HTTP status and JSON body, for the request (its hash) of the record under `request_of`.
    async fn insert_old_record(&self, request_of: &str, key: &str, status: i16, body: &Value) {
        let n = match self {
            Sql::Pg(c) => c
                .execute(
                    "INSERT INTO idempotency_keys
                         (tenant_id, subject, key, request_hash, status, response)
                     SELECT tenant_id, subject, $1, request_hash, $2, $3::text::json
                     FROM idempotency_keys WHERE key = $4",
                    &[&key, &status, &body.to_string(), &request_of],
                )
                .await
                .unwrap(),
            Sql::Lite(c) => c
                .execute(
                    "INSERT INTO idempotency_keys
                         (tenant_id, subject, key, request_hash, status, response, created_at_ms)
                     SELECT tenant_id, subject, ?1, request_hash, ?2, ?3, created_at_ms
                     FROM idempotency_keys WHERE key = ?4",
                    rusqlite::params![key, status, body.to_string(), request_of],
                )
                .unwrap() as u64,
        };
        assert_eq!(n, 1);
    }
}

/// Idempotency records of builds before typed outcomes hold the answer's HTTP status and JSON
/// body; a retry after the upgrade is answered with them, as the build that kept them answered
/// (status, body, `ETag`, `Location`), and this build keeps the same body.
async fn a_retry_gets_the_answer_an_older_build_kept(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    let methods = app.admin_path(admin, "/methods");
    let add = json!({"kind": "office_phone", "value": "+1 425 555 0100 x123"});
    let change = json!({"value": "+1 425 555 0100 x124"});
    let settings = json!({"domains": ["contoso.com"], "reset_policy": {"name": "any_two_methods"}});

    // The requests, each once under a key of this build, whose records give their hashes.
    let (status, _, first) = keyed(&app, Method::POST, &methods, "add", Some(&add)).await;
    assert_eq!(status, 201);
    let first: Value = serde_json::from_str(&first).unwrap();
    let id = first["method"]["id"].as_str().unwrap().to_owned();
    let one = app.admin_path(admin, &format!("/methods/{id}"));
    let settings_url = app.url("/settings");
    let requests = [
        (Method::PATCH, one.clone(), Some(&change), "change"),
        (
            Method::PUT,
            settings_url.clone(),
            Some(&settings),
            "settings",
        ),
        (Method::DELETE, one.clone(), None, "remove"),
    ];
    let mut answers = vec![first];
    for (method, url, body, key) in &requests {
        let (status, _, answer) = keyed(&app, method.clone(), url, key, *body).await;
        assert_eq!(status, 200, "{key}: {answer}");
        answers.push(serde_json::from_str(&answer).unwrap());
    }
    let sql = Sql::open(&app).await;
    // What this build keeps is the answer's body (positions are plain in these tests).
    for (key, answer) in ["add", "change", "settings", "remove"].iter().zip(&answers) {
        assert_eq!(&sql.response(key).await, answer, "{key}");
    }
    let head = app.store().head().await.unwrap();

    // An older build's records, with answers this store never gave (versions, positions and a
    // method of their own).
    let old_id = "0190a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    let old_method = |value: &str| {
        json!({"id": old_id, "kind": "office_phone", "value": value,
               "added_at": "2025-11-02T08:15:00.123456Z",
               "changed_at": "2025-11-03T09:00:00.654321Z"})
    };
    let old = [
        (
            Method::POST,
            methods.clone(),
            Some(&add),
            "add",
            201,
            json!({
            "method": old_method("+14255550100x123"), "version": 7, "position": 41}),
        ),
        (
            Method::PATCH,
            one.clone(),
            Some(&change),
            "change",
            200,
            json!({
            "method": old_method("+14255550100x124"), "version": 8, "position": 42}),
        ),
        (
            Method::PUT,
            settings_url,
            Some(&settings),
            "settings",
            200,
            json!({
            "domains": ["contoso.com"], "reset_policy": {"name": "any_two_methods"},
            "version": 3, "position": 43}),
        ),
        (
            Method::DELETE,
            one,
            None,
            "remove",
            200,
            json!({"version": 9, "position": 44}),
        ),
    ];
    for (_, _, _, key, status, body) in &old {
        sql.insert_old_record(key, &format!("old-{key}"), *status, body)
            .await;
    }
    for (method, url, body, key, status, old_body) in old {
        let (got, headers, text) = keyed(&app, method, &url, &format!("old-{key}"), body).await;
        assert_eq!(got, status as u16, "{key}: {text}");
        // Byte for byte the body the older build answered with (its JSON, keys sorted).
        assert_eq!(text, old_body.to_string(), "{key}");
        assert_eq!(headers["idempotent-replayed"], "true", "{key}");
        assert_eq!(
            headers["etag"].to_str().unwrap(),
            format!("\"{}\"", old_body["version"]),
            "{key}"
        );
        let location = headers
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let expected = (key == "add")
            .then(|| format!("/v1/tenants/{}/admins/{admin}/methods/{old_id}", app.tenant));
        assert_eq!(location, expected, "{key}");
    }
    assert_eq!(
        app.store().head().await.unwrap(),
        head,
        "a replay appends nothing"
    );
}

async fn table(db: &tokio_postgres::Client, sql: &str) -> BTreeMap<String, String> {
    db.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect()
}

async fn snapshot(
    db: &tokio_postgres::Client,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    (
        table(db, "SELECT tenant_id::text || admin_id::text, state::text FROM admin_views").await,
        table(
            db,
            "SELECT tenant_id::text || admin_id::text, state::text || verdict::text || changed_position::text
             FROM admin_views",
        )
        .await,
    )
}

#[tokio::test]
async fn two_replicas_project_each_event_once_and_a_rebuild_comes_out_identical() {
    let (a, b) = two_replicas().await;
    let a = Arc::new(a);
    let database_url = a.database_url();

    // A mixed workload through both replicas, with a settings change in the middle.
    let admins: Vec<Uuid> = (0..12).map(|_| Uuid::now_v7()).collect();
    for (i, admin) in admins.iter().enumerate() {
        let app = if i % 2 == 0 { &*a } else { &b };
        let phone = app
            .add_ok(
                *admin,
                "mobile_phone",
                &format!("+45 20 12 34 {:02}", 10 + i),
            )
            .await;
        app.add_ok(
            *admin,
            "email",
            &format!(
                "admin{i}@{}",
                if i % 3 == 0 && i < 6 {
                    "contoso.com"
                } else {
                    "example.com"
                }
            ),
        )
        .await;
        if i % 4 == 0 {
            assert_eq!(
                app.change(*admin, &phone, &format!("+45 20 12 35 {:02}", 10 + i))
                    .await
                    .status(),
                200
            );
        }
        if i == 6 {
            app.put_settings_ok(json!({"domains": ["contoso.com"]}))
                .await;
        }
    }
    b.put_settings_ok(json!({"reset_policy": {"name": "any_two_methods"}}))
        .await;
    let head = a.store().head().await.unwrap();
    for p in Projection::ALL {
        assert!(
            a.server
                .app
                .projections
                .wait_for(p, head, Duration::from_secs(10))
                .await
                .unwrap()
        );
    }

    let db = crate::support::pg_client(&database_url).await;
    let live = snapshot(&db).await;
    assert_eq!(live.0.len(), admins.len());
    assert_eq!(live.1.len(), admins.len());
    // Exactly once: every contact view's version equals the number of events in its stream.
    let versions: i64 = db
        .query_one(
            "SELECT sum((state->>'version')::bigint)::bigint FROM admin_views",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let admin_events: i64 = db
        .query_one(
            "SELECT count(*) FROM events WHERE admin_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, admin_events);

    for p in Projection::ALL {
        a.store().reset_projection(p).await.unwrap();
    }
    // The runners' in-memory progress does not go backwards: watch the checkpoints themselves.
    a.caught_up().await;
    let rebuilt = snapshot(&db).await;
    assert!(
        rebuilt == live,
        "the rebuilt projections differ from the live ones"
    );
}

async fn a_rebuilt_projection_equals_the_live_one(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admins: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    for (i, admin) in admins.iter().enumerate() {
        let phone = app
            .add_ok(
                *admin,
                "mobile_phone",
                &format!("+45 20 12 34 {:02}", 10 + i),
            )
            .await;
        let domain = if i % 3 == 0 {
            "contoso.com"
        } else {
            "example.com"
        };
        let email = app.add_ok(*admin, "email", &format!("a{i}@{domain}")).await;
        if i % 2 == 0 {
            assert_eq!(
                app.change(*admin, &phone, &format!("+45 20 12 35 {:02}", 10 + i))
                    .await
                    .status(),
                200
            );
        }
        if i % 4 == 1 {
            assert_eq!(app.remove(*admin, &email).await.status(), 200);
        }
    }
    app.put_settings_ok(json!({"domains": ["contoso.com"]}))
        .await;
    app.put_settings_ok(json!({"reset_policy": {"name": "any_two_methods"}}))
        .await;
    app.caught_up().await;

    let tenant = TenantId::from_uuid(app.tenant);
    let read_all = async || {
        let mut rows = Vec::new();
        for admin in &admins {
            let admin = AdminId::from_uuid(*admin);
            rows.push((
                app.store().contact_view(tenant, admin).await.unwrap().1,
                app.store().eligibility(tenant, admin).await.unwrap().1,
            ));
        }
        rows
    };
    let live = read_all().await;
    assert!(live.iter().all(|(view, _)| view.is_some()));
    // Admins 2, 4 and 7: 1 and 5 lost their email; 0, 3 and 6 have theirs in contoso.com.
    let eligible = live.iter().filter(|(_, v)| v.eligible).count();
    assert_eq!(eligible, 3);

    for p in Projection::ALL {
        app.store().reset_projection(p).await.unwrap();
    }
    app.caught_up().await;
    assert_eq!(read_all().await, live);
}

crate::on_both_backends!(
    two_writers_with_the_same_if_match_exactly_one_wins,
    concurrent_writers_without_if_match_lose_no_update,
    a_retried_command_returns_the_first_answer_and_appends_nothing,
    concurrent_retries_with_one_key_append_once,
    a_retry_gets_the_answer_an_older_build_kept,
    a_rebuilt_projection_equals_the_live_one,
);

/// A counter's value on `/metrics` (0 before its first increment). Counters are per process:
/// tests running beside this one only add to them.
async fn counter(app: &TestApp, series: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Where the appender remembers the head and the tips a group needs, it writes the group in
/// one round trip, guessing that no one appended since; where another replica did, the guess
/// fails, nothing of it is written, and the group is written after reading the head and tips
/// under the lock. Every command lands once, each stream's chain stays whole.
#[tokio::test]
async fn an_append_guesses_the_head_and_falls_back_when_another_replica_moved_it() {
    let (a, b) = two_replicas().await;
    let guessed = "recovery_append_groups_total{round_trips=\"1\"}";
    let moved = "recovery_append_head_moved_total";
    let admin = Uuid::now_v7();
    let mobile = a.add_ok(admin, "mobile_phone", "+45 20 12 34 50").await;
    let before = counter(&a, guessed).await;
    for i in 1..=5 {
        let r = a
            .change(admin, &mobile, &format!("+45 20 12 34 5{i}"))
            .await;
        assert_eq!(r.status(), 200);
    }
    assert!(
        counter(&a, guessed).await - before >= 5.0,
        "one round trip each"
    );

    // `b` moves the head (and the admin's stream): `a`'s next guess is wrong.
    let email = b.add_ok(admin, "email", "jane@example.com").await;
    let before = counter(&a, moved).await;
    let r = a.change(admin, &mobile, "+45 20 12 34 59").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(counter(&a, moved).await - before >= 1.0, "the guess failed");
    let r = a.remove(admin, &email).await;
    assert_eq!(r.status(), 200);

    let history = a.history(admin).await;
    let versions: Vec<u64> = history
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=9).collect::<Vec<_>>());
    let summary = recovery_info::audit::verify::verify(a.store(), None, None)
        .await
        .expect("the chains are whole");
    assert_eq!(summary.events, 9);
}

/// A replica decides on the states it folded before plus what was appended since, also by
/// another replica: the admin's methods and the tenant's domains are never stale.
#[tokio::test]
async fn a_replica_decides_on_what_another_replica_appended_since() {
    let (a, b) = two_replicas().await;
    let admin = Uuid::now_v7();
    // `a` folds the admin and the tenant once.
    a.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    // `b` appends to both streams.
    b.add_ok(admin, "email", "jane@example.com").await;
    b.put_settings_ok(json!({"domains": ["contoso.com"]})).await;
    // `a` sees both.
    assert_problem(
        a.add(admin, "email", "jane@elsewhere.com").await,
        409,
        "method_kind_exists",
    )
    .await;
    let other = Uuid::now_v7();
    a.add_ok(other, "mobile_phone", "+45 20 12 34 57").await;
    b.put_settings_ok(json!({"domains": ["fabrikam.com"]}))
        .await;
    assert_problem(
        a.add(other, "email", "joe@fabrikam.com").await,
        422,
        "email_in_tenant_domain",
    )
    .await;
    a.add_ok(other, "email", "joe@contoso.com").await;
}

/// A replica decides a command on the states it folded last, without reading the store; what
/// the append does not check — a refusal, an If-Match mismatch, a command with nothing to
/// append — is answered only after reading what another replica appended since.
#[tokio::test]
async fn a_replica_answers_from_what_it_remembers_only_what_the_append_checked() {
    let (a, b) = two_replicas().await;
    let admin = Uuid::now_v7();
    let mobile = a.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    // `b` adds an email that `a` has not seen: `a` removes it.
    let email = b.add_ok(admin, "email", "jane@example.com").await;
    let r = a.remove(admin, &email).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // `b` changes the mobile (version 4): `a` remembers version 3, and If-Match 4 holds.
    let r = b.change(admin, &mobile, "+45 20 12 34 57").await;
    assert_eq!(r.status(), 200);
    let r = a
        .client
        .patch(a.admin_path(admin, &format!("/methods/{mobile}")))
        .bearer_auth(a.admin_token())
        .header("if-match", "\"4\"")
        .json(&json!({"value": "+45 20 12 34 58"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()["etag"], "\"5\"");
    // `b` changes it again; `a` asks for the value it remembers: that is a change, not a no-op.
    let r = b.change(admin, &mobile, "+45 20 12 34 59").await;
    assert_eq!(r.status(), 200);
    let r = a.change(admin, &mobile, "+45 20 12 34 58").await;
    assert_eq!(r.status(), 200);
    let view = b.view(admin).await;
    let methods = view["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 1, "{view}");
    assert_eq!(methods[0]["value"], "+4520123458", "{view}");
    assert_eq!(b.history(admin).await.len(), 7);
}

/// The contact view and the verdict are one projection: when its batches fail (here, every
/// time: the tenant's row, which every batch of the tenant reads, is unreadable), neither moves,
/// so a view and a verdict never disagree. The failure is loud (a counter on /metrics), a read
/// that asks for the position it cannot reach answers 503 `view_not_fresh` rather than a stale
/// view, and a rebuild from the log repairs it.
#[tokio::test]
async fn a_failing_admin_projection_stalls_loudly_and_a_rebuild_repairs_it() {
    let app = crate::support::spawn_app_with(crate::support::Options {
        freshness_timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    app.put_settings_ok(json!({"domains": ["contoso.com"]}))
        .await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.caught_up().await;
    let db = crate::support::pg_client(&app.database_url()).await;
    let poisoned = db
        .execute(
            "UPDATE tenant_views SET state = '\"not a state\"' WHERE tenant_id = $1",
            &[&app.tenant],
        )
        .await
        .unwrap();
    assert_eq!(poisoned, 1);

    app.add_ok(admin, "email", "jane@example.com").await;
    // Another admin's command takes the log past the admin's own: eligibility at the admin's
    // own command is answered from what it left (`app::folded`), not from the projection.
    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 57")
        .await;
    let head = app.store().head().await.unwrap();
    for path in ["/methods", "/reset-eligibility"] {
        let url = app.admin_path(admin, &format!("{path}?min_position={head}"));
        let r = app
            .send(reqwest::Method::GET, &url, &app.all_roles(), None)
            .await;
        crate::support::assert_problem(r, 503, "view_not_fresh").await;
    }
    let checkpoint = app.store().checkpoint(Projection::Admins).await.unwrap();
    assert!(
        checkpoint < head,
        "the projection reached {checkpoint} of {head}"
    );
    assert!(
        app.metrics()
            .await
            .contains("recovery_projection_failures_total{projection=\"admins\"}")
    );

    // The rows are derived: rebuilt from the log, the projection goes on.
    recovery_info::projections::replay::replay(app.store(), &Projection::ALL, 100)
        .await
        .unwrap();
    let view = app.view(admin).await;
    assert_eq!(
        each(&view, "methods", "kind"),
        ["mobile_phone", "email"],
        "{view}"
    );
    assert_eq!(app.eligibility(admin).await["eligible"], true);
}

/// A process folds eligibility from the rows its own last batch wrote, without reading them
/// again, only while the checkpoint is where that batch left it. Here the batches are driven by
/// hand and alternate between two replicas: the second batch of the first replica must read
/// the admin's row that the other replica's batch wrote in between.
#[tokio::test]
async fn a_replica_folds_eligibility_on_the_rows_another_replica_wrote_since() {
    let (a, b) = two_replicas_projecting_by_hand().await;
    let admin = Uuid::now_v7();
    let mobile = a.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    project_admins(&a).await;
    b.add_ok(admin, "email", "jane@example.com").await;
    project_admins(&b).await;
    let r = a.change(admin, &mobile, "+45 20 12 34 99").await;
    assert_eq!(r.status(), 200);
    assert_eq!(project_admins(&a).await.batch.applied, 1);

    let verdict = a.eligibility(admin).await;
    assert_eq!(verdict["eligible"], true, "{verdict}");
    let masked = each(&verdict, "usable_methods", "masked_value");
    assert_eq!(masked, ["+45 •• •• •• 99", "j•••@example.com"], "{verdict}");
}

/// The same for a tenant's settings: the other replica changes the tenant's domains and folds
/// that in between, and the first replica's next batch must fold on the new settings (the
/// email in the new domain no longer counts), not on settings it may remember from its own
/// last batch.
#[tokio::test]
async fn a_replica_folds_eligibility_on_the_settings_another_replica_wrote_since() {
    let (a, b) = two_replicas_projecting_by_hand().await;
    let admin = Uuid::now_v7();
    a.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    a.add_ok(admin, "email", "jane@contoso.com").await;
    assert_eq!(project_admins(&a).await.batch.applied, 2);
    assert_eq!(a.eligibility(admin).await["eligible"], true);
    b.put_settings_ok(json!({"domains": ["contoso.com"]})).await;
    assert_eq!(project_admins(&b).await.batch.applied, 1);
    a.add_ok(admin, "office_phone", "+45 33 12 34 56").await;
    assert_eq!(project_admins(&a).await.batch.applied, 1);

    let verdict = a.eligibility(admin).await;
    assert_eq!(verdict["eligible"], false, "{verdict}");
    assert_eq!(verdict["missing"], json!(["email"]), "{verdict}");
}

/// Two replicas of one tenant on one database, neither running the projections: the tests
/// drive the admin projection's batches by hand with [`project_admins`].
async fn two_replicas_projecting_by_hand() -> (crate::support::TestApp, crate::support::TestApp) {
    crate::support::two_replicas_with(crate::support::Options {
        run_projections: false,
        ..Default::default()
    })
    .await
}

/// One batch of the admin projection on `app`'s store.
async fn project_admins(app: &crate::support::TestApp) -> Projected {
    app.store()
        .project_batch(Projection::Admins, 100)
        .await
        .unwrap()
}
