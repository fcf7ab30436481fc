//! The proxies a replica serves, by proxy credential.
//!
//! - A credential verified in the last [`TRUSTED_FOR`] is believed without asking the
//!   database again (a fleet's long-polls cost no query each), and one verified within
//!   [`REMEMBERED_FOR`] while the database is unreachable, so long-polls go on serving the
//!   last snapshot through an outage. Deleting a credential forgets it here at once; another
//!   replica believes it at most [`TRUSTED_FOR`] longer.
//! - Every answered fetch is noted (when, and the version the proxy holds since) and written
//!   to `proxy_credentials` a second later, all fetches of that second in one transaction: a
//!   revoke answers thousands of long-polls at once. So any replica's API and `/metrics` tell
//!   how many proxies hold which version.
//! - The long-polls waiting here are counted.

use crate::db::proxies::{self, Fetch};
use crate::db::tokens::hash_token;
use crate::db::{Db, ProxyCredential};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long answered fetches wait to be written together.
pub const FETCHES_WRITTEN_EVERY: Duration = Duration::from_secs(1);

/// Fetches waiting to be written at most (one per credential); past it the oldest second's
/// are dropped, which only leaves `last_fetch_*` a fetch behind.
const MAX_UNWRITTEN: usize = 200_000;

/// How long a verified credential is believed without asking the database again.
pub const TRUSTED_FOR: Duration = Duration::from_secs(30);

/// How long a verified credential is believed while the database is unreachable. No credential can be
/// deleted while the database is unreachable; this bounds how long one deleted through another
/// replica just before an outage is still served. Active proxies fetch at least once a minute.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Default)]
pub struct Fleet {
    /// By the credential's SHA-256 (as stored): the credential and when it was last verified.
    verified: Mutex<HashMap<String, (ProxyCredential, Instant)>>,
    /// Answered fetches not written yet, by credential id: the last one each.
    unwritten: Mutex<HashMap<String, Fetch>>,
    /// A write of `unwritten` is scheduled.
    writing: AtomicBool,
    /// Long-polls waiting on this replica now.
    waiting: AtomicU64,
}

/// Counts a long-poll while it waits.
pub struct Waiting<'a>(&'a Fleet);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Fleet {
    fn verified_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ProxyCredential, Instant)>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database just said `secret` is `credential`.
    pub fn verified(&self, secret: &str, credential: &ProxyCredential) {
        self.verified_map().insert(hash_token(secret), (credential.clone(), Instant::now()));
    }

    /// The database just said `secret` is no credential (deleted): forget it at once.
    pub fn refused(&self, secret: &str) {
        self.verified_map().remove(&hash_token(secret));
    }

    /// The credential `secret` was verified as within `within`: [`TRUSTED_FOR`] to skip the
    /// database, [`REMEMBERED_FOR`] when it cannot be asked.
    pub fn recall(&self, secret: &str, within: Duration) -> Option<ProxyCredential> {
        let map = self.verified_map();
        let (credential, at) = map.get(&hash_token(secret))?;
        (at.elapsed() < within).then(|| credential.clone())
    }

    /// Credential `id` was deleted: believed no more.
    pub fn deleted(&self, id: &str) {
        self.verified_map().retain(|_, (credential, _)| credential.id != id);
    }

    /// A long-poll starts waiting; it stops when the guard is dropped.
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }

    /// Long-polls waiting on this replica.
    pub fn waiting_now(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Credential `credential_id` was answered and holds `version` since: written with the
    /// others of this second.
    pub fn fetched(self: &Arc<Self>, db: &Db, credential_id: &str, version: u64) {
        let fetch = Fetch {
            credential_id: credential_id.to_string(),
            at: crate::time::now_rfc3339(),
            version: i64::try_from(version).unwrap_or(i64::MAX),
        };
        {
            let mut unwritten = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
            if unwritten.len() >= MAX_UNWRITTEN && !unwritten.contains_key(credential_id) {
                unwritten.clear();
            }
            unwritten.insert(fetch.credential_id.clone(), fetch);
        }
        if !self.writing.swap(true, Ordering::AcqRel) {
            let (fleet, db) = (Arc::clone(self), db.clone());
            tokio::spawn(async move {
                tokio::time::sleep(FETCHES_WRITTEN_EVERY).await;
                fleet.writing.store(false, Ordering::Release);
                let fetches: Vec<Fetch> = {
                    let mut unwritten = fleet.unwritten.lock().unwrap_or_else(|p| p.into_inner());
                    unwritten.drain().map(|(_, fetch)| fetch).collect()
                };
                if let Err(e) = proxies::record_fetches(&db, &fetches).await {
                    tracing::warn!(error = %e, fetches = fetches.len(), "cannot record the proxies' fetches");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(id: &str) -> ProxyCredential {
        ProxyCredential {
            id: id.into(),
            label: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            last_used_at: None,
            last_fetch_at: None,
            last_fetch_version: None,
        }
    }

    #[test]
    fn a_credential_is_recalled_once_verified_until_refused() {
        let fleet = Fleet::default();
        assert!(fleet.recall("cbp_one", REMEMBERED_FOR).is_none());
        fleet.verified("cbp_one", &credential("p1"));
        assert_eq!(fleet.recall("cbp_one", TRUSTED_FOR).map(|c| c.id), Some("p1".to_string()));
        assert!(fleet.recall("cbp_one", Duration::ZERO).is_none(), "verified longer ago than that");
        assert!(fleet.recall("cbp_two", REMEMBERED_FOR).is_none());
        fleet.refused("cbp_one");
        assert!(fleet.recall("cbp_one", REMEMBERED_FOR).is_none());
        fleet.verified("cbp_one", &credential("p1"));
        fleet.deleted("p1");
        assert!(fleet.recall("cbp_one", REMEMBERED_FOR).is_none());
    }
}
