-- Keys the service generates for itself, by name (see migrations/postgres/0004_server_keys.sql).
CREATE TABLE IF NOT EXISTS server_keys (
    name          TEXT    PRIMARY KEY,
    key           BLOB    NOT NULL CHECK (length(key) = 32),
    created_at_ms INTEGER NOT NULL
);
