-- The Merkle tree over the global log and its signed heads (docs/audit.md "Checkpoints").
-- Leaf i is SHA-256(0x00 ‖ hash of the event at position i + 1) (RFC 9162). The tree is
-- rebuilt from the events at any time; it is stored so that proofs over a large log are a
-- few reads, and so that `audit verify --checkpoint` can find where a rewritten log first
-- differs from the one a checkpoint signed.

-- The leaves of each run of 256 positions: chunk c holds positions 256c + 1 .. 256c + 256,
-- 32 bytes a leaf. A checkpoint that ends inside a chunk stores the part it covers; a stored
-- chunk is only ever extended.
CREATE TABLE IF NOT EXISTS tree_chunks (
    chunk bigint PRIMARY KEY,
    leaves bytea NOT NULL
);

-- The roots of the aligned perfect subtrees of 2^level leaves, level >= 8 (a chunk's root is
-- level 8).
CREATE TABLE IF NOT EXISTS tree_nodes (
    level smallint NOT NULL,
    idx bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

-- How many leaves the stored whole chunks cover (a multiple of 256).
CREATE TABLE IF NOT EXISTS tree_built (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    leaves bigint NOT NULL
);
INSERT INTO tree_built (id, leaves) VALUES (true, 0) ON CONFLICT DO NOTHING;

-- Signed tree heads: the signed note (C2SP tlog-checkpoint) as published, the verifier key
-- that signed it, and when it went out on NATS (NULL: not yet, or no NATS).
CREATE TABLE IF NOT EXISTS tree_heads (
    size bigint PRIMARY KEY,
    root bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    key text NOT NULL,
    note text NOT NULL,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS tree_heads_unpublished ON tree_heads (size) WHERE published_at IS NULL;
