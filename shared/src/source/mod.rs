//! Where the client certificate comes from: exactly one configured source per deployment.
//! Each parser takes the raw header value a proxy set and returns the leaf certificate's DER.
//! None of them decides whether the header may be believed: that is the caller's trust check
//! (trusted proxy CIDRs, or the connection cross-check).

pub mod nginx;
pub mod rfc9440;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod traefik;
pub mod xfcc;

use crate::certificate::CertificateError;

/// HTTP optional whitespace (RFC 9110 §5.6.3).
fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The first position at or after `pos` that is not optional whitespace.
fn skip_ows(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).copied().is_some_and(is_ows) {
        pos += 1;
    }
    pos
}

/// Default cap on one certificate-carrying header. A PIV certificate is ~2 KiB of DER, ~4 KiB
/// once PEM'd and URL-encoded; a chain of four fits comfortably in 32 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// Why a certificate header was refused. Each maps to 400 `malformed_client_cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// More than one header of the same name.
    Duplicate,
    Oversized { len: usize, limit: usize },
    /// The value breaks its grammar; the text says what and at which byte.
    Malformed(String),
    /// XFCC `Hash=` does not equal SHA-256 of the DER in `Cert=`.
    HashMismatch,
    Certificate(CertificateError),
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Duplicate => f.write_str("certificate header appears more than once"),
            SourceError::Oversized { len, limit } => {
                write!(f, "certificate header is {len} bytes, more than the {limit}-byte limit")
            }
            SourceError::Malformed(what) => write!(f, "malformed certificate header: {what}"),
            SourceError::HashMismatch => f.write_str("XFCC Hash does not match its Cert"),
            SourceError::Certificate(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SourceError {}

impl From<CertificateError> for SourceError {
    fn from(e: CertificateError) -> Self {
        SourceError::Certificate(e)
    }
}
