//! The web console end to end, on both stores: `tests/console/flow.mjs` drives Debian's
//! Chromium with playwright-core through the help page's flow against the real service, checks
//! it with axe-core and in Danish, and leaves screenshots in `target/console-screenshots/`.

use crate::support::{Backend, Options, assert_problem, fresh_store, spawn_backend, spawn_store};
use serde_json::{Value, json};
use std::process::Command;

crate::on_both_backends!(
    the_help_pages_flow_works_in_the_browser,
    the_console_is_served_with_a_strict_policy_and_no_sign_in_without_it,
);

async fn the_help_pages_flow_works_in_the_browser(backend: Backend) {
    let app = spawn_store(
        fresh_store(backend).await,
        Options {
            dev_sign_in: true,
            ..Options::default()
        },
    )
    .await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console");
    let shots = format!(
        "{}/target/console-screenshots/{backend:?}",
        env!("CARGO_MANIFEST_DIR")
    )
    .to_lowercase();
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(dir)
            .arg("flow.mjs")
            .arg(&base)
            .arg(&shots)
            .output()
            .expect("node (scripts/test installs playwright-core and chromium)")
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(said.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("{out:?}"));
    assert_eq!(
        result["ok"],
        true,
        "{result}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the browser did is in the log, by the admin it signed in as.
    let tenant = result["tenant"].as_str().unwrap();
    let admin = result["admin"].as_str().unwrap();
    let auditor = app.token_for(
        tenant.parse().unwrap(),
        "auditor",
        &[recovery_info::http::auth::Role::Auditor],
    );
    let history: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/tenants/{tenant}/admins/{admin}/history",
            app.base
        ))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<_> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["actor"]["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("MethodAdded", admin),
        ("MethodAdded", admin),
        ("MethodChanged", admin),
        ("MethodRemoved", admin),
        ("MethodAdded", "helpdesk-1"),
        ("PiiRevealed", "auditor-1"),
    ];
    assert_eq!(
        types,
        expected.map(|(t, s)| (t.to_owned(), s.to_owned())),
        "{history}"
    );
    // The reveal's reason is recorded with it.
    let reveal = &history["events"][5]["data"];
    assert!(
        reveal["query"]
            .as_str()
            .unwrap()
            .contains("reason=ticket+42"),
        "{reveal}"
    );
}

async fn the_console_is_served_with_a_strict_policy_and_no_sign_in_without_it(backend: Backend) {
    let app = spawn_backend(backend).await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.text().await.unwrap().contains("/console/app.js"));
    let r = client
        .get(format!("{}/console/app.js", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = client
        .get(format!("{}/console/secrets.txt", app.base))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    // Off unless asked for (the embedded default on loopback, with no issuer): no token minted.
    let config: Value = client
        .get(format!("{}/console/config.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config, json!({"dev_sign_in": false, "oidc": null}));
    let r = client
        .post(format!("{}/console/dev-sign-in", app.base))
        .json(&json!({"tenant_id": app.tenant, "subject": "x", "roles": ["auditor"]}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
}

/// Runs a script of `tests/console` with `args`; its last line's JSON.
async fn node(script: &'static str, args: Vec<String>) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(dir)
            .arg(script)
            .args(args)
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(said.lines().last().unwrap_or("{}")).unwrap_or_else(|_| panic!("{out:?}"))
}

#[tokio::test]
async fn the_console_signs_in_at_the_identity_provider_with_pkce_and_steps_up() {
    use recovery_info::http::auth::StepUp;
    use recovery_info::http::auth::claims::{ClaimMapping, Preset};
    use recovery_info::http::auth::oidc::OidcConfig;
    let issuer = crate::support::oidc::TestIssuer::start().await;
    let app = spawn_store(
        fresh_store(Backend::Embedded).await,
        Options {
            oidc: Some(OidcConfig {
                issuers: vec![issuer.url.clone()],
                audience: "api://recovery-info".into(),
                mapping: ClaimMapping::preset(Preset::Generic, "recovery-info"),
                leeway: 1,
                refresh: std::time::Duration::from_secs(3600),
                refetch_interval: std::time::Duration::from_secs(60),
                ca_file: None,
            }),
            console_client_id: Some("recovery-console".into()),
            // A write needs a sign-in of the last 3 seconds.
            step_up: StepUp {
                max_age: Some(std::time::Duration::from_secs(3)),
                ..StepUp::default()
            },
            dev_sign_in: true,
            ..Options::default()
        },
    )
    .await;
    let admin = uuid::Uuid::now_v7();
    issuer.sign_in_as(
        "api://recovery-info",
        json!({"tid": app.tenant.to_string(), "sub": admin.to_string(), "roles": ["self_service"]}),
    );
    // With an issuer, no development sign-in, and the issuer may be fetched by the page.
    let client = reqwest::Client::new();
    let config: Value = client
        .get(format!("{}/console/config.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config,
        json!({"dev_sign_in": false, "oidc": {"issuer": issuer.url, "client_id": "recovery-console", "scope": "openid"}})
    );
    let r = client.get(format!("{}/", app.base)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("connect-src 'self' {}", issuer.url)),
        "{csp}"
    );

    let shots = format!(
        "{}/target/console-screenshots/oidc",
        env!("CARGO_MANIFEST_DIR")
    );
    let result = node("oidc.mjs", vec![app.base.clone(), "4".into(), shots]).await;
    assert_eq!(result["ok"], true, "{result}");
    // Two sign-ins: the first plain, the second a fresh one asked for by the step-up; both
    // with an S256 challenge and the console's client id.
    let asked = issuer.authorizations();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|q| q.contains("code_challenge_method=S256")
                && q.contains("client_id=recovery-console"))
    );
    assert!(!asked[0].contains("prompt=login"));
    assert!(
        asked[1].contains("prompt=login") && asked[1].contains("max_age=0"),
        "{}",
        asked[1]
    );
}

/// `serve` as a process on the embedded store of `config`, on `port`; returns when it listens.
fn serve_on(config: &recovery_info::store::StoreConfig, port: u16) -> std::process::Child {
    use std::io::BufRead;
    let listen = format!("127.0.0.1:{port}");
    let mut child = crate::support::bin(
        config,
        &[
            "serve",
            "--listen",
            &listen,
            "--metrics-listen",
            "off",
            "--no-checkpoints",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.starts_with("recovery-info listening on "))),
        "serve did not start"
    );
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[tokio::test]
async fn the_dashboard_recovers_after_the_service_restarts() {
    use std::io::{BufRead, Write};
    let config = fresh_store(Backend::Embedded).await;
    let _dir = crate::support::DataDirGuard::of(&config);
    let port = crate::support::mail::free_port();
    let mut service = serve_on(&config, port);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console");
    let mut browser = Command::new("node")
        .current_dir(dir)
        .arg("restart.mjs")
        .arg(format!("http://127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    let mut stdin = browser.stdin.take().unwrap();
    let result = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(browser.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        if first != "ready" {
            return first;
        }
        // The service goes (SIGKILL), stays away a moment, and comes back on its port.
        service.kill().unwrap();
        service.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(3));
        let mut service = serve_on(&config, port);
        writeln!(stdin, "restarted").unwrap();
        let last = lines.last().unwrap().unwrap();
        let _ = browser.wait();
        service.kill().unwrap();
        let _ = service.wait();
        last
    })
    .await
    .unwrap();
    let result: Value = serde_json::from_str(&result).unwrap_or_else(|_| panic!("{result}"));
    assert_eq!(result["ok"], true, "{result}");
}
