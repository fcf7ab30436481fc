//! Counters for every outcome and reason, exported through the proxy's metrics
//! (Envoy shows them under `wasmcustom.`).
//!
//! Refusals are counted twice: by reason (`certbind.requests.denied.{reason}`), and by reason
//! and detail, the stable sub-reason operators tell refusals apart by
//! (`certbind.denied_total.{reason}.{detail}`). A Prometheus exporter shows the second as
//! `certbind_denied_total{reason="…",detail="…"}`: Envoy through the `stats_config.stats_tags`
//! the configurations in envoy/templates/ carry, certbind-authz through [`labelled`].

use certbind_shared::decision::outcome::{Notice, Outcome, Reason};

/// The counter family of refusals by reason and detail.
pub const DENIED_TOTAL: &str = "certbind.denied_total";

/// The counter name of one refusal in [`DENIED_TOTAL`].
pub fn denied_name(reason: Reason) -> String {
    format!("{DENIED_TOTAL}.{}.{}", reason.as_str(), reason.detail())
}

/// A counter name of [`DENIED_TOTAL`] as its Prometheus family and labels, for a host that
/// writes labels itself; `None` for any other name.
pub fn labelled(name: &str) -> Option<(String, [(&'static str, &str); 2])> {
    let rest = name.strip_prefix(DENIED_TOTAL)?.strip_prefix('.')?;
    let (reason, detail) = rest.split_once('.')?;
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (word(reason) && word(detail)).then(|| (DENIED_TOTAL.replace('.', "_"), [("reason", reason), ("detail", detail)]))
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    /// By reason name: the sub-reasons of one reason share its counter.
    denied: Vec<(&'static str, u32)>,
    /// By reason and detail.
    denied_detail: Vec<(Reason, u32)>,
    /// Allowed requests that passed by something operators must see (a CA failing open).
    notices: Vec<(Notice, u32)>,
}

impl Metrics {
    /// `define` creates a counter by name and returns its id.
    pub fn define(mut define: impl FnMut(&str) -> Option<u32>) -> Self {
        let allowed = define("certbind.requests.allowed");
        let mut denied: Vec<(&'static str, u32)> = Vec::new();
        let mut denied_detail = Vec::new();
        for reason in Reason::ALL {
            let name = reason.as_str();
            if !denied.iter().any(|(n, _)| *n == name) {
                if let Some(id) = define(&format!("certbind.requests.denied.{name}")) {
                    denied.push((name, id));
                }
            }
            if let Some(id) = define(&denied_name(reason)) {
                denied_detail.push((reason, id));
            }
        }
        let notices = Notice::ALL
            .iter()
            .filter_map(|n| define(&format!("certbind.requests.allowed.{}", n.as_str())).map(|id| (*n, id)))
            .collect();
        Metrics { allowed, denied, denied_detail, notices }
    }

    /// The counter of an allowed request's notice, if it has one.
    pub fn notice_counter_for(&self, outcome: &Outcome) -> Option<u32> {
        let Outcome::Allow { notice: Some(notice), .. } = outcome else { return None };
        self.notices.iter().find(|(n, _)| n == notice).map(|(_, id)| *id)
    }

    /// The outcome's counter: allowed, or denied by reason.
    pub fn counter_for(&self, outcome: &Outcome) -> Option<u32> {
        match outcome.reason() {
            None => self.allowed,
            Some(reason) => self.denied.iter().find(|(r, _)| *r == reason.as_str()).map(|(_, id)| *id),
        }
    }

    /// A refusal's counter by reason and detail ([`DENIED_TOTAL`]); `None` for an allowed
    /// request.
    pub fn detail_counter_for(&self, outcome: &Outcome) -> Option<u32> {
        let reason = outcome.reason()?;
        self.denied_detail.iter().find(|(r, _)| *r == reason).map(|(_, id)| *id)
    }

    /// Every counter the outcome moves.
    pub fn counters_for(&self, outcome: &Outcome) -> impl Iterator<Item = u32> {
        [self.counter_for(outcome), self.detail_counter_for(outcome), self.notice_counter_for(outcome)].into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certbind_shared::decision::outcome::NotAllowed;

    #[test]
    fn each_refusal_moves_its_reason_and_its_detail() {
        let mut names = Vec::new();
        let metrics = Metrics::define(|name| {
            names.push(name.to_owned());
            u32::try_from(names.len()).ok()
        });
        let id = |name: &str| names.iter().position(|n| n == name).and_then(|i| u32::try_from(i + 1).ok());
        let denied = Outcome::deny(Reason::CertificateNotAllowed(NotAllowed::PolicyOidMissing));
        let moved: Vec<u32> = metrics.counters_for(&denied).collect();
        assert_eq!(
            moved,
            [
                id("certbind.requests.denied.certificate_not_allowed").unwrap(),
                id("certbind.denied_total.certificate_not_allowed.policy_oid_missing").unwrap()
            ]
        );
        let other = Outcome::deny(Reason::CertificateNotAllowed(NotAllowed::SanDomain));
        assert_eq!(metrics.counter_for(&other), metrics.counter_for(&denied));
        assert_ne!(metrics.detail_counter_for(&other), metrics.detail_counter_for(&denied));
        assert_eq!(
            metrics.detail_counter_for(&Outcome::deny(Reason::CardNotEnrolled)),
            id("certbind.denied_total.card_not_enrolled.none")
        );
        // One counter per reason name, one per refusal.
        assert_eq!(names.iter().filter(|n| n.starts_with("certbind.requests.denied.")).count(), 14);
        assert_eq!(names.iter().filter(|n| n.starts_with("certbind.denied_total.")).count(), Reason::ALL.len());
    }

    #[test]
    fn denied_total_names_read_as_prometheus_labels() {
        assert_eq!(
            labelled("certbind.denied_total.certificate_not_allowed.card_authentication"),
            Some(("certbind_denied_total".to_owned(), [("reason", "certificate_not_allowed"), ("detail", "card_authentication")]))
        );
        for other in ["certbind.requests.allowed", "certbind.denied_total.x", "certbind.denied_total.a.b.c", "certbind.denied_total.A.b"] {
            assert_eq!(labelled(other), None, "{other}");
        }
    }
}
