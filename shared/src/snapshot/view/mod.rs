//! Lookups straight over a snapshot's bytes.
//!
//! Opening a view checks every offset, length, reference, owner and ordering once; after that
//! a lookup is a binary search over fixed-width records and reads nothing it has not checked.
//! Reads still go through `get`, so even a bug here could only make a lookup miss, never panic.
//! The few small sections whose content is needed whole (constraints, issuers with their
//! parsed keys) are read into maps once, when the view opens.
//!
//! `checker` holds those checks, shared with deltas, which check only the records they insert;
//! `lookups` holds the reads of records and the identity lookups the decision makes.

pub(crate) mod checker;
mod lookups;

pub(crate) use checker::{Checker, Derived, DigestState};
pub use lookups::IssuerEntry;

use super::format::{
    read_layout, Layout, Section, SignatureAlgorithm, SnapshotHeader, BINDING_RECORD, BLOCKED_RECORD, BODY_START,
    DIGEST_LEN, HEADER_LEN, PRINCIPAL_RECORD, REVOKED_RECORD,
};
use super::SnapshotError;
use std::fmt;
use std::sync::Arc;

/// A structurally valid snapshot, answering [`crate::identity::IdentityData`] lookups without
/// parsing.
/// Cloning is cheap: the bytes and everything read from them are shared.
#[derive(Clone)]
pub struct SnapshotView {
    bytes: Arc<Vec<u8>>,
    layout: Layout,
    derived: Arc<Derived>,
    digests: Arc<DigestState>,
}

impl fmt::Debug for SnapshotView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotView")
            .field("header", &self.layout.header)
            .field("len", &self.bytes.len())
            .field("bindings", &self.binding_count())
            .finish()
    }
}

/// A view whose bytes were taken out ([`SnapshotView::into_unique_bytes`]).
pub(crate) struct ViewWithoutBytes {
    layout: Layout,
    derived: Arc<Derived>,
    digests: Arc<DigestState>,
}

impl ViewWithoutBytes {
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn derived(&self) -> &Derived {
        &self.derived
    }

    /// The view again, over the bytes taken out (unchanged: what was checked of them holds).
    pub(crate) fn with_bytes(self, bytes: Vec<u8>) -> SnapshotView {
        SnapshotView { bytes: Arc::new(bytes), layout: self.layout, derived: self.derived, digests: self.digests }
    }
}

impl SnapshotView {
    /// Opens `bytes` after checking their structure only: no signature, no digests, no clock,
    /// no version. For the producer re-reading what it has just signed, for inspection tools,
    /// and for a worker opening bytes another worker of the same proxy verified; bytes from
    /// the network go through [`super::SnapshotVerifier::verify`].
    pub fn open_unauthenticated(bytes: impl Into<Arc<Vec<u8>>>) -> Result<Self, SnapshotError> {
        let bytes = bytes.into();
        let layout = read_layout(&bytes)?;
        let derived = Checker { bytes: &bytes, layout: &layout }.check_all()?;
        Ok(SnapshotView { bytes, layout, derived: Arc::new(derived), digests: Arc::default() })
    }

    /// Digests, then structure, of bytes whose header is authenticated.
    pub(crate) fn open_authenticated(bytes: Arc<Vec<u8>>, layout: Layout) -> Result<Self, SnapshotError> {
        let checker = Checker { bytes: &bytes, layout: &layout };
        let digests = checker.check_digests()?;
        let derived = checker.check_all()?;
        Ok(SnapshotView { bytes, layout, derived: Arc::new(derived), digests: Arc::new(digests) })
    }

    /// A view over parts a delta assembled and checked.
    pub(crate) fn from_parts(bytes: Arc<Vec<u8>>, layout: Layout, derived: Arc<Derived>, digests: DigestState) -> Self {
        SnapshotView { bytes, layout, derived, digests: Arc::new(digests) }
    }

