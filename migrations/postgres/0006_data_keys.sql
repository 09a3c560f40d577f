-- (Idempotent, as a re-run after a lost schema_migrations row must be.)
-- Erasure by crypto-shredding (docs/privacy.md): every admin's contact values are sealed in
-- their events under the admin's data key, kept here wrapped by a key-encryption key (KEK).
-- Erasing an admin sets `wrapped` to NULL in the transaction of their AdminErased event: the
-- events stay, their hash chains intact, and their values can no longer be read.
CREATE TABLE IF NOT EXISTS data_keys (
    tenant_id  uuid        NOT NULL,
    admin_id   uuid        NOT NULL,
    kek_id     text,                      -- NULL once erased
    wrapped    bytea,                     -- NULL once erased
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    PRIMARY KEY (tenant_id, admin_id),
    CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL) AND (wrapped IS NULL) = (kek_id IS NULL))
);
-- Rotation finds the keys still wrapped by an older KEK.
CREATE INDEX IF NOT EXISTS data_keys_kek ON data_keys (kek_id) WHERE kek_id IS NOT NULL;

-- Each KEK id the store has met and a check value of it (not the key): a start with another
-- key under a known id is refused instead of reading garbage.
CREATE TABLE IF NOT EXISTS key_encryption_keys (
    id          text        PRIMARY KEY,
    check_value bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The admin a command's first answer is about, so an erasure can delete those answers (they
-- may show a value, and their request hash is a hash of it).
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS admin_id uuid;
CREATE INDEX IF NOT EXISTS idempotency_keys_admin ON idempotency_keys (tenant_id, admin_id)
    WHERE admin_id IS NOT NULL;

-- Rewrites of hash chains, for `audit verify` to report: sealing the values of events written
-- before values were sealed changes their stored bytes, so their streams' chains are
-- recomputed from the first rewritten event on, once, under the append lock (docs/audit.md).
-- A row with reason 'seal_legacy_values' also says that the sealing ran (0 streams: nothing
-- to seal).
CREATE TABLE IF NOT EXISTS chain_reanchors (
    id            bigserial   PRIMARY KEY,
    reason        text        NOT NULL,
    position      bigint      NOT NULL,   -- the log's head when it ran
    streams       bigint      NOT NULL,
    events        bigint      NOT NULL,
    anchor_before text        NOT NULL,   -- the anchor at `position` before and after
    anchor_after  text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
