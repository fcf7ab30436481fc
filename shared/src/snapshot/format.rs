//! The snapshot's byte layout (format 4), its digests, and the header reader both sides use.
//!
//! All integers are little-endian; nothing is aligned (records are read through
//! `from_le_bytes` on slices). A snapshot is
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CBIDSNAP"
//!      8     2  format version (4)
//!     10     1  signature algorithm: 1 = ECDSA P-256 / SHA-256, 2 = Ed25519
//!     11     1  reserved, 0
//!     12     4  number of body sections (12)
//!     16     8  snapshot version (strictly increasing)
//!     24     8  issued at, Unix seconds (signed)
//!     32     8  expires at, Unix seconds (signed)
//!     40    16  key id: 16 lowercase hex digits
//!     56   480  section table: 12 × (offset u32, length u32, SHA-256 digest 32), in the
//!               order of `BODY_SECTIONS`
//!    536    64  signature over bytes 0..536, the header only (r ‖ s for ECDSA, R ‖ S for Ed25519)
//!    600     …  the sections, back to back in table order, no gaps, up to the last byte
//! ```
//!
//! The signature covers the header, and the header covers every section through its digest:
//! verifying is one signature over 536 bytes, then one digest per section. A delta
//! ([`super::delta`]) that changes one record re-hashes one bucket of its section, not the
//! whole snapshot.
//!
//! Body sections. Fixed-width records sort strictly ascending by their key, so a lookup is a
//! binary search and a duplicate is impossible. An owner is an org index u24 into the orgs
//! section, or `0xFFFFFF` for the platform.
//!
//! | section    | record | layout                                                                   | sorted by |
//! |------------|--------|--------------------------------------------------------------------------|-----------|
//! | bindings   | 52     | fingerprint 32, user 16, org index u24, flags u8 (see below)             | bytes 0..32 |
//! | blocklist  | 35     | fingerprint 32, owner u24                                                | bytes 0..35 |
//! | revoked    | 35     | [`revoked_serial_key`] of (issuer DN, normalised serial) 32, owner u24  | bytes 0..35 |
//! | principals | 39     | fingerprint 32, owner u24, name string ref u32                           | bytes 0..35 |
//! | crl revoked| 16     | [`crate::identity::CaKey::revocation_key`] of (CA, normalised serial): a CRL's entry      | bytes 0..16 |
//! | san rules  | 12     | kind u8 (1 = email, 2 = UPN), domain ref u32 (lowercase), issuer DN ref u32, owner u24 | (kind, domain, issuer DN, owner) |
//! | constraints| 8      | owner u24, [`ConstraintKind`] u8, value ref u32                          | (owner, kind, value) |
//! | issuers    | 23     | `iss` ref u32, owner u24, JWKS offset u32 and length u32, audiences offset u32 and length u32 (into blobs) | (`iss`, owner) |
//! | cas        | 29     | [`crate::identity::CaKey`] 16, flags u8 (see below), CRL valid until i64 (Unix s), subject DN ref u32 | bytes 0..16 |
//! | blobs      | bytes  | per issuer in issuer order: its JWKS JSON, then its audiences as a JSON array of strings | — |
//! | orgs       | 4      | org id string ref u32; an org's index is its position                    | — |
//! | strings    | bytes  | entries of length u8 + UTF-8 bytes; a string ref is an entry's offset    | — |
//!
//! Owners compare as numbers (platform last); strings compare as bytes.
//!
//! A binding's flags: bit 0 = enabled; bit 1 = the user id is text; bit 2 = the claim is
//! unverified (see below). Without bit 1 the user's 16 bytes are a ULID's 128 bits
//! (big-endian), read back as its canonical 26-character spelling; with it, they are a string
//! ref u32 followed by 12 zero bytes. Other bits are 0.
//!
//! A principal record's name ref carries a flag in its top bit (string refs stay below 2^27,
//! as a snapshot is at most [`MAX_SNAPSHOT_BYTES`]): set, the mapping is unverified. A binding
//! or thumbprint mapping is *unverified* when the control plane never saw its certificate
//! whole (bound by fields, mapped by fingerprint alone), so could not check it against the
//! other orgs' SAN rules; it then loses to another org's verified claim
//! ([`crate::decision::resolve`]). Snapshots written before the flag existed have none set.
//!
//! A CA's flags: bit 0 = a fresh CRL is required; bit 1 = fail open without one; bit 2 = a
//! verified CRL is held, and "valid until" (its nextUpdate plus the CA's grace) is meaningful
//! (otherwise it is 0). Other bits are 0. CRL revocations belong to no owner: a CRL verified
//! against a registered CA's key is a fact about that CA, whoever uploaded it.
//!
//! Digests. Each section's digest is SHA-256 over [`DIGEST_LABEL`], the section's name, a zero
//! byte, then:
//! - for the keyed sections (bindings, blocklist, revoked, principals, crl revoked): the 4096
//!   *bucket* digests, 32 bytes each. A record's bucket is the first 12 bits of its key
//!   (records are sorted, so a bucket is a contiguous run); a bucket's digest is SHA-256 of its
//!   records' bytes (an empty bucket's is SHA-256 of nothing).
//! - for every other section: its bytes.
//!
//! The orgs and strings sections only grow along a chain of snapshots the control plane
//! patches (records copied from one snapshot into the next keep their references), so a delta
//! appends to them and a reader digests the appended bytes only.

