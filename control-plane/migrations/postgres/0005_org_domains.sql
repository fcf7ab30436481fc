-- Domains a super-admin assigned to an org: an org admin may create SAN mapping rules only
-- for these (and their subdomains), so no org claims another's addresses first. Orgs that
-- already hold SAN rules keep those domains.
CREATE TABLE org_domains (
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    domain     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, domain)
);
INSERT INTO org_domains (org_id, domain, created_at)
    SELECT DISTINCT org_id, domain, '1970-01-01T00:00:00Z' FROM mapping_rules WHERE org_id IS NOT NULL;
