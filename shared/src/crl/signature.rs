//! The CRL's signature algorithm, read from its AlgorithmIdentifier, and the check of the
//! signature against the issuing CA's SubjectPublicKeyInfo.
//!
//! Supported: RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256/384/512 (RFC 4055; the PSS
//! parameters are read and honoured: the MGF1 hash must be the message hash, the salt length
//! is the one the signer states), and ECDSA with SHA-256/384 (RFC 5758) over P-256 or P-384.
//! Everything else is refused with its OID. The signed bytes are hashed once.

use super::walk::{self, malformed, Tlv};
use super::CrlError;
use crate::pop::jwks::{MAX_RSA_MODULUS_BITS, MIN_RSA_MODULUS_BITS};
use const_oid::db::rfc5912 as oids;
use der::asn1::ObjectIdentifier;
use der::Decode as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::spki::SubjectPublicKeyInfoRef;

/// Largest PSS salt: a salt never exceeds the modulus (1024 octets at 8192 bits); a larger
/// stated length is refused before it reaches the arithmetic.
const MAX_PSS_SALT_LEN: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        match *oid {
            oids::ID_SHA_256 => Some(DigestAlgorithm::Sha256),
            oids::ID_SHA_384 => Some(DigestAlgorithm::Sha384),
            oids::ID_SHA_512 => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            DigestAlgorithm::Sha256 => Sha256::digest(message).to_vec(),
            DigestAlgorithm::Sha384 => Sha384::digest(message).to_vec(),
            DigestAlgorithm::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

/// How a CRL is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrlSignatureAlgorithm {
    RsaPkcs1v15(DigestAlgorithm),
    RsaPss { digest: DigestAlgorithm, salt_len: usize },
    /// ECDSA on the CA key's curve; the signature is DER `SEQUENCE { r, s }`.
    Ecdsa(DigestAlgorithm),
}

impl CrlSignatureAlgorithm {
    fn name(self) -> &'static str {
        match self {
            CrlSignatureAlgorithm::RsaPkcs1v15(_) => "RSA PKCS#1 v1.5",
            CrlSignatureAlgorithm::RsaPss { .. } => "RSASSA-PSS",
            CrlSignatureAlgorithm::Ecdsa(_) => "ECDSA",
        }
    }
}

/// `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }`.
fn algorithm_identifier<'a>(tlv: Tlv<'a>, field: &'static str) -> Result<(ObjectIdentifier, Option<Tlv<'a>>), CrlError> {
    let mut fields = tlv.contents();
    let oid = fields.expect(walk::OID, field)?.oid(field)?;
    let parameters = if fields.is_empty() { None } else { Some(fields.next(field)?) };
    fields.finish(field)?;
    Ok((oid, parameters))
}

/// Parameters that must be absent or NULL (RFC 4055 asks NULL of the RSA algorithms and
/// the hashes, RFC 5758 absence of ECDSA's; signers differ, and neither carries meaning).
fn no_parameters(parameters: Option<Tlv<'_>>, field: &'static str) -> Result<(), CrlError> {
    match parameters {
        None => Ok(()),
        Some(null) if null.tag == walk::NULL && null.value.is_empty() => Ok(()),
        Some(other) => Err(malformed(other.at, field, "parameters must be absent or NULL")),
    }
}

/// The algorithm `signatureAlgorithm` names.
pub(super) fn signature_algorithm(tlv: Tlv<'_>) -> Result<CrlSignatureAlgorithm, CrlError> {
    let field = "signatureAlgorithm";
    let (oid, parameters) = algorithm_identifier(tlv, field)?;
    let simple = |algorithm| no_parameters(parameters, field).map(|()| algorithm);
    match oid {
        oids::SHA_256_WITH_RSA_ENCRYPTION => simple(CrlSignatureAlgorithm::RsaPkcs1v15(DigestAlgorithm::Sha256)),
        oids::SHA_384_WITH_RSA_ENCRYPTION => simple(CrlSignatureAlgorithm::RsaPkcs1v15(DigestAlgorithm::Sha384)),
        oids::SHA_512_WITH_RSA_ENCRYPTION => simple(CrlSignatureAlgorithm::RsaPkcs1v15(DigestAlgorithm::Sha512)),
        oids::ECDSA_WITH_SHA_256 => simple(CrlSignatureAlgorithm::Ecdsa(DigestAlgorithm::Sha256)),
        oids::ECDSA_WITH_SHA_384 => simple(CrlSignatureAlgorithm::Ecdsa(DigestAlgorithm::Sha384)),
        oids::ID_RSASSA_PSS => match parameters {
            Some(parameters) if parameters.tag == walk::SEQUENCE => pss_parameters(parameters),
            Some(other) => Err(CrlError::UnexpectedTag { at: other.at, field, expected: walk::SEQUENCE, found: other.tag }),
            // All defaults: SHA-1.
            None => Err(CrlError::UnsupportedSignatureAlgorithm { at: tlv.at, oid: oids::ID_SHA_1 }),
        },
        oid => Err(CrlError::UnsupportedSignatureAlgorithm { at: tlv.at, oid }),
    }
}