use super::SnapshotError;
use crate::identity::{normalize_serial, ConstraintKind, SanKind, CA_KEY_LEN};
use sha2::{Digest, Sha256};
use std::fmt;
use std::ops::Range;

pub const MAGIC: [u8; 8] = *b"CBIDSNAP";
pub const FORMAT_VERSION: u16 = 4;
pub const SIGNATURE_LEN: usize = 64;
/// Key ids are the first 16 hex digits of SHA-256 over the key's SubjectPublicKeyInfo DER.
pub const KEY_ID_LEN: usize = 16;
pub const DIGEST_LEN: usize = 32;
/// One section table entry: offset u32, length u32, digest.
pub const SECTION_ENTRY_LEN: usize = 8 + DIGEST_LEN;
/// The signed part.
pub const HEADER_LEN: usize = OFFSET_SECTION_TABLE + SECTION_COUNT * SECTION_ENTRY_LEN;
/// Header and signature: where the first section starts.
pub const BODY_START: usize = HEADER_LEN + SIGNATURE_LEN;

/// Largest snapshot accepted, checked before anything is hashed. One million bindings take
/// about 52 MB (one 52-byte record each); 128 MiB leaves room for roughly 2.5 M bindings or
/// large revocation lists, while bounding what a filter will buffer.
pub const MAX_SNAPSHOT_BYTES: usize = 128 * 1024 * 1024;

/// Longest string in the string table (its length is one byte). Ids are short keys
/// (a UUID is 36 bytes, a ULID 26), DNS names stop at 253, issuer URLs and DNs fit.
pub const MAX_STRING_LEN: usize = 255;

/// Org indexes are 24 bits wide, and the largest value means the platform.
pub const PLATFORM_OWNER: u32 = 0x00FF_FFFF;
pub const MAX_ORGS: usize = PLATFORM_OWNER as usize;

/// Most issuer registrations in one snapshot. Each one's JWKS is parsed into verifying keys
/// when the snapshot opens (an RSA key holds about a kilobyte); 16 384 is a few per org for
/// thousands of orgs, and bounds that memory and work.
pub const MAX_ISSUERS: usize = 16 * 1024;

/// Largest audiences array of one issuer registration, and most entries in it: audiences
/// are a few URLs, and each is compared on every token of that issuer.
pub const MAX_AUDIENCES_BYTES: usize = 4 * 1024;
pub const MAX_AUDIENCES: usize = 32;

