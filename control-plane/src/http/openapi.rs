//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document generated from the route table (so
//! every route the router serves is in it) with hand-written schemas.

use super::route_doc::{Access, RouteDoc};
use serde_json::{json, Map, Value};

/// The whole document, for these routes (the route table's, in `app`).
pub fn build(routes: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        if let Value::Object(methods) = entry {
            methods.insert(route.method.as_str().to_ascii_lowercase(), operation(route));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "certbind control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Smart-card bindings (smart_card_links), the identity data the certbind filter \
                enforces, and the signed snapshots that carry it. Errors are application/problem+json \
                (RFC 9457). Admin routes take `Authorization: Bearer <admin token>` and see only the \
                token's org (and, for a super-admin, platform rules: `\"scope\": \"platform\"`). The \
                snapshot is served only to a proxy credential (`Authorization: Bearer <proxy credential>`), \
                which can read nothing else."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": { "type": "http", "scheme": "bearer", "description": "an admin token (cbt_…)" },
                "proxyCredential": { "type": "http", "scheme": "bearer", "description": "a proxy credential (cbp_…)" }
            },
            "schemas": schemas(),
        }
    })
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let description = if name == "fingerprint" {
                "SHA-256 certificate fingerprint: 64 hex digits, colon-separated hex pairs, or base64url x5t#S256"
            } else if name == "key_id" {
                "a CA's key identifier in hex: its SubjectKeyIdentifier, or the SHA-256 of its SubjectPublicKeyInfo"
            } else {
                "identifier returned when the resource was created"
            };
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" }, "description": description })
        })
        .collect()
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn operation(route: &RouteDoc) -> Value {
    let mut parameters = path_parameters(route.path);
    for (name, kind, description) in route.query {
        parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": { "type": kind }, "description": description }));
    }
    let (status, schema) = route.success;
    let success = match (route.path, schema) {
        ("/metrics", _) => json!({ "description": "Prometheus text", "content": { "text/plain": { "schema": { "type": "string" } } } }),
        ("/api/v1/snapshot", _) => json!({
            "description": "The signed snapshot, or a delta chain from the version the caller holds (when it \
                sends after_version or If-None-Match and accepts application/vnd.certbind.snapshot-delta); \
                304 when the caller holds the latest",
            "headers": {
                "ETag": { "schema": { "type": "string" }, "description": "\"M\": the version served" },
                "X-Certbind-Snapshot-Version": { "schema": { "type": "integer" } }
            },
            "content": {
                "application/vnd.certbind.snapshot": { "schema": { "type": "string", "format": "binary" } },
                "application/vnd.certbind.snapshot-delta": { "schema": { "type": "string", "format": "binary" } }
            }
        }),
        (_, Some(name)) => json!({
            "description": "Success",
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{name}") } } }
        }),
        (_, None) => json!({ "description": "Success", "content": { "application/json": {} } }),
    };
    let mut responses = Map::new();
    responses.insert(status.to_string(), success);
    if route.path == "/api/v1/snapshot" {
        responses.insert("304".into(), json!({ "description": "Not modified: no newer snapshot (within the wait)" }));
        responses.insert("503".into(), problem("No signed snapshot yet"));
    }
    if route.path == "/readyz" {
        responses.insert("503".into(), problem("Not ready"));
    }
    if route.access == Access::Proxy {
        responses.insert("401".into(), problem("Missing or unknown proxy credential"));
        responses.insert("403".into(), problem("An admin token: the snapshot is served to proxy credentials"));
        responses.insert("422".into(), problem("Invalid parameter; `field` names it"));
    }
    if matches!(route.access, Access::Admin | Access::SuperAdmin) {
        responses.insert("401".into(), problem("Missing or unknown admin token"));
        responses.insert("403".into(), problem("A proxy credential, or a change the token may not make (platform rules, a super-admin token)"));
        responses.insert("404".into(), problem("No such resource in the caller's org"));
        responses.insert("422".into(), problem("Invalid parameter or body; `field` names it"));
    }
    if route.access == Access::SuperAdmin {
        responses.insert("403".into(), problem("The token is not a super-admin token"));
    }
    if let Some(_request) = route.request {
        responses.insert("400".into(), problem("The body is not JSON"));
        let conflict = if route.request == Some("Crl") {
            "A CRL number below the one held (a replay), or a delta CRL whose base is not held"
        } else {
            "Already exists"
        };
        responses.insert("409".into(), problem(conflict));
        responses.insert("413".into(), problem("The body is larger than the limit"));
        let media = if route.request == Some("Crl") { "application/pkix-crl or application/x-pem-file" } else { "application/json" };
        responses.insert("415".into(), problem(&format!("The body is not {media}")));
    }
    let mut op = json!({
        "summary": route.summary,
        "operationId": operation_id(route),
        "parameters": parameters,
        "responses": responses,
    });
    if let Value::Object(map) = &mut op {
        if let Some(name) = route.request {
            let schema = json!({ "schema": { "$ref": format!("#/components/schemas/{name}") } });
            let content = if name == "Crl" {
                json!({ "application/pkix-crl": schema, "application/x-pem-file": schema })
            } else {
                json!({ "application/json": schema })
            };
            map.insert("requestBody".into(), json!({ "required": true, "content": content }));
        }
        match route.access {
            Access::Public => {}
            Access::Proxy => {
                map.insert("security".into(), json!([{ "proxyCredential": [] }]));
            }
            Access::Admin | Access::SuperAdmin => {
                map.insert("security".into(), json!([{ "adminToken": [] }]));
            }
        }
    }
    op
}

