//! What a snapshot carries, as plain rows keyed by their owner ([`Owner`]): the full
//! build's input ([`SnapshotContent`]), read from the database or folded from changes.

use certbind_shared::identity::{CaKey, CertificateAuthority, CA_KEY_LEN};
use certbind_shared::Fingerprint;
use crate::domain::change::{
    BindingRecord, CaRecord, ConstraintRecord, IssuerRecord, MappingRecord, RevokedSerialRecord, SanRuleRecord,
};
use crate::domain::Owner;

/// Everything a snapshot carries, as plain rows. Order does not matter; the builder sorts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotContent {
    pub bindings: Vec<BindingRecord>,
    pub blocklist: Vec<(Fingerprint, Owner)>,
    pub revoked: Vec<RevokedSerialRecord>,
    pub principals: Vec<MappingRecord>,
    pub san_rules: Vec<SanRuleRecord>,
    pub constraints: Vec<ConstraintRecord>,
    pub issuers: Vec<IssuerRecord>,
    pub cas: Vec<CaEntry>,
    /// CRL revocation keys ([`CaKey::revocation_key`]), any order.
    pub crl_revoked: Vec<[u8; CA_KEY_LEN]>,
}

/// A registered CA as the snapshot keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaEntry {
    pub key: CaKey,
    pub value: CaValue,
}

/// What the snapshot says of a CA besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaValue {
    pub subject_dn: String,
    pub require_fresh_crl: bool,
    pub fail_open: bool,
    pub crl_valid_until: Option<i64>,
}

impl CaValue {
    pub(super) fn of(record: &CaRecord) -> Self {
        CaValue {
            subject_dn: record.subject_dn.clone(),
            require_fresh_crl: record.require_fresh_crl,
            fail_open: record.fail_open,
            crl_valid_until: record.crl_valid_until,
        }
    }

    pub(super) fn authority(&self, key: CaKey) -> CertificateAuthority<'_> {
        CertificateAuthority {
            key,
            subject_dn: &self.subject_dn,
            require_fresh_crl: self.require_fresh_crl,
            fail_open: self.fail_open,
            crl_valid_until: self.crl_valid_until,
        }
    }
}

/// The snapshot key of a CRL revocation of `ca`'s serial `serial_hex`.
pub fn crl_revocation_key(ca: &certbind_shared::certificate::KeyIdentifier, serial_hex: &str) -> [u8; CA_KEY_LEN] {
    CaKey::of(ca).revocation_key(serial_hex)
}

