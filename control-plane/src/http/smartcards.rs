//! `/api/v1/admin/smartcards`: the binding routes (bind, list, revoke), plus get, enable/disable
//! and relabel, and binding by uploaded PEM.

use super::{double_option, page_limit, with_version, Admin, ApiJson, ApiQuery};
use crate::domain::text::{canonical_dn, canonical_fingerprint, optional_text, required_text, MAX_DN_BYTES, MAX_PEM_TEXT_BYTES};
use crate::state::AppState;
use crate::db::smartcards::{self, ListFilter, NewSmartCard, SmartCardUpdate};
use crate::db::{Page, SmartCardLink};
use crate::error::{ApiError, ApiResult};
use crate::time::{format_epoch, parse_rfc3339};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use certbind_shared::certificate::pem::{decode_certificate_pem_file, encode_certificate_pem};
use certbind_shared::certificate::{CardFacts, CertificateFacts};
use certbind_shared::identity::normalize_serial;
use certbind_shared::Fingerprint;
use serde::Deserialize;

/// Labels are for people: "Primary CAC".
pub const MAX_LABEL_BYTES: usize = 200;
/// Ids are carried in the snapshot, whose strings are at most 255 bytes.
pub const MAX_ID_BYTES: usize = 255;
/// RFC 5280 caps serials at 20 octets; 21 leaves room for the DER sign byte some CAs add.
pub const MAX_SERIAL_HEX_DIGITS: usize = 42;

/// `POST /api/v1/admin/smartcards`: the field body, or `certificate_pem` and the server
/// derives the certificate fields (any given beside it must agree).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    pub user_id: String,
    pub fingerprint: Option<String>,
    pub subject_dn: Option<String>,
    pub issuer_dn: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub label: Option<String>,
    pub certificate_pem: Option<String>,
}

/// `PATCH /api/v1/admin/smartcards/{fingerprint}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    pub label: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub user_id: Option<String>,
    pub enabled: Option<bool>,
    pub issuer: Option<String>,
}

fn path_of(link: &SmartCardLink) -> String {
    format!("/api/v1/admin/smartcards/{}", link.fingerprint)
}

