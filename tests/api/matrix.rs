//! The whole authorization matrix in one table, on both stores: every endpoint × every role ×
//! own / other admin × own / other tenant × no / expired / wrong-key / `alg: none` token, each
//! cell with its expected status and code. Then: nothing of the tenant reached another
//! tenant's token, and every event in the log was written by a role that may write.

use crate::support::oidc::unsigned;
use crate::support::{Backend, TestApp, spawn_backend};
use recovery_info::http::auth::{JwtKeys, Role};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

crate::on_both_backends!(every_cell_of_the_matrix_answers_as_its_table_says);

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    SelfOwn,
    SelfOther,
    Authentication,
    ResetService,
    Auditor,
    Dashboard,
    /// Every role, of another tenant.
    OtherTenant,
    NoToken,
    Expired,
    WrongKey,
    AlgNone,
}

const CALLERS: [Caller; 11] = [
    Caller::SelfOwn,
    Caller::SelfOther,
    Caller::Authentication,
    Caller::ResetService,
    Caller::Auditor,
    Caller::Dashboard,
    Caller::OtherTenant,
    Caller::NoToken,
    Caller::Expired,
    Caller::WrongKey,
    Caller::AlgNone,
];

/// One endpoint: its request for an admin, who may call it, and the answer they get.
struct Row {
    name: &'static str,
    method: Method,
    path: fn(&TestApp, Uuid) -> String,
    body: Option<Value>,
    /// The roles allowed (SelfOwn: a self-service caller on their own admin).
    allowed: &'static [Caller],
    /// The allowed callers' answer: status and, for a refusal of the domain, its code.
    ok: (u16, Option<&'static str>),
}

fn admin(app: &TestApp, a: Uuid, rest: &str) -> String {
    app.admin_path(a, rest)
}

fn table() -> Vec<Row> {
    use Caller::*;
    let unknown_method = "/methods/0190a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    let _ = unknown_method;
    vec![
        Row {
            name: "view",
            method: Method::GET,
            path: |app, a| admin(app, a, "/methods"),
            body: None,
            allowed: &[SelfOwn, Authentication, Auditor],
            ok: (200, None),
        },
        Row {
            name: "add",
            method: Method::POST,
            path: |app, a| admin(app, a, "/methods"),
            body: Some(json!({"kind": "email", "value": "x@example.org"})),
            allowed: &[SelfOwn, Authentication],
            ok: (201, None),
        },
        Row {
            name: "change",
            method: Method::PATCH,
            path: |app, a| admin(app, a, "/methods/0190a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"),
            body: Some(json!({"value": "+4520123456"})),
            allowed: &[SelfOwn, Authentication],
            ok: (404, Some("method_not_found")),
        },
        Row {
            name: "remove",
            method: Method::DELETE,
            path: |app, a| admin(app, a, "/methods/0190a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"),
            body: None,
            allowed: &[SelfOwn, Authentication],
            ok: (404, Some("method_not_found")),
        },
        Row {
            name: "offboard",
            method: Method::POST,
            path: |app, a| admin(app, a, "/offboard"),
            body: None,
            allowed: &[Authentication],
            ok: (200, None),
        },
        Row {
            name: "erase",
            method: Method::POST,
            path: |app, a| admin(app, a, "/erase"),
            body: Some(json!({"reason": "ticket 1"})),
            allowed: &[Authentication],
            ok: (409, Some("admin_not_offboarded")),
        },
        Row {
            name: "eligibility",
            method: Method::GET,
            path: |app, a| admin(app, a, "/reset-eligibility"),
            body: None,
            allowed: &[SelfOwn, Authentication, ResetService, Auditor, Dashboard],
            ok: (200, None),
        },
        Row {
            name: "history",
            method: Method::GET,
            path: |app, a| admin(app, a, "/history"),
            body: None,
            allowed: &[SelfOwn, Authentication, Auditor],
            ok: (200, None),
        },
        Row {
            name: "feed",
            method: Method::GET,
            path: |app, _| app.url("/events"),
            body: None,
            allowed: &[Auditor, Dashboard],
            ok: (200, None),
        },
        Row {
            name: "stream",
            method: Method::GET,
            path: |app, _| app.url("/events/stream"),
            body: None,
            allowed: &[Auditor, Dashboard],
            ok: (200, None),
        },
        Row {
            name: "get_settings",
            method: Method::GET,
            path: |app, _| app.url("/settings"),
            body: None,
            allowed: &[Authentication, Auditor],
            ok: (200, None),
        },
        Row {
            name: "put_settings",
            method: Method::PUT,
            path: |app, _| app.url("/settings"),
            body: Some(json!({})),
            allowed: &[Authentication],
            ok: (200, None),
        },
        Row {
            name: "inclusion_proof",
            method: Method::GET,
            path: |app, _| app.url("/audit/proof/inclusion?position=1&size=1"),
            body: None,
            allowed: &[Auditor],
            ok: (200, None),
        },
        Row {
            name: "consistency_proof",
            method: Method::GET,
            path: |app, _| app.url("/audit/proof/consistency?from=1&to=1"),
            body: None,
            allowed: &[Auditor],
            ok: (200, None),
        },
        Row {
            name: "verify",
            method: Method::GET,
            path: |app, _| app.url("/audit/verify"),
            body: None,
            allowed: &[Auditor],
            ok: (200, None),
        },
    ]
}

/// The token of `caller` for `admin` (none: no header).
fn token(app: &TestApp, caller: Caller, admin: Uuid) -> Option<String> {
    let now = chrono::Utc::now().timestamp();
    Some(match caller {
        Caller::SelfOwn => app.token(&admin.to_string(), &[Role::SelfService]),
        Caller::SelfOther => app.token(&Uuid::now_v7().to_string(), &[Role::SelfService]),
        Caller::Authentication => app.token("helpdesk", &[Role::AuthenticationAdmin]),
        Caller::ResetService => app.token("reset", &[Role::ResetService]),
        Caller::Auditor => app.token("auditor", &[Role::Auditor]),
        Caller::Dashboard => app.token("dash", &[Role::Dashboard]),
        Caller::OtherTenant => app.token_for(Uuid::now_v7(), &admin.to_string(), &Role::ALL),
        Caller::NoToken => return None,
        Caller::Expired => app
            .keys
            .mint(app.tenant, "helpdesk", &Role::ALL, -600)
            .unwrap(),
        Caller::WrongKey => JwtKeys::new(b"another-secret-another-secret-another-secret")
            .mint(app.tenant, "helpdesk", &Role::ALL, 600)
            .unwrap(),
        Caller::AlgNone => unsigned(&json!({
            "tid": app.tenant, "sub": "helpdesk", "roles": Role::ALL,
            "iat": now, "exp": now + 600, "auth_time": now,
        })),
    })
}

/// The expected status and code of a cell.
fn expected(row: &Row, caller: Caller) -> (u16, Option<&'static str>) {
    match caller {
        Caller::NoToken | Caller::Expired | Caller::WrongKey | Caller::AlgNone => {
            (401, Some("unauthorized"))
        }
        Caller::OtherTenant => (403, Some("tenant_mismatch")),
        c if row.allowed.contains(&c) => row.ok,
        _ => (403, Some("forbidden")),
    }
}

async fn every_cell_of_the_matrix_answers_as_its_table_says(backend: Backend) {
    let app = spawn_backend(backend).await;
    // The proofs need a log of one event at least, of this tenant.
    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 56")
        .await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for row in table() {
        for caller in CALLERS {
            // A fresh admin per cell: one cell's write never changes another's answer.
            let a = Uuid::now_v7();
            let url = (row.path)(&app, a);
            let mut req = app.client.request(row.method.clone(), &url);
            if let Some(t) = token(&app, caller, a) {
                req = req.bearer_auth(t);
            }
            if let Some(body) = &row.body {
                req = req.json(body);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let code = if row.name == "stream" && status == 200 {
                None
            } else {
                r.json::<Value>()
                    .await
                    .ok()
                    .and_then(|b| b["code"].as_str().map(str::to_owned))
            };
            let (want_status, want_code) = expected(&row, caller);
            cells += 1;
            if status != want_status || (want_code.is_some() && code.as_deref() != want_code) {
                failures.push(format!(
                    "{} × {caller:?}: {status} {code:?}, expected {want_status} {want_code:?}",
                    row.name
                ));
            }
        }
    }
    assert_eq!(cells, 15 * 11);
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Every event of the tenant was written by a role that may write.
    let feed = app
        .get_json(&format!("{}?limit=1000", app.url("/events")))
        .await;
    let events = feed["events"].as_array().unwrap();
    // The set-up's phone, the two allowed adds, the offboarding: nothing else was written.
    assert_eq!(events.len(), 4, "{feed}");
    for e in events {
        let roles: Vec<&str> = e["actor"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            roles
                .iter()
                .any(|r| ["self_service", "authentication_admin"].contains(r)),
            "an event by a role that may not write: {e}"
        );
    }
}
