//! Certificate facts seen recently, so that a warm request skips header decoding, SHA-256 and
//! DER parsing.
//!
//! Two kinds of key. Where the certificate's SHA-256 is known before decoding — Envoy's own
//! connection digest, or the `Hash=` of an XFCC element that the structure checks chose — the
//! facts are keyed by it: they depend on the certificate alone, and an entry is a
//! certificate's facts, not a header's (a 30,000-card population fits in a third of the
//! memory). Such an entry also keeps a sample of the text the certificate came in (its length,
//! bytes spread across it, and its tail), and a lookup must present the same sample: a header
//! whose `Cert=` differs from the one that was checked (damaged, or another certificate under
//! the same `Hash=`) misses and is checked in full, so warm and cold requests get the same
//! answer. Who may write a `Hash=` at all is the trust decision made before the cache is
//! asked. Otherwise (nginx, Traefik, RFC 9440 headers) entries are keyed by the sample of the
//! raw header and confirmed by comparing the whole header, so a hit always means the very same
//! bytes were already checked.
//!
//! The cache is bounded by entries and by bytes, and evicts with CLOCK (second chance): a hit
//! marks its entry, and the hand sweeping for a victim spares marked entries once. A
//! deployment's hot cards therefore stay while a churn of one-off certificates passes through,
//! and no insert ever empties the whole cache. Every operation is O(1) amortised.
//!
//! In front of it, the last few XFCC headers read in full are kept whole, with the `Hash=`
//! they named and the facts they gave ([`FactsCache::get_recent_xfcc`]): a client's requests
//! carry the very same header one after another, and a header identical to one read a moment
//! ago is not parsed again. A hit is confirmed by comparing the whole header; the entries
//! count towards the byte budget.

use crate::certificate::CertificateFacts;
use crate::fingerprint::Fingerprint;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Bytes sampled evenly across a header, and bytes of its tail: a certificate's base64 body
/// differs throughout, and its tail ends in the signature.
const KEY_SPREAD: usize = 32;
const KEY_TAIL: usize = 32;
type HeaderSample = [u8; 8 + KEY_SPREAD + KEY_TAIL];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FactsKey {
    Certificate([u8; 32]),
    Header(HeaderSample),
}

/// What a lookup must match besides the key.
#[derive(Debug)]
enum Confirm {
    /// The sample of the text the certificate came in.
    Sample(HeaderSample),
    /// The whole header.
    Raw(Box<[u8]>),
}

