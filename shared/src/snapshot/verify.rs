//! Accepting a snapshot: pinned key, signature over the header, version, clock, then the
//! sections' digests and structure.
//!
//! A delta chain is accepted by [`SnapshotVerifier::apply_delta`], defined with the rest of
//! applying a delta in [`super::delta`]: the same header checks, then the chain's own.

use super::format::{read_layout, SnapshotHeader, BODY_START, HEADER_LEN, MAX_CLOCK_SKEW_SECS};
use super::keys::{KeyError, PinnedKey};
use super::view::SnapshotView;
use super::SnapshotError;
use std::sync::Arc;

/// Verifies snapshots against the public keys pinned in configuration. Several keys may be
/// pinned at once, so a new key can start signing while the old one is still accepted.
#[derive(Debug, Clone)]
pub struct SnapshotVerifier {
    keys: Vec<PinnedKey>,
    /// Oldest issue time accepted, as an age at verification time: a proxy that has lost its
    /// memory of what it held (a restart) then accepts no snapshot older than this, which bounds
    /// how far back a replayed snapshot can take it. `None`: any unexpired snapshot.
    max_age_secs: Option<i64>,
}

impl SnapshotVerifier {
    /// At least one key; a key given twice is kept once.
    pub fn new(keys: impl IntoIterator<Item = PinnedKey>) -> Result<Self, KeyError> {
        let mut unique: Vec<PinnedKey> = Vec::new();
        for key in keys {
            if !unique.contains(&key) {
                unique.push(key);
            }
        }
        if unique.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(SnapshotVerifier { keys: unique, max_age_secs: None })
    }

    /// Refuses snapshots issued more than `secs` before the time of verification
    /// ([`SnapshotError::TooOld`]). Set it above the control plane's re-sign interval.
    pub fn with_max_age(mut self, secs: Option<i64>) -> Self {
        self.max_age_secs = secs.filter(|s| *s > 0);
        self
    }

    /// From configuration texts, each a PEM block or a JWK (see [`PinnedKey::parse`]).
    pub fn from_key_texts<S: AsRef<str>>(texts: &[S]) -> Result<Self, KeyError> {
        let keys = texts.iter().map(|t| PinnedKey::parse(t.as_ref())).collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    pub fn keys(&self) -> &[PinnedKey] {
        &self.keys
    }

    /// Accepts `bytes` only if a pinned key signed their header, their version is newer than
    /// `held_version` (the snapshot in use, if any), they have not expired at `now` (Unix
    /// seconds), were not issued more than [`MAX_CLOCK_SKEW_SECS`] in the future, every
    /// section has the digest the header gives it, and every section is well formed. The
    /// checks run in that order, so nothing unauthenticated is interpreted beyond finding the
    /// key and the signature, and a replayed snapshot costs one signature check.
    pub fn verify(
        &self,
        bytes: impl Into<Arc<Vec<u8>>>,
        now: i64,
        held_version: Option<u64>,
    ) -> Result<SnapshotView, SnapshotError> {
        let bytes = bytes.into();
        let layout = read_layout(&bytes)?;
        self.check_signed_header(&bytes, &layout.header, now, held_version)?;
        SnapshotView::open_authenticated(bytes, layout)
    }

    /// The checks of a header (read from `signed`, which starts with the header and its
    /// signature): pinned key, signature, version against `held_version`, clock.
    pub(crate) fn check_signed_header(
        &self,
        signed: &[u8],
        header: &SnapshotHeader,
        now: i64,
        held_version: Option<u64>,
    ) -> Result<(), SnapshotError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.key_id() == header.key_id)
            .ok_or_else(|| SnapshotError::UnknownKey { key_id: header.key_id.clone() })?;
        if key.algorithm() != header.algorithm {
            return Err(SnapshotError::KeyAlgorithmMismatch { key_id: header.key_id.clone() });
        }
        let (Some(message), Some(signature)) = (signed.get(..HEADER_LEN), signed.get(HEADER_LEN..BODY_START)) else {
            return Err(SnapshotError::Truncated { len: signed.len() });
        };
        if !key.verifies(message, signature) {
            return Err(SnapshotError::BadSignature);
        }
        if let Some(held) = held_version {
            if header.version < held {
                return Err(SnapshotError::Rollback { held, offered: header.version });
            }
            if header.version == held {
                return Err(SnapshotError::NotNewer { version: held });
            }
        }
        if now >= header.expires_at {
            return Err(SnapshotError::Expired { expires_at: header.expires_at, now });
        }
        if header.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(SnapshotError::IssuedInFuture { issued_at: header.issued_at, now });
        }
        if let Some(max_age) = self.max_age_secs {
            if header.issued_at < now.saturating_sub(max_age) {
                return Err(SnapshotError::TooOld { issued_at: header.issued_at, max_age_secs: max_age, now });
            }
        }
        Ok(())
    }
}
