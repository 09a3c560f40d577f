//! The contract, attacked by a generator: schemathesis (PyPI; `scripts/test` installs it in
//! `target/schemathesis-venv`) reads `/openapi.json` from the running service, on both stores,
//! and sends what the document allows and what it does not — its examples, the boundaries of
//! every parameter (coverage), random requests (fuzzing) and sequences of them that follow the
//! `Location` of an added method (stateful) — with a valid token of the tenant it tests. Any 5xx,
//! any answer whose body or content type is not what the document says, and any status the
//! document does not list fails the test.

use crate::support::{Backend, Options, fresh_store, spawn_store};
use recovery_info::audit::checkpoints::CheckpointConfig;
use recovery_info::http::auth::Role;
use recovery_info::http::metrics::MetricsToken;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

crate::on_both_backends!(schemathesis_finds_no_answer_outside_the_contract);

/// What is checked of every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// The schemathesis of `scripts/test`, or `SCHEMATHESIS`.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/schemathesis-venv/bin/schemathesis")
        });
    assert!(
        path.exists(),
        "{} is missing: scripts/test installs schemathesis from PyPI",
        path.display()
    );
    path
}

async fn schemathesis_finds_no_answer_outside_the_contract(backend: Backend) {
    let app = spawn_store(
        fresh_store(backend).await,
        Options {
            // As served by default: sealed positions, the console's development sign-in, and
            // `/metrics` on the API's listener (with its token) so that it is in the document.
            plain_positions: false,
            dev_sign_in: true,
            metrics_token: Some(
                MetricsToken::new("schemathesis-metrics-token-0123456789").unwrap(),
            ),
            checkpoints: CheckpointConfig {
                every_events: 5,
                every: Duration::from_secs(1),
                ..Default::default()
            },
            ..Options::default()
        },
    )
    .await;
    // Something to read: an admin with methods, whose id the generator uses for `admin_id`.
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+4520123456").await;
    app.add_ok(admin, "email", "someone@example.org").await;
    let roles = [
        Role::AuthenticationAdmin,
        Role::Auditor,
        Role::ResetService,
        Role::Dashboard,
    ];
    let token = app.token(&admin.to_string(), &roles);
    let dir = tempdir();
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, config_toml(app.tenant, admin)).unwrap();
    // Not `std::process`: the service answers on this test's runtime while schemathesis runs.
    let out = tokio::process::Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", app.base)])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // An event stream does not end: it is tested in history.rs and publish.rs.
        .args(["--exclude-path", "/v1/tenants/{tenant_id}/events/stream"])
        // One worker: with more, CPython 3.11's `ast.parse` under hypothesis's threads fails
        // now and then ("AST constructor recursion depth mismatch"), an error of the tool.
        .args([
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--request-timeout",
            "15",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .env("NO_COLOR", "1")
        .current_dir(&dir)
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Its summary, for `--nocapture`.
    eprintln!("{}", tail(&stdout, 6_000));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "schemathesis found answers outside the contract:\n{}\n{}",
        tail(&stdout, 20_000),
        String::from_utf8_lossy(&out.stderr)
    );
    // Not vacuous: every operation selected was tested, and many cases passed.
    let summary = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let selected = summary("Selected:");
    let tested = summary("Tested:");
    assert!(
        !tested.is_empty() && selected.starts_with(&format!("{tested}/")),
        "selected {selected}, tested {tested}:\n{stdout}"
    );
    let passed = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .and_then(|l| {
            l.split(", ")
                .find_map(|part| part.trim().strip_suffix(" passed"))
        })
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(passed >= 500, "only {passed} cases passed:\n{stdout}");
}

/// The tenant under test; admins drawn from the seeded one and fresh ones (so that adds
/// succeed and their `Location`s lead to changes and removals); values that parse (phone
/// numbers of each line type, addresses) beside the generator's own; the console's files.
fn config_toml(tenant: Uuid, admin: Uuid) -> String {
    let admins: Vec<String> = std::iter::once(admin)
        .chain((0..40).map(|_| Uuid::now_v7()))
        .map(|a| format!("\"{a}\""))
        .collect();
    format!(
        r#"
[dictionaries.admins]
values = [{admins}]

[dictionaries.values]
values = ["+45 20 12 34 56", "+4531234567", "+45 33 12 34 56", "+1 202 555 0143", "someone@example.org", "ops@contoso.net"]

[dictionaries.reasons]
values = ["ticket 4711", "GDPR request"]

[dictionaries.domains]
values = ["contoso.com", "example.net"]

[dictionaries.files]
values = ["app.js", "i18n.js", "style.css"]

[parameters]
tenant_id = "{tenant}"
"path.file" = {{ dictionary = "files", probability = 0.9 }}
"body.value" = {{ dictionary = "values", probability = 0.8 }}
"body.reason" = {{ dictionary = "reasons", probability = 0.8 }}
"body.domains[*]" = {{ dictionary = "domains", probability = 0.8 }}

# Not on a method's routes (there, the admin is the one whose add's `Location` led there), nor
# on offboarding and erasure (an offboarded admin takes no more changes).
[[operations]]
include-path-regex = "/admins/\\{{admin_id\\}}/(methods|reset-eligibility|history)$"
parameters = {{ "path.admin_id" = {{ dictionary = "admins", probability = 0.9 }} }}

# Sequences of valid requests (the other phases send invalid ones too): adds that succeed, and
# the changes and removals their `Location` leads to.
[phases.stateful.generation]
mode = "positive"

[phases.stateful.inference]
algorithms = ["location-headers", "dependency-analysis"]
"#,
        admins = admins.join(", ")
    )
}

/// The last `n` bytes of `text` or so (its report ends with the failures' summary).
fn tail(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ri-schemathesis-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
