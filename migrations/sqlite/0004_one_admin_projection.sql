-- One admin projection instead of two (see migrations/postgres/0005_one_admin_projection.sql):
-- the eligibility rows, which hold each admin's whole state, become the admin projection's
-- rows; the contact views go; eligibility's checkpoint stays, as `admins`.
ALTER TABLE eligibility_admins RENAME TO admin_views;
ALTER TABLE eligibility_tenants RENAME TO tenant_views;
DROP TABLE contact_views;
DROP TABLE IF EXISTS contact_views_replay;
DROP TABLE IF EXISTS eligibility_tenants_replay;
DROP TABLE IF EXISTS eligibility_admins_replay;
DELETE FROM projection_checkpoints WHERE name = 'contact_view';
UPDATE projection_checkpoints SET name = 'admins' WHERE name = 'eligibility';
