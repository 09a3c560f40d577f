-- The same as migrations/postgres/0009_notifications.sql (times in ms since the epoch).
CREATE TABLE notifier_checkpoint (position INTEGER NOT NULL);
INSERT INTO notifier_checkpoint (position) SELECT position FROM log_head;
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    admin_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    method_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    sent_at_ms INTEGER
);
CREATE INDEX notifications_due ON notifications (next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX notifications_by_status ON notifications (status, created_at_ms);
