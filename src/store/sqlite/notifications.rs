//! The outbox of notices (migration 8; `store::NotificationStorage`).

use super::{SqliteStore, i64_of, u64_of};
use crate::domain::{AdminId, MethodId, NoticeKind, Recipient, TenantId};
use crate::store::StoreError;
use crate::store::notifications::{Channel, Delivery, Notification, Status};
use chrono::{DateTime, Utc};
use rusqlite::{Row, TransactionBehavior, params};
use uuid::Uuid;

const COLUMNS: &str = "id, position, tenant_id, admin_id, event_id, kind, method_id, recipient, \
                       channel, status, attempts, next_attempt_at_ms, last_error, created_at_ms, \
                       sent_at_ms";

/// A row's columns as SQLite gives them.
type Raw = (
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    i64,
    Option<i64>,
);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    ))
}

fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Config(format!("a stored notification has a bad {what} {value:?}"))
}

fn uuid(what: &str, text: &str) -> Result<Uuid, StoreError> {
    text.parse().map_err(|_| bad(what, text))
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn notification(r: Raw) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: uuid("id", &r.0)?,
        position: u64_of(r.1),
        tenant: TenantId::from_uuid(uuid("tenant", &r.2)?),
        admin: AdminId::from_uuid(uuid("admin", &r.3)?),
        event_id: uuid("event id", &r.4)?,
        kind: NoticeKind::parse(&r.5).map_err(|_| bad("kind", &r.5))?,
        method_id: MethodId::from_uuid(uuid("method id", &r.6)?),
        recipient: Recipient::parse(&r.7).ok_or_else(|| bad("recipient", &r.7))?,
        channel: Channel::parse(&r.8).ok_or_else(|| bad("channel", &r.8))?,
        status: Status::parse(&r.9).ok_or_else(|| bad("status", &r.9))?,
        attempts: u32::try_from(r.10).unwrap_or(0),
        next_attempt_at: time(r.11),
        last_error: r.12,
        created_at: time(r.13),
        sent_at: r.14.map(time),
    })
}

impl SqliteStore {
    /// See `NotificationStorage::notifier_checkpoint`.
    pub async fn notifier_checkpoint(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let p: i64 =
                c.query_row("SELECT position FROM notifier_checkpoint", [], |r| r.get(0))?;
            Ok(u64_of(p))
        })
        .await
    }

    /// See `NotificationStorage::enqueue_notifications`.
    pub async fn enqueue_notifications(
        &self,
        from: u64,
        to: u64,
        rows: Vec<Notification>,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let moved = tx.execute(
                "UPDATE notifier_checkpoint SET position = ?2 WHERE position = ?1",
                params![i64_of(from), i64_of(to)],
            )?;
            if moved != 1 {
                return Ok(false);
            }
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO notifications ({COLUMNS}) VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ))?;
                for n in &rows {
                    insert.execute(params![
                        n.id.to_string(),
                        i64_of(n.position),
                        n.tenant.as_uuid().to_string(),
                        n.admin.as_uuid().to_string(),
                        n.event_id.to_string(),
                        n.kind.name(),
                        n.method_id.as_uuid().to_string(),
                        n.recipient.name(),
                        n.channel.name(),
                        n.status.name(),
                        n.attempts,
                        n.next_attempt_at.timestamp_millis(),
                        n.last_error,
                        n.created_at.timestamp_millis(),
                        n.sent_at.map(|t| t.timestamp_millis()),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// See `NotificationStorage::claim_notifications`.
    pub async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<Notification>, StoreError> {
        let now_ms = now.timestamp_millis();
        let until = now_ms + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let rows = self
            .run(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let rows = {
                    let mut stmt = tx.prepare_cached(&format!(
                        "UPDATE notifications SET claimed_until_ms = ?3
                         WHERE id IN (
                             SELECT id FROM notifications
                             WHERE status = 'pending' AND next_attempt_at_ms <= ?1
                               AND (claimed_until_ms IS NULL OR claimed_until_ms < ?1)
                             ORDER BY next_attempt_at_ms LIMIT ?2)
                         RETURNING {COLUMNS}"
                    ))?;
                    stmt.query_map(params![now_ms, limit, until], raw)?
                        .collect::<Result<Vec<_>, _>>()?
                };
                tx.commit()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter().map(notification).collect()
    }

    /// See `NotificationStorage::settle_notification`.
    pub async fn settle_notification(
        &self,
        id: Uuid,
        attempts: u32,
        delivery: Delivery,
    ) -> Result<(), StoreError> {
        let now = Utc::now().timestamp_millis();
        self.run(move |c| {
            let id = id.to_string();
            match delivery {
                Delivery::Sent => c.execute(
                    "UPDATE notifications SET status = 'sent', attempts = ?2, sent_at_ms = ?3,
                         claimed_until_ms = NULL, last_error = NULL
                     WHERE id = ?1",
                    params![id, attempts, now],
                )?,
                Delivery::Retry { at, error } => c.execute(
                    "UPDATE notifications SET attempts = ?2, next_attempt_at_ms = ?3,
                         last_error = ?4, claimed_until_ms = NULL
                     WHERE id = ?1",
                    params![id, attempts, at.timestamp_millis(), error],
                )?,
                Delivery::Failed { error } => c.execute(
                    "UPDATE notifications SET status = 'failed', attempts = ?2, last_error = ?3,
                         claimed_until_ms = NULL
                     WHERE id = ?1",
                    params![id, attempts, error],
                )?,
                Delivery::Skipped { reason } => c.execute(
                    "UPDATE notifications SET status = 'skipped', last_error = ?2,
                         claimed_until_ms = NULL
                     WHERE id = ?1",
                    params![id, reason],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// See `NotificationStorage::notifications`.
    pub async fn notifications(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = self
            .run(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM notifications
                     WHERE ?1 IS NULL OR status = ?1
                     ORDER BY created_at_ms DESC, id LIMIT ?2"
                ))?;
                let rows = stmt
                    .query_map(params![status.map(Status::name), limit], raw)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter().map(notification).collect()
    }

    /// See `NotificationStorage::retry_notifications`.
    pub async fn retry_notifications(&self, ids: Vec<Uuid>) -> Result<u64, StoreError> {
        let now = Utc::now().timestamp_millis();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let sql = "UPDATE notifications SET status = 'pending', attempts = 0,
                           next_attempt_at_ms = ?1, claimed_until_ms = NULL
                       WHERE status = 'failed'";
            let n = if ids.is_empty() {
                tx.execute(sql, params![now])?
            } else {
                let mut n = 0;
                for id in &ids {
                    n += tx.execute(&format!("{sql} AND id = ?2"), params![now, id.to_string()])?;
                }
                n
            };
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    /// See `NotificationStorage::notification_counts`.
    pub async fn notification_counts(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let rows = self
            .run(|c| {
                let mut stmt =
                    c.prepare_cached("SELECT status, count(*) FROM notifications GROUP BY status")?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((Status::parse(&s)?, u64_of(n))))
            .collect())
    }
}
