-- The projections' documents and the kept answers as `json` rather than `jsonb`.
--
-- The service writes each document whole and reads it whole (serde on both ends); nothing
-- queries inside them, compares them or indexes them. `jsonb` made PostgreSQL build its binary
-- form on every write and print it back to text on every read; `json` keeps the text as the
-- service sent it, after checking that it is JSON. Writing the eligibility rows of a 1M-event
-- rebuild took 1.2-1.6 s as `jsonb` and 0.9 s as `json` (docs/benchmarks.md, round 6).
-- Operators' queries keep working: `->`, `->>` and `json_*` functions take `json` too.
--
-- Rewrites the tables (an ACCESS EXCLUSIVE lock for as long as that takes).
ALTER TABLE contact_views ALTER COLUMN state TYPE json;
ALTER TABLE eligibility_tenants ALTER COLUMN state TYPE json;
ALTER TABLE eligibility_admins ALTER COLUMN state TYPE json, ALTER COLUMN verdict TYPE json;
ALTER TABLE idempotency_keys ALTER COLUMN response TYPE json;
