//! The extensions of a CRL (RFC 5280 §5.2) and of its entries (§5.3) that the reader
//! understands; any other is skipped when non-critical and refused, by OID, when critical.

use super::walk::{self, malformed, Der, Tlv};
use super::limits::{MAX_CRL_NUMBER_LEN, MAX_DISTRIBUTION_POINT_NAMES};
use super::number::CrlNumber;
use super::scope::CrlScope;
use super::CrlError;
use crate::certificate::ca::decode_authority_key_identifier;
use crate::certificate::KeyIdentifier;

/// Extension OIDs, as their DER contents: id-ce 2.5.29.n is `55 1d n`.
const CRL_NUMBER: &[u8] = &[0x55, 0x1d, 20];
const REASON_CODE: &[u8] = &[0x55, 0x1d, 21];
const INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 24];
const DELTA_CRL_INDICATOR: &[u8] = &[0x55, 0x1d, 27];
const ISSUING_DISTRIBUTION_POINT: &[u8] = &[0x55, 0x1d, 28];
const CERTIFICATE_ISSUER: &[u8] = &[0x55, 0x1d, 29];
const AUTHORITY_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 35];

/// What the CRL's own extensions say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CrlExtensions<'a> {
    pub number: Option<CrlNumber>,
    pub base_number: Option<CrlNumber>,
    pub authority_key_identifier: Option<KeyIdentifier>,
    pub scope: CrlScope,
    pub distribution_point_uris: Vec<&'a str>,
}

/// One extension: `Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
/// extnValue OCTET STRING }`.
struct Extension<'a> {
    at: usize,
    id: Tlv<'a>,
    critical: bool,
    value: Tlv<'a>,
}

/// Calls `each` with every extension of the list `list` (a SEQUENCE OF Extension), refusing
/// more than `max` and any extension that appears twice.
fn for_each_extension<'a>(
    list: Tlv<'a>,
    max: usize,
    mut each: impl FnMut(Extension<'a>) -> Result<(), CrlError>,
) -> Result<(), CrlError> {
    let mut seen: [&[u8]; 32] = [&[]; 32];
    let mut count = 0usize;
    let mut reader = list.contents();
    while !reader.is_empty() {
        let extension = reader.expect(walk::SEQUENCE, "Extension")?;
        if count == max {
            return Err(CrlError::TooManyExtensions { at: list.at, limit: max });
        }
        let mut fields = extension.contents();
        let id = fields.expect(walk::OID, "Extension.extnID")?;
        let oid = id.oid("Extension.extnID")?;
        let critical = match fields.optional(walk::BOOLEAN, "Extension.critical")? {
            Some(flag) => flag.boolean("Extension.critical")?,
            None => false,
        };
        let value = fields.expect(walk::OCTET_STRING, "Extension.extnValue")?;
        fields.finish("Extension")?;
        let earlier = seen.get(..count).unwrap_or_default();
        if earlier.contains(&id.value) {
            return Err(CrlError::RepeatedExtension { at: extension.at, oid });
        }
        if let Some(slot) = seen.get_mut(count) {
            *slot = id.value;
        }
        count += 1;
        each(Extension { at: extension.at, id, critical, value })?;
    }
    Ok(())
}

/// The one TLV an extnValue holds.
fn single_value<'a>(extension: &Extension<'a>, field: &'static str) -> Result<Tlv<'a>, CrlError> {
    let mut reader = extension.value.contents();
    let value = reader.next(field)?;
    reader.finish(field)?;
    Ok(value)
}

fn unknown_critical(extension: &Extension<'_>, entry: Option<usize>) -> Result<(), CrlError> {
    if extension.critical {
        let oid = extension.id.oid("Extension.extnID")?;
        return Err(CrlError::UnknownCriticalExtension { at: extension.at, oid, entry });
    }
    Ok(())
}

/// `CRLNumber ::= INTEGER (0..MAX)`, at most 20 octets.
fn crl_number(extension: &Extension<'_>, field: &'static str) -> Result<CrlNumber, CrlError> {
    let value = single_value(extension, field)?;
    if value.tag != walk::INTEGER {
        return Err(CrlError::UnexpectedTag { at: value.at, field, expected: walk::INTEGER, found: value.tag });
    }
    let content = value.integer(field)?;
    if content.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(malformed(value.at, field, "negative"));
    }
    if content.len() > MAX_CRL_NUMBER_LEN {
        return Err(malformed(value.at, field, "longer than 20 octets"));
    }
    CrlNumber::from_be_bytes(content).ok_or_else(|| malformed(value.at, field, "longer than 20 octets"))
}