/// Most CAs in one snapshot. The DoD and Federal PKIs together register a few hundred
/// issuing CAs; a certificate without an AuthorityKeyIdentifier scans them by DN.
pub const MAX_CAS: usize = 4096;

/// How far in the future `issued_at` may lie before the snapshot is refused: clocks of the
/// control plane and the proxies disagree by seconds, not minutes.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Buckets of a keyed section's digest: the first 12 bits of a record's key. At a million
/// bindings a bucket holds about 250 records (13 KB); the bucket table is 128 KiB.
pub const BUCKET_BITS: u32 = 12;
pub const BUCKETS: usize = 1 << BUCKET_BITS;

/// Prefix of every section digest's input, so no other SHA-256 in certbind collides with one.
pub const DIGEST_LABEL: &[u8] = b"certbind snapshot 4 section\0";

pub const BINDING_RECORD: usize = 52;
pub const BLOCKED_RECORD: usize = 35;
pub const REVOKED_RECORD: usize = 35;
pub const PRINCIPAL_RECORD: usize = 39;
pub const SAN_RULE_RECORD: usize = 12;
pub const CONSTRAINT_RECORD: usize = 8;
pub const ISSUER_RECORD: usize = 23;
pub const ORG_RECORD: usize = 4;
pub const CRL_REVOKED_RECORD: usize = CA_KEY_LEN;
pub const CA_RECORD: usize = 29;
pub(crate) const CA_REQUIRE_FRESH_CRL: u8 = 0x01;
pub(crate) const CA_FAIL_OPEN: u8 = 0x02;
pub(crate) const CA_CRL_HELD: u8 = 0x04;
/// Where a CA record's parts start.
pub(crate) const CA_FLAGS_AT: usize = 16;
pub(crate) const CA_VALID_UNTIL_AT: usize = 17;
pub(crate) const CA_SUBJECT_AT: usize = 25;
/// Width of the fingerprint (or revoked-serial key) that starts a keyed record.
pub const FINGERPRINT_LEN: usize = 32;
/// Width of the sort key of an owned keyed record: fingerprint and owner.
pub const OWNED_KEY_LEN: usize = FINGERPRINT_LEN + 3;
pub(crate) const BINDING_ENABLED: u8 = 0x01;
pub(crate) const BINDING_USER_TEXT: u8 = 0x02;
pub(crate) const BINDING_UNVERIFIED: u8 = 0x04;
/// The top bit of a principal record's name ref: the mapping is unverified.
pub(crate) const PRINCIPAL_UNVERIFIED: u32 = 0x8000_0000;

/// A principal record's name ref, without its flag, and what the mapping rests on.
pub(crate) fn principal_name_ref(record: &[u8]) -> Option<(u32, crate::identity::Claim)> {
    let raw = read_u32(record, OWNED_KEY_LEN)?;
    Some((raw & !PRINCIPAL_UNVERIFIED, crate::identity::Claim::from_verified(raw & PRINCIPAL_UNVERIFIED == 0)))
}
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Header,
    Bindings,
    Blocklist,
    Revoked,
    Principals,
    CrlRevoked,
    SanRules,
    Constraints,
    Issuers,
    Cas,
    Blobs,
    Orgs,
    Strings,
    Signature,
}

/// The body sections in the order of the section table and of the bytes.
pub const BODY_SECTIONS: [Section; 12] = [
    Section::Bindings,
    Section::Blocklist,
    Section::Revoked,
    Section::Principals,
    Section::CrlRevoked,
    Section::SanRules,
    Section::Constraints,
    Section::Issuers,
    Section::Cas,
    Section::Blobs,
    Section::Orgs,
    Section::Strings,
];

pub const SECTION_COUNT: usize = BODY_SECTIONS.len();

/// The sections digested by bucket.
pub const KEYED_SECTIONS: [Section; KEYED_COUNT] =
    [Section::Bindings, Section::Blocklist, Section::Revoked, Section::Principals, Section::CrlRevoked];
