//! `last_used_at` of admin tokens and proxy credentials, kept to the minute without a write
//! on every request: the first use of a credential in a minute records it, in a task of its
//! own, after the request has been answered from memory.

use crate::db::{proxies, tokens, Db};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How stale `last_used_at` may be.
pub const RESOLUTION: Duration = Duration::from_secs(60);

/// Credentials remembered at most; past it the memory is cleared, which costs one extra
/// write per credential, not correctness.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    Admin,
    Proxy,
}

#[derive(Debug, Default)]
pub struct Usage {
    written: Mutex<HashMap<(Credential, String), Instant>>,
}

impl Usage {
    /// Notes a use of `id`; writes it unless it was written less than a minute ago.
    pub fn used(&self, db: &Db, kind: Credential, id: &str) {
        let now = Instant::now();
        {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            let key = (kind, id.to_string());
            if written.get(&key).is_some_and(|at| now.duration_since(*at) < RESOLUTION) {
                return;
            }
            if written.len() >= MAX_REMEMBERED {
                written.clear();
            }
            written.insert(key, now);
        }
        let (db, id) = (db.clone(), id.to_string());
        tokio::spawn(async move {
            let at = crate::time::now_rfc3339();
            let result = match kind {
                Credential::Admin => tokens::touch(&db, &id, &at).await,
                Credential::Proxy => proxies::touch(&db, &id, &at).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot record a token's last use");
            }
        });
    }
}
