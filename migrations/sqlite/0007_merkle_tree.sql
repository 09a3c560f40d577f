-- The same as migrations/postgres/0008_merkle_tree.sql (times in ms since the epoch).
CREATE TABLE tree_chunks (
    chunk INTEGER PRIMARY KEY,
    leaves BLOB NOT NULL
);
CREATE TABLE tree_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE tree_built (leaves INTEGER NOT NULL);
INSERT INTO tree_built (leaves) VALUES (0);
CREATE TABLE tree_heads (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    signed_at_ms INTEGER NOT NULL,
    key TEXT NOT NULL,
    note TEXT NOT NULL,
    published_at_ms INTEGER
);