pub const KEYED_COUNT: usize = 5;

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Header => "header",
            Section::Bindings => "bindings",
            Section::Blocklist => "blocklist",
            Section::Revoked => "revoked",
            Section::Principals => "principals",
            Section::CrlRevoked => "crl_revoked",
            Section::Cas => "cas",
            Section::SanRules => "san_rules",
            Section::Constraints => "constraints",
            Section::Issuers => "issuers",
            Section::Blobs => "blobs",
            Section::Orgs => "orgs",
            Section::Strings => "strings",
            Section::Signature => "signature",
        }
    }

    /// Width of one record, for the fixed-width sections.
    pub fn record_len(self) -> Option<usize> {
        match self {
            Section::Bindings => Some(BINDING_RECORD),
            Section::Blocklist => Some(BLOCKED_RECORD),
            Section::Revoked => Some(REVOKED_RECORD),
            Section::Principals => Some(PRINCIPAL_RECORD),
            Section::CrlRevoked => Some(CRL_REVOKED_RECORD),
            Section::Cas => Some(CA_RECORD),
            Section::SanRules => Some(SAN_RULE_RECORD),
            Section::Constraints => Some(CONSTRAINT_RECORD),
            Section::Issuers => Some(ISSUER_RECORD),
            Section::Orgs => Some(ORG_RECORD),
            _ => None,
        }
    }

    /// Width of the sort key at the start of a record, for the keyed sections.
    pub fn key_len(self) -> Option<usize> {
        match self {
            Section::Bindings => Some(FINGERPRINT_LEN),
            Section::Blocklist | Section::Revoked | Section::Principals => Some(OWNED_KEY_LEN),
            Section::CrlRevoked => Some(CA_KEY_LEN),
            _ => None,
        }
    }

    /// Position in the section table.
    pub fn table_index(self) -> Option<usize> {
        BODY_SECTIONS.iter().position(|s| *s == self)
    }

    /// Position among [`KEYED_SECTIONS`].
    pub(crate) fn keyed_index(self) -> Option<usize> {
        KEYED_SECTIONS.iter().position(|s| *s == self)
    }

    pub fn from_table_index(index: usize) -> Option<Section> {
        BODY_SECTIONS.get(index).copied()
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

/// A constraint kind's byte in a constraint record ([`ConstraintKind`] is the identity's noun;
/// how the snapshot spells it is the format's).
impl ConstraintKind {
    pub fn wire_id(self) -> u8 {
        match self {
            ConstraintKind::AllowedIssuerDn => 1,
            ConstraintKind::RequiredPolicyOid => 2,
            ConstraintKind::SanEmailDomain => 3,
            ConstraintKind::RequireFreshCrl => 4,
        }
    }

    pub fn from_wire_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(ConstraintKind::AllowedIssuerDn),
            2 => Some(ConstraintKind::RequiredPolicyOid),
            3 => Some(ConstraintKind::SanEmailDomain),
            4 => Some(ConstraintKind::RequireFreshCrl),
            _ => None,
        }
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

/// A header's fields, where each body section lies (absolute byte ranges) and the digest it
/// must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub header: SnapshotHeader,
    pub sections: [Range<usize>; SECTION_COUNT],
    pub digests: [[u8; DIGEST_LEN]; SECTION_COUNT],
}

impl Layout {
    /// Where the last section ends: the snapshot's length.
    pub fn end(&self) -> usize {
        self.sections.last().map_or(BODY_START, |r| r.end)
    }
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

pub(crate) fn u24_bytes(value: u32) -> [u8; 3] {
    let [a, b, c, _] = value.to_le_bytes();
    [a, b, c]
}

/// The string entry at `offset` of the string table.
pub(crate) fn read_string(strings: &[u8], offset: u32) -> Option<&str> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::from(*strings.get(start)?);
    let body_start = start.checked_add(1)?;
    let body = strings.get(body_start..body_start.checked_add(len)?)?;
    std::str::from_utf8(body).ok()
}

