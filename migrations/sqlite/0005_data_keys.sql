-- The same tables as migrations/postgres/0006_data_keys.sql (docs/privacy.md).
CREATE TABLE data_keys (
    tenant_id     TEXT    NOT NULL,
    admin_id      TEXT    NOT NULL,
    kek_id        TEXT,
    wrapped       BLOB,
    created_at_ms INTEGER NOT NULL,
    erased_at_ms  INTEGER,
    PRIMARY KEY (tenant_id, admin_id),
    CHECK ((wrapped IS NULL) = (erased_at_ms IS NOT NULL) AND (wrapped IS NULL) = (kek_id IS NULL))
);
CREATE INDEX data_keys_kek ON data_keys (kek_id) WHERE kek_id IS NOT NULL;

CREATE TABLE key_encryption_keys (
    id            TEXT    PRIMARY KEY,
    check_value   BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

ALTER TABLE idempotency_keys ADD COLUMN admin_id TEXT;
CREATE INDEX idempotency_keys_admin ON idempotency_keys (tenant_id, admin_id)
    WHERE admin_id IS NOT NULL;

-- See migrations/postgres/0006_data_keys.sql.
CREATE TABLE chain_reanchors (
    id            INTEGER PRIMARY KEY,
    reason        TEXT    NOT NULL,
    position      INTEGER NOT NULL,
    streams       INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    anchor_before TEXT    NOT NULL,
    anchor_after  TEXT    NOT NULL,
    at_ms         INTEGER NOT NULL
);
