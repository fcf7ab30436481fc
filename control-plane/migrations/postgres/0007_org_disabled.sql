-- Orgs a super-admin disabled: NULL while enabled, else when it was disabled. A disabled org's
-- admin tokens are refused and nothing of it can be changed; its certificates are refused by
-- the filter (see db/orgs.rs). Deleting an org requires disabling it first.
ALTER TABLE orgs ADD COLUMN disabled_at TEXT;
