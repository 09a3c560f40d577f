//! `deploy/`: the scaled-out topology of `deploy/README.md` — three NATS JetStream nodes, two API
//! replicas, two workers and haproxy, from the directory's own files — runs its walkthrough
//! (`deploy/local/cluster --check`) on this machine against a fresh database.

use crate::support::fresh_database;
use std::process::Command;

#[tokio::test]
async fn the_local_cluster_of_the_deploy_directory_passes_its_check() {
    let url = fresh_database().await;
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/cluster"))
        .arg("--check")
        .env("RECOVERY_BIN", env!("CARGO_BIN_EXE_recovery-info"))
        .env("DATABASE_URL", url)
        .env_remove("NATS_URL")
        .output()
        .expect("run deploy/local/cluster");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("check passed"), "{stderr}");
}
