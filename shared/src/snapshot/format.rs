//! The snapshot's byte layout, and the header reader both sides use.
//!
//! All integers are little-endian; nothing is aligned (records are read through
//! `from_le_bytes` on slices). A snapshot is
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CBIDSNAP"
//!      8     2  format version (2)
//!     10     1  signature algorithm: 1 = ECDSA P-256 / SHA-256, 2 = Ed25519
//!     11     1  reserved, 0
//!     12     4  number of body sections (10)
//!     16     8  snapshot version (strictly increasing)
//!     24     8  issued at, Unix seconds (signed)
//!     32     8  expires at, Unix seconds (signed)
//!     40    16  key id: 16 lowercase hex digits
//!     56    80  section table: 10 × (offset u32, length u32), in the order of `BODY_SECTIONS`
//!    136     …  the sections, back to back in table order, no gaps
//! end-64    64  signature over every byte before it (r ‖ s for ECDSA, R ‖ S for Ed25519)
//! ```
//!
//! Body sections (fixed-width records sorted strictly ascending by their key, so a lookup is
//! a binary search and a duplicate is impossible):
//!
//! | section    | record | layout                                                          |
//! |------------|--------|-----------------------------------------------------------------|
//! | bindings   | 52     | fingerprint 32, user 16, org index u24, flags u8 (see below)     |
//! | orgs       | 4      | org id string ref u32 (a binding names its org by index here)   |
//! | blocklist  | 32     | fingerprint                                                     |
//! | revoked    | 32     | [`revoked_serial_key`] of (issuer DN, normalised serial)        |
//! | principals | 36     | fingerprint 32, principal string ref u32                        |
//! | san rules  | 5      | kind u8 (1 = email, 2 = UPN), domain string ref u32 (lowercase) |
//! | constraints| 9      | org id string ref u32, [`ConstraintKind`] u8, value string ref u32; sorted by (org, kind, value) |
//! | issuers    | 12     | issuer string ref u32, JWKS offset u32, JWKS length u32         |
//! | jwks       | bytes  | the issuers' JWKS JSON documents, back to back in issuer order  |
//! | strings    | bytes  | entries of length u8 + UTF-8 bytes; a string ref is an entry's offset |
//!
//! A binding's flags: bit 0 = enabled; bit 1 = the user id is text. Without bit 1 the user's
//! 16 bytes are a ULID's 128 bits (big-endian), read back as its canonical 26-character
//! spelling; with it, they are a string ref u32 followed by 12 zero bytes. The control plane
//! names users by ULID, so a million bindings need no user strings at all. Other bits are 0.

use super::SnapshotError;
use crate::identity::{normalize_serial, SanKind};
use sha2::{Digest, Sha256};
use std::fmt;
use std::ops::Range;

pub const MAGIC: [u8; 8] = *b"CBIDSNAP";
pub const FORMAT_VERSION: u16 = 2;
pub const HEADER_LEN: usize = 136;
pub const SIGNATURE_LEN: usize = 64;
/// Key ids are the first 16 hex digits of SHA-256 over the key's SubjectPublicKeyInfo DER.
pub const KEY_ID_LEN: usize = 16;

/// Largest snapshot accepted, checked before anything is hashed. One million bindings take
/// about 52 MB (one 52-byte record each); 128 MiB leaves room for roughly 2.5 M bindings or
/// large revocation lists, while bounding what a filter will buffer.
pub const MAX_SNAPSHOT_BYTES: usize = 128 * 1024 * 1024;

/// Longest string in the string table (its length is one byte). Ids are short keys
/// (a UUID is 36 bytes, a ULID 26), DNS names stop at 253, issuer URLs fit comfortably.
pub const MAX_STRING_LEN: usize = 255;

/// Org indexes are 24 bits wide in a binding record.
pub const MAX_ORGS: usize = 1 << 24;

/// How far in the future `issued_at` may lie before the snapshot is refused: clocks of the
/// control plane and the proxies disagree by seconds, not minutes.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

