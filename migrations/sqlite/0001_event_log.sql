-- The embedded store: the same tables as migrations/postgres/0001_event_log.sql, in SQLite.
-- Ids are UUID text, times are milliseconds since the Unix epoch, JSON is text.
-- Writers are serialised by SQLite itself (BEGIN IMMEDIATE takes the database's write lock),
-- so positions taken from log_head inside a write transaction are dense and commit in order.

CREATE TABLE events (
    position        INTEGER PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    tenant_id       TEXT    NOT NULL,
    admin_id        TEXT,
    occurred_at_ms  INTEGER NOT NULL,
    payload         BLOB    NOT NULL,
    prev_hash       BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tenant_position ON events (tenant_id, position);

CREATE TABLE log_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    position  INTEGER NOT NULL
);
INSERT INTO log_head (singleton, position) VALUES (1, 0);

CREATE TABLE idempotency_keys (
    tenant_id     TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  BLOB    NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, subject, key)
);

CREATE TABLE projection_checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
);
INSERT INTO projection_checkpoints (name, position) VALUES ('contact_view', 0), ('eligibility', 0);

CREATE TABLE contact_views (
    tenant_id TEXT NOT NULL,
    admin_id  TEXT NOT NULL,
    state     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, admin_id)
);

CREATE TABLE eligibility_tenants (
    tenant_id TEXT PRIMARY KEY,
    state     TEXT NOT NULL
);
CREATE TABLE eligibility_admins (
    tenant_id        TEXT    NOT NULL,
    admin_id         TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    verdict          TEXT    NOT NULL,
    changed_position INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, admin_id)
);
