//! The proxies a replica serves, by proxy credential. The credentials it verified lately keep
//! authenticating while the database is unreachable, so long-polls go on serving the last
//! snapshot through an outage instead of failing with the database.

use crate::db::tokens::hash_token;
use crate::db::ProxyCredential;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verified credential is believed without the database. No credential can be
/// deleted while the database is unreachable; this bounds how long one deleted through another
/// replica just before an outage is still served. Active proxies fetch at least once a minute.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Default)]
pub struct Fleet {
    /// By the credential's SHA-256 (as stored): the credential and when it was last verified.
    verified: Mutex<HashMap<String, (ProxyCredential, Instant)>>,
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

    /// The credential `secret` was verified as within [`REMEMBERED_FOR`], for when the
    /// database cannot be asked.
    pub fn recall(&self, secret: &str) -> Option<ProxyCredential> {
        let map = self.verified_map();
        let (credential, at) = map.get(&hash_token(secret))?;
        (at.elapsed() < REMEMBERED_FOR).then(|| credential.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(id: &str) -> ProxyCredential {
        ProxyCredential { id: id.into(), label: None, created_at: "2026-01-01T00:00:00Z".into(), last_used_at: None }
    }

    #[test]
    fn a_credential_is_recalled_once_verified_until_refused() {
        let fleet = Fleet::default();
        assert!(fleet.recall("cbp_one").is_none());
        fleet.verified("cbp_one", &credential("p1"));
        assert_eq!(fleet.recall("cbp_one").map(|c| c.id), Some("p1".to_string()));
        assert!(fleet.recall("cbp_two").is_none());
        fleet.refused("cbp_one");
        assert!(fleet.recall("cbp_one").is_none());
    }
}
