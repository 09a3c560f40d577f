-- The event log, idempotency records and the projections' tables.

-- The global log. `position` is dense and gap-free: an appender takes it from `log_head` with
-- `UPDATE ... RETURNING`, which holds the row lock on `log_head` until the appender commits or
-- rolls back. A second appender waits for that lock, so positions are assigned *and become
-- visible* strictly in order: a reader that sees position N sees every position below N, and a
-- rolled-back append leaves no hole (the counter update rolls back with it).
CREATE TABLE events (
    position        bigint      PRIMARY KEY,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    tenant_id       uuid        NOT NULL,
    admin_id        uuid,                     -- NULL for tenant streams
    occurred_at     timestamptz NOT NULL,
    payload         bytea       NOT NULL,     -- protobuf recovery.v1.Envelope
    prev_hash       bytea       NOT NULL,     -- hash of the stream's previous event (zeros first)
    hash            bytea       NOT NULL,     -- sha256(prev_hash || payload)
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tenant_position ON events (tenant_id, position);

CREATE TABLE log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO log_head (singleton, position) VALUES (true, 0);

-- A command's first answer, kept per tenant + subject + key, so that a retry gets it again.
CREATE TABLE idempotency_keys (
    tenant_id    uuid        NOT NULL,
    subject      text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       smallint    NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subject, key)
);

-- Each projection's position in the log; changed in the same transaction as its rows.
CREATE TABLE projection_checkpoints (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);
INSERT INTO projection_checkpoints (name, position) VALUES ('contact_view', 0), ('eligibility', 0);

-- Contact view: each admin's folded state (methods, versions, offboarded).
CREATE TABLE contact_views (
    tenant_id uuid  NOT NULL,
    admin_id  uuid  NOT NULL,
    state     jsonb NOT NULL,
    PRIMARY KEY (tenant_id, admin_id)
);

-- Eligibility: the tenant settings and each admin's methods it folds, and the verdict.
CREATE TABLE eligibility_tenants (
    tenant_id uuid  PRIMARY KEY,
    state     jsonb NOT NULL
);
CREATE TABLE eligibility_admins (
    tenant_id        uuid   NOT NULL,
    admin_id         uuid   NOT NULL,
    state            jsonb  NOT NULL,
    verdict          jsonb  NOT NULL,
    changed_position bigint NOT NULL,  -- the position at which the verdict last changed
    PRIMARY KEY (tenant_id, admin_id)
);
