-- certbind control plane schema, SQLite flavour. The PostgreSQL flavour in
-- ../postgres/0001_initial.sql declares the same tables and columns; timestamps are RFC 3339
-- UTC text in both so that one query layer reads both.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    email       TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX users_by_org ON users (org_id, id);

-- A card binding; the fingerprint is the certificate's SHA-256 in 64 lowercase hex digits.
CREATE TABLE smart_card_links (
    fingerprint   TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id),
    org_id        TEXT NOT NULL REFERENCES orgs(id),
    subject_dn    TEXT NOT NULL,
    issuer_dn     TEXT NOT NULL,
    serial        TEXT NOT NULL,
    not_before    TEXT NOT NULL,
    not_after     TEXT NOT NULL,
    label         TEXT,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT
);
CREATE INDEX smart_card_links_by_org ON smart_card_links (org_id, fingerprint);
CREATE INDEX smart_card_links_by_user ON smart_card_links (user_id);

-- Only the SHA-256 of each token is kept: tokens are 256-bit random values, so a plain hash
-- is not open to guessing, and a leaked table grants nothing.
CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    token_hash   TEXT NOT NULL UNIQUE,
    super_admin  INTEGER NOT NULL DEFAULT 0,
    label        TEXT,
    created_at   TEXT NOT NULL
);

-- A blocked certificate, named either by fingerprint or by issuer and serial.
CREATE TABLE blocklist (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    fingerprint  TEXT,
    issuer_dn    TEXT,
    serial       TEXT,
    reason       TEXT,
    created_at   TEXT NOT NULL,
    CHECK ((fingerprint IS NOT NULL AND issuer_dn IS NULL AND serial IS NULL)
        OR (fingerprint IS NULL AND issuer_dn IS NOT NULL AND serial IS NOT NULL))
);
CREATE UNIQUE INDEX blocklist_fingerprint ON blocklist (org_id, fingerprint) WHERE fingerprint IS NOT NULL;
CREATE UNIQUE INDEX blocklist_serial ON blocklist (org_id, issuer_dn, serial) WHERE serial IS NOT NULL;

-- Trusted bearer-token issuers; `iss` is global because the snapshot maps it to its keys.
CREATE TABLE token_issuers (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    issuer      TEXT NOT NULL UNIQUE,
    audiences   TEXT,
    jwks        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Which SAN kind and domain may name a principal.
CREATE TABLE mapping_rules (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    san_kind    TEXT NOT NULL CHECK (san_kind IN ('email', 'upn')),
    domain      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, san_kind, domain)
);

-- An explicit certificate → principal mapping, for service certificates.
CREATE TABLE thumbprint_mappings (
    fingerprint  TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    principal    TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX thumbprint_mappings_by_org ON thumbprint_mappings (org_id, fingerprint);

CREATE TABLE identity_constraints (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    kind        TEXT NOT NULL CHECK (kind IN ('allowed_issuer_dn', 'required_policy_oid', 'san_email_domain')),
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, kind, value)
);

CREATE TABLE audit_log (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id            TEXT NOT NULL,
    actor             TEXT NOT NULL,
    action            TEXT NOT NULL,
    target            TEXT NOT NULL,
    detail            TEXT NOT NULL,
    snapshot_version  INTEGER,
    at                TEXT NOT NULL
);
CREATE INDEX audit_log_by_org ON audit_log (org_id, id);

-- One row: the version of the identity data. Bumped in the transaction of every change the
-- filter sees, so versions are committed with their change and strictly increase.
CREATE TABLE snapshot_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);
INSERT INTO snapshot_state (id, version, updated_at) VALUES (1, 0, '1970-01-01T00:00:00Z');