pub const BINDING_RECORD: usize = 52;
pub(crate) const ORG_RECORD: usize = 4;
pub const FINGERPRINT_RECORD: usize = 32;
pub const PRINCIPAL_RECORD: usize = 36;
pub(crate) const SAN_RULE_RECORD: usize = 5;
pub(crate) const CONSTRAINT_RECORD: usize = 9;
pub(crate) const ISSUER_RECORD: usize = 12;
pub(crate) const BINDING_ENABLED: u8 = 0x01;
pub(crate) const BINDING_USER_TEXT: u8 = 0x02;
/// Where a binding record's parts start.
pub(crate) const BINDING_USER_AT: usize = 32;
pub(crate) const BINDING_ORG_AT: usize = 48;
pub(crate) const BINDING_FLAGS_AT: usize = 51;

const OFFSET_FORMAT_VERSION: usize = 8;
const OFFSET_ALGORITHM: usize = 10;
const OFFSET_RESERVED: usize = 11;
const OFFSET_SECTION_COUNT: usize = 12;
const OFFSET_VERSION: usize = 16;
const OFFSET_ISSUED_AT: usize = 24;
const OFFSET_EXPIRES_AT: usize = 32;
const OFFSET_KEY_ID: usize = 40;
const OFFSET_SECTION_TABLE: usize = 56;

/// The signature algorithms a snapshot may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256 of the message; the signature is r ‖ s, 32 bytes each.
    EcdsaP256Sha256,
    /// Pure Ed25519 (RFC 8032) over the message.
    Ed25519,
}

impl SignatureAlgorithm {
    pub fn wire_id(self) -> u8 {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => 1,
            SignatureAlgorithm::Ed25519 => 2,
        }
    }

    pub fn from_wire_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(SignatureAlgorithm::EcdsaP256Sha256),
            2 => Some(SignatureAlgorithm::Ed25519),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => "ES256",
            SignatureAlgorithm::Ed25519 => "Ed25519",
        }
    }
}

/// The parts of a snapshot, for error messages and the encoder's ordering rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Header,
    Bindings,
    Orgs,
    Blocklist,
    Revoked,
    Principals,
    SanRules,
    Constraints,
    Issuers,
    Jwks,
    Strings,
    Signature,
}

/// The body sections in the order of the section table and of the bytes.
pub const BODY_SECTIONS: [Section; 10] = [
    Section::Bindings,
    Section::Orgs,
    Section::Blocklist,
    Section::Revoked,
    Section::Principals,
    Section::SanRules,
    Section::Constraints,
    Section::Issuers,
    Section::Jwks,
    Section::Strings,
];

pub(crate) const SECTION_COUNT: usize = BODY_SECTIONS.len();

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Header => "header",
            Section::Bindings => "bindings",
            Section::Orgs => "orgs",
            Section::Blocklist => "blocklist",
            Section::Revoked => "revoked",
            Section::Principals => "principals",
            Section::SanRules => "san_rules",
            Section::Constraints => "constraints",
            Section::Issuers => "issuers",
            Section::Jwks => "jwks",
            Section::Strings => "strings",
            Section::Signature => "signature",
        }
    }

    /// Width of one record, for the fixed-width sections.
    pub(crate) fn record_len(self) -> Option<usize> {
        match self {
            Section::Bindings => Some(BINDING_RECORD),
            Section::Orgs => Some(ORG_RECORD),
            Section::Blocklist | Section::Revoked => Some(FINGERPRINT_RECORD),
            Section::Principals => Some(PRINCIPAL_RECORD),
            Section::SanRules => Some(SAN_RULE_RECORD),
            Section::Constraints => Some(CONSTRAINT_RECORD),
            Section::Issuers => Some(ISSUER_RECORD),
            _ => None,
        }
    }

    /// Position in the section table.
    pub(crate) fn table_index(self) -> Option<usize> {
        BODY_SECTIONS.iter().position(|s| *s == self)
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) fn san_kind_wire_id(kind: SanKind) -> u8 {
    match kind {
        SanKind::Email => 1,
        SanKind::Upn => 2,
    }
}