/// A hash AlgorithmIdentifier: SHA-256/384/512, else refused by its OID.
fn hash_algorithm(tlv: Tlv<'_>, field: &'static str) -> Result<DigestAlgorithm, CrlError> {
    if tlv.tag != walk::SEQUENCE {
        return Err(CrlError::UnexpectedTag { at: tlv.at, field, expected: walk::SEQUENCE, found: tlv.tag });
    }
    let (oid, parameters) = algorithm_identifier(tlv, field)?;
    no_parameters(parameters, field)?;
    DigestAlgorithm::from_oid(&oid).ok_or(CrlError::UnsupportedSignatureAlgorithm { at: tlv.at, oid })
}

/// The one TLV inside an EXPLICIT tag.
fn explicit<'a>(tlv: Tlv<'a>, field: &'static str) -> Result<Tlv<'a>, CrlError> {
    let mut inner = tlv.contents();
    let value = inner.next(field)?;
    inner.finish(field)?;
    Ok(value)
}

/// A non-negative INTEGER that fits `u64`.
fn small_integer(tlv: Tlv<'_>, field: &'static str) -> Result<u64, CrlError> {
    if tlv.tag != walk::INTEGER {
        return Err(CrlError::UnexpectedTag { at: tlv.at, field, expected: walk::INTEGER, found: tlv.tag });
    }
    let content = tlv.integer(field)?;
    if content.first().is_some_and(|b| b & 0x80 != 0) || content.len() > 9 || (content.len() == 9 && content[0] != 0) {
        return Err(malformed(tlv.at, field, "not a small non-negative INTEGER"));
    }
    Ok(content.iter().fold(0u64, |value, &octet| (value << 8) | u64::from(octet)))
}

/// `RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] DEFAULT sha1, maskGenAlgorithm [1]
/// DEFAULT mgf1SHA1, saltLength [2] INTEGER DEFAULT 20, trailerField [3] INTEGER DEFAULT 1 }`
/// (RFC 4055 §3.1), every field EXPLICIT.
fn pss_parameters(parameters: Tlv<'_>) -> Result<CrlSignatureAlgorithm, CrlError> {
    let mut fields = parameters.contents();
    let hash_field = "RSASSA-PSS-params.hashAlgorithm";
    let digest = match fields.optional(walk::context(0, true), hash_field)? {
        Some(tagged) => hash_algorithm(explicit(tagged, hash_field)?, hash_field)?,
        None => return Err(CrlError::UnsupportedSignatureAlgorithm { at: parameters.at, oid: oids::ID_SHA_1 }),
    };
    let mgf_field = "RSASSA-PSS-params.maskGenAlgorithm";
    match fields.optional(walk::context(1, true), mgf_field)? {
        Some(tagged) => {
            let mgf = explicit(tagged, mgf_field)?;
            if mgf.tag != walk::SEQUENCE {
                return Err(CrlError::UnexpectedTag { at: mgf.at, field: mgf_field, expected: walk::SEQUENCE, found: mgf.tag });
            }
            let (oid, mgf_hash) = algorithm_identifier(mgf, mgf_field)?;
            if oid != oids::ID_MGF_1 {
                return Err(CrlError::UnsupportedSignatureAlgorithm { at: mgf.at, oid });
            }
            let mgf_hash = mgf_hash.ok_or_else(|| malformed(mgf.at, mgf_field, "MGF1 names no hash"))?;
            if hash_algorithm(mgf_hash, mgf_field)? != digest {
                return Err(malformed(mgf_hash.at, mgf_field, "the MGF1 hash is not the signature's hash"));
            }
        }
        None => return Err(malformed(parameters.at, mgf_field, "the MGF1 hash is not the signature's hash")),
    }
    let salt_field = "RSASSA-PSS-params.saltLength";
    let salt_len = match fields.optional(walk::context(2, true), salt_field)? {
        Some(tagged) => small_integer(explicit(tagged, salt_field)?, salt_field)?,
        None => 20,
    };
    if salt_len > MAX_PSS_SALT_LEN {
        return Err(malformed(parameters.at, salt_field, "salt longer than any supported key"));
    }
    let trailer_field = "RSASSA-PSS-params.trailerField";
    if let Some(tagged) = fields.optional(walk::context(3, true), trailer_field)? {
        let trailer = explicit(tagged, trailer_field)?;
        if small_integer(trailer, trailer_field)? != 1 {
            return Err(malformed(trailer.at, trailer_field, "trailerField is not trailerFieldBC (1)"));
        }
    }
    fields.finish("RSASSA-PSS-params")?;
    let salt_len = usize::try_from(salt_len).map_err(|_| malformed(parameters.at, salt_field, "salt too long"))?;
    Ok(CrlSignatureAlgorithm::RsaPss { digest, salt_len })
}

