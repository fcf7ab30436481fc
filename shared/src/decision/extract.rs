//! Step 3 of the request path (see [`crate::decision`]): find the client certificate in exactly one configured source,
//! believing a forwarded header only from a trusted hop, and turn it into facts. One dispatch
//! over the source; every parser gets the configured size limit.

use super::cache::FactsCache;
use super::config::{CertificateSource, Policy, XfccTrust};
use super::outcome::Reason;
use super::{ConnectionDigest, RequestInput, ScannedHeaders};
use crate::certificate::pem::{decode_single_certificate_pem, MAX_PEM_BYTES};
use crate::certificate::{CertificateFacts, DisplayNames, SubjectAltName};
use crate::encoding::percent_decode;
use crate::fingerprint::Fingerprint;
use crate::source::xfcc::XfccElement;
use crate::source::{nginx, rfc9440, traefik, xfcc, SourceError};
use std::sync::Arc;

fn facts_of(der: &[u8]) -> Result<CertificateFacts, Reason> {
    CertificateFacts::from_der(der).map_err(|_| Reason::MalformedClientCert)
}

fn malformed(_: SourceError) -> Reason {
    Reason::MalformedClientCert
}

/// The client certificate's facts. `Ok(None)`: no certificate (none presented, or a header
/// that is not believed and which the caller strips). `Err`: a header to refuse with 400.
/// One dispatch over the source; each parser gets the configured size limit.
pub fn certificate(
    policy: &Policy,
    request: &RequestInput<'_>,
    scanned: &ScannedHeaders<'_>,
    cache: &mut FactsCache,
) -> Result<Option<Arc<CertificateFacts>>, Reason> {
    let limit = policy.max_header_bytes;
    match &policy.source {
        CertificateSource::Connection => connection_certificate(request, cache),
        CertificateSource::Xfcc { trust, elements, by } => {
            let believed = match trust {
                // Envoy set this header itself only if the connection carried a certificate;
                // otherwise it came from the client through a misconfigured forward mode.
                XfccTrust::ThisProxy => request.connection_digest.is_some_and(|d| d.is_present()),
                XfccTrust::TrustedProxies => from_trusted_proxy(policy, request),
            };
            let Some(raw) = forwarded_header(policy, request, scanned, believed)? else {
                return Ok(None);
            };
            // Envoy's own header must name the connection's certificate.
            let names_connection = |hash: &Fingerprint| *trust != XfccTrust::ThisProxy || connection_fingerprint(request) == Some(*hash);
            // The very header read in full a moment ago: its element and certificate were
            // checked then.
            if let Some((hash, facts)) = cache.get_recent_xfcc(raw) {
                return if names_connection(&hash) { Ok(Some(facts)) } else { Err(Reason::MalformedClientCert) };
            }
            let text = std::str::from_utf8(raw).map_err(|_| Reason::MalformedClientCert)?;
            let parsed = xfcc::parse(text, limit).map_err(malformed)?;
            let element = client_element(&parsed, *elements, by)?;
            let hash = element_hash(element)?;
            if !names_connection(&hash) {
                return Err(Reason::MalformedClientCert);
            }
            let cert_text = element.cert.as_deref().ok_or(Reason::MalformedClientCert)?.as_bytes();
            let facts = match cache.get_certificate(&hash, cert_text) {
                Some(hit) => hit,
                None => {
                    let der = element.cert_der().map_err(malformed)?.ok_or(Reason::MalformedClientCert)?;
                    let facts = Arc::new(facts_of(&der)?);
                    if facts.fingerprint != hash {
                        return Err(Reason::MalformedClientCert);
                    }
                    cache.insert_certificate(cert_text, Arc::clone(&facts));
                    facts
                }
            };
            cache.remember_xfcc(raw, hash, Arc::clone(&facts));
            Ok(Some(facts))
        }
        CertificateSource::NginxEscaped { .. } => header_certificate(policy, request, scanned, cache, nginx::parse_escaped),
        CertificateSource::NginxLegacy { .. } => header_certificate(policy, request, scanned, cache, nginx::parse_legacy),
        CertificateSource::Traefik { .. } => header_certificate(policy, request, scanned, cache, traefik::parse),
        CertificateSource::Rfc9440 { .. } => header_certificate(policy, request, scanned, cache, rfc9440::parse_client_cert),
    }
}

fn from_trusted_proxy(policy: &Policy, request: &RequestInput<'_>) -> bool {
    request.peer.is_some_and(|ip| policy.trusted_proxies.iter().any(|c| c.contains(ip)))
}

/// The source header's value when it is `believed`, one, within the size cap, and signed
/// when the policy asks for a signature. Envoy joins repeated XFCC headers into one; other
/// proxies pass them apart: either way a second value (in any spelling of the name) is
/// refused, never chosen between.
fn forwarded_header<'a>(
    policy: &Policy,
    request: &RequestInput<'_>,
    scanned: &ScannedHeaders<'a>,
    believed: bool,
) -> Result<Option<&'a [u8]>, Reason> {
    let Some(raw) = scanned.source_value.filter(|_| believed) else {
        return Ok(None);
    };
    if scanned.source_count > 1 || raw.len() > policy.max_header_bytes {
        return Err(Reason::MalformedClientCert);
    }
    if let Some(signature) = &policy.signature {
        let value = match (scanned.signature_count, scanned.signature_value) {
            (1, Some(value)) => value,
            _ => return Err(Reason::MalformedClientCert),
        };
        let value = std::str::from_utf8(value).map_err(|_| Reason::MalformedClientCert)?;
        signature.key.verify(raw, value, request.now, signature.max_age_seconds).map_err(|_| Reason::MalformedClientCert)?;
    }
    Ok(Some(raw))
}