pub(crate) fn san_kind_from_wire_id(id: u8) -> Option<SanKind> {
    match id {
        1 => Some(SanKind::Email),
        2 => Some(SanKind::Upn),
        _ => None,
    }
}

/// What an org demands of its members' certificates, beyond the route's own constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConstraintKind {
    /// The certificate's issuer DN must be one of the org's listed DNs.
    AllowedIssuerDn,
    /// The certificate must assert one of the org's listed policy OIDs.
    RequiredPolicyOid,
    /// Every RFC 822 SAN must lie in one of the org's listed domains.
    SanEmailDomain,
}

impl ConstraintKind {
    pub fn wire_id(self) -> u8 {
        match self {
            ConstraintKind::AllowedIssuerDn => 1,
            ConstraintKind::RequiredPolicyOid => 2,
            ConstraintKind::SanEmailDomain => 3,
        }
    }

    pub fn from_wire_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(ConstraintKind::AllowedIssuerDn),
            2 => Some(ConstraintKind::RequiredPolicyOid),
            3 => Some(ConstraintKind::SanEmailDomain),
            _ => None,
        }
    }

    /// The name the control plane's API and database use.
    pub fn name(self) -> &'static str {
        match self {
            ConstraintKind::AllowedIssuerDn => "allowed_issuer_dn",
            ConstraintKind::RequiredPolicyOid => "required_policy_oid",
            ConstraintKind::SanEmailDomain => "san_email_domain",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [ConstraintKind::AllowedIssuerDn, ConstraintKind::RequiredPolicyOid, ConstraintKind::SanEmailDomain]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// The key of a revoked-serial record: SHA-256 over a domain label, the issuer DN's length
/// and bytes, and the serial as [`normalize_serial`] spells it. Hashing gives every entry the
/// same width whatever the DN's length, so the section stays binary-searchable.
pub fn revoked_serial_key(issuer_dn: &str, serial: &str) -> [u8; 32] {
    let serial = normalize_serial(serial);
    let mut hasher = Sha256::new();
    hasher.update(b"certbind revoked serial v1\0");
    hasher.update((issuer_dn.len() as u64).to_le_bytes());
    hasher.update(issuer_dn.as_bytes());
    hasher.update(serial.as_bytes());
    hasher.finalize().into()
}

/// The authenticated header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
    pub key_id: String,
    pub algorithm: SignatureAlgorithm,
}

/// A header plus where each body section lies, as absolute byte ranges.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub header: SnapshotHeader,
    pub sections: [Range<usize>; SECTION_COUNT],
    /// Length of the signed part: everything before the signature.
    pub signed_len: usize,
}

pub(crate) fn malformed(section: Section, at: usize, problem: &'static str) -> SnapshotError {
    SnapshotError::Malformed { section, at, problem }
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let slice = bytes.get(at..end)?;
    Some(u32::from_le_bytes(slice.try_into().ok()?))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let slice = bytes.get(at..end)?;
    Some(u64::from_le_bytes(slice.try_into().ok()?))
}

/// A 24-bit little-endian integer.
pub(crate) fn read_u24(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(3)?;
    let slice = bytes.get(at..end)?;
    let mut four = [0u8; 4];
    four.get_mut(..3)?.copy_from_slice(slice);
    Some(u32::from_le_bytes(four))
}

/// The string entry at `offset` of the string table.
pub(crate) fn read_string(strings: &[u8], offset: u32) -> Option<&str> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::from(*strings.get(start)?);
    let body_start = start.checked_add(1)?;
    let body = strings.get(body_start..body_start.checked_add(len)?)?;
    std::str::from_utf8(body).ok()
}

