-- Issuing CAs, registered by a super-admin and known by their key (the SubjectKeyIdentifier,
-- or the SHA-256 of the SubjectPublicKeyInfo), never by their DN: two CAs may share one.
CREATE TABLE certificate_authorities (
    key_id               TEXT PRIMARY KEY,            -- lowercase hex of the key identifier
    key_source           TEXT NOT NULL,               -- subject_key_identifier | spki_sha256
    subject_dn           TEXT NOT NULL,
    fingerprint          TEXT NOT NULL,               -- SHA-256 of the certificate DER
    certificate_pem      TEXT NOT NULL,
    not_before           BIGINT NOT NULL,
    not_after            BIGINT NOT NULL,
    require_fresh_crl    INTEGER NOT NULL DEFAULT 1,
    grace_period_seconds BIGINT NOT NULL DEFAULT 86400,
    fail_open            INTEGER NOT NULL DEFAULT 0,
    crl_urls             TEXT NOT NULL DEFAULT '[]',  -- JSON array of distribution point URLs
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);

-- The CA's CRL as held: the last verified complete CRL with every delta folded in. The
-- revoked serials are one blob per CA (each serial: its length octet, then its DER INTEGER
-- content; sorted shortest first, then by bytes), not one row per serial: a 1 M-entry CRL is
-- written as one row of about 17 MB instead of a million rows, a snapshot build reads it
-- without re-parsing the 40 MB CRL, and the next CRL's difference is one merge of two
-- sorted lists.
CREATE TABLE certificate_authority_crls (
    key_id             TEXT PRIMARY KEY REFERENCES certificate_authorities(key_id) ON DELETE CASCADE,
    crl_number         TEXT NOT NULL,                 -- decimal; the complete or delta CRL folded last
    base_number        TEXT NOT NULL,                 -- the complete CRL's number
    scope              TEXT NOT NULL,                 -- all | user_certificates
    this_update        BIGINT NOT NULL,
    next_update        BIGINT,                        -- of the complete CRL, or a later delta's
    entries            BIGINT NOT NULL,
    revoked_serials    BYTEA NOT NULL,
    crl_sha256         TEXT NOT NULL,                 -- of the last CRL folded in
    source             TEXT NOT NULL,                 -- upload | fetch
    ingested_at        TEXT NOT NULL
);

-- What the poller knows of each distribution point: conditional GET validators, the last
-- attempt's result, and when to try next.
CREATE TABLE crl_fetches (
    key_id           TEXT NOT NULL REFERENCES certificate_authorities(key_id) ON DELETE CASCADE,
    url              TEXT NOT NULL,
    etag             TEXT,
    last_modified    TEXT,
    last_attempt_at  TEXT,
    last_result      TEXT,                            -- updated | unchanged | failed | refused
    last_error       TEXT,
    last_success_at  TEXT,
    failures         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL DEFAULT 0,       -- Unix seconds
    PRIMARY KEY (key_id, url)
);

-- An org may require a fresh CRL for its own users (kind require_fresh_crl, value 'true').
ALTER TABLE identity_constraints DROP CONSTRAINT identity_constraints_kind_check;
ALTER TABLE identity_constraints ADD CONSTRAINT identity_constraints_kind_check
    CHECK (kind IN ('allowed_issuer_dn', 'required_policy_oid', 'san_email_domain', 'require_fresh_crl'));