fn operation_id(route: &RouteDoc) -> String {
    let path: String = route
        .path
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}_{}", route.method.as_str().to_ascii_lowercase(), path.trim_matches('_'))
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } },
            "next_cursor": { "type": ["string", "null"] }
        }
    })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties, "additionalProperties": false })
}

fn schemas() -> Value {
    let s = json!({ "type": "string" });
    let ns = json!({ "type": ["string", "null"] });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let time = json!({ "type": "string", "format": "date-time" });
    let fingerprint = json!({ "type": "string", "description": "64 hex digits, colon-separated hex pairs, or base64url x5t#S256; returned as 64 lowercase hex digits" });
    let dn = json!({ "type": "string", "description": "an RFC 4514 distinguished name, most specific part first; stored in the canonical form the filter renders from certificates" });
    let scope = json!({ "enum": ["org", "platform"], "description": "whose rule: the caller's org (default) or the platform (super-admin tokens only)" });
    let owned = json!({ "enum": ["org", "platform"] });
    let mut schemas = json!({
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": s, "title": s, "status": { "type": "integer" }, "detail": s,
                "field": { "type": "string", "description": "the parameter or body member at fault (422)" }
            }
        },
        "Health": { "type": "object", "properties": { "status": s } },
        "SnapshotKeys": { "type": "object", "description": "The public keys that verify snapshots, each with its key id" },
        "BindRequest": object(&["user_id"], json!({
            "user_id": s, "fingerprint": fingerprint, "subject_dn": s, "issuer_dn": s,
            "serial": { "type": "string", "description": "hex, optionally 0x-prefixed or colon-separated" },
            "not_before": time, "not_after": time, "label": s,
            "certificate_pem": { "type": "string", "description": "the certificate; the server derives every other certificate field, and any given must agree" }
        })),
        "SmartCardUpdate": object(&[], json!({ "enabled": { "type": "boolean" }, "label": ns })),
        "SmartCard": object(&["fingerprint", "user_id", "org_id", "subject_dn", "issuer_dn", "serial", "not_before", "not_after", "enabled", "verified", "created_at", "facts"], json!({
            "fingerprint": s, "user_id": s, "org_id": s, "subject_dn": s, "issuer_dn": s, "serial": s,
            "not_before": time, "not_after": time, "label": ns, "enabled": { "type": "boolean" },
            "verified": { "type": "boolean", "description": "bound from the certificate itself; false: by fields, which loses to another org's claim on the same card" },
            "created_at": time, "last_used_at": ns,
            "facts": { "oneOf": [{ "$ref": "#/components/schemas/CardFacts" }, { "type": "null" }],
                       "description": "what the certificate says, read from the certificate kept at binding; null for a card bound by fields (or before certificates were kept): nothing of its certificate is known" }
        })),
        "CardFacts": object(&["certificate_type", "upns", "emails", "uris", "card_uuid", "fascn", "policy_oids", "extended_key_usages", "public_key"], json!({
            "certificate_type": { "enum": ["piv_authentication", "card_authentication"], "description": "card_authentication: the id-PIV-cardAuth EKU or a card-auth policy OID (its key needs no PIN)" },
            "upns": strings, "emails": strings, "uris": strings,
            "card_uuid": { "type": ["string", "null"], "description": "the UUID of the first urn:uuid: URI SAN" },
            "fascn": { "oneOf": [{ "$ref": "#/components/schemas/Fascn" }, { "type": "null" }] },
            "policy_oids": strings, "extended_key_usages": strings,
            "public_key": { "oneOf": [{ "$ref": "#/components/schemas/PublicKey" }, { "type": "null" }] }
        })),
        "Fascn": object(&["digits", "agency_code", "system_code", "credential_number", "credential_series", "individual_credential_issue", "person_identifier", "organizational_category", "organizational_identifier", "association_category"], json!({
            "digits": { "type": "string", "description": "the 32 digits, in the order of the fields below" },
            "agency_code": s, "system_code": s, "credential_number": s, "credential_series": s, "individual_credential_issue": s,
            "person_identifier": s, "organizational_category": s, "organizational_identifier": s, "association_category": s
        })),
        "PublicKey": object(&["algorithm", "curve", "bits"], json!({
            "algorithm": { "type": "string", "description": "RSA, EC, Ed25519, Ed448, or the dotted OID of another algorithm" },
            "curve": { "type": ["string", "null"], "description": "P-256, P-384, P-521 or the curve's OID, for EC keys" },
            "bits": { "type": ["integer", "null"] }
        })),
        "SmartCardPage": page_of("SmartCard"),
        "OrgRequest": object(&["name"], json!({ "name": s })),
        "Org": object(&["id", "name", "created_at", "enabled", "allow_card_authentication"], json!({ "id": s, "name": s, "created_at": time, "enabled": { "type": "boolean" }, "disabled_at": { "type": ["string", "null"], "format": "date-time" }, "allow_card_authentication": { "type": "boolean" } })),
        "OrgUpdate": object(&[], json!({
            "enabled": { "type": "boolean" },
            "allow_card_authentication": { "type": "boolean", "description": "whether the org's admins may bind PIV Card Authentication certificates" }
        })),
        "OrgPage": page_of("Org"),
        "DomainRequest": object(&["domain"], json!({ "domain": s })),
        "OrgDomain": object(&["org_id", "domain", "created_at"], json!({ "org_id": s, "domain": s, "created_at": time })),
        "OrgDomainList": object(&["items"], json!({ "items": { "type": "array", "items": { "$ref": "#/components/schemas/OrgDomain" } } })),
        "TokenRequest": object(&[], json!({ "super_admin": { "type": "boolean" }, "label": s })),
        "Token": object(&["id", "org_id", "super_admin", "created_at"], json!({
            "id": s, "org_id": s, "super_admin": { "type": "boolean" }, "label": ns, "created_at": time, "last_used_at": ns
        })),
        "NewToken": object(&["id", "org_id", "super_admin", "created_at", "token"], json!({
            "id": s, "org_id": s, "super_admin": { "type": "boolean" }, "label": ns, "created_at": time, "last_used_at": ns,
            "token": { "type": "string", "description": "the secret; shown only in this response" }
        })),
        "TokenPage": page_of("Token"),
        "ProxyCredentialRequest": object(&[], json!({ "label": s })),
        "ProxyCredential": object(&["id", "created_at"], json!({
            "id": s, "label": ns, "created_at": time, "last_used_at": ns, "last_fetch_at": ns,
            "last_fetch_version": { "type": ["integer", "null"], "description": "The snapshot version the proxy holds since its last answered fetch" }
        })),
        "NewProxyCredential": object(&["id", "created_at", "credential"], json!({
            "id": s, "label": ns, "created_at": time, "last_used_at": ns, "last_fetch_at": ns,
            "last_fetch_version": { "type": ["integer", "null"] },
            "credential": { "type": "string", "description": "the secret; shown only in this response" }
        })),
        "ProxyCredentialPage": page_of("ProxyCredential"),
        "UserRequest": object(&["name"], json!({ "name": s, "email": s })),
        "User": object(&["id", "org_id", "name", "created_at"], json!({ "id": s, "org_id": s, "name": s, "email": ns, "created_at": time })),
        "UserPage": page_of("User"),
        "BlocklistRequest": object(&[], json!({ "fingerprint": fingerprint, "issuer_dn": dn, "serial": s, "reason": s, "scope": scope })),
        "BlocklistEntry": object(&["id", "scope", "org_id", "created_at"], json!({
            "id": s, "scope": owned, "org_id": ns, "fingerprint": ns, "issuer_dn": ns, "serial": ns, "reason": ns, "created_at": time
        })),
        "BlocklistPage": page_of("BlocklistEntry"),
        "IssuerRequest": object(&["issuer", "jwks"], json!({
            "issuer": s, "audiences": { "type": "array", "items": s }, "jwks": { "type": "object", "description": "RFC 7517 JSON Web Key Set" },
            "scope": scope
        })),
        "IssuerUpdate": object(&[], json!({ "audiences": { "type": ["array", "null"], "items": s }, "jwks": { "type": "object" } })),
        "Issuer": object(&["id", "scope", "org_id", "issuer", "jwks", "created_at", "updated_at"], json!({
            "id": s, "scope": owned, "org_id": ns, "issuer": s, "audiences": { "type": ["array", "null"], "items": s },
            "jwks": { "type": "object" }, "created_at": time, "updated_at": time
        })),
        "IssuerPage": page_of("Issuer"),
        "MappingRuleRequest": object(&["san", "domain", "issuer_dn"], json!({
            "san": { "enum": ["email", "upn"] }, "domain": s, "issuer_dn": dn, "scope": scope
        })),
        "MappingRule": object(&["id", "scope", "org_id", "san_kind", "domain", "issuer_dn", "created_at"], json!({
            "id": s, "scope": owned, "org_id": ns, "san_kind": { "enum": ["email", "upn"] }, "domain": s,
            "issuer_dn": { "type": ["string", "null"], "description": "canonical RFC 4514; null only for rules made before issuers were named, which map nothing" },
            "created_at": time
        })),
        "MappingRulePage": page_of("MappingRule"),
        "ThumbprintMappingRequest": object(&["principal"], json!({
            "fingerprint": fingerprint,
            "certificate_pem": { "type": "string", "description": "the certificate (instead of or with its fingerprint): an org's mapping of a certificate another org's SAN rule claims is then refused" },
            "principal": { "type": "string", "description": "an org: a name in the org's namespace (the filter sends auth:account:org:{org_id}:{name}); the platform: any principal outside auth:account:user:, auth:account:org: and org:" },
            "scope": scope
        })),
        "ThumbprintMapping": object(&["fingerprint", "scope", "org_id", "principal", "verified", "created_at"], json!({
            "fingerprint": s, "scope": owned, "org_id": ns, "principal": s, "created_at": time,
            "verified": { "type": "boolean", "description": "mapped from the certificate itself; false: by fingerprint alone, which loses to another org's claim on the same card" }
        })),
        "ThumbprintMappingPage": page_of("ThumbprintMapping"),
        "ConstraintRequest": object(&["kind", "value"], json!({
            "kind": { "enum": ["allowed_issuer_dn", "required_policy_oid", "san_email_domain", "require_fresh_crl"] },
            "value": { "type": "string", "description": "require_fresh_crl: \"true\" (the org's users need their CA's CRL fresh)" }, "scope": scope
        })),
        "Constraint": object(&["id", "scope", "org_id", "kind", "value", "created_at"], json!({
            "id": s, "scope": owned, "org_id": ns, "kind": s, "value": s, "created_at": time
        })),
        "ConstraintPage": page_of("Constraint"),
        "AuditEntry": object(&["id", "org_id", "actor", "action", "target", "detail", "at"], json!({
            "id": { "type": "integer" }, "org_id": s, "actor": s, "action": s, "target": s,
            "detail": { "type": "object" }, "snapshot_version": { "type": ["integer", "null"] }, "at": time
        })),
        "AuditPage": page_of("AuditEntry"),
    });
    if let (Value::Object(all), Value::Object(more)) = (&mut schemas, revocation_schemas()) {
        all.extend(more);
    }
    schemas
}