pub async fn bind(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<BindRequest>) -> ApiResult<Response> {
    let card = validate_bind(body, crate::time::now_epoch())?;
    let (link, version) = state.identity_changed(smartcards::bind(&state.db, &admin.actor(), card).await?);
    state.metrics.binds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let location = path_of(&link);
    Ok(with_version(version, (StatusCode::CREATED, [(header::LOCATION, location)], Json(link))))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<SmartCardLink>>> {
    let limit = page_limit(query.limit)?;
    let filter = ListFilter {
        user_id: optional_text("user_id", query.user_id.as_deref(), MAX_ID_BYTES)?,
        enabled: query.enabled,
        issuer_dn: query.issuer.as_deref().map(|dn| canonical_dn("issuer", dn)).transpose()?,
        cursor: query.cursor.as_deref().map(|c| canonical_fingerprint("cursor", c)).transpose()?,
    };
    Ok(Json(smartcards::list(&state.db, admin.org_id(), &filter, limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Json<SmartCardLink>> {
    let fingerprint = canonical_fingerprint("fingerprint", &fingerprint)?;
    smartcards::get(&state.db, admin.org_id(), &fingerprint)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no card binding {fingerprint} in this org")))
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(fingerprint): Path<String>,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> ApiResult<Response> {
    let fingerprint = canonical_fingerprint("fingerprint", &fingerprint)?;
    if body.enabled.is_none() && body.label.is_none() {
        return Err(ApiError::validation("body", "give `enabled`, `label` or both"));
    }
    let label = match body.label {
        None => None,
        Some(label) => Some(optional_text("label", label.as_deref(), MAX_LABEL_BYTES)?),
    };
    let change = SmartCardUpdate { enabled: body.enabled, label };
    let (link, version) = state.identity_changed(smartcards::update(&state.db, &admin.actor(), &fingerprint, &change).await?);
    Ok(with_version(version, Json(link)))
}

pub async fn revoke(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Response> {
    let fingerprint = canonical_fingerprint("fingerprint", &fingerprint)?;
    let (link, version) = state.identity_changed(smartcards::revoke(&state.db, &admin.actor(), &fingerprint).await?);
    state.metrics.revokes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(with_version(version, Json(link)).into_response())
}

/// Checks a bind request and puts every field in canonical form. Refused (422): a PEM with
/// more than one certificate, a CA certificate, and a certificate expired at `now` — each
/// would bind something that can never authenticate a card holder. (A certificate on an
/// applicable blocklist is refused by storage, which sees the blocklist.)
pub fn validate_bind(body: BindRequest, now: i64) -> ApiResult<NewSmartCard> {
    let user_id = required_text("user_id", &body.user_id, MAX_ID_BYTES)?;
    let label = optional_text("label", body.label.as_deref(), MAX_LABEL_BYTES)?;
    let given = GivenFields::parse(&body)?;
    let card = match &body.certificate_pem {
        Some(pem) => {
            let GivenCertificate { facts, is_ca, der } = facts_of_pem(pem)?;
            given.check_against(&facts)?;
            if is_ca {
                return Err(ApiError::validation(
                    "certificate_pem",
                    "is a CA certificate (basicConstraints cA): bind the card's own certificate",
                ));
            }
            if facts.subject_dn.len() > MAX_DN_BYTES || facts.issuer_dn.len() > MAX_DN_BYTES {
                return Err(ApiError::validation("certificate_pem", format!("a DN is longer than {MAX_DN_BYTES} bytes")));
            }
            let sans = crate::db::claims::san_domains(&facts);
            let certificate = Some((encode_certificate_pem(&der), CardFacts::of(&facts)));
            NewSmartCard {
                fingerprint: facts.fingerprint.to_hex(),
                user_id,
                subject_dn: facts.subject_dn,
                issuer_dn: facts.issuer_dn,
                serial: normalized_serial(&facts.serial_hex),
                not_before: format_epoch(facts.not_before),
                not_after: format_epoch(facts.not_after),
                label,
                sans: Some(sans),
                certificate,
            }
        }
        None => {
            let missing = |field: &str| ApiError::validation(field, "is required unless `certificate_pem` is given");
            NewSmartCard {
                fingerprint: given.fingerprint.ok_or_else(|| missing("fingerprint"))?.to_hex(),
                user_id,
                subject_dn: given.subject_dn.ok_or_else(|| missing("subject_dn"))?,
                issuer_dn: given.issuer_dn.ok_or_else(|| missing("issuer_dn"))?,
                serial: given.serial.ok_or_else(|| missing("serial"))?,
                not_before: format_epoch(given.not_before.ok_or_else(|| missing("not_before"))?),
                not_after: format_epoch(given.not_after.ok_or_else(|| missing("not_after"))?),
                label,
                sans: None,
                certificate: None,
            }
        }
    };
    if card.not_before >= card.not_after {
        return Err(ApiError::validation("not_after", "must be later than not_before"));
    }
    if parse_rfc3339(&card.not_after).is_some_and(|not_after| not_after < now) {
        return Err(ApiError::validation(
            "not_after",
            format!("the certificate expired at {}: it can no longer authenticate anyone", card.not_after),
        ));
    }
    Ok(card)
}

/// The one certificate of a `certificate_pem`.
pub(crate) struct GivenCertificate {
    pub facts: CertificateFacts,
    /// basicConstraints cA.
    pub is_ca: bool,
    pub der: Vec<u8>,
}

/// A certificate's facts, and whether it is a CA certificate. Exactly one certificate.
pub(crate) fn facts_of_pem(pem: &str) -> ApiResult<GivenCertificate> {
    if pem.len() > MAX_PEM_TEXT_BYTES {
        return Err(ApiError::validation(
            "certificate_pem",
            format!("is {} bytes, more than the {MAX_PEM_TEXT_BYTES}-byte limit", pem.len()),
        ));
    }
    let chain =
        decode_certificate_pem_file(pem.as_bytes()).map_err(|e| ApiError::validation("certificate_pem", e.to_string()))?;
    let der = match chain.as_slice() {
        [der] => der.clone(),
        more => {
            return Err(ApiError::validation(
                "certificate_pem",
                format!("holds {} certificates; send the card's certificate alone, without its chain", more.len()),
            ))
        }
    };
    let facts = CertificateFacts::from_der(&der).map_err(|e| ApiError::validation("certificate_pem", e.to_string()))?;
    Ok(GivenCertificate { facts, is_ca: is_ca_certificate(&der), der })
}

/// basicConstraints with cA set. A certificate the facts walk accepted but x509-cert cannot
/// decode is treated as not a CA: the walk is the filter's, and decides.
fn is_ca_certificate(der: &[u8]) -> bool {
    use der::Decode;
    use x509_cert::ext::pkix::BasicConstraints;
    let Ok(certificate) = x509_cert::Certificate::from_der(der) else { return false };
    certificate
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS)
        .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|bc| bc.ca))
}

/// A certificate's serial as stored (see [`canonical_serial`]).
fn normalized_serial(hex: &str) -> String {
    canonical_serial(hex).unwrap_or_else(|_| hex.to_ascii_lowercase())
}

/// The certificate fields of a bind request, parsed; `None` where not given.
struct GivenFields {
    fingerprint: Option<Fingerprint>,
    subject_dn: Option<String>,
    issuer_dn: Option<String>,
    serial: Option<String>,
    not_before: Option<i64>,
    not_after: Option<i64>,
}

impl GivenFields {
    fn parse(body: &BindRequest) -> ApiResult<Self> {
        let time = |field: &str, text: &Option<String>| -> ApiResult<Option<i64>> {
            text.as_deref()
                .map(|t| {
                    parse_rfc3339(t.trim())
                        .ok_or_else(|| ApiError::validation(field, "must be an RFC 3339 date-time such as 2025-01-15T00:00:00Z"))
                })
                .transpose()
        };
        Ok(GivenFields {
            fingerprint: body
                .fingerprint
                .as_deref()
                .map(|f| Fingerprint::parse(f).map_err(|e| ApiError::validation("fingerprint", e.to_string())))
                .transpose()?,
            subject_dn: body.subject_dn.as_deref().map(|dn| canonical_dn("subject_dn", dn)).transpose()?,
            issuer_dn: body.issuer_dn.as_deref().map(|dn| canonical_dn("issuer_dn", dn)).transpose()?,
            serial: body.serial.as_deref().map(canonical_serial).transpose()?,
            not_before: time("not_before", &body.not_before)?,
            not_after: time("not_after", &body.not_after)?,
        })
    }

    /// Every given field must say what the certificate says.
    fn check_against(&self, facts: &CertificateFacts) -> ApiResult<()> {
        let disagree = |field: &str| ApiError::validation(field, "disagrees with the certificate in certificate_pem");
        if self.fingerprint.is_some_and(|f| f != facts.fingerprint) {
            return Err(disagree("fingerprint"));
        }
        if self.subject_dn.as_ref().is_some_and(|d| *d != facts.subject_dn) {
            return Err(disagree("subject_dn"));
        }
        if self.issuer_dn.as_ref().is_some_and(|d| *d != facts.issuer_dn) {
            return Err(disagree("issuer_dn"));
        }
        if self.serial.as_ref().is_some_and(|s| normalize_serial(s) != normalize_serial(&facts.serial_hex)) {
            return Err(disagree("serial"));
        }
        if self.not_before.is_some_and(|t| t != facts.not_before) {
            return Err(disagree("not_before"));
        }
        if self.not_after.is_some_and(|t| t != facts.not_after) {
            return Err(disagree("not_after"));
        }
        Ok(())
    }
}

/// A serial as stored: lowercase hex, even length, no `0x` prefix, colons or spare leading
/// zero bytes (`0x00:12:AB` → `12ab`), matching what certificates' own serials look like.
pub fn canonical_serial(text: &str) -> ApiResult<String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::validation("serial", "must be hexadecimal (optionally 0x-prefixed or colon-separated)"));
    }
    let normalized = normalize_serial(&digits);
    if normalized.len() > MAX_SERIAL_HEX_DIGITS {
        return Err(ApiError::validation("serial", format!("is longer than {MAX_SERIAL_HEX_DIGITS} hex digits (20 octets)")));
    }
    Ok(if normalized.len() % 2 == 1 { format!("0{normalized}") } else { normalized })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_stored_in_one_spelling() {
        assert_eq!(canonical_serial("0x12ABcdef").unwrap(), "12abcdef");
        assert_eq!(canonical_serial("00:0a:FF").unwrap(), "0aff");
        assert_eq!(canonical_serial("0").unwrap(), "00");
        for bad in ["", "0x", "12g4", "' OR 1=1 --", &"1".repeat(43)] {
            assert!(matches!(canonical_serial(bad), Err(ApiError::Validation { ref field, .. }) if field == "serial"), "{bad}");
        }
    }
}
