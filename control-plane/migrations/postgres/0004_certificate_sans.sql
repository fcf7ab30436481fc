-- The SAN domains and issuer of certificates the control plane saw whole (a binding or an
-- org's thumbprint mapping given its PEM), so that a SAN mapping rule that would claim a
-- certificate bound or mapped in another org is refused, as a binding or mapping of a
-- certificate another org's SAN rule claims is. Rows outlive their binding harmlessly: the
-- checks join the bindings and mappings that exist.
CREATE TABLE certificate_sans (
    fingerprint TEXT NOT NULL,
    san_kind    TEXT NOT NULL CHECK (san_kind IN ('email', 'upn')),
    domain      TEXT NOT NULL,
    issuer_dn   TEXT NOT NULL,
    PRIMARY KEY (fingerprint, san_kind, domain)
);
CREATE INDEX certificate_sans_by_rule ON certificate_sans (san_kind, domain, issuer_dn);