fn is_key_id(text: &[u8]) -> bool {
    text.len() == KEY_ID_LEN && text.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Reads the header of `bytes` without checking the signature or the body: enough to see
/// which key signed it and which version it claims. Nothing it returns is authenticated.
pub fn peek_header(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotError> {
    read_layout(bytes).map(|layout| layout.header)
}

pub(crate) fn read_layout(bytes: &[u8]) -> Result<Layout, SnapshotError> {
    if bytes.len() > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge { len: bytes.len(), max: MAX_SNAPSHOT_BYTES });
    }
    if bytes.len() < HEADER_LEN + SIGNATURE_LEN {
        return Err(SnapshotError::Truncated { len: bytes.len() });
    }
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(SnapshotError::BadMagic);
    }
    let format = bytes
        .get(OFFSET_FORMAT_VERSION..OFFSET_FORMAT_VERSION + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_le_bytes)
        .ok_or(malformed(Section::Header, OFFSET_FORMAT_VERSION, "truncated"))?;
    if format != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedFormat { format_version: format });
    }
    let algorithm = bytes
        .get(OFFSET_ALGORITHM)
        .copied()
        .and_then(SignatureAlgorithm::from_wire_id)
        .ok_or(malformed(Section::Header, OFFSET_ALGORITHM, "unknown signature algorithm"))?;
    if bytes.get(OFFSET_RESERVED) != Some(&0) {
        return Err(malformed(Section::Header, OFFSET_RESERVED, "reserved byte is not zero"));
    }
    let section_count =
        read_u32(bytes, OFFSET_SECTION_COUNT).ok_or(malformed(Section::Header, OFFSET_SECTION_COUNT, "truncated"))?;
    if usize::try_from(section_count).ok() != Some(SECTION_COUNT) {
        return Err(malformed(Section::Header, OFFSET_SECTION_COUNT, "wrong number of sections"));
    }
    let version = read_u64(bytes, OFFSET_VERSION).ok_or(malformed(Section::Header, OFFSET_VERSION, "truncated"))?;
    let issued_at = read_u64(bytes, OFFSET_ISSUED_AT).map(|v| i64::from_le_bytes(v.to_le_bytes())).ok_or(malformed(
        Section::Header,
        OFFSET_ISSUED_AT,
        "truncated",
    ))?;
    let expires_at = read_u64(bytes, OFFSET_EXPIRES_AT)
        .map(|v| i64::from_le_bytes(v.to_le_bytes()))
        .ok_or(malformed(Section::Header, OFFSET_EXPIRES_AT, "truncated"))?;
    if expires_at <= issued_at {
        return Err(malformed(Section::Header, OFFSET_EXPIRES_AT, "expires before it is issued"));
    }
    let key_id_bytes = bytes.get(OFFSET_KEY_ID..OFFSET_KEY_ID + KEY_ID_LEN).ok_or(malformed(
        Section::Header,
        OFFSET_KEY_ID,
        "truncated",
    ))?;
    if !is_key_id(key_id_bytes) {
        return Err(malformed(Section::Header, OFFSET_KEY_ID, "key id is not 16 lowercase hex digits"));
    }
    let key_id = String::from_utf8_lossy(key_id_bytes).into_owned();

    let signed_len = bytes.len() - SIGNATURE_LEN;
    let mut sections: [Range<usize>; SECTION_COUNT] = Default::default();
    let mut expected_start = HEADER_LEN;
    for (i, (slot, section)) in sections.iter_mut().zip(BODY_SECTIONS).enumerate() {
        let entry = OFFSET_SECTION_TABLE + i * 8;
        let offset = read_u32(bytes, entry).ok_or(malformed(Section::Header, entry, "truncated section table"))?;
        let len = read_u32(bytes, entry + 4).ok_or(malformed(Section::Header, entry, "truncated section table"))?;
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(malformed(Section::Header, entry, "section bounds overflow"));
        };
        if offset != expected_start {
            return Err(malformed(section, entry, "section does not start where the previous one ends"));
        }
        let end = offset.checked_add(len).ok_or(malformed(section, entry, "section bounds overflow"))?;
        if end > signed_len {
            return Err(malformed(section, entry, "section runs into the signature"));
        }
        if let Some(record_len) = section.record_len() {
            if len % record_len != 0 {
                return Err(malformed(section, offset, "length is not a whole number of records"));
            }
        }
        *slot = offset..end;
        expected_start = end;
    }
    if expected_start != signed_len {
        return Err(malformed(Section::Signature, expected_start, "bytes between the last section and the signature"));
    }
    Ok(Layout { header: SnapshotHeader { version, issued_at, expires_at, key_id, algorithm }, sections, signed_len })
}

