//! Tokens of the organisation's OpenID issuer, and step-up before security info changes.
//!
//! The issuer is `support::oidc::TestIssuer`: a real HTTP server on loopback serving a discovery
//! document and a JWKS, signing with keys the test generates — it can rotate keys, go down, and
//! sign each provider's token shape, which is what these tests need of a provider.

use crate::support::oidc::{TestIssuer, unsigned};
use crate::support::{Options, TestApp, assert_problem, spawn_app_with};
use jsonwebtoken::Algorithm;
use recovery_info::http::auth::StepUp;
use recovery_info::http::auth::claims::{ClaimMapping, Preset};
use recovery_info::http::auth::oidc::OidcConfig;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

const AUDIENCE: &str = "api://recovery-info";

fn oidc(issuer: &TestIssuer, preset: Preset) -> OidcConfig {
    OidcConfig {
        issuers: vec![issuer.url.clone()],
        audience: AUDIENCE.into(),
        mapping: ClaimMapping::preset(preset, "recovery-info"),
        leeway: 5,
        refresh: Duration::from_secs(3600),
        refetch_interval: Duration::from_secs(60),
        ca_file: None,
    }
}

/// The app trusting the issuer of `config` (and the suite's own tokens).
async fn app_trusting(config: OidcConfig, step_up: StepUp) -> TestApp {
    spawn_app_with(Options {
        oidc: Some(config),
        step_up,
        ..Options::default()
    })
    .await
}

/// An auditor's claims of the app's tenant (generic preset).
fn auditor(app: &TestApp, issuer: &TestIssuer) -> Value {
    issuer.claims(
        AUDIENCE,
        json!({"tid": app.tenant.to_string(), "sub": "auditor-1", "roles": ["auditor"]}),
    )
}

async fn view_status(app: &TestApp, token: &str) -> reqwest::Response {
    let url = app.admin_path(Uuid::now_v7(), "/methods");
    app.send(Method::GET, &url, token, None).await
}

