//! Tokens that already verified, so that a client sending the same token on every request
//! costs one signature check, not one per request.
//!
//! Entries are keyed by the token's length and its last bytes (the tail of the signature,
//! which differs between any two signed tokens) together with the identity data's generation,
//! so that a change of the issuers' keys invalidates every entry at once; a key hit is then
//! confirmed by comparing the whole token in constant time. Hashing the whole token instead
//! would cost a SHA-256 per request, which is most of a warm request's budget in wasm. Only
//! verified tokens are inserted. The cache holds at most `capacity` entries and replaces them
//! in insertion order, each operation in constant time.
//!
//! [`RejectedTokens`] remembers the opposite: tokens refused for good (a bad signature, an
//! unknown key or issuer, a wrong audience, malformed), so that a token replayed after failing
//! costs a hash and a lookup instead of another signature check. Refusals that time can undo
//! (not yet valid) are not remembered.

use super::jwt::VerifiedToken;
use super::token_error::TokenError;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Bytes of the token's tail in the key: 48 base64url characters are 36 bytes of signature.
const KEY_TAIL: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    tail: [u8; KEY_TAIL],
    len: usize,
    generation: u64,
}

impl CacheKey {
    fn new(bytes: &[u8], generation: u64) -> Self {
        let start = bytes.len().saturating_sub(KEY_TAIL);
        let mut tail = [0u8; KEY_TAIL];
        if let (Some(src), Some(dst)) = (bytes.get(start..), tail.get_mut(..bytes.len() - start)) {
            dst.copy_from_slice(src);
        }
        CacheKey { tail, len: bytes.len(), generation }
    }
}

#[derive(Debug)]
struct Entry {
    key: CacheKey,
    /// The whole token, to confirm a key hit.
    text: Box<[u8]>,
    /// Shared so that a hit hands out the claims without copying them.
    token: Arc<VerifiedToken>,
}

/// A bounded cache of verified tokens.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    index: HashMap<CacheKey, usize>,
    /// Slots in a ring; `next_victim` walks it, so the oldest insertion is replaced first.
    slots: Vec<Option<Entry>>,
    /// Slots emptied by expiry, reused before anything live is replaced.
    free: Vec<usize>,
    next_victim: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 remembers nothing).
    pub fn new(capacity: usize) -> Self {
        TokenCache { capacity, index: HashMap::new(), slots: Vec::new(), free: Vec::new(), next_victim: 0 }
    }

    /// The verified claims of `token`, if it was inserted under this `generation` and is
    /// still current at `now` (with `leeway_seconds` of skew). An entry found out of date is
    /// removed.
    pub fn get(&mut self, token: impl AsRef<[u8]>, generation: u64, now: i64, leeway_seconds: u64) -> Option<&VerifiedToken> {
        let slot = self.find(token.as_ref(), generation, now, leeway_seconds)?;
        self.slots.get(slot).and_then(Option::as_ref).map(|entry| &*entry.token)
    }

    /// As [`TokenCache::get`], sharing the claims rather than borrowing them. The token is
    /// looked up by its bytes: a hit needs no check of its text.
    pub fn get_shared(
        &mut self,
        token: impl AsRef<[u8]>,
        generation: u64,
        now: i64,
        leeway_seconds: u64,
    ) -> Option<Arc<VerifiedToken>> {
        let slot = self.find(token.as_ref(), generation, now, leeway_seconds)?;
        self.slots.get(slot).and_then(Option::as_ref).map(|entry| Arc::clone(&entry.token))
    }

    fn find(&mut self, token: &[u8], generation: u64, now: i64, leeway_seconds: u64) -> Option<usize> {
        let key = CacheKey::new(token, generation);
        let slot = *self.index.get(&key)?;
        let entry = self.slots.get(slot).and_then(Option::as_ref)?;
        if !crate::encoding::same_bytes_constant_time(&entry.text, token) {
            // Another token with the same key: not this one.
            return None;
        }
        if !entry.token.is_current(now, leeway_seconds) {
            self.remove_slot(slot);
            return None;
        }
        Some(slot)
    }

    /// Remembers a token that [`super::jwt::verify`] accepted under this `generation`.
    pub fn insert(&mut self, token: &str, generation: u64, verified: VerifiedToken) {
        if self.capacity == 0 {
            return;
        }
        let key = CacheKey::new(token.as_bytes(), generation);
        if let Some(&slot) = self.index.get(&key) {
            if let Some(Some(entry)) = self.slots.get_mut(slot) {
                entry.text = token.as_bytes().into();
                entry.token = Arc::new(verified);
                return;
            }
        }
        let entry = Some(Entry { key, text: token.as_bytes().into(), token: Arc::new(verified) });
        let slot = if let Some(slot) = self.free.pop() {
            slot
        } else if self.slots.len() < self.capacity {
            self.slots.push(None);
            self.slots.len() - 1
        } else {
            let victim = self.next_victim;
            self.next_victim = (victim + 1) % self.capacity;
            self.remove_slot(victim);
            // remove_slot listed the victim as free; it is taken right here.
            self.free.pop();
            victim
        };
        if let Some(place) = self.slots.get_mut(slot) {
            *place = entry;
            self.index.insert(key, slot);
        }
    }

    /// Number of tokens held (expired ones included until they are looked up or replaced).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn remove_slot(&mut self, slot: usize) {
        if let Some(place) = self.slots.get_mut(slot) {
            if let Some(entry) = place.take() {
                self.index.remove(&entry.key);
                self.free.push(slot);
            }
        }
    }
}

