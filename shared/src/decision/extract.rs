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

/// Facts of certificates seen recently, so that a warm request skips PEM decoding, SHA-256
/// and DER parsing. Keyed by a cheap digest of the header (XFCC's own `Hash=`, or the header's
/// tail, which ends in the certificate's signature) and confirmed by comparing the whole raw
/// header, so a hit always means the very same bytes were already checked.
pub struct FactsCache {
    entries: HashMap<Vec<u8>, (Box<[u8]>, Arc<CertificateFacts>)>,
    capacity: usize,
}

/// Bytes of the header's tail used as the cache key when there is no `Hash=`: long enough to
/// cover a signature, short enough to hash in a few nanoseconds.
const CACHE_KEY_TAIL: usize = 48;

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

    fn get(&self, key: &[u8], raw: &[u8]) -> Option<Arc<CertificateFacts>> {
        match self.entries.get(key) {
            Some((stored, facts)) if **stored == *raw => Some(Arc::clone(facts)),
            _ => None,
        }
    }

    fn insert(&mut self, key: Vec<u8>, raw: &[u8], facts: Arc<CertificateFacts>) {
        if self.capacity == 0 {
            return;
        }
        // Bounded by clearing: the working set of a deployment is its population of cards,
        // and a full clear costs one cold parse per certificate afterwards.
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(key, (raw.into(), facts));
    }
}

fn tail_key(raw: &[u8]) -> Vec<u8> {
    let start = raw.len().saturating_sub(CACHE_KEY_TAIL);
    let mut key = raw.get(start..).unwrap_or(raw).to_vec();
    key.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    key
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
        let text = std::str::from_utf8(raw).map_err(|_| Reason::MalformedClientCert)?;
        match self.source {
            CertificateSource::Xfcc { trust, hop } => {
                let elements = xfcc::parse(text).map_err(malformed)?;
                let element = match hop {
                    super::config::XfccHop::Nearest => elements.last(),
                    super::config::XfccHop::First => elements.first(),
                };
                let Some(element) = element else {
                    return Err(Reason::MalformedClientCert);
                };
                if *trust == XfccTrust::ThisProxy {
                    let expected = request.connection_digest.unwrap_or("");
                    match element.hash.as_deref() {
                        Some(hash) if hash.eq_ignore_ascii_case(expected) => {}
                        _ => return Err(Reason::MalformedClientCert),
                    }
                }
                let Some(cert) = element.cert.as_deref() else {
                    // An element without Cert= names no certificate we can check.
                    return Err(Reason::MalformedClientCert);
                };
                let key = match element.hash.as_deref() {
                    Some(hash) => hash.to_ascii_lowercase().into_bytes(),
                    None => tail_key(cert.as_bytes()),
                };
                if let Some(hit) = cache.get(&key, cert.as_bytes()) {
                    return Ok(Some(hit));
                }
                let der = element.cert_der().map_err(malformed)?.ok_or(Reason::MalformedClientCert)?;
                element.hash_matches(&der).map_err(malformed)?;
                let facts = Arc::new(facts_of(&der)?);
                cache.insert(key, cert.as_bytes(), Arc::clone(&facts));
                Ok(Some(facts))
            }
            CertificateSource::NginxEscaped { .. }
            | CertificateSource::NginxLegacy { .. }
            | CertificateSource::Traefik { .. }
            | CertificateSource::Rfc9440 { .. } => {
                let key = tail_key(raw);
                if let Some(hit) = cache.get(&key, raw) {
                    return Ok(Some(hit));
                }
                let der = match self.source {
                    CertificateSource::NginxEscaped { .. } => nginx::parse_escaped(text),
                    CertificateSource::NginxLegacy { .. } => nginx::parse_legacy(text),
                    CertificateSource::Traefik { .. } => traefik::parse(text),
                    _ => rfc9440::parse_client_cert(text),
                }
                .map_err(malformed)?;
                let facts = Arc::new(facts_of(&der)?);
                cache.insert(key, raw, Arc::clone(&facts));
                Ok(Some(facts))
            }
            CertificateSource::Connection => Ok(connection_facts(request)),
        }
    }
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