/// The bucket of a keyed record: the first 12 bits of its key.
pub fn bucket_of(key: &[u8]) -> usize {
    let high = usize::from(key.first().copied().unwrap_or(0));
    let low = usize::from(key.get(1).copied().unwrap_or(0));
    (high << 4) | (low >> 4)
}

/// The digest a section's header entry must carry, for a plain (not keyed) section.
pub(crate) fn plain_digest(section: Section, bytes: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = plain_digest_state(section);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// A plain section's digest state before its bytes: continued over an append.
pub(crate) fn plain_digest_state(section: Section) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(DIGEST_LABEL);
    hasher.update(section.name().as_bytes());
    hasher.update([0]);
    hasher
}

/// The digest of a keyed section from its bucket digests.
pub(crate) fn keyed_digest(section: Section, buckets: &[[u8; DIGEST_LEN]]) -> [u8; DIGEST_LEN] {
    let mut hasher = plain_digest_state(section);
    for bucket in buckets {
        hasher.update(bucket);
    }
    hasher.finalize().into()
}

/// SHA-256 of nothing: the digest of an empty bucket.
pub(crate) fn empty_bucket_digest() -> [u8; DIGEST_LEN] {
    Sha256::digest([]).into()
}

/// The 4096 bucket digests of a keyed section's bytes. A bucket's records are those whose
/// key falls in it, in the order they appear: contiguous when the section is sorted (the
/// only shape that opens), gathered otherwise, so any bytes have a digest and a reordering
/// is caught by the structure check that follows.
pub(crate) fn bucket_digests(records: &[u8], record_len: usize) -> Vec<[u8; DIGEST_LEN]> {
    let record_len = record_len.max(1);
    let empty = empty_bucket_digest();
    let mut table = vec![empty; BUCKETS];
    let mut runs = records.chunks_exact(record_len).peekable();
    let mut offset = 0usize;
    let mut previous_bucket = 0usize;
    while let Some(first) = runs.next() {
        let bucket = bucket_of(first);
        if bucket < previous_bucket {
            return gathered_bucket_digests(records, record_len);
        }
        previous_bucket = bucket;
        let mut end = offset + record_len;
        while runs.peek().is_some_and(|r| bucket_of(r) == bucket) {
            runs.next();
            end += record_len;
        }
        if let (Some(slot), Some(bytes)) = (table.get_mut(bucket), records.get(offset..end)) {
            *slot = Sha256::digest(bytes).into();
        }
        offset = end;
    }
    table
}

fn gathered_bucket_digests(records: &[u8], record_len: usize) -> Vec<[u8; DIGEST_LEN]> {
    let mut hashers: Vec<Option<Sha256>> = vec![None; BUCKETS];
    for record in records.chunks_exact(record_len) {
        if let Some(slot) = hashers.get_mut(bucket_of(record)) {
            slot.get_or_insert_with(Sha256::new).update(record);
        }
    }
    let empty = empty_bucket_digest();
    hashers.into_iter().map(|h| h.map_or(empty, |h| h.finalize().into())).collect()
}

