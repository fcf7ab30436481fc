//! What the snapshot machinery counts and reports, under the names the proxy exports.

use certbind_shared::snapshot::SnapshotError;

/// Metric ids, defined at configuration time. Any may be missing (the host refused to define
/// it); counting is then skipped, never the request.
#[derive(Debug, Clone, Default)]
pub struct SnapshotMetrics {
    pub version: Option<u32>,
    pub age_seconds: Option<u32>,
    pub expires_in_seconds: Option<u32>,
    pub fetches: Option<u32>,
    pub not_modified: Option<u32>,
    pub fetch_failures: Option<u32>,
    pub full_loads: Option<u32>,
    pub deltas_applied: Option<u32>,
    pub adopted_from_shared: Option<u32>,
    pub refused: Vec<(&'static str, u32)>,
}

/// Every refusal kind, as counted (`certbind.snapshot.refused.<kind>`).
pub const REFUSAL_KINDS: [&str; 11] = [
    "too_large",
    "malformed",
    "unsupported_format",
    "unknown_key",
    "bad_signature",
    "rollback",
    "replay",
    "expired",
    "issued_in_future",
    "too_old",
    "unexpected_content_type",
];

impl SnapshotMetrics {
    pub fn define(mut define: impl FnMut(&str, bool) -> Option<u32>) -> Self {
        let gauge = |define: &mut dyn FnMut(&str, bool) -> Option<u32>, name: &str| define(name, true);
        let counter = |define: &mut dyn FnMut(&str, bool) -> Option<u32>, name: &str| define(name, false);
        SnapshotMetrics {
            version: gauge(&mut define, "certbind.snapshot.version"),
            age_seconds: gauge(&mut define, "certbind.snapshot.age_seconds"),
            expires_in_seconds: gauge(&mut define, "certbind.snapshot.expires_in_seconds"),
            fetches: counter(&mut define, "certbind.snapshot.fetches"),
            not_modified: counter(&mut define, "certbind.snapshot.not_modified"),
            fetch_failures: counter(&mut define, "certbind.snapshot.fetch_failures"),
            full_loads: counter(&mut define, "certbind.snapshot.full_loads"),
            deltas_applied: counter(&mut define, "certbind.snapshot.deltas_applied"),
            adopted_from_shared: counter(&mut define, "certbind.snapshot.adopted_from_shared"),
            refused: REFUSAL_KINDS
                .iter()
                .filter_map(|kind| define(&format!("certbind.snapshot.refused.{kind}"), false).map(|id| (*kind, id)))
                .collect(),
        }
    }

    pub(super) fn refused(&self, kind: &str) -> Option<u32> {
        self.refused.iter().find(|(k, _)| *k == kind).map(|(_, id)| *id)
    }
}

/// The counter a refusal is filed under.
pub fn refusal_kind(error: &SnapshotError) -> &'static str {
    match error {
        SnapshotError::TooLarge { .. } => "too_large",
        SnapshotError::Truncated { .. }
        | SnapshotError::BadMagic
        | SnapshotError::Malformed { .. }
        | SnapshotError::IssuerKeys { .. }
        | SnapshotError::DeltaMalformed { .. }
        | SnapshotError::DeltaBase { .. } => "malformed",
        SnapshotError::UnsupportedFormat { .. } => "unsupported_format",
        SnapshotError::UnknownKey { .. } | SnapshotError::KeyAlgorithmMismatch { .. } => "unknown_key",
        // A section that is not the one the signed header names: as good as a bad signature.
        SnapshotError::BadSignature | SnapshotError::DigestMismatch { .. } | SnapshotError::DeltaLength { .. } => {
            "bad_signature"
        }
        SnapshotError::Rollback { .. } => "rollback",
        SnapshotError::NotNewer { .. } => "replay",
        SnapshotError::Expired { .. } => "expired",
        SnapshotError::IssuedInFuture { .. } => "issued_in_future",
        SnapshotError::TooOld { .. } => "too_old",
    }
}
