//! `recovery-info watch`: prints a tenant's live events and eligibility changes from NATS, one
//! decoded line each. The reference subscriber for dashboard authors: it shows the subjects to
//! subscribe to and how to decode the protobuf payloads with this crate's types.

use super::PublishError;
use crate::events::{RecordedEvent, pb};
use futures::StreamExt;
use prost::Message;
use std::io::Write;
use uuid::Uuid;

/// What to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub nats_url: String,
    /// The CA that signed the NATS servers' certificates, beside the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    pub subject_prefix: String,
    pub tenant: Uuid,
    pub admin: Option<Uuid>,
    /// Stop after this many messages (for scripts and tests).
    pub count: Option<usize>,
}

/// The subjects a subscriber of one tenant (or one admin) listens to.
pub fn subjects(prefix: &str, tenant: Uuid, admin: Option<Uuid>) -> [String; 2] {
    let admin = admin.map_or_else(|| "*".to_owned(), |a| a.to_string());
    // An admin filter leaves out tenant-level events (their admin token is `tenant`).
    [
        format!("{prefix}.events.{tenant}.{admin}.*"),
        format!("{prefix}.eligibility.{tenant}.{admin}"),
    ]
}

/// One line for a message: an event, an eligibility change, or what could not be decoded.
pub fn describe(subject: &str, payload: &[u8]) -> String {
    if subject.contains(".eligibility.") {
        return match pb::EligibilityChanged::decode(payload) {
            Ok(c) => {
                let v = c.verdict.unwrap_or_default();
                let usable: Vec<String> = v
                    .usable_methods
                    .iter()
                    .map(|m| m.masked_value.clone())
                    .collect();
                format!(
                    "{} EligibilityChanged tenant={} admin={} eligible={} policy={} missing=[{}] usable=[{}]",
                    c.position,
                    c.tenant_id,
                    c.admin_id,
                    v.eligible,
                    v.policy,
                    v.missing.join(","),
                    usable.join(", ")
                )
            }
            Err(e) => format!("? {subject}: undecodable eligibility change: {e}"),
        };
    }
    match RecordedEvent::decode(payload) {
        // The payload is already masked unless the publisher runs with raw values.
        Ok(e) => format!(
            "{} {} tenant={} admin={} version={} actor={} data={}",
            e.position,
            e.type_name(),
            e.stream.tenant(),
            e.stream
                .admin()
                .map_or_else(|| "-".to_owned(), |a| a.to_string()),
            e.version,
            e.actor.subject,
            crate::events::event_data_json(&e.event, true)
        ),
        Err(e) => format!("? {subject}: undecodable event: {e}"),
    }
}

/// Subscribes and prints until interrupted (or `count` messages).
pub async fn run(options: WatchOptions) -> Result<(), PublishError> {
    let (connect, servers) = super::nats::connect_options(
        &options.nats_url,
        "recovery-info watch",
        options.ca_file.as_deref(),
    )?;
    let client = connect
        .connect(servers)
        .await
        .map_err(|e| PublishError::Connect(e.to_string()))?;
    let mut streams = Vec::new();
    for subject in subjects(&options.subject_prefix, options.tenant, options.admin) {
        streams.push(
            client
                .subscribe(subject)
                .await
                .map_err(|e| PublishError::Connect(e.to_string()))?,
        );
    }
    // Tell a script that the subscriptions are in place before anything is printed.
    client
        .flush()
        .await
        .map_err(|e| PublishError::Connect(e.to_string()))?;
    eprintln!("watching tenant {}", options.tenant);
    let mut messages = futures::stream::select_all(streams);
    let mut seen = 0usize;
    let stdout = std::io::stdout();
    while let Some(m) = messages.next().await {
        let line = describe(m.subject.as_str(), &m.payload);
        let mut out = stdout.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        seen += 1;
        if options.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}