/// Reads `crlExtensions` (the contents of `[0] EXPLICIT`, one SEQUENCE OF Extension).
pub(super) fn crl_extensions<'a>(list: Tlv<'a>, max: usize) -> Result<CrlExtensions<'a>, CrlError> {
    let mut found = CrlExtensions {
        number: None,
        base_number: None,
        authority_key_identifier: None,
        scope: CrlScope::All,
        distribution_point_uris: Vec::new(),
    };
    for_each_extension(list, max, |extension| {
        match extension.id.value {
            CRL_NUMBER => found.number = Some(crl_number(&extension, "cRLNumber")?),
            DELTA_CRL_INDICATOR => found.base_number = Some(crl_number(&extension, "deltaCRLIndicator")?),
            AUTHORITY_KEY_IDENTIFIER => {
                found.authority_key_identifier = decode_authority_key_identifier(extension.value.value)
                    .map_err(|_| malformed(extension.value.at, "authorityKeyIdentifier", "not a valid AuthorityKeyIdentifier"))?
            }
            ISSUING_DISTRIBUTION_POINT => {
                let value = single_value(&extension, "issuingDistributionPoint")?;
                if value.tag != walk::SEQUENCE {
                    let (at, found_tag) = (value.at, value.tag);
                    return Err(CrlError::UnexpectedTag { at, field: "issuingDistributionPoint", expected: walk::SEQUENCE, found: found_tag });
                }
                (found.scope, found.distribution_point_uris) = issuing_distribution_point(value)?;
            }
            _ => unknown_critical(&extension, None)?,
        }
        Ok(())
    })?;
    Ok(found)
}

/// `IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] DistributionPointName
/// OPTIONAL, onlyContainsUserCerts [1] BOOLEAN DEFAULT FALSE, onlyContainsCACerts [2] …,
/// onlySomeReasons [3] ReasonFlags OPTIONAL, indirectCRL [4] …, onlyContainsAttributeCerts
/// [5] … }`, tagged implicitly but for the CHOICE under `[0]`.
fn issuing_distribution_point(idp: Tlv<'_>) -> Result<(CrlScope, Vec<&str>), CrlError> {
    let mut fields = idp.contents();
    let mut uris = Vec::new();
    if let Some(point) = fields.optional(walk::context(0, true), "issuingDistributionPoint.distributionPoint")? {
        let mut choice = point.contents();
        let name = choice.next("issuingDistributionPoint.distributionPoint")?;
        choice.finish("issuingDistributionPoint.distributionPoint")?;
        match name.tag {
            // fullName [0] GeneralNames; a URI is [6] IA5String.
            tag if tag == walk::context(0, true) => {
                let mut names = name.contents();
                while !names.is_empty() {
                    let general_name = names.next("issuingDistributionPoint.fullName")?;
                    if uris.len() == MAX_DISTRIBUTION_POINT_NAMES {
                        return Err(malformed(general_name.at, "issuingDistributionPoint.fullName", "more than 16 names"));
                    }
                    if general_name.tag == walk::context(6, false) {
                        let uri = std::str::from_utf8(general_name.value)
                            .ok()
                            .filter(|text| text.is_ascii())
                            .ok_or_else(|| malformed(general_name.at, "issuingDistributionPoint.fullName", "URI is not IA5 text"))?;
                        uris.push(uri);
                    }
                }
            }
            tag if tag == walk::context(1, true) => {} // nameRelativeToCRLIssuer: no URL to report
            found => {
                return Err(CrlError::UnexpectedTag {
                    at: name.at,
                    field: "issuingDistributionPoint.distributionPoint",
                    expected: walk::context(0, true),
                    found,
                })
            }
        }
    }
    let flag = |fields: &mut Der<'_>, n: u8, field: &'static str| -> Result<Option<usize>, CrlError> {
        match fields.optional(walk::context(n, false), field)? {
            Some(tlv) => Ok(tlv.boolean(field)?.then_some(tlv.at)),
            None => Ok(None),
        }
    };
    let users = flag(&mut fields, 1, "issuingDistributionPoint.onlyContainsUserCerts")?;
    let cas = flag(&mut fields, 2, "issuingDistributionPoint.onlyContainsCACerts")?;
    if let Some(reasons) = fields.optional(walk::context(3, false), "issuingDistributionPoint.onlySomeReasons")? {
        return Err(CrlError::PartialScope { at: reasons.at, field: "issuingDistributionPoint.onlySomeReasons" });
    }
    if let Some(at) = flag(&mut fields, 4, "issuingDistributionPoint.indirectCRL")? {
        return Err(CrlError::IndirectCrl { at, field: "issuingDistributionPoint.indirectCRL" });
    }
    let attributes = flag(&mut fields, 5, "issuingDistributionPoint.onlyContainsAttributeCerts")?;
    fields.finish("issuingDistributionPoint")?;
    if let Some(at) = attributes {
        return Err(CrlError::PartialScope { at, field: "issuingDistributionPoint.onlyContainsAttributeCerts" });
    }
    let scope = match (users, cas) {
        (None, None) => CrlScope::All,
        (Some(_), None) => CrlScope::UserCertificates,
        (None, Some(_)) => CrlScope::CaCertificates,
        (Some(_), Some(at)) => {
            return Err(malformed(at, "issuingDistributionPoint", "both onlyContainsUserCerts and onlyContainsCACerts"))
        }
    };
    Ok((scope, uris))
}

