-- Owners, proxy credentials and the snapshot log (PostgreSQL flavour; the SQLite flavour in
-- ../sqlite/0002_owners_proxies_snapshot_log.sql declares the same tables and columns).
--
-- Every identity rule has an owner: an org, or the platform, written as a NULL org_id (only
-- super-admin tokens write platform rules). Uniqueness is per owner, spelled with
-- COALESCE(org_id, '') because NULLs never collide in a unique index.

ALTER TABLE blocklist ALTER COLUMN org_id DROP NOT NULL;
DROP INDEX blocklist_fingerprint;
DROP INDEX blocklist_serial;
CREATE UNIQUE INDEX blocklist_fingerprint ON blocklist ((COALESCE(org_id, '')), fingerprint) WHERE fingerprint IS NOT NULL;
CREATE UNIQUE INDEX blocklist_serial ON blocklist ((COALESCE(org_id, '')), issuer_dn, serial) WHERE serial IS NOT NULL;
CREATE INDEX blocklist_by_fingerprint ON blocklist (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX blocklist_by_serial ON blocklist (issuer_dn, serial) WHERE serial IS NOT NULL;
CREATE INDEX blocklist_by_org ON blocklist (org_id, id);

-- Issuers per owner: two orgs may trust the same `iss`, each with its keys and audiences.
ALTER TABLE token_issuers ALTER COLUMN org_id DROP NOT NULL;
ALTER TABLE token_issuers DROP CONSTRAINT token_issuers_issuer_key;
CREATE UNIQUE INDEX token_issuers_per_owner ON token_issuers ((COALESCE(org_id, '')), issuer);
CREATE INDEX token_issuers_by_org ON token_issuers (org_id, id);

-- A SAN mapping rule names the issuer DN (canonical RFC 4514) allowed to assert it, and one
-- (kind, domain, issuer) belongs to one owner. Rules made before issuers were named keep
-- issuer_dn NULL and are left out of snapshots until replaced.
ALTER TABLE mapping_rules ALTER COLUMN org_id DROP NOT NULL;
ALTER TABLE mapping_rules ADD COLUMN issuer_dn TEXT;
ALTER TABLE mapping_rules DROP CONSTRAINT mapping_rules_org_id_san_kind_domain_key;
CREATE UNIQUE INDEX mapping_rules_claim ON mapping_rules (san_kind, domain, issuer_dn);
CREATE INDEX mapping_rules_by_org ON mapping_rules (org_id, id);

-- One mapping per fingerprint, whoever owns it.
ALTER TABLE thumbprint_mappings ALTER COLUMN org_id DROP NOT NULL;

ALTER TABLE identity_constraints ALTER COLUMN org_id DROP NOT NULL;
ALTER TABLE identity_constraints DROP CONSTRAINT identity_constraints_org_id_kind_value_key;
CREATE UNIQUE INDEX identity_constraints_per_owner ON identity_constraints ((COALESCE(org_id, '')), kind, value);
CREATE INDEX identity_constraints_by_org ON identity_constraints (org_id, id);

-- Bindings by issuer: the issuer filter of the list route, and telling a DN typed in
-- reverse order from one a CA really encodes that way.
CREATE INDEX smart_card_links_by_issuer ON smart_card_links (issuer_dn);

-- Written at most once a minute per token, off the request path.
ALTER TABLE admin_tokens ADD COLUMN last_used_at TEXT;

-- Credentials of proxies: they read the snapshot and nothing else. Like admin tokens, only
-- the SHA-256 of each is kept.
CREATE TABLE proxy_credentials (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    label         TEXT,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT
);

-- Every version of snapshot_state, written in the transaction that takes it: a change the
-- filter sees (kind 'change', its changes as JSON) or a signature (kind 'signature': every
-- signed snapshot takes a version of its own, so a version is signed once, by one replica).
-- A service that did not make a change itself (another replica, the command line) reads it
-- here instead of reloading everything. Old rows are pruned; a service that falls further
-- behind reloads.
CREATE TABLE snapshot_log (
    version  BIGINT PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('change', 'signature')),
    changes  TEXT NOT NULL,
    at       TEXT NOT NULL
);
