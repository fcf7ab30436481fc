//! Step 2 of the request path: find the client certificate in exactly one configured source,
//! believing a forwarded header only from a trusted hop, and turn it into facts.

use super::config::{CertificateSource, XfccTrust};
use super::outcome::Reason;
use super::RequestInput;
use crate::certificate::{CertificateFacts, SubjectAltName};
use crate::fingerprint::Fingerprint;
use crate::forwarded_signature::ForwardedSignatureKey;
use crate::source::{nginx, rfc9440, traefik, xfcc, SourceError};
use std::collections::HashMap;
use std::sync::Arc;

/// Facts of certificate headers seen recently, so that a warm request skips header parsing,
/// PEM decoding, SHA-256 and DER parsing. Keyed by a cheap sample of the raw header (its
/// length, bytes spread across it, and its tail) and confirmed by comparing the whole raw
/// header, so a hit always means the very same bytes were already checked. Two headers that
/// share a key only evict each other; they are never confused.
pub struct FactsCache {
    entries: HashMap<HeaderKey, CachedHeader>,
    capacity: usize,
}

struct CachedHeader {
    raw: Box<[u8]>,
    facts: Arc<CertificateFacts>,
    /// The chosen XFCC element's `Hash=`: checked against the connection on every request
    /// when the header is this proxy's own.
    xfcc_hash: Option<Box<str>>,
}

/// Bytes sampled evenly across the header, and bytes of its tail: a certificate's base64 body
/// differs throughout, and its tail ends in the signature.
const KEY_SPREAD: usize = 32;
const KEY_TAIL: usize = 32;
type HeaderKey = [u8; 8 + KEY_SPREAD + KEY_TAIL];

fn header_key(raw: &[u8]) -> HeaderKey {
    let mut key = [0u8; 8 + KEY_SPREAD + KEY_TAIL];
    let (len, rest) = key.split_at_mut(8);
    len.copy_from_slice(&(raw.len() as u64).to_le_bytes());
    let (spread, tail) = rest.split_at_mut(KEY_SPREAD);
    if !raw.is_empty() {
        for (i, byte) in spread.iter_mut().enumerate() {
            *byte = raw.get(i * raw.len() / KEY_SPREAD).copied().unwrap_or(0);
        }
    }
    let start = raw.len().saturating_sub(KEY_TAIL);
    for (byte, value) in tail.iter_mut().zip(raw.get(start..).unwrap_or(&[])) {
        *byte = *value;
    }
    key
}

impl FactsCache {
    pub fn new(capacity: usize) -> Self {
        FactsCache { entries: HashMap::new(), capacity }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn get(&self, raw: &[u8]) -> Option<&CachedHeader> {
        self.entries.get(&header_key(raw)).filter(|cached| crate::encoding::same_bytes_constant_time(&cached.raw, raw))
    }

    fn insert(&mut self, raw: &[u8], facts: Arc<CertificateFacts>, xfcc_hash: Option<Box<str>>) {
        if self.capacity == 0 {
            return;
        }
        // Bounded by clearing: the working set of a deployment is its population of cards,
        // and a full clear costs one cold parse per certificate afterwards.
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(header_key(raw), CachedHeader { raw: raw.into(), facts, xfcc_hash });
    }
}

fn facts_of(der: &[u8]) -> Result<CertificateFacts, Reason> {
    CertificateFacts::from_der(der).map_err(|_| Reason::MalformedClientCert)
}

fn malformed(_: SourceError) -> Reason {
    Reason::MalformedClientCert
}

/// The certificate source's header, found once while scanning the request.
pub struct SourceHeader<'a> {
    pub value: &'a [u8],
}

pub struct Extractor<'e> {
    pub source: &'e CertificateSource,
    pub trusted_peer: bool,
    pub max_header_bytes: usize,
    pub signature: Option<&'e ForwardedSignatureKey>,
}

