//! `deploy/`: the scaled-out topology of `deploy/README.md` — three NATS JetStream nodes, two API
//! replicas, two workers and haproxy, from the directory's own files — runs its walkthrough
//! (`deploy/local/cluster --check`) on this machine against a fresh database.

use crate::support::{fresh_database, succeeds};
use std::process::Command;

#[tokio::test]
async fn the_local_cluster_of_the_deploy_directory_passes_its_check() {
    let url = fresh_database().await;
    let out = succeeds(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/cluster"))
            .arg("--check")
            .env("RECOVERY_BIN", env!("CARGO_BIN_EXE_recovery-info"))
            .env("DATABASE_URL", url)
            .env_remove("NATS_URL"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("check passed"), "{stderr}");
}

/// `deploy/prometheus/alerts.yml` names only metrics the service exports: each
/// `recovery_…` name in it stands in the source as a metric's name.
#[test]
fn the_alert_rules_name_only_metrics_the_service_exports() {
    let rules = include_str!("../../deploy/prometheus/alerts.yml");
    let mut source = String::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut named = std::collections::BTreeSet::new();
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("recovery_") {
            named.insert(word);
        }
    }
    assert!(named.len() >= 8, "{named:?}");
    let missing: Vec<_> = named
        .iter()
        .filter(|name| !source.contains(&format!("\"{name}\"")))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}

/// The alert rules load, and fire as `deploy/prometheus/alerts.test.yml` says (promtool's own
/// rule tests: a publisher gone, a projection behind, 5xx answers) and stay quiet before.
#[test]
fn the_alert_rules_fire_as_their_tests_say() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        succeeds(Command::new("promtool").args(args).current_dir(dir));
    }
}

/// `deploy/prometheus/prometheus.yml`, the scrape configuration of the metrics listeners, loads
/// with the alert rules it names.
#[test]
fn the_scrape_configuration_loads_with_its_alert_rules() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    succeeds(
        Command::new("promtool")
            .args(["check", "config", "prometheus.yml"])
            .current_dir(dir),
    );
}