#[tokio::test]
async fn tokens_of_an_openid_issuer_are_verified_with_its_keys() {
    let issuer = TestIssuer::start().await;
    let ps = issuer.add_key(Algorithm::PS256);
    let es = issuer.add_key(Algorithm::ES256);
    let app = app_trusting(oidc(&issuer, Preset::Generic), StepUp::default()).await;
    for kid in [issuer.first_kid(), ps, es] {
        let token = issuer.sign(&kid, &auditor(&app, &issuer));
        let r = view_status(&app, &token).await;
        assert_eq!(r.status(), 200, "{kid}");
    }
    // The suite's own HS256 tokens still work beside the issuer's (a secret is configured).
    let r = view_status(&app, &app.all_roles()).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn forged_foreign_and_stale_tokens_get_401() {
    let issuer = TestIssuer::start().await;
    let other = TestIssuer::start().await;
    let app = app_trusting(oidc(&issuer, Preset::Generic), StepUp::default()).await;
    let kid = issuer.first_kid();
    let good = auditor(&app, &issuer);
    let with = |more: Value| {
        let mut claims = good.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        claims
    };
    let now = chrono::Utc::now().timestamp();
    let mut tampered = issuer.sign(&kid, &good);
    tampered.insert(
        tampered.len() - 3,
        if tampered.ends_with('A') { 'B' } else { 'A' },
    );
    let forged = [
        (
            "wrong iss",
            issuer.sign(&kid, &with(json!({"iss": "https://evil.example.com"}))),
        ),
        (
            "another issuer's key",
            other.sign(&other.first_kid(), &with(json!({"iss": other.url}))),
        ),
        (
            "wrong aud",
            issuer.sign(&kid, &with(json!({"aud": "api://other"}))),
        ),
        (
            "expired",
            issuer.sign(&kid, &with(json!({"exp": now - 600}))),
        ),
        (
            "not yet valid",
            issuer.sign(&kid, &with(json!({"nbf": now + 600}))),
        ),
        (
            "no exp",
            issuer.sign(&kid, &{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        ("alg none", unsigned(&good)),
        (
            "HS256 with the public key as secret",
            issuer.sign_confused(&kid, &good),
        ),
        ("unknown kid", {
            let token = issuer.sign(&kid, &good);
            let (_, rest) = token.split_once('.').unwrap();
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"});
            use base64::Engine;
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&header).unwrap());
            format!("{header}.{rest}")
        }),
        ("tampered signature", tampered),
        (
            "no tenant",
            issuer.sign(&kid, &{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("tid");
                c
            }),
        ),
    ];
    for (what, token) in forged {
        let r = view_status(&app, &token).await;
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = assert_problem(r, 401, "unauthorized").await;
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{what}: {challenge:?}"
        );
        eprintln!("{what}: {}", body["detail"]);
    }
    assert_eq!(
        view_status(&app, &issuer.sign(&kid, &good)).await.status(),
        200
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_without_a_restart_and_unknown_kids_are_rate_limited() {
    let issuer = TestIssuer::start().await;
    let app = app_trusting(oidc(&issuer, Preset::Generic), StepUp::default()).await;
    let at_start = issuer.jwks_fetches();
    // The issuer rotates: a new key in, the old one out.
    let new = issuer.add_key(Algorithm::ES256);
    issuer.remove_key(&issuer.first_kid());
    let token = issuer.sign(&new, &auditor(&app, &issuer));
    assert_eq!(view_status(&app, &token).await.status(), 200);
    assert_eq!(
        issuer.jwks_fetches(),
        at_start + 1,
        "fetched once for the new kid"
    );
    // Another kid unknown to both, at once: no fetch within the interval (60 s here).
    let unknown = issuer.add_key(Algorithm::RS256);
    let token = issuer.sign(&unknown, &auditor(&app, &issuer));
    assert_problem(view_status(&app, &token).await, 401, "unauthorized").await;
    assert_problem(view_status(&app, &token).await, 401, "unauthorized").await;
    assert_eq!(issuer.jwks_fetches(), at_start + 1, "rate-limited");
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    let mut issuer = TestIssuer::start().await;
    let config = OidcConfig {
        refresh: Duration::from_millis(200),
        ..oidc(&issuer, Preset::Generic)
    };
    let app = app_trusting(config, StepUp::default()).await;
    let kid = issuer.first_kid();
    issuer.go_down();
    // A token never seen before (its own jti), verified with the key held.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let token = issuer.sign(&kid, &auditor(&app, &issuer));
    assert_eq!(view_status(&app, &token).await.status(), 200);
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("recovery_oidc_fetches_total{outcome=\"failed\"}")),
        "the failed refreshes are counted"
    );
    // Back: new keys are fetched again on schedule.
    issuer.come_back().await;
    let new = issuer.add_key(Algorithm::RS256);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let token = issuer.sign(&new, &auditor(&app, &issuer));
        if view_status(&app, &token).await.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_issuer_that_cannot_be_read_at_start_fails_the_start_with_one_line() {
    let port = crate::support::free_port();
    let data_dir = std::env::temp_dir().join(format!("ri_test_{}", Uuid::new_v4().simple()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recovery-info"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .args([
            "--oidc-issuer",
            &format!("http://127.0.0.1:{port}/realms/acme"),
        ])
        .args(["--oidc-audience", AUDIENCE, "--data-dir"])
        .arg(&data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("RECOVERY_JWT_SECRET")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read the OpenID issuer http://127.0.0.1:{port}/realms/acme"
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn with_an_issuer_and_no_secret_only_the_issuers_tokens_are_accepted() {
    let issuer = TestIssuer::start().await;
    let app = spawn_app_with(Options {
        oidc: Some(oidc(&issuer, Preset::Generic)),
        own_tokens: false,
        ..Options::default()
    })
    .await;
    let body = assert_problem(
        view_status(&app, &app.all_roles()).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("OpenID issuers"),
        "{body}"
    );
    let token = issuer.sign(&issuer.first_kid(), &auditor(&app, &issuer));
    assert_eq!(view_status(&app, &token).await.status(), 200);
}

/// Adds the admin's mobile phone with `token`; the answer.
async fn add_phone(app: &TestApp, admin: Uuid, token: &str) -> reqwest::Response {
    app.send(
        Method::POST,
        &app.admin_path(admin, "/methods"),
        token,
        Some(json!({"kind": "mobile_phone", "value": "+45 20 12 34 56"})),
    )
    .await
}

#[tokio::test]
async fn each_presets_token_shape_maps_onto_tenant_subject_and_roles() {
    let issuer = TestIssuer::start().await;
    let kid = issuer.first_kid();

    // Entra ID: tid, oid (the admin), app roles.
    let entra = app_trusting(oidc(&issuer, Preset::Entra), StepUp::default()).await;
    let admin = Uuid::now_v7();
    let token = issuer.sign(&kid, &issuer.claims(AUDIENCE, json!({
        "tid": entra.tenant.to_string(), "oid": admin.to_string(),
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "roles": ["RecoveryInfo.SelfService"],
        "acr": "1", "amr": ["pwd", "mfa"],
    })));
    assert_eq!(add_phone(&entra, admin, &token).await.status(), 201);
    let history = entra.history(admin).await;
    assert_eq!(history[0]["actor"]["subject"], admin.to_string());
    assert_eq!(history[0]["actor"]["roles"], json!(["self_service"]));

    // Okta: a custom tenant claim, groups mapped by the role table.
    let mut config = oidc(&issuer, Preset::Okta);
    config.mapping.role_map.insert(
        "Recovery Helpdesk".into(),
        recovery_info::http::auth::Role::AuthenticationAdmin,
    );
    let okta = app_trusting(config, StepUp::default()).await;
    let token = issuer.sign(
        &kid,
        &issuer.claims(
            AUDIENCE,
            json!({
                "tenant_id": okta.tenant.to_string(), "sub": "00u1a2b3c4d5e6f7g8h9",
                "groups": ["Everyone", "Recovery Helpdesk"],
            }),
        ),
    );
    let other = Uuid::now_v7();
    assert_eq!(add_phone(&okta, other, &token).await.status(), 201);
    assert_eq!(
        okta.history(other).await[0]["actor"]["subject"],
        "00u1a2b3c4d5e6f7g8h9"
    );
    // Without the group, no role: forbidden.
    let token = issuer.sign(&kid, &issuer.claims(AUDIENCE, json!({
        "tenant_id": okta.tenant.to_string(), "sub": "00u1a2b3c4d5e6f7g8h9", "groups": ["Everyone"],
    })));
    assert_problem(add_phone(&okta, other, &token).await, 403, "forbidden").await;

    // Keycloak: realm roles and the client's roles.
    let keycloak = app_trusting(oidc(&issuer, Preset::Keycloak), StepUp::default()).await;
    let token = issuer.sign(&kid, &issuer.claims(AUDIENCE, json!({
        "tenant_id": keycloak.tenant.to_string(), "sub": "f1d2c3b4-0000-4000-8000-000000000001",
        "realm_access": {"roles": ["offline_access"]},
        "resource_access": {"recovery-info": {"roles": ["auditor"]}},
    })));
    assert_eq!(view_status(&keycloak, &token).await.status(), 200);
    assert_problem(
        add_phone(&keycloak, Uuid::now_v7(), &token).await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_stale_or_weak_sign_in_must_step_up_before_changing_security_info() {
    let issuer = TestIssuer::start().await;
    let kid = issuer.first_kid();
    let step_up = StepUp {
        acr_values: vec!["urn:mfa".into()],
        ..StepUp::default()
    };
    let app = app_trusting(oidc(&issuer, Preset::Generic), step_up).await;
    let admin = Uuid::now_v7();
    let now = chrono::Utc::now().timestamp();
    let own =
        |auth_time: i64, acr: Option<&str>| {
            let mut claims = issuer.claims(AUDIENCE, json!({
            "tid": app.tenant.to_string(), "sub": admin.to_string(), "roles": ["self_service"],
            "auth_time": auth_time,
        }));
            if let Some(acr) = acr {
                claims["acr"] = json!(acr);
            }
            issuer.sign(&kid, &claims)
        };

    for (token, why) in [
        (own(now - 3600, Some("urn:mfa")), "an hour-old sign-in"),
        (own(now, None), "no multi-factor"),
        (own(now, Some("urn:pwd")), "a password-only acr"),
    ] {
        let r = add_phone(&app, admin, &token).await;
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_problem(r, 401, "step_up_required").await;
        assert!(
            challenge.contains("error=\"insufficient_user_authentication\""),
            "{why}: {challenge}"
        );
        assert!(challenge.contains("max_age=600"), "{why}: {challenge}");
        assert!(
            challenge.contains("acr_values=\"urn:mfa\""),
            "{why}: {challenge}"
        );
        // Reads are not affected.
        let url = app.admin_path(admin, "/methods");
        assert_eq!(
            app.send(Method::GET, &url, &token, None).await.status(),
            200,
            "{why}"
        );
    }
    use recovery_info::store::EventLog;
    assert_eq!(app.store().head().await.unwrap(), 0, "nothing was written");

    let fresh = own(now - 60, Some("urn:mfa"));
    assert_eq!(add_phone(&app, admin, &fresh).await.status(), 201);
    let history = app.history(admin).await;
    let actor = &history[0]["actor"];
    assert_eq!(actor["acr"], "urn:mfa");
    let signed_in = chrono::DateTime::from_timestamp(now - 60, 0).unwrap();
    assert_eq!(
        actor["auth_time"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        signed_in
    );

    // An authentication admin's write for another admin follows the same rule.
    let helpdesk = |auth_time: i64| {
        issuer.sign(&kid, &issuer.claims(AUDIENCE, json!({
            "tid": app.tenant.to_string(), "sub": "helpdesk-7", "roles": ["authentication_admin"],
            "auth_time": auth_time, "acr": "urn:mfa",
        })))
    };
    let other = Uuid::now_v7();
    assert_problem(
        add_phone(&app, other, &helpdesk(now - 3600)).await,
        401,
        "step_up_required",
    )
    .await;
    assert_eq!(add_phone(&app, other, &helpdesk(now)).await.status(), 201);
}