    pub(crate) fn derived(&self) -> &Arc<Derived> {
        &self.derived
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The same view over a copy of its bytes that it alone owns, with an eighth more room (as
    /// the filter keeps): what an in-place delta rewrites.
    #[cfg(test)]
    pub(crate) fn unshared(&self) -> SnapshotView {
        let mut bytes = Vec::with_capacity(self.bytes.len() + self.bytes.len() / 8);
        bytes.extend_from_slice(&self.bytes);
        SnapshotView { bytes: Arc::new(bytes), ..self.clone() }
    }

    /// The bytes, taken out of the view when it is their only owner (a delta then rewrites
    /// them in place), with everything else the view holds; otherwise the view, unchanged.
    pub(crate) fn into_unique_bytes(self) -> Result<(Vec<u8>, ViewWithoutBytes), Box<SnapshotView>> {
        let SnapshotView { bytes, layout, derived, digests } = self;
        match Arc::try_unwrap(bytes) {
            Ok(bytes) => Ok((bytes, ViewWithoutBytes { layout, derived, digests })),
            Err(bytes) => Err(Box::new(SnapshotView { bytes, layout, derived, digests })),
        }
    }

    pub(crate) fn digest_state(&self) -> &DigestState {
        &self.digests
    }

    fn checker(&self) -> Checker<'_> {
        Checker { bytes: &self.bytes, layout: &self.layout }
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.layout.header
    }

    pub fn version(&self) -> u64 {
        self.layout.header.version
    }

    pub fn issued_at(&self) -> i64 {
        self.layout.header.issued_at
    }

    pub fn expires_at(&self) -> i64 {
        self.layout.header.expires_at
    }

    /// Whether the snapshot has expired at `now` (Unix seconds): from then on it must not be
    /// used, and requests are answered `identity_unavailable`.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.layout.header.expires_at
    }

    pub fn key_id(&self) -> &str {
        &self.layout.header.key_id
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.layout.header.algorithm
    }

    /// The whole signed snapshot.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The snapshot bytes, shared rather than copied.
    pub fn shared_bytes(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.bytes)
    }

    /// The signed header and its signature: what a delta to this snapshot ends with.
    pub fn signed_header(&self) -> &[u8] {
        self.bytes.get(..BODY_START).unwrap_or(&[])
    }

    /// The digest the header gives `section` (zero for the header and signature).
    pub fn digest(&self, section: Section) -> [u8; DIGEST_LEN] {
        section.table_index().and_then(|i| self.layout.digests.get(i)).copied().unwrap_or_default()
    }

    /// Bytes in the string table: a builder's hint for the next snapshot's.
    pub fn strings_len(&self) -> usize {
        self.section_bytes(Section::Strings).len()
    }

    /// The raw bytes of one part of the snapshot, as checked when the view was opened. For
    /// the producer, which copies unchanged records into the next snapshot
    /// ([`super::SnapshotEncoder::continuing`]), and for deltas.
    pub fn section_bytes(&self, section: Section) -> &[u8] {
        match section {
            Section::Header => self.bytes.get(..HEADER_LEN).unwrap_or(&[]),
            Section::Signature => self.bytes.get(HEADER_LEN..BODY_START).unwrap_or(&[]),
            _ => self.checker().section(section),
        }
    }

    pub fn binding_count(&self) -> usize {
        self.section_bytes(Section::Bindings).len() / BINDING_RECORD
    }

    pub fn blocklist_count(&self) -> usize {
        self.section_bytes(Section::Blocklist).len() / BLOCKED_RECORD
    }

    pub fn revoked_count(&self) -> usize {
        self.section_bytes(Section::Revoked).len() / REVOKED_RECORD
    }

    pub fn principal_count(&self) -> usize {
        self.section_bytes(Section::Principals).len() / PRINCIPAL_RECORD
    }

    pub fn org_count(&self) -> usize {
        self.checker().org_count()
    }
}
