-- Whether a binding or thumbprint mapping was made from the certificate itself (its PEM, so the
-- control plane checked it against every org's SAN rules) rather than by fields or by
-- fingerprint alone. The filter lets an unverified claim lose to another org's verified one
-- (see db/claims.rs). Rows from before: verified when their certificate was seen whole (its SAN
-- domains are in certificate_sans); a certificate seen whole without such SANs no SAN rule can
-- claim, so leaving it unverified changes nothing.
ALTER TABLE smart_card_links ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE thumbprint_mappings ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;
UPDATE smart_card_links SET verified = 1
    WHERE EXISTS (SELECT 1 FROM certificate_sans s WHERE s.fingerprint = smart_card_links.fingerprint);
UPDATE thumbprint_mappings SET verified = 1
    WHERE EXISTS (SELECT 1 FROM certificate_sans s WHERE s.fingerprint = thumbprint_mappings.fingerprint);
