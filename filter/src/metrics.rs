//! Counters for every outcome and reason, exported through the proxy's metrics
//! (Envoy shows them under `wasmcustom.`).

use certbind_shared::decision::outcome::{Notice, Outcome, Reason};

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    denied: Vec<(Reason, u32)>,
    /// Allowed requests that passed by something operators must see (a CA failing open).
    notices: Vec<(Notice, u32)>,
}

impl Metrics {
    /// `define` creates a counter by name and returns its id.
    pub fn define(mut define: impl FnMut(&str) -> Option<u32>) -> Self {
        let allowed = define("certbind.requests.allowed");
        let denied = Reason::ALL
            .iter()
            .filter_map(|r| define(&format!("certbind.requests.denied.{}", r.as_str())).map(|id| (*r, id)))
            .collect();
        let notices = Notice::ALL
            .iter()
            .filter_map(|n| define(&format!("certbind.requests.allowed.{}", n.as_str())).map(|id| (*n, id)))
            .collect();
        Metrics { allowed, denied, notices }
    }

    /// The counter of an allowed request's notice, if it has one.
    pub fn notice_counter_for(&self, outcome: &Outcome) -> Option<u32> {
        let Outcome::Allow { notice: Some(notice), .. } = outcome else { return None };
        self.notices.iter().find(|(n, _)| n == notice).map(|(_, id)| *id)
    }

    pub fn counter_for(&self, outcome: &Outcome) -> Option<u32> {
        match outcome.reason() {
            None => self.allowed,
            Some(reason) => self.denied.iter().find(|(r, _)| *r == reason).map(|(_, id)| *id),
        }
    }
}
