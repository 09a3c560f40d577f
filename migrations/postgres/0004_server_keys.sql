-- Keys the service generates for itself and every replica must share, by name: `positions`
-- seals the log positions shown to tenants (src/http/positions.rs). A key is written once,
-- by whichever replica first needs it, and never changed: a token sealed with it must open on
-- every replica, after every restart. Anyone who can read this table can read the log too,
-- whose positions the key protects from tenants, not from the database's own users.
CREATE TABLE IF NOT EXISTS server_keys (
    name       text        PRIMARY KEY,
    key        bytea       NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