/// Tokens refused for good under one identity generation, so that a replayed bad token is
/// refused without verifying it again. Keyed by SHA-256 of the generation and the token: a
/// collision would need a second preimage, and its only effect would be refusing a token.
/// Bounded; the oldest entry goes first.
#[derive(Debug)]
pub struct RejectedTokens {
    capacity: usize,
    held: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl RejectedTokens {
    pub fn new(capacity: usize) -> Self {
        RejectedTokens { capacity, held: HashSet::new(), order: VecDeque::new() }
    }

    /// Whether a refusal is final for this token under this generation: no later request
    /// can make it verify. `NotYetValid` is not (its time may come).
    pub fn is_final(error: &TokenError) -> bool {
        !matches!(error, TokenError::NotYetValid)
    }

    /// The lookup key of `token` presented in the scope of `org` (the org the request's
    /// certificate resolved into: which issuer registrations apply, [`super::scope`]);
    /// computed once and passed to both calls. A token refused in one org's scope may verify
    /// in another's.
    pub fn fingerprint(token: &str, generation: u64, org: Option<&str>) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(generation.to_le_bytes());
        let scope = org.unwrap_or_default();
        hash.update([u8::from(org.is_some())]);
        hash.update((scope.len() as u64).to_le_bytes());
        hash.update(scope.as_bytes());
        hash.update(token.as_bytes());
        hash.finalize().into()
    }

    pub fn contains(&self, key: &[u8; 32]) -> bool {
        !self.held.is_empty() && self.held.contains(key)
    }