/// Why a certificate was revoked (RFC 5280 §5.3.1 CRLReason; 7 is unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    /// In a delta CRL: the serial is no longer revoked (a hold was released).
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl ReasonCode {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => ReasonCode::Unspecified,
            1 => ReasonCode::KeyCompromise,
            2 => ReasonCode::CaCompromise,
            3 => ReasonCode::AffiliationChanged,
            4 => ReasonCode::Superseded,
            5 => ReasonCode::CessationOfOperation,
            6 => ReasonCode::CertificateHold,
            8 => ReasonCode::RemoveFromCrl,
            9 => ReasonCode::PrivilegeWithdrawn,
            10 => ReasonCode::AaCompromise,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            ReasonCode::Unspecified => 0,
            ReasonCode::KeyCompromise => 1,
            ReasonCode::CaCompromise => 2,
            ReasonCode::AffiliationChanged => 3,
            ReasonCode::Superseded => 4,
            ReasonCode::CessationOfOperation => 5,
            ReasonCode::CertificateHold => 6,
            ReasonCode::RemoveFromCrl => 8,
            ReasonCode::PrivilegeWithdrawn => 9,
            ReasonCode::AaCompromise => 10,
        }
    }

    /// RFC 5280's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ReasonCode::Unspecified => "unspecified",
            ReasonCode::KeyCompromise => "keyCompromise",
            ReasonCode::CaCompromise => "cACompromise",
            ReasonCode::AffiliationChanged => "affiliationChanged",
            ReasonCode::Superseded => "superseded",
            ReasonCode::CessationOfOperation => "cessationOfOperation",
            ReasonCode::CertificateHold => "certificateHold",
            ReasonCode::RemoveFromCrl => "removeFromCRL",
            ReasonCode::PrivilegeWithdrawn => "privilegeWithdrawn",
            ReasonCode::AaCompromise => "aACompromise",
        }
    }
}

/// What one entry's extensions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct EntryExtensions {
    pub reason: Option<ReasonCode>,
    pub invalidity_date: Option<i64>,
}

/// Reads `crlEntryExtensions` of entry number `entry`.
pub(super) fn entry_extensions(list: Tlv<'_>, max: usize, entry: usize) -> Result<EntryExtensions, CrlError> {
    let mut found = EntryExtensions::default();
    for_each_extension(list, max, |extension| {
        match extension.id.value {
            REASON_CODE => {
                let field = "reasonCode";
                let value = single_value(&extension, field)?;
                if value.tag != walk::ENUMERATED {
                    return Err(CrlError::UnexpectedTag { at: value.at, field, expected: walk::ENUMERATED, found: value.tag });
                }
                let reason = match value.integer(field)? {
                    [code] => ReasonCode::from_code(*code),
                    _ => None,
                };
                found.reason = Some(reason.ok_or_else(|| malformed(value.at, field, "not an RFC 5280 CRLReason"))?);
            }
            INVALIDITY_DATE => {
                let value = single_value(&extension, "invalidityDate")?;
                found.invalidity_date = Some(value.generalized_time("invalidityDate")?);
            }
            CERTIFICATE_ISSUER => return Err(CrlError::IndirectCrl { at: extension.at, field: "certificateIssuer" }),
            _ => unknown_critical(&extension, Some(entry))?,
        }
        Ok(())
    })?;
    Ok(found)
}
