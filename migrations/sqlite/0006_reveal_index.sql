-- The same as migrations/postgres/0007_reveal_index.sql.
CREATE INDEX events_reveals ON events (admin_id, position) WHERE event_type = 'PiiRevealed';
CREATE TABLE reveal_index_upgrade (up_to INTEGER NOT NULL);
INSERT INTO reveal_index_upgrade (up_to)
    SELECT position FROM log_head
    WHERE EXISTS (SELECT 1 FROM events WHERE event_type = 'PiiRevealed' AND admin_id IS NULL);