enum CaKey {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl CaKey {
    fn name(&self) -> &'static str {
        match self {
            CaKey::Rsa(_) => "RSA",
            CaKey::P256(_) => "ECDSA P-256",
            CaKey::P384(_) => "ECDSA P-384",
        }
    }
}

fn unusable(problem: &'static str) -> CrlError {
    CrlError::UnusableKey { problem }
}

/// The CA's key from its SubjectPublicKeyInfo DER.
fn ca_key(spki_der: &[u8]) -> Result<CaKey, CrlError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|_| unusable("not a SubjectPublicKeyInfo"))?;
    let key = spki.subject_public_key.as_bytes().ok_or_else(|| unusable("the key is not whole octets"))?;
    match spki.algorithm.oid {
        oids::RSA_ENCRYPTION => {
            let public = rsa::pkcs1::RsaPublicKey::from_der(key).map_err(|_| unusable("not a PKCS#1 RSA public key"))?;
            // Cheap bounds before any big-integer work; the exact bit length is checked below.
            if public.modulus.as_bytes().len() > MAX_RSA_MODULUS_BITS / 8 + 1 || public.public_exponent.as_bytes().len() > 8 {
                return Err(unusable("RSA modulus or exponent too long"));
            }
            let n = rsa::BigUint::from_bytes_be(public.modulus.as_bytes());
            if n.bits() < MIN_RSA_MODULUS_BITS {
                return Err(unusable("RSA modulus shorter than 2048 bits"));
            }
            let e = rsa::BigUint::from_bytes_be(public.public_exponent.as_bytes());
            rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_MODULUS_BITS)
                .map(CaKey::Rsa)
                .map_err(|_| unusable("RSA key out of bounds (modulus over 8192 bits, or a bad exponent)"))
        }
        oids::ID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| unusable("an EC key without a named curve"))?;
            match curve {
                oids::SECP_256_R_1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map(CaKey::P256)
                    .map_err(|_| unusable("not a point on P-256")),
                oids::SECP_384_R_1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map(CaKey::P384)
                    .map_err(|_| unusable("not a point on P-384")),
                oid => Err(CrlError::UnsupportedKey { oid }),
            }
        }
        oid => Err(CrlError::UnsupportedKey { oid }),
    }
}

fn rsa_verify(key: &rsa::RsaPublicKey, scheme: impl rsa::traits::SignatureScheme, hashed: &[u8], signature: &[u8]) -> bool {
    key.verify(scheme, hashed, signature).is_ok()
}

/// Whether `signature` over `message` verifies with the key `spki_der` under `algorithm`.
pub(super) fn verify(
    algorithm: CrlSignatureAlgorithm,
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CrlError> {
    use rsa::{Pkcs1v15Sign, Pss};
    let key = ca_key(spki_der)?;
    let mismatch = || CrlError::KeyAlgorithmMismatch { key: key.name(), signature: algorithm.name() };
    let verified = match (&key, algorithm) {
        (CaKey::Rsa(rsa), CrlSignatureAlgorithm::RsaPkcs1v15(digest)) => {
            let hashed = digest.digest(message);
            match digest {
                DigestAlgorithm::Sha256 => rsa_verify(rsa, Pkcs1v15Sign::new::<Sha256>(), &hashed, signature),
                DigestAlgorithm::Sha384 => rsa_verify(rsa, Pkcs1v15Sign::new::<Sha384>(), &hashed, signature),
                DigestAlgorithm::Sha512 => rsa_verify(rsa, Pkcs1v15Sign::new::<Sha512>(), &hashed, signature),
            }
        }
        (CaKey::Rsa(rsa), CrlSignatureAlgorithm::RsaPss { digest, salt_len }) => {
            let hashed = digest.digest(message);
            match digest {
                DigestAlgorithm::Sha256 => rsa_verify(rsa, Pss::new_with_salt::<Sha256>(salt_len), &hashed, signature),
                DigestAlgorithm::Sha384 => rsa_verify(rsa, Pss::new_with_salt::<Sha384>(salt_len), &hashed, signature),
                DigestAlgorithm::Sha512 => rsa_verify(rsa, Pss::new_with_salt::<Sha512>(salt_len), &hashed, signature),
            }
        }
        // Either S: X.509 (RFC 5758 §3.2, RFC 3279 §2.2.3) does not ask for low S and CAs emit
        // both; a CRL is known by its number and scope, never by its signature's bytes.
        (CaKey::P256(key), CrlSignatureAlgorithm::Ecdsa(digest)) => p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|signature| key.verify_prehash(&digest.digest(message), &signature).is_ok()),
        (CaKey::P384(key), CrlSignatureAlgorithm::Ecdsa(digest)) => p384::ecdsa::Signature::from_der(signature)
            .is_ok_and(|signature| key.verify_prehash(&digest.digest(message), &signature).is_ok()),
        _ => return Err(mismatch()),
    };
    if verified {
        Ok(())
    } else {
        Err(CrlError::BadSignature)
    }
}
