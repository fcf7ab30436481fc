//! A card binding as a caller gives it (the admin API's body or the command line's flags):
//! the card's certificate as PEM, or its fields, checked and put in the one form storage
//! holds. Whether the org may bind that kind of certificate is [`super::card`]'s rule.

use super::certificate::{facts_of_pem, san_domains, GivenCertificate};
use super::invalid::{Checked, Invalid};
use super::text::{canonical_dn, canonical_serial, optional_text, required_text, MAX_DN_BYTES, MAX_ID_BYTES};
use crate::time::{format_epoch, parse_rfc3339};
use certbind_shared::certificate::pem::encode_certificate_pem;
use certbind_shared::certificate::{CardFacts, CertificateFacts};
use certbind_shared::identity::{normalize_serial, SanKind};
use certbind_shared::Fingerprint;
use serde::Deserialize;

/// Labels are for people: "Primary CAC".
pub const MAX_LABEL_BYTES: usize = 200;

/// What a caller gives to bind a card: `certificate_pem`, and the certificate fields are
/// derived (any given beside it must agree), or the fields alone. The admin API's body
/// (`POST /api/v1/admin/smartcards`) reads into it as it stands; the command line fills it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GivenBinding {
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

impl GivenBinding {
    /// A binding of the certificate in `pem`, every field derived from it.
    pub fn of_certificate(user_id: String, pem: String, label: Option<String>) -> Self {
        GivenBinding { user_id, label, certificate_pem: Some(pem), ..GivenBinding::default() }
    }
}

/// A validated binding, every field in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSmartCard {
    pub fingerprint: Fingerprint,
    pub user_id: String,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub label: Option<String>,
    /// The SAN domains SAN rules could claim it by, when the certificate itself was given;
    /// `None` for a binding given by fields.
    pub sans: Option<Vec<(SanKind, String)>>,
    /// The certificate, re-encoded as PEM, and its facts, when it was given.
    pub certificate: Option<(String, CardFacts)>,
}

/// Checks a binding and puts every field in canonical form. Refused: a PEM with more than one
/// certificate, a CA certificate, and a certificate expired at `now` — each would bind
/// something that can never authenticate a card holder. (A certificate on an applicable
/// blocklist is refused by storage, which sees the blocklist.)
pub fn checked_binding(given: GivenBinding, now: i64) -> Checked<NewSmartCard> {
    let user_id = required_text("user_id", &given.user_id, MAX_ID_BYTES)?;
    let label = optional_text("label", given.label.as_deref(), MAX_LABEL_BYTES)?;
    let fields = GivenFields::parse(&given)?;
    let card = match &given.certificate_pem {
        Some(pem) => {
            let GivenCertificate { facts, is_ca, der } = facts_of_pem(pem)?;
            fields.check_against(&facts)?;
            if is_ca {
                return Err(Invalid::new(
                    "certificate_pem",
                    "is a CA certificate (basicConstraints cA): bind the card's own certificate",
                ));
            }
            if facts.subject_dn.len() > MAX_DN_BYTES || facts.issuer_dn.len() > MAX_DN_BYTES {
                return Err(Invalid::new("certificate_pem", format!("a DN is longer than {MAX_DN_BYTES} bytes")));
            }
            let sans = san_domains(&facts);
            let certificate = Some((encode_certificate_pem(&der), CardFacts::of(&facts)));
            NewSmartCard {
                fingerprint: facts.fingerprint,
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
            let missing = |field: &str| Invalid::new(field, "is required unless `certificate_pem` is given");
            NewSmartCard {
                fingerprint: fields.fingerprint.ok_or_else(|| missing("fingerprint"))?,
                user_id,
                subject_dn: fields.subject_dn.ok_or_else(|| missing("subject_dn"))?,
                issuer_dn: fields.issuer_dn.ok_or_else(|| missing("issuer_dn"))?,
                serial: fields.serial.ok_or_else(|| missing("serial"))?,
                not_before: format_epoch(fields.not_before.ok_or_else(|| missing("not_before"))?),
                not_after: format_epoch(fields.not_after.ok_or_else(|| missing("not_after"))?),
                label,
                sans: None,
                certificate: None,
            }
        }
    };
    if card.not_before >= card.not_after {
        return Err(Invalid::new("not_after", "must be later than not_before"));
    }
    if parse_rfc3339(&card.not_after).is_some_and(|not_after| not_after < now) {
        return Err(Invalid::new(
            "not_after",
            format!("the certificate expired at {}: it can no longer authenticate anyone", card.not_after),
        ));
    }
    Ok(card)
}

/// A certificate's serial as stored (see [`canonical_serial`]).
fn normalized_serial(hex: &str) -> String {
    canonical_serial(hex).unwrap_or_else(|_| hex.to_ascii_lowercase())
}

/// The certificate fields of a binding, parsed; `None` where not given.
struct GivenFields {
    fingerprint: Option<Fingerprint>,
    subject_dn: Option<String>,
    issuer_dn: Option<String>,
    serial: Option<String>,
    not_before: Option<i64>,
    not_after: Option<i64>,
}

impl GivenFields {
    fn parse(given: &GivenBinding) -> Checked<Self> {
        let time = |field: &str, text: &Option<String>| -> Checked<Option<i64>> {
            text.as_deref()
                .map(|t| {
                    parse_rfc3339(t.trim())
                        .ok_or_else(|| Invalid::new(field, "must be an RFC 3339 date-time such as 2025-01-15T00:00:00Z"))
                })
                .transpose()
        };
        Ok(GivenFields {
            fingerprint: given
                .fingerprint
                .as_deref()
                .map(|f| Fingerprint::parse(f).map_err(|e| Invalid::new("fingerprint", e.to_string())))
                .transpose()?,
            subject_dn: given.subject_dn.as_deref().map(|dn| canonical_dn("subject_dn", dn)).transpose()?,
            issuer_dn: given.issuer_dn.as_deref().map(|dn| canonical_dn("issuer_dn", dn)).transpose()?,
            serial: given.serial.as_deref().map(canonical_serial).transpose()?,
            not_before: time("not_before", &given.not_before)?,
            not_after: time("not_after", &given.not_after)?,
        })
    }

    /// Every given field must say what the certificate says.
    fn check_against(&self, facts: &CertificateFacts) -> Checked<()> {
        let disagree = |field: &str| Invalid::new(field, "disagrees with the certificate in certificate_pem");
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
