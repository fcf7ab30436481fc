//! Why a CRL was refused: what, and where (a byte offset into the DER and the field's name).

use super::number::CrlNumber;
use super::scope::CrlScope;
use crate::certificate::KeyIdentifier;
use der::asn1::ObjectIdentifier;
use std::fmt;

/// Every refusal of the CRL reader and verifier. Offsets (`at`) count bytes from the start of
/// the DER; `field` names the ASN.1 field of RFC 5280 §5.1 being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlError {
    /// More bytes than [`super::CrlLimits`] allows (DER, or PEM text); nothing was read.
    TooLarge { len: usize, limit: usize },
    /// More revoked entries than [`super::CrlLimits`] allows; `at` is the first one too many.
    TooManyEntries { at: usize, limit: usize },
    /// PEM framing: no `-----BEGIN X509 CRL-----` line, no END line, or a broken body.
    Pem(&'static str),
    /// The DER breaks a rule of its own (truncated, a long-form length where a short one fits,
    /// a value that is not what its type allows).
    Malformed { at: usize, field: &'static str, problem: &'static str },
    UnexpectedTag { at: usize, field: &'static str, expected: u8, found: u8 },
    /// Bytes after a field that must end its enclosing element, or after the CertificateList.
    Trailing { at: usize, field: &'static str, len: usize },
    /// A revoked serial longer than 20 octets (plus DER's sign octet).
    SerialTooLong { at: usize, len: usize },
    /// The issuer Name is too large or does not render as a DN.
    IssuerName { at: usize, problem: String },
    /// A critical extension the reader does not understand; `entry` is the revoked entry's
    /// position, `None` for the CRL's own extensions.
    UnknownCriticalExtension { at: usize, oid: ObjectIdentifier, entry: Option<usize> },
    RepeatedExtension { at: usize, oid: ObjectIdentifier },
    TooManyExtensions { at: usize, limit: usize },
    /// An indirect CRL: the Issuing Distribution Point's `indirectCRL`, or an entry's
    /// `certificateIssuer`. Its entries may be another CA's serials.
    IndirectCrl { at: usize, field: &'static str },
    /// An Issuing Distribution Point that limits the CRL to some reasons
    /// (`onlySomeReasons`) or to attribute certificates: it is not complete for a CA's users.
    PartialScope { at: usize, field: &'static str },
    /// No CRL Number (RFC 5280 §5.2.3 requires one): without it a replayed older CRL cannot
    /// be told from a newer one.
    MissingCrlNumber,
    /// removeFromCRL (reason 8) belongs in delta CRLs only (RFC 5280 §5.3.1).
    RemoveFromCrlInCompleteCrl { at: usize, entry: usize },
    /// A signature algorithm the verifier does not implement, named by its OID.
    UnsupportedSignatureAlgorithm { at: usize, oid: ObjectIdentifier },
    /// `signatureAlgorithm` differs from `tbsCertList.signature` (RFC 5280 §5.1.1.2).
    SignatureAlgorithmMismatch { at: usize },
    /// The CA's key is of a type or curve the verifier does not implement.
    UnsupportedKey { oid: ObjectIdentifier },
    /// The CA's SubjectPublicKeyInfo does not hold a usable key (`problem` says why).
    UnusableKey { problem: &'static str },
    /// The CRL's signature algorithm is for another kind of key than the CA's.
    KeyAlgorithmMismatch { key: &'static str, signature: &'static str },
    /// The signature does not verify with the CA's key.
    BadSignature,
    /// The CRL's AuthorityKeyIdentifier names another key than the CA's.
    AuthorityKeyMismatch { crl: KeyIdentifier, ca: KeyIdentifier },
    /// The CRL's issuer Name is not the CA's subject, neither byte for byte nor as text.
    IssuerMismatch { crl: String, ca: String },
    /// The CA's certificate does not allow it to sign CRLs.
    CaCannotSignCrls { problem: &'static str },
    /// A delta CRL where a complete one is expected, or the other way round.
    WrongKind { expected: &'static str },
    /// A complete CRL whose number is below the one held: an old CRL replayed.
    OlderCrl { held: CrlNumber, offered: CrlNumber },
    /// A CRL verified with another CA's key than the serials held are of.
    OtherCa { held: KeyIdentifier, offered: KeyIdentifier },
    /// A CRL covering other certificates (its Issuing Distribution Point) than the one held.
    ScopeMismatch { held: CrlScope, offered: CrlScope },
    /// A delta CRL that does not apply to the complete CRL held (RFC 5280 §5.2.4: the held
    /// number must be at least the delta's base and below the delta's own).
    DeltaDoesNotApply { held: CrlNumber, base: CrlNumber, delta: CrlNumber },
}

fn tag_name(tag: u8) -> &'static str {
    match tag {
        0x01 => "BOOLEAN",
        0x02 => "INTEGER",
        0x03 => "BIT STRING",
        0x04 => "OCTET STRING",
        0x05 => "NULL",
        0x06 => "OBJECT IDENTIFIER",
        0x0a => "ENUMERATED",
        0x17 => "UTCTime",
        0x18 => "GeneralizedTime",
        0x30 => "SEQUENCE",
        0x31 => "SET",
        0x80..=0xbf => "a context-specific tag",
        _ => "another type",
    }
}

impl fmt::Display for CrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrlError::TooLarge { len, limit } => write!(f, "CRL is {len} bytes, more than the {limit}-byte limit"),
            CrlError::TooManyEntries { at, limit } => {
                write!(f, "CRL has more than {limit} revoked entries (the one at byte {at} is over the limit)")
            }
            CrlError::Pem(problem) => write!(f, "PEM: {problem}"),
            CrlError::Malformed { at, field, problem } => write!(f, "{field} at byte {at}: {problem}"),
            CrlError::UnexpectedTag { at, field, expected, found } => write!(
                f,
                "{field} at byte {at}: expected {} (tag 0x{expected:02x}), found {} (tag 0x{found:02x})",
                tag_name(*expected),
                tag_name(*found)
            ),
            CrlError::Trailing { at, field, len } => write!(f, "{len} unexpected bytes after {field}, at byte {at}"),
            CrlError::SerialTooLong { at, len } => {
                write!(f, "revoked serial at byte {at} is {len} octets, more than RFC 5280's 20")
            }
            CrlError::IssuerName { at, problem } => write!(f, "issuer Name at byte {at}: {problem}"),
            CrlError::UnknownCriticalExtension { at, oid, entry: None } => {
                write!(f, "CRL extension {oid} at byte {at} is critical and not understood")
            }
            CrlError::UnknownCriticalExtension { at, oid, entry: Some(entry) } => write!(
                f,
                "extension {oid} of revoked entry {entry} (byte {at}) is critical and not understood"
            ),
            CrlError::RepeatedExtension { at, oid } => write!(f, "extension {oid} appears twice (again at byte {at})"),
            CrlError::TooManyExtensions { at, limit } => {
                write!(f, "extension list at byte {at} holds more than {limit} extensions")
            }
            CrlError::IndirectCrl { at, field } => {
                write!(f, "indirect CRLs are not accepted: {field} at byte {at} says this one is")
            }
            CrlError::PartialScope { at, field } => write!(
                f,
                "CRLs covering part of a CA's certificates are not accepted: {field} at byte {at}"
            ),
            CrlError::MissingCrlNumber => f.write_str("the CRL has no CRL Number extension (RFC 5280 §5.2.3)"),
            CrlError::RemoveFromCrlInCompleteCrl { at, entry } => write!(
                f,
                "revoked entry {entry} (byte {at}) has reason removeFromCRL, which only a delta CRL may carry"
            ),
            CrlError::UnsupportedSignatureAlgorithm { at, oid } => {
                write!(f, "signature algorithm {oid} at byte {at} is not supported")
            }
            CrlError::SignatureAlgorithmMismatch { at } => {
                write!(f, "signatureAlgorithm at byte {at} differs from tbsCertList.signature")
            }
            CrlError::UnsupportedKey { oid } => write!(f, "the CA's key ({oid}) is not of a supported type or curve"),
            CrlError::UnusableKey { problem } => write!(f, "the CA's public key is unusable: {problem}"),
            CrlError::KeyAlgorithmMismatch { key, signature } => {
                write!(f, "the CRL is signed with {signature}, but the CA's key is {key}")
            }
            CrlError::BadSignature => f.write_str("the CRL's signature does not verify with the CA's key"),
            CrlError::AuthorityKeyMismatch { crl, ca } => {
                write!(f, "the CRL names authority key {crl}, the CA's key is {ca}")
            }
            CrlError::IssuerMismatch { crl, ca } => write!(f, "the CRL's issuer \"{crl}\" is not the CA \"{ca}\""),
            CrlError::CaCannotSignCrls { problem } => write!(f, "the CA may not sign CRLs: {problem}"),
            CrlError::WrongKind { expected } => write!(f, "expected {expected}"),
            CrlError::OlderCrl { held, offered } => {
                write!(f, "CRL {offered} is older than the CRL {held} held")
            }
            CrlError::OtherCa { held, offered } => {
                write!(f, "the CRL is of the CA with key {offered}, the serials held are of the CA with key {held}")
            }
            CrlError::ScopeMismatch { held, offered } => {
                write!(f, "the CRL covers {}, the CRL held covers {}", offered.name(), held.name())
            }
            CrlError::DeltaDoesNotApply { held, base, delta } => write!(
                f,
                "delta CRL {delta} (base {base}) does not apply to the complete CRL {held} held"
            ),
        }
    }
}

impl std::error::Error for CrlError {}