/// The records of `bucket` in a sorted keyed section, as a range of record indexes.
pub(crate) fn bucket_range(records: &[u8], record_len: usize, bucket: usize) -> Range<usize> {
    let record_len = record_len.max(1);
    let count = records.len() / record_len;
    let first_at_least = |b: usize| {
        let (mut low, mut high) = (0usize, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if records.get(mid * record_len..).map(bucket_of).is_some_and(|m| m < b) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    };
    first_at_least(bucket)..first_at_least(bucket + 1)
}

fn is_key_id(text: &[u8]) -> bool {
    text.len() == KEY_ID_LEN && text.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Reads the header of `bytes` without checking the signature or the body: enough to see
/// which key signed it and which version it claims. Nothing it returns is authenticated.
pub fn peek_header(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotError> {
    read_layout(bytes).map(|layout| layout.header)
}

/// The header of a whole snapshot, checked against its length: sections back to back from
/// [`BODY_START`] to the last byte.
pub(crate) fn read_layout(bytes: &[u8]) -> Result<Layout, SnapshotError> {
    if bytes.len() > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge { len: bytes.len(), max: MAX_SNAPSHOT_BYTES });
    }
    if bytes.len() < BODY_START {
        if bytes.get(..MAGIC.len()) == Some(&MAGIC[..]) {
            // A shorter header may be another format's: say so rather than "truncated".
            if let Some(format) = read_format(bytes) {
                if format != FORMAT_VERSION {
                    return Err(SnapshotError::UnsupportedFormat { format_version: format });
                }
            }
        }
        return Err(SnapshotError::Truncated { len: bytes.len() });
    }
    let layout = read_header(bytes)?;
    let end = layout.end();
    if end != bytes.len() {
        return Err(malformed(Section::Strings, end, "bytes after the last section"));
    }
    Ok(layout)
}

fn read_format(bytes: &[u8]) -> Option<u16> {
    bytes
        .get(OFFSET_FORMAT_VERSION..OFFSET_FORMAT_VERSION + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_le_bytes)
}

/// The header at the start of `bytes` (at least [`HEADER_LEN`] of them): fields and section
/// table, checked for shape (sections back to back from [`BODY_START`], whole records,
/// no overflow past [`MAX_SNAPSHOT_BYTES`]) but not against any body.
pub(crate) fn read_header(bytes: &[u8]) -> Result<Layout, SnapshotError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(SnapshotError::BadMagic);
    }
    let format = read_format(bytes).ok_or(SnapshotError::Truncated { len: bytes.len() })?;
    if format != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedFormat { format_version: format });
    }
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated { len: bytes.len() });
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
    let signed = |at| read_u64(bytes, at).map(|v| i64::from_le_bytes(v.to_le_bytes()));
    let issued_at = signed(OFFSET_ISSUED_AT).ok_or(malformed(Section::Header, OFFSET_ISSUED_AT, "truncated"))?;
    let expires_at = signed(OFFSET_EXPIRES_AT).ok_or(malformed(Section::Header, OFFSET_EXPIRES_AT, "truncated"))?;
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

    let mut sections: [Range<usize>; SECTION_COUNT] = Default::default();
    let mut digests = [[0u8; DIGEST_LEN]; SECTION_COUNT];
    let mut expected_start = BODY_START;
    for (i, section) in BODY_SECTIONS.into_iter().enumerate() {
        let entry = OFFSET_SECTION_TABLE + i * SECTION_ENTRY_LEN;
        let truncated = malformed(Section::Header, entry, "truncated section table");
        let offset = read_u32(bytes, entry).ok_or(truncated.clone())?;
        let len = read_u32(bytes, entry + 4).ok_or(truncated.clone())?;
        let digest = bytes.get(entry + 8..entry + SECTION_ENTRY_LEN).ok_or(truncated)?;
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(malformed(section, entry, "section bounds overflow"));
        };
        if offset != expected_start {
            return Err(malformed(section, entry, "section does not start where the previous one ends"));
        }
        let end = offset.checked_add(len).ok_or(malformed(section, entry, "section bounds overflow"))?;
        if end > MAX_SNAPSHOT_BYTES {
            return Err(malformed(section, entry, "section ends past the largest snapshot"));
        }
        if let Some(record_len) = section.record_len() {
            if len % record_len != 0 {
                return Err(malformed(section, entry + 4, "length is not a whole number of records"));
            }
        }
        if let (Some(slot), Some(range)) = (digests.get_mut(i), sections.get_mut(i)) {
            slot.copy_from_slice(digest);
            *range = offset..end;
        }
        expected_start = end;
    }
    Ok(Layout { header: SnapshotHeader { version, issued_at, expires_at, key_id, algorithm }, sections, digests })
}

