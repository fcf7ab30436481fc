//! How much of a CRL the reader will look at.

/// The caps a caller may set per CA or per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlLimits {
    /// Largest CRL DER accepted, checked before anything else is read. The reader borrows the
    /// bytes and allocates little beside them, so this bounds its memory. The largest DoD CRL
    /// holds about a million entries in about 40 MB (DoD PKI publishes over 231 MB across 49
    /// CAs); 256 MiB takes six times that.
    pub max_der_bytes: usize,
    /// Most revoked entries accepted in one CRL: what a caller folding every entry into its
    /// own tables will hold. 8 million is eight times the largest DoD CRL.
    pub max_entries: usize,
}

impl Default for CrlLimits {
    fn default() -> Self {
        CrlLimits { max_der_bytes: 256 * 1024 * 1024, max_entries: 8_000_000 }
    }
}

impl CrlLimits {
    /// Largest PEM text accepted for a DER of `max_der_bytes`: base64 takes 4/3 of it, line
    /// breaks every 64 characters another 1/64, and 64 KiB leaves room for the text OpenSSL
    /// allows around the block.
    pub fn max_pem_bytes(&self) -> usize {
        let base64 = self.max_der_bytes.saturating_add(2) / 3 * 4;
        base64.saturating_add(base64 / 64).saturating_add(64 * 1024)
    }
}

/// Longest serial number content accepted: RFC 5280 §4.1.2.2 lets conforming CAs use 20
/// octets, and a 20-octet value with its top bit set takes a sign octet in DER. Longer is
/// refused: no certificate can carry it (x509-cert refuses it too).
pub const MAX_SERIAL_LEN: usize = 21;

/// Longest CRL Number content: RFC 5280 §5.2.3 caps it at 20 octets, plus DER's sign octet.
pub const MAX_CRL_NUMBER_LEN: usize = 21;

/// Most extensions in the CRL's own list: RFC 5280 defines seven CRL extensions, CAs add a
/// few of their own (Microsoft's CA version, next publish time); each is compared with every
/// other once to refuse repeats.
pub const MAX_CRL_EXTENSIONS: usize = 32;

/// Most extensions on one revoked entry: RFC 5280 defines four entry extensions. Entries are
/// counted in millions, so this keeps the per-entry work of the repeat check small.
pub const MAX_ENTRY_EXTENSIONS: usize = 8;

/// Largest issuer Name DER: real CA names take 100–300 bytes; the name is rendered as text
/// and compared with the CA's, so it is bounded like any other DN the crate reads.
pub const MAX_NAME_DER: usize = 4 * 1024;

/// Most names in the Issuing Distribution Point's fullName: CAs list one to three URLs.
pub const MAX_DISTRIBUTION_POINT_NAMES: usize = 16;
