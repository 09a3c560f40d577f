-- Notices to the old contact when security info changes (docs/notifications.md).

-- The notifier's place in the log. It starts at the head when this migration runs: the
-- events before it are not told (they may be years old).
CREATE TABLE IF NOT EXISTS notifier_checkpoint (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    position bigint NOT NULL
);
INSERT INTO notifier_checkpoint (id, position)
    SELECT true, position FROM log_head ON CONFLICT DO NOTHING;

-- The outbox. No contact value is kept here: the recipient is named by the event and the
-- method (`recipient`: the method's previous value in the event, or the value it held then),
-- and read from the log when the notice is sent, so an erasure leaves nothing behind. `id` is
-- derived from the event and the recipient: the same notice is one row, and its Message-ID.
CREATE TABLE IF NOT EXISTS notifications (
    id uuid PRIMARY KEY,
    position bigint NOT NULL,
    tenant_id uuid NOT NULL,
    admin_id uuid NOT NULL,
    event_id uuid NOT NULL,
    kind text NOT NULL,
    method_id uuid NOT NULL,
    recipient text NOT NULL,
    channel text NOT NULL,
    -- pending, sent, failed (dead letter), skipped (not deliverable: no channel, erased)
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    -- A sender holds a notice until then; past it, another may take it (a replica died).
    claimed_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL,
    sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_by_status ON notifications (status, created_at);
