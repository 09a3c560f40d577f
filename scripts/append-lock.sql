-- One group of the appender (store/postgres/group_commit.rs) reduced to what holds the global
-- append lock: the head moved (the row lock on log_head, held to COMMIT), :k events inserted
-- at the positions it gave, one WAL flush at COMMIT. Rows are the size of the soak's events
-- (≈ 680 B: a sealed payload of 400 B, two hashes); stream ids are new, so no unique check fails.
BEGIN;
WITH h AS (UPDATE log_head SET position = position + :k RETURNING position)
INSERT INTO events (position, stream_id, stream_version, event_id, event_type, tenant_id,
                    admin_id, occurred_at, payload, prev_hash, hash)
SELECT h.position - :k + g, 'admin:' || gen_random_uuid(), 1, gen_random_uuid(),
       'MethodAdded', '00000000-0000-7000-8000-000000000001', gen_random_uuid(), now(),
       convert_to(repeat('x', 400), 'UTF8'), sha256(g::text::bytea), sha256(h.position::text::bytea)
FROM h, generate_series(1, :k) g;
COMMIT;