impl Extractor<'_> {
    /// `Ok(None)`: no certificate (none presented, or a header from an untrusted peer, which
    /// the caller strips). `Err`: a header that must be refused with 400.
    pub fn extract(
        &self,
        request: &RequestInput<'_>,
        scanned: &super::ScannedHeaders<'_>,
        cache: &mut FactsCache,
    ) -> Result<Option<Arc<CertificateFacts>>, Reason> {
        if let CertificateSource::Connection = self.source {
            return Ok(connection_facts(request));
        }
        if scanned.source_count > 1 {
            return Err(Reason::MalformedClientCert);
        }
        let Some(raw) = scanned.source_value else {
            return Ok(None);
        };
        let believed = match self.source {
            CertificateSource::Xfcc { trust: XfccTrust::ThisProxy, .. } => {
                // Envoy set this header itself only if the connection carried a certificate;
                // otherwise it came from the client through a misconfigured forward mode.
                request.connection_digest.is_some_and(|d| !d.is_empty())
            }
            _ => self.trusted_peer,
        };
        if !believed {
            return Ok(None);
        }
        if raw.len() > self.max_header_bytes {
            return Err(Reason::MalformedClientCert);
        }
        if let Some(key) = self.signature {
            let signature = match (scanned.signature_count, scanned.signature_value) {
                (1, Some(sig)) => sig,
                _ => return Err(Reason::MalformedClientCert),
            };
            let signature = std::str::from_utf8(signature).map_err(|_| Reason::MalformedClientCert)?;
            key.verify(raw, signature).map_err(|_| Reason::MalformedClientCert)?;
        }
        let this_proxy = matches!(self.source, CertificateSource::Xfcc { trust: XfccTrust::ThisProxy, .. });
        if let Some(hit) = cache.get(raw) {
            if this_proxy && !hash_is_connection(hit.xfcc_hash.as_deref(), request) {
                return Err(Reason::MalformedClientCert);
            }
            return Ok(Some(Arc::clone(&hit.facts)));
        }
        let text = std::str::from_utf8(raw).map_err(|_| Reason::MalformedClientCert)?;
        match self.source {
            CertificateSource::Xfcc { hop, .. } => {
                let elements = xfcc::parse(text).map_err(malformed)?;
                let element = match hop {
                    super::config::XfccHop::Nearest => elements.last(),
                    super::config::XfccHop::First => elements.first(),
                };
                let Some(element) = element else {
                    return Err(Reason::MalformedClientCert);
                };
                if this_proxy && !hash_is_connection(element.hash.as_deref(), request) {
                    return Err(Reason::MalformedClientCert);
                }
                let der = element.cert_der().map_err(malformed)?.ok_or(Reason::MalformedClientCert)?;
                let facts = Arc::new(facts_of(&der)?);
                element.hash_matches_fingerprint(&facts.fingerprint).map_err(malformed)?;
                let hash = element.hash.as_deref().map(Box::from);
                cache.insert(raw, Arc::clone(&facts), hash);
                Ok(Some(facts))
            }
            CertificateSource::NginxEscaped { .. }
            | CertificateSource::NginxLegacy { .. }
            | CertificateSource::Traefik { .. }
            | CertificateSource::Rfc9440 { .. } => {
                let der = match self.source {
                    CertificateSource::NginxEscaped { .. } => nginx::parse_escaped(text),
                    CertificateSource::NginxLegacy { .. } => nginx::parse_legacy(text),
                    CertificateSource::Traefik { .. } => traefik::parse(text),
                    _ => rfc9440::parse_client_cert(text),
                }
                .map_err(malformed)?;
                let facts = Arc::new(facts_of(&der)?);
                cache.insert(raw, Arc::clone(&facts), None);
                Ok(Some(facts))
            }
            CertificateSource::Connection => Ok(connection_facts(request)),
        }
    }
}

/// Whether an XFCC element's `Hash=` names the certificate of this very connection.
fn hash_is_connection(hash: Option<&str>, request: &RequestInput<'_>) -> bool {
    let expected = request.connection_digest.unwrap_or("");
    hash.is_some_and(|h| !expected.is_empty() && h.eq_ignore_ascii_case(expected))
}

/// Facts from the connection's own properties: the proxy verified this certificate itself,
/// but exposes only its digest, subject and SANs, so the facts are marked incomplete.
fn connection_facts(request: &RequestInput<'_>) -> Option<Arc<CertificateFacts>> {
    let digest = request.connection_digest.filter(|d| !d.is_empty())?;
    let fingerprint = Fingerprint::parse(digest).ok()?;
    let mut sans = Vec::new();
    sans.extend(request.connection_uri_sans.iter().map(|s| SubjectAltName::Uri(s.clone())));
    sans.extend(request.connection_dns_sans.iter().map(|s| SubjectAltName::Dns(s.clone())));
    Some(Arc::new(CertificateFacts {
        fingerprint,
        subject_dn: request.connection_subject.unwrap_or("").to_string(),
        issuer_dn: String::new(),
        serial_hex: String::new(),
        not_before: i64::MIN,
        not_after: i64::MAX,
        subject_alt_names: sans,
        policy_oids: Vec::new(),
        extended_key_usages: Vec::new(),
        complete: false,
    }))
}
