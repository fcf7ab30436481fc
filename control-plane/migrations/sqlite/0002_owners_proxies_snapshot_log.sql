-- Owners, proxy credentials and the snapshot log (SQLite flavour; the PostgreSQL flavour in
-- ../postgres/0002_owners_proxies_snapshot_log.sql declares the same tables and columns).
--
-- Every identity rule has an owner: an org, or the platform, written as a NULL org_id (only
-- super-admin tokens write platform rules). Uniqueness is per owner, spelled with
-- COALESCE(org_id, '') because NULLs never collide in a unique index. SQLite cannot drop a
-- NOT NULL or a table constraint in place, so the rule tables are rebuilt.

CREATE TABLE blocklist_v2 (
    id           TEXT PRIMARY KEY,
    org_id       TEXT REFERENCES orgs(id),
    fingerprint  TEXT,
    issuer_dn    TEXT,
    serial       TEXT,
    reason       TEXT,
    created_at   TEXT NOT NULL,
    CHECK ((fingerprint IS NOT NULL AND issuer_dn IS NULL AND serial IS NULL)
        OR (fingerprint IS NULL AND issuer_dn IS NOT NULL AND serial IS NOT NULL))
);
INSERT INTO blocklist_v2 (id, org_id, fingerprint, issuer_dn, serial, reason, created_at)
    SELECT id, org_id, fingerprint, issuer_dn, serial, reason, created_at FROM blocklist;
DROP TABLE blocklist;
ALTER TABLE blocklist_v2 RENAME TO blocklist;
CREATE UNIQUE INDEX blocklist_fingerprint ON blocklist (COALESCE(org_id, ''), fingerprint) WHERE fingerprint IS NOT NULL;
CREATE UNIQUE INDEX blocklist_serial ON blocklist (COALESCE(org_id, ''), issuer_dn, serial) WHERE serial IS NOT NULL;
CREATE INDEX blocklist_by_fingerprint ON blocklist (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX blocklist_by_serial ON blocklist (issuer_dn, serial) WHERE serial IS NOT NULL;
CREATE INDEX blocklist_by_org ON blocklist (org_id, id);

-- Issuers per owner: two orgs may trust the same `iss`, each with its keys and audiences.
CREATE TABLE token_issuers_v2 (
    id          TEXT PRIMARY KEY,
    org_id      TEXT REFERENCES orgs(id),
    issuer      TEXT NOT NULL,
    audiences   TEXT,
    jwks        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
INSERT INTO token_issuers_v2 (id, org_id, issuer, audiences, jwks, created_at, updated_at)
    SELECT id, org_id, issuer, audiences, jwks, created_at, updated_at FROM token_issuers;
DROP TABLE token_issuers;
ALTER TABLE token_issuers_v2 RENAME TO token_issuers;
CREATE UNIQUE INDEX token_issuers_per_owner ON token_issuers (COALESCE(org_id, ''), issuer);
CREATE INDEX token_issuers_by_org ON token_issuers (org_id, id);

-- A SAN mapping rule names the issuer DN (canonical RFC 4514) allowed to assert it, and one
-- (kind, domain, issuer) belongs to one owner. Rules made before issuers were named keep
-- issuer_dn NULL and are left out of snapshots until replaced.
CREATE TABLE mapping_rules_v2 (
    id          TEXT PRIMARY KEY,
    org_id      TEXT REFERENCES orgs(id),
    san_kind    TEXT NOT NULL CHECK (san_kind IN ('email', 'upn')),
    domain      TEXT NOT NULL,
    issuer_dn   TEXT,
    created_at  TEXT NOT NULL
);
INSERT INTO mapping_rules_v2 (id, org_id, san_kind, domain, issuer_dn, created_at)
    SELECT id, org_id, san_kind, domain, NULL, created_at FROM mapping_rules;
DROP TABLE mapping_rules;
ALTER TABLE mapping_rules_v2 RENAME TO mapping_rules;
CREATE UNIQUE INDEX mapping_rules_claim ON mapping_rules (san_kind, domain, issuer_dn);
CREATE INDEX mapping_rules_by_org ON mapping_rules (org_id, id);

-- One mapping per fingerprint, whoever owns it.
CREATE TABLE thumbprint_mappings_v2 (
    fingerprint  TEXT PRIMARY KEY,
    org_id       TEXT REFERENCES orgs(id),
    principal    TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
INSERT INTO thumbprint_mappings_v2 (fingerprint, org_id, principal, created_at)
    SELECT fingerprint, org_id, principal, created_at FROM thumbprint_mappings;
DROP TABLE thumbprint_mappings;
ALTER TABLE thumbprint_mappings_v2 RENAME TO thumbprint_mappings;
CREATE INDEX thumbprint_mappings_by_org ON thumbprint_mappings (org_id, fingerprint);

CREATE TABLE identity_constraints_v2 (
    id          TEXT PRIMARY KEY,
    org_id      TEXT REFERENCES orgs(id),
    kind        TEXT NOT NULL CHECK (kind IN ('allowed_issuer_dn', 'required_policy_oid', 'san_email_domain')),
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
INSERT INTO identity_constraints_v2 (id, org_id, kind, value, created_at)
    SELECT id, org_id, kind, value, created_at FROM identity_constraints;
DROP TABLE identity_constraints;
ALTER TABLE identity_constraints_v2 RENAME TO identity_constraints;
CREATE UNIQUE INDEX identity_constraints_per_owner ON identity_constraints (COALESCE(org_id, ''), kind, value);
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
    version  INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('change', 'signature')),
    changes  TEXT NOT NULL,
    at       TEXT NOT NULL
);