/// A PEM or DER header set by a trusted tier (nginx, Traefik, RFC 9440), read by `parse`.
fn header_certificate(
    policy: &Policy,
    request: &RequestInput<'_>,
    scanned: &ScannedHeaders<'_>,
    cache: &mut FactsCache,
    parse: fn(&str, usize) -> Result<Vec<u8>, SourceError>,
) -> Result<Option<Arc<CertificateFacts>>, Reason> {
    let Some(raw) = forwarded_header(policy, request, scanned, from_trusted_proxy(policy, request))? else {
        return Ok(None);
    };
    if let Some(hit) = cache.get_header(raw) {
        return Ok(Some(hit));
    }
    let text = std::str::from_utf8(raw).map_err(|_| Reason::MalformedClientCert)?;
    let der = parse(text, policy.max_header_bytes).map_err(malformed)?;
    let facts = Arc::new(facts_of(&der)?);
    cache.insert_header(raw, Arc::clone(&facts));
    Ok(Some(facts))
}

/// The client's XFCC element: the first of exactly `expected` elements, carrying one of the
/// `by` values when any are configured. Any other count is refused: a forged element (from a
/// certificate's unquoted URI or DNS SAN, or a header the client sent that a hop appended to)
/// changes the count, and the filter never guesses which element is real.
fn client_element<'v, 'a>(elements: &'v [XfccElement<'a>], expected: usize, by: &[String]) -> Result<&'v XfccElement<'a>, Reason> {
    if elements.len() != expected {
        return Err(Reason::MalformedClientCert);
    }
    let element = elements.first().ok_or(Reason::MalformedClientCert)?;
    let by_ok = by.is_empty() || (element.by.len() == 1 && element.by.iter().all(|b| by.iter().any(|want| want == b)));
    if !by_ok {
        return Err(Reason::MalformedClientCert);
    }
    Ok(element)
}

/// The element's `Hash=`, which Envoy always writes: 64 hex digits.
fn element_hash(element: &XfccElement<'_>) -> Result<Fingerprint, Reason> {
    let hash = element.hash.as_deref().ok_or(Reason::MalformedClientCert)?;
    if hash.len() != 64 {
        return Err(Reason::MalformedClientCert);
    }
    Fingerprint::parse(hash).map_err(|_| Reason::MalformedClientCert)
}

/// The certificate of the connection itself: Envoy's digest says which, the cache or
/// `connection.peer_certificate` says what it holds. Without that property only the digest,
/// subject and first SANs are known, and the facts are marked incomplete.
fn connection_certificate(request: &RequestInput<'_>, cache: &mut FactsCache) -> Result<Option<Arc<CertificateFacts>>, Reason> {
    let Some(digest) = request.connection_digest.filter(ConnectionDigest::is_present) else {
        return Ok(None);
    };
    let fingerprint = digest.fingerprint().ok_or(Reason::MalformedClientCert)?;
    if let Some(hit) = cache.get_certificate(&fingerprint, b"") {
        return Ok(Some(hit));
    }
    let Some(pem) = request.connection_certificate else {
        return Ok(Some(Arc::new(partial_connection_facts(fingerprint, request))));
    };
    let der = connection_pem_der(pem).map_err(malformed)?;
    let facts = Arc::new(facts_of(&der)?);
    if facts.fingerprint != fingerprint {
        return Err(Reason::MalformedClientCert);
    }
    cache.insert_certificate(b"", Arc::clone(&facts));
    Ok(Some(facts))
}

fn connection_fingerprint(request: &RequestInput<'_>) -> Option<Fingerprint> {
    request.connection_digest.and_then(|d| d.fingerprint())
}

/// `connection.peer_certificate` is documented as URL-encoded PEM; Envoy 1.40 hands plain PEM.
/// Both are read.
pub fn connection_pem_der(pem: &[u8]) -> Result<Vec<u8>, SourceError> {
    if pem.starts_with(b"-----BEGIN%20") {
        let decoded = percent_decode(pem, MAX_PEM_BYTES)
            .map_err(|_| SourceError::Malformed("bad percent escape in connection.peer_certificate".to_owned()))?;
        return Ok(decode_single_certificate_pem(&decoded)?);
    }
    Ok(decode_single_certificate_pem(pem)?)
}

fn partial_connection_facts(fingerprint: Fingerprint, request: &RequestInput<'_>) -> CertificateFacts {
    let mut sans = Vec::new();
    sans.extend(request.connection_uri_sans.iter().map(|s| SubjectAltName::Uri(s.clone())));
    sans.extend(request.connection_dns_sans.iter().map(|s| SubjectAltName::Dns(s.clone())));
    CertificateFacts {
        fingerprint,
        subject_dn: request.connection_subject.unwrap_or("").to_string(),
        issuer_dn: String::new(),
        display_names: DisplayNames::of(request.connection_subject.unwrap_or(""), ""),
        serial_hex: String::new(),
        not_before: i64::MIN,
        not_after: i64::MAX,
        subject_alt_names: sans,
        policy_oids: Vec::new(),
        extended_key_usages: Vec::new(),
        authority_key_identifier: None,
        public_key: None,
        complete: false,
    }
}