    pub fn insert(&mut self, key: [u8; 32]) {
        if self.capacity == 0 || !self.held.insert(key) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.held.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Owner;

    const NOW: i64 = 1_700_000_000;

    fn verified(subject: &str, expires_at: i64) -> VerifiedToken {
        VerifiedToken {
            issuer: "https://issuer.example".into(),
            subject: Some(subject.into()),
            audience: vec!["certbind-api".into()],
            expires_at,
            not_before: None,
            cnf_x5t_s256: None,
            registration: Owner::Platform,
            forwarded: None,
        }
    }

    #[test]
    fn a_verified_token_is_found_again() {
        let mut cache = TokenCache::new(4);
        assert_eq!(cache.get("token-a", 1, NOW, 0), None);
        cache.insert("token-a", 1, verified("a", NOW + 60));
        assert_eq!(cache.get("token-a", 1, NOW, 0), Some(&verified("a", NOW + 60)));
        assert_eq!(cache.get("token-b", 1, NOW, 0), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn an_expired_entry_is_evicted_when_looked_up() {
        let mut cache = TokenCache::new(4);
        cache.insert("token-a", 1, verified("a", NOW + 60));
        assert!(cache.get("token-a", 1, NOW + 60 + 5, 5).is_some(), "within leeway");
        assert_eq!(cache.get("token-a", 1, NOW + 60 + 6, 5), None);
        assert_eq!(cache.len(), 0);
        // Once evicted it stays gone, even for a clock that runs backwards.
        assert_eq!(cache.get("token-a", 1, NOW, 5), None);
    }

    #[test]
    fn a_new_generation_misses_every_entry() {
        let mut cache = TokenCache::new(4);
        cache.insert("token-a", 1, verified("a", NOW + 60));
        assert_eq!(cache.get("token-a", 2, NOW, 0), None);
        assert_eq!(cache.get("token-a", 1, NOW, 0), Some(&verified("a", NOW + 60)));
    }

    #[test]
    fn the_cache_never_outgrows_its_capacity_and_replaces_the_oldest() {
        let mut cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(&format!("token-{i}"), 1, verified(&i.to_string(), NOW + 60));
            assert!(cache.len() <= 3);
            assert!(cache.slots.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        let present: Vec<bool> = (0..10).map(|i| cache.get(&format!("token-{i}"), 1, NOW, 0).is_some()).collect();
        assert_eq!(present, [false, false, false, false, false, false, false, true, true, true]);
    }

    #[test]
    fn a_slot_freed_by_expiry_is_reused_before_a_live_entry_is_replaced() {
        let mut cache = TokenCache::new(2);
        cache.insert("short", 1, verified("short", NOW + 1));
        cache.insert("long", 1, verified("long", NOW + 600));
        assert_eq!(cache.get("short", 1, NOW + 10, 0), None);
        cache.insert("new", 1, verified("new", NOW + 600));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("long", 1, NOW + 10, 0).is_some());
        assert!(cache.get("new", 1, NOW + 10, 0).is_some());
    }

    #[test]
    fn reinserting_a_token_replaces_its_entry_in_place() {
        let mut cache = TokenCache::new(2);
        cache.insert("token-a", 1, verified("first", NOW + 60));
        cache.insert("token-a", 1, verified("second", NOW + 60));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("token-a", 1, NOW, 0), Some(&verified("second", NOW + 60)));
    }

    #[test]
    fn tokens_sharing_a_key_are_told_apart() {
        let mut cache = TokenCache::new(4);
        let tail = "s".repeat(KEY_TAIL);
        let (a, b) = (format!("header-a.{tail}"), format!("header-b.{tail}"));
        cache.insert(&a, 1, verified("a", NOW + 60));
        assert_eq!(cache.get(&b, 1, NOW, 0), None, "same length and tail, different token");
        assert_eq!(cache.get(&a, 1, NOW, 0), Some(&verified("a", NOW + 60)));
        cache.insert(&b, 1, verified("b", NOW + 60));
        assert_eq!(cache.get(&a, 1, NOW, 0), None, "the newer token took the slot");
        assert_eq!(cache.get(&b, 1, NOW, 0), Some(&verified("b", NOW + 60)));
        assert_eq!(cache.get("short", 1, NOW, 0), None);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut cache = TokenCache::new(0);
        cache.insert("token-a", 1, verified("a", NOW + 60));
        assert_eq!(cache.get("token-a", 1, NOW, 0), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn rejected_tokens_are_remembered_per_generation_and_bounded() {
        let mut rejected = RejectedTokens::new(2);
        let a = RejectedTokens::fingerprint("bad-a", 1, None);
        assert!(!rejected.contains(&a));
        rejected.insert(a);
        assert!(rejected.contains(&a));
        assert!(!rejected.contains(&RejectedTokens::fingerprint("bad-a", 2, None)), "a new generation tries again");
        assert!(!rejected.contains(&RejectedTokens::fingerprint("bad-a", 1, Some("org"))), "another scope tries again");
        rejected.insert(a);
        assert_eq!(rejected.len(), 1);
        rejected.insert(RejectedTokens::fingerprint("bad-b", 1, None));
        rejected.insert(RejectedTokens::fingerprint("bad-c", 1, None));
        assert_eq!(rejected.len(), 2);
        assert!(!rejected.contains(&a), "the oldest went first");
        assert!(RejectedTokens::is_final(&TokenError::BadSignature));
        assert!(RejectedTokens::is_final(&TokenError::Expired));
        assert!(!RejectedTokens::is_final(&TokenError::NotYetValid));
        let mut off = RejectedTokens::new(0);
        off.insert(a);
        assert!(off.is_empty());
    }
}
