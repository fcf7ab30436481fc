//! `last_used_at` of admin tokens, kept to the minute without a write on every request: the
//! first use of a token in a minute records it, in a task of its own, after the request has
//! been answered from memory. (A proxy credential's is written with its fetches, batched:
//! see `fleet`.)

use crate::db::{tokens, Db};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How stale `last_used_at` may be.
pub const RESOLUTION: Duration = Duration::from_secs(60);

/// Credentials remembered at most; past it the memory is cleared, which costs one extra
/// write per credential, not correctness.
const MAX_REMEMBERED: usize = 100_000;

/// The two kinds of bearer credential, as the auth failure counters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    Admin,
    Proxy,
}

#[derive(Debug, Default)]
pub struct Usage {
    written: Mutex<HashMap<String, Instant>>,
}

impl Usage {
    /// Notes a use of admin token `id`; writes it unless it was written less than a minute ago.
    pub fn used(&self, db: &Db, id: &str) {
        let now = Instant::now();
        {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            let key = id.to_string();
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
            if let Err(e) = tokens::touch(&db, &id, &at).await {
                tracing::warn!(error = %e, "cannot record a token's last use");
            }
        });
    }
}
