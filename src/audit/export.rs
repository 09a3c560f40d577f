//! `audit export`: a tenant's (or one admin's) history as JSON Lines or CSV, streamed page by
//! page from the store, so that memory stays flat whatever the size of the log.

use crate::domain::{AdminId, DomainEvent, StreamId, TenantId};
use crate::events::{Actor, PendingEvent};
use crate::progress::Progress;
use crate::store::EventLog;
use crate::store::{HistoryQuery, Store};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::Write;

/// Events read per round trip.
pub const PAGE: u32 = 1000;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "position",
    "version",
    "event_id",
    "type",
    "occurred_at",
    "tenant_id",
    "admin_id",
    "actor_subject",
    "actor_roles",
    "correlation_id",
    "data",
    // The sign-in behind the change, when the token said (last: columns are only added).
    "actor_auth_time",
    "actor_acr",
];

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One history entry (the HTTP API's JSON) per line.
    Jsonl,
    /// One row per event, RFC 4180 quoting, `data` as JSON text.
    Csv,
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportFilter {
    pub tenant: TenantId,
    /// Only this admin's stream (otherwise every admin of the tenant and the tenant's own
    /// settings events).
    pub admin: Option<AdminId>,
    /// Only events that occurred at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only events that occurred before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Show raw phone numbers and emails instead of masked ones, read by this auditor (the
    /// actor of the `PiiRevealed` the export leaves first).
    pub reveal: Option<Actor>,
}

impl ExportFilter {
    /// The store query for the page after `after`.
    fn page(&self, after: u64) -> HistoryQuery {
        HistoryQuery {
            tenant: self.tenant,
            admin: self.admin,
            after,
            limit: PAGE,
            since: self.since,
            until: self.until,
            types: Vec::new(),
            upto: None,
        }
    }

    /// The audit-access event a revealing export leaves, with the auditor as its actor.
    fn reveal_trace(&self, actor: &Actor) -> PendingEvent {
        let query = format!(
            "since={}&until={}",
            self.since.map(|t| t.to_rfc3339()).unwrap_or_default(),
            self.until.map(|t| t.to_rfc3339()).unwrap_or_default()
        );
        PendingEvent {
            event_id: uuid::Uuid::now_v7(),
            occurred_at: Utc::now(),
            actor: actor.clone(),
            correlation_id: uuid::Uuid::now_v7(),
            idempotency_key: None,
            event: DomainEvent::PiiRevealed {
                scope: "export".into(),
                admin: self.admin,
                query,
            },
        }
    }
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exported {
    /// Events written.
    pub events: u64,
    /// The log position the export stops at (the head when it started).
    pub head: u64,
}

/// Writes the filtered history to `out`, oldest first, up to the head as of the start.
pub async fn export(
    store: &Store,
    filter: &ExportFilter,
    format: Format,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Exported> {
    if let Some(actor) = &filter.reveal {
        // Reading raw values leaves a trace first; if it cannot be recorded, nothing is read.
        store
            .append_any(
                StreamId::Audit(filter.tenant),
                vec![filter.reveal_trace(actor)],
            )
            .await?;
    }
    let head = store.head().await?;
    let mut progress = Progress::new("export", "events", None);
    if format == Format::Csv {
        write_csv_row(out, CSV_COLUMNS.iter().map(|c| c.to_string()))?;
    }
    let (mut after, mut written) = (0, 0);
    'pages: loop {
        let page = store.history(&filter.page(after)).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            if event.position > head {
                break 'pages;
            }
            let entry = event.to_json(filter.reveal.is_some());
            match format {
                Format::Jsonl => {
                    serde_json::to_writer(&mut *out, &entry)?;
                    out.write_all(b"\n")?;
                }
                Format::Csv => write_csv_row(out, csv_fields(&entry))?,
            }
            written += 1;
        }
        progress.add(page.len() as u64);
    }
    out.flush().context("cannot write the export")?;
    progress.finish();
    Ok(Exported {
        events: written,
        head,
    })
}

/// The CSV fields of a history entry, in [`CSV_COLUMNS`] order.
fn csv_fields(entry: &Value) -> impl Iterator<Item = String> {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let roles = entry["actor"]["roles"]
        .as_array()
        .map(|r| r.iter().map(text).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    [
        text(&entry["position"]),
        text(&entry["version"]),
        text(&entry["event_id"]),
        text(&entry["type"]),
        text(&entry["occurred_at"]),
        text(&entry["tenant_id"]),
        text(&entry["admin_id"]),
        text(&entry["actor"]["subject"]),
        roles,
        text(&entry["correlation_id"]),
        entry["data"].to_string(),
        text(&entry["actor"]["auth_time"]),
        text(&entry["actor"]["acr"]),
    ]
    .into_iter()
}

/// One RFC 4180 record: a field with a comma, quote, CR or LF is quoted, quotes doubled.
fn write_csv_row(out: &mut dyn Write, fields: impl Iterator<Item = String>) -> std::io::Result<()> {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        if field.contains([',', '"', '\r', '\n']) {
            write!(out, "\"{}\"", field.replace('"', "\"\""))?;
        } else {
            out.write_all(field.as_bytes())?;
        }
    }
    out.write_all(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        write_csv_row(
            &mut out,
            ["plain", "a,b", "say \"hi\"", "line\nbreak", ""]
                .into_iter()
                .map(String::from),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\",\r\n"
        );
    }
}
