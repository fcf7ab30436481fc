//! Certificate revocation lists (RFC 5280 §5): read from borrowed DER or PEM, verified against
//! the issuing CA's key, folded into the serials a CA has revoked. Pure: the caller fetches
//! the bytes and keeps the results.
//!
//! The reader walks the CertificateList over the input bytes without building x509-cert's
//! owned structures: a million-entry CRL is read in one pass that allocates nothing per
//! entry, and its entries are then iterated off the same bytes ([`Crl::entries`]). It reads
//!
//! ```text
//! field                                  tag   what is checked / kept
//! CertificateList                        30    nothing after it
//!   tbsCertList                          30    the signed bytes
//!     version                            02    must be present and v2 (1)
//!     signature                          30    byte-equal to signatureAlgorithm
//!     issuer                             30    ≤ MAX_NAME_DER; kept as DER and as DN text
//!     thisUpdate                         17|18 seconds since the epoch
//!     nextUpdate                OPTIONAL 17|18 seconds since the epoch
//!     revokedCertificates       OPTIONAL 30    ≤ CrlLimits::max_entries entries of
//!       SEQUENCE                         30
//!         userCertificate                02    ≤ 20 octets (21 with a sign octet)
//!         revocationDate                 17|18
//!         crlEntryExtensions    OPTIONAL 30    ≤ MAX_ENTRY_EXTENSIONS: reasonCode,
//!                                              invalidityDate; certificateIssuer refused
//!     crlExtensions             OPTIONAL a0    ≤ MAX_CRL_EXTENSIONS: cRLNumber (required),
//!                                              deltaCRLIndicator, authorityKeyIdentifier,
//!                                              issuingDistributionPoint
//!   signatureAlgorithm                   30    RSA PKCS#1 v1.5 / PSS, ECDSA (see signature)
//!   signatureValue                       03    whole octets
//! ```
//!
//! Every length is checked against its enclosing element and bytes left over inside any
//! element are refused ([`CrlError::Trailing`]). An extension that appears twice is refused;
//! an unknown one is skipped when non-critical and refused by its OID when critical. Every
//! error names the byte offset and the field.
//!
//! - [`Crl::from_der`] reads; [`Crl::verify`] (or [`verify_crl`]) ties a CRL to a
//!   [`CaCertificate`](crate::certificate::CaCertificate) and yields a [`VerifiedCrl`];
//! - [`RevokedSerials`] collects a complete CRL's serials and folds delta CRLs into them;
//! - [`crl_der`] takes DER or PEM, as an upload may be either;
//! - [`testing`]: a DER writer and a synthetic signing CA, for benchmarks and tests.

mod entries;
mod error;
mod extensions;
mod limits;
mod list;
mod number;
pub mod pem;
#[cfg(any(test, feature = "x509-reference"))]
pub mod reference;
mod scope;
mod signature;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod verified;
mod walk;

#[cfg(test)]
mod tests;

pub use entries::{RevokedEntries, RevokedEntry, Serial};
pub use error::CrlError;
pub use extensions::ReasonCode;
pub use limits::{
    CrlLimits, MAX_CRL_EXTENSIONS, MAX_CRL_NUMBER_LEN, MAX_DISTRIBUTION_POINT_NAMES, MAX_ENTRY_EXTENSIONS, MAX_NAME_DER,
    MAX_SERIAL_LEN,
};
pub use list::{Crl, Freshness};
pub use number::CrlNumber;
pub use pem::{crl_der, decode_crl_pem, encode_crl_pem};
pub use scope::CrlScope;
pub use signature::{CrlSignatureAlgorithm, DigestAlgorithm};
pub use verified::{verify_crl, RevokedSerials, VerifiedCrl};