fn header_sample(raw: &[u8]) -> HeaderSample {
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

/// Bookkeeping bytes per entry beyond the facts and the raw header: the slot (with its
/// sample), the index entry and the `Arc`.
const ENTRY_OVERHEAD_BYTES: usize = 256;

#[derive(Debug)]
struct Slot {
    key: FactsKey,
    confirm: Confirm,
    facts: Arc<CertificateFacts>,
    bytes: usize,
    /// CLOCK's reference bit: set by a hit, cleared as the hand passes.
    referenced: bool,
}

/// Counters a benchmark or a gauge reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// XFCC headers [`FactsCache`] keeps whole at most.
const RECENT_XFCC: usize = 16;

/// An XFCC header read in full: its bytes, the `Hash=` of the element the filter took, and
/// that element's certificate's facts.
#[derive(Debug)]
struct RecentXfcc {
    raw: Box<[u8]>,
    hash: Fingerprint,
    facts: Arc<CertificateFacts>,
    bytes: usize,
}

#[derive(Debug)]
pub struct FactsCache {
    index: HashMap<FactsKey, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    stats: CacheStats,
    /// Oldest first.
    recent: VecDeque<RecentXfcc>,
}

impl FactsCache {
    /// A cache of at most `max_entries` certificates taking at most `max_bytes` (either 0
    /// turns it off).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        FactsCache {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            bytes: 0,
            max_entries,
            max_bytes,
            stats: CacheStats::default(),
            recent: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes the held entries account for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Whether the certificate with this SHA-256, from this text, is held (a lookup that
    /// counts nothing).
    pub fn contains_certificate(&self, fingerprint: &Fingerprint, text: &[u8]) -> bool {
        let sample = header_sample(text);
        self.index
            .get(&FactsKey::Certificate(fingerprint.0))
            .and_then(|&i| self.slots.get(i))
            .and_then(Option::as_ref)
            .is_some_and(|slot| matches!(&slot.confirm, Confirm::Sample(held) if *held == sample))
    }

    /// The facts of the certificate with this SHA-256, when it came in the same `text` (the
    /// XFCC `Cert=` value; empty where the proxy's own digest names the certificate).
    pub fn get_certificate(&mut self, fingerprint: &Fingerprint, text: &[u8]) -> Option<Arc<CertificateFacts>> {
        self.lookup(FactsKey::Certificate(fingerprint.0), Some(&header_sample(text)), None)
    }

    /// The facts of the certificate this exact header carried.
    pub fn get_header(&mut self, raw: &[u8]) -> Option<Arc<CertificateFacts>> {
        self.lookup(FactsKey::Header(header_sample(raw)), None, Some(raw))
    }

    /// Keeps the facts of a certificate that came in `text` (see [`Self::get_certificate`]).
    pub fn insert_certificate(&mut self, text: &[u8], facts: Arc<CertificateFacts>) {
        let key = FactsKey::Certificate(facts.fingerprint.0);
        self.insert(key, Confirm::Sample(header_sample(text)), facts);
    }

    pub fn insert_header(&mut self, raw: &[u8], facts: Arc<CertificateFacts>) {
        self.insert(FactsKey::Header(header_sample(raw)), Confirm::Raw(Box::from(raw)), facts);
    }

    /// The `Hash=` and facts of this exact XFCC header, when it was read in full lately
    /// ([`Self::remember_xfcc`]).
    pub fn get_recent_xfcc(&mut self, raw: &[u8]) -> Option<(Fingerprint, Arc<CertificateFacts>)> {
        let tail = raw.len().saturating_sub(KEY_TAIL);
        let found = self.recent.iter().find(|held| {
            // Length and tail first (a certificate's ends in its signature), then every byte.
            held.raw.len() == raw.len()
                && held.raw.get(tail..) == raw.get(tail..)
                && crate::encoding::same_bytes_constant_time(&held.raw, raw)
        })?;
        self.stats.hits += 1;
        Some((found.hash, Arc::clone(&found.facts)))
    }

    /// Keeps an XFCC header just read in full: `hash`, the `Hash=` of the element taken, and
    /// `facts`, its certificate's (which matched it). Over the byte budget, certificates are
    /// evicted first, then the oldest recent headers; a header over half the budget is not kept.
    pub fn remember_xfcc(&mut self, raw: &[u8], hash: Fingerprint, facts: Arc<CertificateFacts>) {
        let bytes = raw.len() + ENTRY_OVERHEAD_BYTES;
        if self.max_entries == 0 || bytes > self.max_bytes / 2 {
            return;
        }
        if self.recent.len() >= RECENT_XFCC {
            self.drop_oldest_recent();
        }
        self.recent.push_back(RecentXfcc { raw: Box::from(raw), hash, facts, bytes });
        self.bytes += bytes;
        while !self.index.is_empty() && self.bytes > self.max_bytes {
            self.evict_one();
        }
        while self.recent.len() > 1 && self.bytes > self.max_bytes {
            self.drop_oldest_recent();
        }
    }

    fn drop_oldest_recent(&mut self) {
        if let Some(oldest) = self.recent.pop_front() {
            self.bytes -= oldest.bytes;
        }
    }

    fn lookup(&mut self, key: FactsKey, sample: Option<&HeaderSample>, raw: Option<&[u8]>) -> Option<Arc<CertificateFacts>> {
        let found = self.index.get(&key).and_then(|&i| self.slots.get_mut(i)).and_then(Option::as_mut).filter(|slot| {
            match (&slot.confirm, sample, raw) {
                (Confirm::Raw(held), None, Some(raw)) => crate::encoding::same_bytes_constant_time(held, raw),
                (Confirm::Sample(held), Some(sample), None) => held == sample,
                _ => false,
            }
        });
        match found {
            Some(slot) => {
                slot.referenced = true;
                self.stats.hits += 1;
                Some(Arc::clone(&slot.facts))
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, key: FactsKey, confirm: Confirm, facts: Arc<CertificateFacts>) {
        let held = match &confirm {
            Confirm::Raw(raw) => raw.len(),
            Confirm::Sample(_) => 0,
        };
        let bytes = facts.heap_bytes() + held + ENTRY_OVERHEAD_BYTES;
        if self.max_entries == 0 || bytes > self.max_bytes {
            return;
        }
        if let Some(&i) = self.index.get(&key) {
            // Another header with the same sample, or the same certificate again: replace.
            self.remove(i);
        }
        while !self.index.is_empty() && (self.index.len() >= self.max_entries || self.bytes + bytes > self.max_bytes) {
            self.evict_one();
        }
        let slot = Slot { key, confirm, facts, bytes, referenced: false };
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        if let Some(place) = self.slots.get_mut(i) {
            *place = Some(slot);
            self.index.insert(key, i);
            self.bytes += bytes;
        }
    }

    /// Sweeps the hand to the first entry not referenced since the last sweep and evicts it.
    /// Two turns at most: the first clears every reference bit it passes.
    fn evict_one(&mut self) {
        let turns = self.slots.len().saturating_mul(2).saturating_add(1);
        for _ in 0..turns {
            if self.slots.is_empty() {
                return;
            }
            let i = self.hand % self.slots.len();
            self.hand = (i + 1) % self.slots.len();
            if let Some(Some(slot)) = self.slots.get_mut(i) {
                if slot.referenced {
                    slot.referenced = false;
                } else {
                    self.remove(i);
                    self.stats.evictions += 1;
                    return;
                }
            }
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i).and_then(Option::take) {
            self.index.remove(&slot.key);
            self.bytes -= slot.bytes;
            self.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(n: u32) -> Arc<CertificateFacts> {
        let mut fingerprint = [0u8; 32];
        fingerprint[..4].copy_from_slice(&n.to_le_bytes());
        Arc::new(CertificateFacts {
            fingerprint: Fingerprint(fingerprint),
            subject_dn: format!("CN=user {n}"),
            issuer_dn: "CN=CA".into(),
            display_names: crate::certificate::DisplayNames::default(),
            serial_hex: format!("{n:x}"),
            not_before: 0,
            not_after: 1,
            subject_alt_names: Vec::new(),
            policy_oids: Vec::new(),
            extended_key_usages: Vec::new(),
            authority_key_identifier: None,
            public_key: None,
            complete: true,
        })
    }

    #[test]
    fn certificates_and_headers_are_found_again() {
        let mut cache = FactsCache::new(8, 1 << 20);
        let a = facts(1);
        cache.insert_certificate(b"cert-text", Arc::clone(&a));
        assert_eq!(cache.get_certificate(&a.fingerprint, b"cert-text").as_deref(), Some(&*a));
        assert!(cache.contains_certificate(&a.fingerprint, b"cert-text"));
        // The same certificate's key with other text: checked in full, not taken from here.
        assert_eq!(cache.get_certificate(&a.fingerprint, b"cert-texT"), None);
        assert!(!cache.contains_certificate(&a.fingerprint, b"other"));
        assert_eq!(cache.get_certificate(&facts(2).fingerprint, b"cert-text"), None);
        cache.insert_header(b"header-one", facts(3));
        assert_eq!(cache.get_header(b"header-one").map(|f| f.serial_hex.clone()), Some("3".into()));
        assert_eq!(cache.get_header(b"header-two"), None);
        // Same length, same sample, different bytes: never confused.
        let x = vec![b'x'; 1000];
        let mut y = x.clone();
        y[1] = b'y';
        assert_eq!(header_sample(&x), header_sample(&y));
        cache.insert_header(&x, facts(4));
        assert_eq!(cache.get_header(&y), None);
        assert_eq!(cache.stats(), CacheStats { hits: 2, misses: 4, evictions: 0 });
    }

    #[test]
    fn a_full_cache_keeps_its_hot_entries_and_never_empties() {
        let mut cache = FactsCache::new(100, 1 << 30);
        for n in 0..100 {
            cache.insert_certificate(b"", facts(n));
        }
        // The first ten are used again and again.
        for _ in 0..3 {
            for n in 0..10 {
                assert!(cache.get_certificate(&facts(n).fingerprint, b"").is_some());
            }
        }
        // A churn of one-off certificates passes through, touching the hot ten between.
        for n in 1000..1500 {
            cache.insert_certificate(b"", facts(n));
            assert!(cache.len() <= 100);
            assert!(cache.len() >= 99, "inserting never empties the cache");
            for hot in 0..10 {
                assert!(cache.get_certificate(&facts(hot).fingerprint, b"").is_some(), "hot {hot} lost at {n}");
            }
        }
        assert_eq!(cache.stats().evictions, 500);
    }

    #[test]
    fn the_byte_budget_bounds_the_cache() {
        let one = facts(0).heap_bytes() + ENTRY_OVERHEAD_BYTES;
        let mut cache = FactsCache::new(1000, one * 5 + one / 2);
        for n in 0..50 {
            cache.insert_certificate(b"", facts(n));
            assert!(cache.bytes() <= one * 5 + one / 2);
        }
        assert_eq!(cache.len(), 5);
        // An entry larger than the whole budget is not kept.
        let mut tiny = FactsCache::new(1000, 10);
        tiny.insert_certificate(b"", facts(1));
        assert!(tiny.is_empty());
        let mut off = FactsCache::new(0, 1 << 20);
        off.insert_certificate(b"", facts(1));
        assert!(off.is_empty());
    }

    #[test]
    fn a_recent_xfcc_header_is_found_by_its_exact_bytes_within_the_budget() {
        let one = facts(0).heap_bytes() + ENTRY_OVERHEAD_BYTES;
        let header = |n: usize| format!("Hash={n:064x};Cert=\"{}\"", "a".repeat(2000)).into_bytes();
        let mut cache = FactsCache::new(100, one * 4 + 2 * (2100 + ENTRY_OVERHEAD_BYTES));
        for n in 0..4 {
            cache.insert_certificate(b"", facts(n));
        }
        cache.remember_xfcc(&header(1), facts(1).fingerprint, facts(1));
        let (hash, found) = cache.get_recent_xfcc(&header(1)).unwrap();
        assert_eq!((hash, found.serial_hex.as_str()), (facts(1).fingerprint, "1"));
        // One byte off anywhere, or one byte more: not this header.
        let mut other = header(1);
        other[1000] = b'b';
        assert!(cache.get_recent_xfcc(&other).is_none());
        other = header(1);
        other.push(b' ');
        assert!(cache.get_recent_xfcc(&other).is_none());
        assert!(cache.get_recent_xfcc(&header(2)).is_none());
        // The budget holds the certificates and the recent headers together: a third header
        // evicts a certificate.
        cache.remember_xfcc(&header(2), facts(2).fingerprint, facts(2));
        assert_eq!(cache.len(), 4);
        cache.remember_xfcc(&header(3), facts(3).fingerprint, facts(3));
        assert!(cache.len() < 4 && cache.bytes() <= one * 4 + 2 * (2100 + ENTRY_OVERHEAD_BYTES));
        // Past the budget, or past RECENT_XFCC headers, the oldest goes, and the accounting
        // stays right.
        for n in 10..10 + RECENT_XFCC {
            cache.remember_xfcc(&header(n), facts(1).fingerprint, facts(1));
            assert!(cache.get_recent_xfcc(&header(n)).is_some());
            assert!(cache.bytes() <= one * 4 + 2 * (2100 + ENTRY_OVERHEAD_BYTES));
        }
        assert!(cache.get_recent_xfcc(&header(1)).is_none());
        assert!(cache.get_recent_xfcc(&header(10 + RECENT_XFCC - 2)).is_some());
        assert!(cache.is_empty());
        let mut roomy = FactsCache::new(100, 1 << 30);
        for n in 0..RECENT_XFCC + 1 {
            roomy.remember_xfcc(&header(n), facts(1).fingerprint, facts(1));
        }
        assert!(roomy.get_recent_xfcc(&header(0)).is_none());
        assert!(roomy.get_recent_xfcc(&header(1)).is_some());
        assert_eq!(roomy.bytes(), RECENT_XFCC * (header(0).len() + ENTRY_OVERHEAD_BYTES));
        // A budget too small for one header keeps none; a cache turned off keeps none.
        let mut tiny = FactsCache::new(100, 100);
        tiny.remember_xfcc(&header(1), facts(1).fingerprint, facts(1));
        assert!(tiny.get_recent_xfcc(&header(1)).is_none());
        let mut off = FactsCache::new(0, 1 << 20);
        off.remember_xfcc(&header(1), facts(1).fingerprint, facts(1));
        assert!(off.get_recent_xfcc(&header(1)).is_none());
    }

    #[test]
    fn replacing_an_entry_keeps_the_accounting_right() {
        let mut cache = FactsCache::new(10, 1 << 20);
        cache.insert_certificate(b"", facts(1));
        let before = cache.bytes();
        cache.insert_certificate(b"", facts(1));
        assert_eq!((cache.len(), cache.bytes()), (1, before));
    }
}