/// Writes the fixed header into `out[..HEADER_LEN]`.
pub(crate) fn write_header(
    out: &mut [u8],
    header: &SnapshotHeader,
    sections: &[Range<usize>; SECTION_COUNT],
) -> Option<()> {
    let head = out.get_mut(..HEADER_LEN)?;
    head.fill(0);
    head.get_mut(..8)?.copy_from_slice(&MAGIC);
    head.get_mut(OFFSET_FORMAT_VERSION..OFFSET_FORMAT_VERSION + 2)?.copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    *head.get_mut(OFFSET_ALGORITHM)? = header.algorithm.wire_id();
    head.get_mut(OFFSET_SECTION_COUNT..OFFSET_SECTION_COUNT + 4)?
        .copy_from_slice(&u32::try_from(SECTION_COUNT).ok()?.to_le_bytes());
    head.get_mut(OFFSET_VERSION..OFFSET_VERSION + 8)?.copy_from_slice(&header.version.to_le_bytes());
    head.get_mut(OFFSET_ISSUED_AT..OFFSET_ISSUED_AT + 8)?.copy_from_slice(&header.issued_at.to_le_bytes());
    head.get_mut(OFFSET_EXPIRES_AT..OFFSET_EXPIRES_AT + 8)?.copy_from_slice(&header.expires_at.to_le_bytes());
    head.get_mut(OFFSET_KEY_ID..OFFSET_KEY_ID + KEY_ID_LEN)?
        .copy_from_slice(header.key_id.as_bytes().get(..KEY_ID_LEN)?);
    for (i, range) in sections.iter().enumerate() {
        let entry = OFFSET_SECTION_TABLE + i * 8;
        let offset = u32::try_from(range.start).ok()?;
        let len = u32::try_from(range.end.checked_sub(range.start)?).ok()?;
        head.get_mut(entry..entry + 4)?.copy_from_slice(&offset.to_le_bytes());
        head.get_mut(entry + 4..entry + 8)?.copy_from_slice(&len.to_le_bytes());
    }
    Some(())
}

pub(crate) fn is_valid_key_id(key_id: &str) -> bool {
    is_key_id(key_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_key_uses_the_normalised_serial() {
        assert_eq!(revoked_serial_key("CN=CA", "0x00:0A"), revoked_serial_key("CN=CA", "a"));
        assert_ne!(revoked_serial_key("CN=CA", "0a"), revoked_serial_key("CN=CA2", "0a"));
        // The DN's length is hashed, so moving bytes between DN and serial changes the key.
        assert_ne!(revoked_serial_key("CN=CA1", "2"), revoked_serial_key("CN=CA", "12"));
    }

    #[test]
    fn u24_reads_three_bytes_little_endian() {
        assert_eq!(read_u24(&[0x01, 0x02, 0x03, 0xff], 0), Some(0x030201));
        assert_eq!(read_u24(&[0x01, 0x02], 0), None);
    }

    #[test]
    fn string_entries_are_bounded_by_the_table() {
        let table = [3, b'a', b'b', b'c', 2, b'x'];
        assert_eq!(read_string(&table, 0), Some("abc"));
        assert_eq!(read_string(&table, 4), None);
        assert_eq!(read_string(&table, 6), None);
        assert_eq!(read_string(&[1, 0xff], 0), None);
    }
}
