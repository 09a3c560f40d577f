-- The row readiness writes to after a call failed because the database could not be written
-- (a full disk, an I/O error, a file gone read-only): /readyz turns ready again only once a
-- write commits, so a freed disk brings the service back without a restart.

CREATE TABLE write_probe (
    singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
    probed_at_ms INTEGER NOT NULL
);
INSERT INTO write_probe (singleton, probed_at_ms) VALUES (1, 0);
