-- A PiiRevealed row's admin_id is the admin whose values were read, so that the read is in
-- that admin's history (docs/audit.md); this index finds them. Rows of reveals recorded
-- before this migration are filled in by the service at the next start (it decodes their
-- payloads): `reveal_index_upgrade` holds the head up to which it must look, and goes when done.
CREATE INDEX IF NOT EXISTS events_reveals ON events (admin_id, position)
    WHERE event_type = 'PiiRevealed';
CREATE TABLE IF NOT EXISTS reveal_index_upgrade (up_to bigint NOT NULL);
INSERT INTO reveal_index_upgrade (up_to)
    SELECT position FROM log_head
    WHERE EXISTS (SELECT 1 FROM events WHERE event_type = 'PiiRevealed' AND admin_id IS NULL);
