-- The certificate of a card bound from its PEM, as the control plane re-encoded it, so that the
-- API shows what was read from the card (SANs, FASC-N, policies, key) from the certificate
-- itself rather than from columns that could drift from it. NULL for a binding given by
-- fields, and for bindings made before this column: their certificate was never kept.
ALTER TABLE smart_card_links ADD COLUMN certificate_pem TEXT;
-- Whether the org may bind PIV Card Authentication certificates (their key needs no PIN). Off
-- by default: such a binding is refused, as the filter refuses the certificate on every route
-- that does not allow Card Authentication.
ALTER TABLE orgs ADD COLUMN allow_card_authentication INTEGER NOT NULL DEFAULT 0;