/// The CA and CRL schemas (a literal of their own: one macro call of every schema would pass
/// the recursion limit).
fn revocation_schemas() -> Value {
    let s = json!({ "type": "string" });
    let ns = json!({ "type": ["string", "null"] });
    let time = json!({ "type": "string", "format": "date-time" });
    let int = json!({ "type": "integer" });
    let boolean = json!({ "type": "boolean" });
    let urls = json!({ "type": "array", "items": s, "description": "http:// CRL distribution points (as the CA's certificates name them); ldap: and https: are refused" });
    let policy = json!({
        "require_fresh_crl": { "type": "boolean", "description": "refuse the CA's certificates (revocation_unknown) while no fresh CRL is held; default true" },
        "grace_period_seconds": { "type": "integer", "description": "seconds past nextUpdate a CRL still counts as fresh, 0 to 2592000; default 86400" },
        "fail_open": { "type": "boolean", "description": "accept the CA's certificates when a fresh CRL is required and none is held (counted); default false" },
        "crl_urls": urls
    });
    let mut request = policy.clone();
    if let Value::Object(fields) = &mut request {
        fields.insert("certificate_pem".into(), json!({ "type": "string", "description": "the CA's certificate (one); the CA is known by its key identifier, never its DN" }));
    }
    json!({
        "CaRequest": object(&["certificate_pem"], request),
        "CaPolicyRequest": object(&[], policy),
        "RevocationPolicy": object(&["require_fresh_crl", "grace_period_seconds", "fail_open", "crl_urls"], json!({
            "require_fresh_crl": boolean, "grace_period_seconds": int, "fail_open": boolean, "crl_urls": urls
        })),
        "HeldCrl": object(&["crl_number", "base_number", "scope", "this_update", "status", "age_seconds", "entries", "crl_sha256", "source", "ingested_at"], json!({
            "crl_number": { "type": "string", "description": "decimal: the last CRL folded in (a delta's after one)" },
            "base_number": { "type": "string", "description": "decimal: the complete CRL the set was built from" },
            "scope": { "enum": ["all", "user_certificates"] },
            "this_update": time, "next_update": ns, "valid_until": { "type": ["string", "null"], "description": "nextUpdate plus the grace period" },
            "status": { "enum": ["fresh", "stale"] }, "age_seconds": int, "entries": int, "crl_sha256": s,
            "source": { "enum": ["upload", "fetch"] }, "ingested_at": time
        })),
        "CrlFetch": object(&["url", "failures", "next_attempt_at"], json!({
            "url": s, "last_attempt_at": ns, "last_result": { "type": ["string", "null"], "enum": ["updated", "unchanged", "failed", "refused", null] },
            "last_error": ns, "last_success_at": ns, "failures": int, "next_attempt_at": time
        })),
        "CertificateAuthority": object(&["key_id", "key_source", "subject_dn", "fingerprint", "certificate_pem", "not_before", "not_after", "policy", "created_at", "updated_at", "crl", "fetches"], json!({
            "key_id": { "type": "string", "description": "lowercase hex of the SubjectKeyIdentifier (or of the SHA-256 of the SubjectPublicKeyInfo)" },
            "key_source": { "enum": ["subject_key_identifier", "spki_sha256"] },
            "subject_dn": s, "fingerprint": s, "certificate_pem": s, "not_before": time, "not_after": time,
            "policy": { "$ref": "#/components/schemas/RevocationPolicy" },
            "created_at": time, "updated_at": time,
            "crl": { "oneOf": [{ "$ref": "#/components/schemas/HeldCrl" }, { "type": "null" }] },
            "fetches": { "type": "array", "items": { "$ref": "#/components/schemas/CrlFetch" } }
        })),
        "CertificateAuthorityPage": page_of("CertificateAuthority"),
        "Crl": { "type": "string", "format": "binary", "description": "a CRL: DER, or PEM (-----BEGIN X509 CRL-----)" },
        "CrlIngested": object(&["ca", "crl_number", "delta", "changed", "added", "removed", "crl"], json!({
            "ca": s, "crl_number": s, "delta": boolean,
            "changed": { "type": "boolean", "description": "false: this CRL was held already, nothing changed" },
            "added": int, "removed": int,
            "crl": { "oneOf": [{ "$ref": "#/components/schemas/HeldCrl" }, { "type": "null" }] }
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_reference_resolves() {
        let doc = build(&crate::app::route_docs());
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "unresolved schema {name}");
        }
    }
}
