//! Failed authentications: every request refused for its credential is counted (by which
//! credential the route wanted and why it failed), and logged at most once per
//! [`LOG_INTERVAL`] with the number left unlogged since, so that guessing shows in the log
//! and in `/metrics` while a flood of bad requests cannot flood the log. The presented
//! secret is never logged.

use super::usage::Credential;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two log lines about failed authentications.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization: Bearer` credential at all.
    Missing,
    /// A credential that is malformed or names no token.
    Invalid,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Invalid => "invalid",
        }
    }
}

fn credential_name(credential: Credential) -> &'static str {
    match credential {
        Credential::Admin => "admin",
        Credential::Proxy => "proxy",
    }
}

#[derive(Debug, Default)]
pub struct AuthFailures {
    /// [credential][failure]: admin, proxy × missing, invalid.
    counts: [[AtomicU64; 2]; 2],
    log: Mutex<LogGate>,
}

#[derive(Debug, Default)]
struct LogGate {
    last: Option<Instant>,
    /// Failures not logged since the last line.
    unlogged: u64,
}

impl AuthFailures {
    /// Counts a refusal, and logs it unless a line was written less than [`LOG_INTERVAL`] ago.
    pub fn record(&self, credential: Credential, failure: Failure, route: &str, peer: Option<SocketAddr>) {
        self.counts[credential as usize][failure as usize].fetch_add(1, Ordering::Relaxed);
        self.log_at(Instant::now(), credential, failure, route, peer);
    }

    /// Whether a line was written (the gate, with the time given).
    fn log_at(&self, now: Instant, credential: Credential, failure: Failure, route: &str, peer: Option<SocketAddr>) -> bool {
        let Ok(mut gate) = self.log.lock() else { return false };
        if gate.last.is_some_and(|last| now.duration_since(last) < LOG_INTERVAL) {
            gate.unlogged += 1;
            return false;
        }
        let earlier = std::mem::take(&mut gate.unlogged);
        gate.last = Some(now);
        drop(gate);
        tracing::warn!(
            credential = credential_name(credential),
            reason = failure.as_str(),
            route,
            peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            unlogged_since_last_line = earlier,
            "authentication failed"
        );
        true
    }

    pub fn count(&self, credential: Credential, failure: Failure) -> u64 {
        self.counts[credential as usize][failure as usize].load(Ordering::Relaxed)
    }

    /// Every (credential, reason, count), for `/metrics`.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        [Credential::Admin, Credential::Proxy].into_iter().flat_map(move |c| {
            [Failure::Missing, Failure::Invalid].into_iter().map(move |f| (credential_name(c), f.as_str(), self.count(c, f)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_each_and_logged_once_an_interval() {
        let failures = AuthFailures::default();
        let start = Instant::now();
        assert!(failures.log_at(start, Credential::Admin, Failure::Invalid, "/r", None));
        assert!(!failures.log_at(start + Duration::from_secs(1), Credential::Admin, Failure::Invalid, "/r", None));
        assert!(!failures.log_at(start + LOG_INTERVAL - Duration::from_millis(1), Credential::Proxy, Failure::Missing, "/r", None));
        assert_eq!(failures.log.lock().unwrap().unlogged, 2);
        assert!(failures.log_at(start + LOG_INTERVAL, Credential::Admin, Failure::Invalid, "/r", None));
        assert_eq!(failures.log.lock().unwrap().unlogged, 0);

        failures.record(Credential::Proxy, Failure::Invalid, "/api/v1/snapshot", None);
        failures.record(Credential::Proxy, Failure::Invalid, "/api/v1/snapshot", None);
        failures.record(Credential::Admin, Failure::Missing, "/api/v1/admin/users", None);
        let all: Vec<_> = failures.all().collect();
        assert_eq!(
            all,
            vec![("admin", "missing", 1), ("admin", "invalid", 0), ("proxy", "missing", 0), ("proxy", "invalid", 2)]
        );
    }
}
