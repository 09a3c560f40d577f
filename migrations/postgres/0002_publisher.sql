-- The publisher (outbox relay to NATS JetStream) and the wake-up hint for log followers.

-- Each publisher's position in the log, keyed by the JetStream stream it feeds. Advanced only
-- after every message up to that position was acknowledged by JetStream.
CREATE TABLE publisher_checkpoints (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);

-- A hint to followers of the log (the publisher, the SSE tail) that events were committed.
-- NOTIFY is delivered at commit, once per transaction for the same channel and payload, so an
-- append of any number of events costs one notification. It is only a hint: followers also
-- poll, and always read `events WHERE position > checkpoint ORDER BY position`.
CREATE FUNCTION notify_log_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('recovery_log', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_log_appended();
