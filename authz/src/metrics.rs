//! The filter's counters and gauges, kept in process and served on `/metrics` in the
//! Prometheus text format. Names are the filter's with `.` written `_` (Prometheus allows no
//! dots): `certbind.requests.denied.card_not_enrolled` is `certbind_requests_denied_card_not_enrolled`,
//! and the refusals by reason and detail are one labelled family,
//! `certbind_denied_total{reason="…",detail="…"}` (`certbind_filter::metrics::labelled`).

use certbind_filter::metrics::labelled;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Metrics are defined once, at start, and counted lock-free after.
#[derive(Default)]
pub struct Registry {
    defined: Mutex<Vec<(String, Kind)>>,
    values: Vec<AtomicU64>,
}

/// Room for every metric the filter's code defines (requests by reason, by reason and detail,
/// snapshot counters).
const CAPACITY: usize = 160;

impl Registry {
    pub fn new() -> Self {
        Registry { defined: Mutex::new(Vec::new()), values: (0..CAPACITY).map(|_| AtomicU64::new(0)).collect() }
    }

    fn define(&self, name: &str, kind: Kind) -> u32 {
        // A labelled counter is kept under its series text, `family{label="value",…}`.
        let name = match labelled(name) {
            Some((family, labels)) => {
                let labels: Vec<String> = labels.iter().map(|(label, value)| format!("{label}=\"{value}\"")).collect();
                format!("{family}{{{}}}", labels.join(","))
            }
            None => name.replace('.', "_"),
        };
        let Ok(mut defined) = self.defined.lock() else { return u32::MAX };
        if let Some(at) = defined.iter().position(|(n, _)| *n == name) {
            return u32::try_from(at).unwrap_or(u32::MAX);
        }
        if defined.len() >= CAPACITY {
            return u32::MAX;
        }
        defined.push((name, kind));
        u32::try_from(defined.len() - 1).unwrap_or(u32::MAX)
    }

    pub fn counter(&self, name: &str) -> u32 {
        self.define(name, Kind::Counter)
    }

    pub fn gauge(&self, name: &str) -> u32 {
        self.define(name, Kind::Gauge)
    }

    /// Unknown ids are ignored: counting never fails a request.
    pub fn increment(&self, id: u32) {
        if let Some(value) = usize::try_from(id).ok().and_then(|i| self.values.get(i)) {
            value.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record(&self, id: u32, value: u64) {
        if let Some(slot) = usize::try_from(id).ok().and_then(|i| self.values.get(i)) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// The value of a metric by its Prometheus name (tests, the benchmark).
    pub fn value(&self, name: &str) -> Option<u64> {
        let defined = self.defined.lock().ok()?;
        let at = defined.iter().position(|(n, _)| n == name)?;
        self.values.get(at).map(|v| v.load(Ordering::Relaxed))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(defined) = self.defined.lock() else { return out };
        let mut typed: Vec<&str> = Vec::new();
        for ((name, kind), value) in defined.iter().zip(&self.values) {
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            // One TYPE line per family, before its first series.
            let family = name.split_once('{').map_or(name.as_str(), |(family, _)| family);
            if !typed.contains(&family) {
                typed.push(family);
                let _ = writeln!(out, "# TYPE {family} {kind}");
            }
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_under_prometheus_names() {
        let registry = Registry::new();
        let allowed = registry.counter("certbind.requests.allowed");
        let version = registry.gauge("certbind.snapshot.version");
        assert_eq!(registry.counter("certbind.requests.allowed"), allowed);
        registry.increment(allowed);
        registry.increment(allowed);
        registry.record(version, 7);
        registry.increment(u32::MAX);
        assert_eq!(
            registry.render(),
            "# TYPE certbind_requests_allowed counter\ncertbind_requests_allowed 2\n# TYPE certbind_snapshot_version gauge\ncertbind_snapshot_version 7\n"
        );
        assert_eq!(registry.value("certbind_requests_allowed"), Some(2));
    }

    #[test]
    fn refusals_by_detail_render_as_one_labelled_family() {
        let registry = Registry::new();
        let card_auth = registry.counter("certbind.denied_total.certificate_not_allowed.card_authentication");
        let _ = registry.counter("certbind.denied_total.card_not_enrolled.none");
        registry.increment(card_auth);
        assert_eq!(
            registry.render(),
            "# TYPE certbind_denied_total counter\n\
             certbind_denied_total{reason=\"certificate_not_allowed\",detail=\"card_authentication\"} 1\n\
             certbind_denied_total{reason=\"card_not_enrolled\",detail=\"none\"} 0\n"
        );
    }
}
