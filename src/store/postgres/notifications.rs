//! The outbox of notices (migration 9; `store::NotificationStorage`).

use super::{PgStore, to_i64, to_u64};
use crate::domain::{AdminId, MethodId, NoticeKind, Recipient, TenantId};
use crate::store::StoreError;
use crate::store::notifications::{Channel, Delivery, Notification, Status};
use chrono::{DateTime, Utc};
use uuid::Uuid;

const COLUMNS: &str = "id, position, tenant_id, admin_id, event_id, kind, method_id, recipient, \
                       channel, status, attempts, next_attempt_at, last_error, created_at, sent_at";

fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Config(format!(
        "a stored notification has an unknown {what} {value:?}"
    ))
}

fn row_of(r: &tokio_postgres::Row) -> Result<Notification, StoreError> {
    let text = |i: usize| -> &str { r.get(i) };
    Ok(Notification {
        id: r.get(0),
        position: to_u64(r.get(1)),
        tenant: TenantId::from_uuid(r.get(2)),
        admin: AdminId::from_uuid(r.get(3)),
        event_id: r.get(4),
        kind: NoticeKind::parse(text(5)).map_err(|_| bad("kind", text(5)))?,
        method_id: MethodId::from_uuid(r.get(6)),
        recipient: Recipient::parse(text(7)).ok_or_else(|| bad("recipient", text(7)))?,
        channel: Channel::parse(text(8)).ok_or_else(|| bad("channel", text(8)))?,
        status: Status::parse(text(9)).ok_or_else(|| bad("status", text(9)))?,
        attempts: u32::try_from(r.get::<_, i32>(10)).unwrap_or(0),
        next_attempt_at: r.get(11),
        last_error: r.get(12),
        created_at: r.get(13),
        sent_at: r.get(14),
    })
}

impl PgStore {
    /// See `NotificationStorage::notifier_checkpoint`.
    pub async fn notifier_checkpoint(&self) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_one("SELECT position FROM notifier_checkpoint", &[])
            .await?;
        Ok(to_u64(row.get(0)))
    }

    /// See `NotificationStorage::enqueue_notifications`.
    pub async fn enqueue_notifications(
        &self,
        from: u64,
        to: u64,
        rows: Vec<Notification>,
    ) -> Result<bool, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let moved = tx
            .execute(
                "UPDATE notifier_checkpoint SET position = $2 WHERE position = $1",
                &[&to_i64(from), &to_i64(to)],
            )
            .await?;
        if moved != 1 {
            return Ok(false);
        }
        let insert = tx
            .prepare(&format!(
                "INSERT INTO notifications ({COLUMNS}) VALUES
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT (id) DO NOTHING"
            ))
            .await?;
        for n in &rows {
            tx.execute(
                &insert,
                &[
                    &n.id,
                    &to_i64(n.position),
                    &n.tenant.as_uuid(),
                    &n.admin.as_uuid(),
                    &n.event_id,
                    &n.kind.name(),
                    &n.method_id.as_uuid(),
                    &n.recipient.name(),
                    &n.channel.name(),
                    &n.status.name(),
                    &(n.attempts as i32),
                    &n.next_attempt_at,
                    &n.last_error,
                    &n.created_at,
                    &n.sent_at,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// See `NotificationStorage::claim_notifications`.
    pub async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<Notification>, StoreError> {
        let client = self.pool().get().await?;
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        // SKIP LOCKED: replicas claiming at once take different notices.
        let rows = client
            .query(
                &format!(
                    "UPDATE notifications SET claimed_until = $3
                     WHERE id IN (
                         SELECT id FROM notifications
                         WHERE status = 'pending' AND next_attempt_at <= $1
                           AND (claimed_until IS NULL OR claimed_until < $1)
                         ORDER BY next_attempt_at LIMIT $2
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[&now, &i64::from(limit), &until],
            )
            .await?;
        rows.iter().map(row_of).collect()
    }

    /// See `NotificationStorage::settle_notification`.
    pub async fn settle_notification(
        &self,
        id: Uuid,
        attempts: u32,
        delivery: Delivery,
    ) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        let attempts = attempts as i32;
        match delivery {
            Delivery::Sent => {
                client
                    .execute(
                        "UPDATE notifications SET status = 'sent', attempts = $2, sent_at = now(),
                             claimed_until = NULL, last_error = NULL
                         WHERE id = $1",
                        &[&id, &attempts],
                    )
                    .await?
            }
            Delivery::Retry { at, error } => {
                client
                    .execute(
                        "UPDATE notifications SET attempts = $2, next_attempt_at = $3,
                             last_error = $4, claimed_until = NULL
                         WHERE id = $1",
                        &[&id, &attempts, &at, &error],
                    )
                    .await?
            }
            Delivery::Failed { error } => {
                client
                    .execute(
                        "UPDATE notifications SET status = 'failed', attempts = $2,
                             last_error = $3, claimed_until = NULL
                         WHERE id = $1",
                        &[&id, &attempts, &error],
                    )
                    .await?
            }
            Delivery::Skipped { reason } => {
                client
                    .execute(
                        "UPDATE notifications SET status = 'skipped', last_error = $2,
                             claimed_until = NULL
                         WHERE id = $1",
                        &[&id, &reason],
                    )
                    .await?
            }
        };
        Ok(())
    }

    /// See `NotificationStorage::notifications`.
    pub async fn notifications(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM notifications
                     WHERE $1::text IS NULL OR status = $1
                     ORDER BY created_at DESC, id LIMIT $2"
                ),
                &[&status.map(Status::name), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(row_of).collect()
    }

    /// See `NotificationStorage::retry_notifications`.
    pub async fn retry_notifications(&self, ids: Vec<Uuid>) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "UPDATE notifications SET status = 'pending', attempts = 0,
                     next_attempt_at = now(), claimed_until = NULL
                 WHERE status = 'failed' AND (cardinality($1::uuid[]) = 0 OR id = ANY($1))",
                &[&ids],
            )
            .await?;
        Ok(n)
    }

    /// See `NotificationStorage::notification_counts`.
    pub async fn notification_counts(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT status, count(*) FROM notifications GROUP BY status",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((Status::parse(r.get(0))?, to_u64(r.get(1)))))
            .collect())
    }
}