/// Writes the header into `out[..HEADER_LEN]`.
pub(crate) fn write_header(
    out: &mut [u8],
    header: &SnapshotHeader,
    sections: &[Range<usize>; SECTION_COUNT],
    digests: &[[u8; DIGEST_LEN]; SECTION_COUNT],
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
    for (i, (range, digest)) in sections.iter().zip(digests).enumerate() {
        let entry = OFFSET_SECTION_TABLE + i * SECTION_ENTRY_LEN;
        let offset = u32::try_from(range.start).ok()?;
        let len = u32::try_from(range.end.checked_sub(range.start)?).ok()?;
        head.get_mut(entry..entry + 4)?.copy_from_slice(&offset.to_le_bytes());
        head.get_mut(entry + 4..entry + 8)?.copy_from_slice(&len.to_le_bytes());
        head.get_mut(entry + 8..entry + SECTION_ENTRY_LEN)?.copy_from_slice(digest);
    }
    Some(())
}

pub(crate) fn is_valid_key_id(key_id: &str) -> bool {
    is_key_id(key_id.as_bytes())
}

/// Where a section's entry lies in the header (for tests that damage one).
pub fn section_entry_offset(section: Section) -> Option<usize> {
    section.table_index().map(|i| OFFSET_SECTION_TABLE + i * SECTION_ENTRY_LEN)
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
        assert_eq!(u24_bytes(0x030201), [1, 2, 3]);
    }

    #[test]
    fn string_entries_are_bounded_by_the_table() {
        let table = [3, b'a', b'b', b'c', 2, b'x'];
        assert_eq!(read_string(&table, 0), Some("abc"));
        assert_eq!(read_string(&table, 4), None);
        assert_eq!(read_string(&table, 6), None);
        assert_eq!(read_string(&[1, 0xff], 0), None);
    }

    #[test]
    fn the_header_is_536_bytes_and_sections_start_after_the_signature() {
        assert_eq!(HEADER_LEN, 536);
        assert_eq!(BODY_START, 600);
        assert_eq!(section_entry_offset(Section::Bindings), Some(56));
        assert_eq!(section_entry_offset(Section::Strings), Some(56 + 11 * 40));
    }

    #[test]
    fn buckets_are_the_first_twelve_bits() {
        assert_eq!(bucket_of(&[0x00, 0x0f, 0xff]), 0);
        assert_eq!(bucket_of(&[0x12, 0x34]), 0x123);
        assert_eq!(bucket_of(&[0xff, 0xff]), BUCKETS - 1);
        // Three records: two in bucket 0x123, one in 0xabc.
        let mut records = Vec::new();
        for key in [[0x12u8, 0x30], [0x12, 0x3f], [0xab, 0xc0]] {
            let mut record = [0u8; 4];
            record[..2].copy_from_slice(&key);
            records.extend_from_slice(&record);
        }
        let table = bucket_digests(&records, 4);
        assert_eq!(table[0x123], <[u8; 32]>::from(Sha256::digest(&records[..8])));
        assert_eq!(table[0xabc], <[u8; 32]>::from(Sha256::digest(&records[8..])));
        assert_eq!(table[0], empty_bucket_digest());
        assert_eq!(bucket_range(&records, 4, 0x123), 0..2);
        assert_eq!(bucket_range(&records, 4, 0x124), 2..2);
        assert_eq!(bucket_range(&records, 4, 0xabc), 2..3);
        // Out of bucket order, a bucket's records are gathered in the order they appear.
        let mut unsorted = records[..4].to_vec();
        unsorted.extend_from_slice(&records[8..]);
        unsorted.extend_from_slice(&records[4..8]);
        let gathered = bucket_digests(&unsorted, 4);
        assert_eq!(gathered, table);
        let mut swapped = records[4..8].to_vec();
        swapped.extend_from_slice(&records[..4]);
        swapped.extend_from_slice(&records[8..]);
        assert_ne!(bucket_digests(&swapped, 4)[0x123], table[0x123]);
    }
}
