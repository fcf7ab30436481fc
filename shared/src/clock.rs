//! Unix time as every part of certbind keeps it: whole seconds or milliseconds in an `i64`,
//! read from whichever clock the caller has (the proxy's, for a filter; the system's
//! elsewhere). One conversion, so that the shims, the authorization service and the control
//! plane cannot disagree at the edges: a clock before 1970 reads 0 (everything looks expired
//! or not yet valid, which fails closed), and one past `i64::MAX` reads `i64::MAX`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch at `at`.
pub fn unix_seconds(at: SystemTime) -> i64 {
    since_epoch(at).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch at `at`.
pub fn unix_millis(at: SystemTime) -> i64 {
    since_epoch(at).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// [`unix_seconds`] of the system clock.
pub fn now_seconds() -> i64 {
    unix_seconds(SystemTime::now())
}

/// [`unix_millis`] of the system clock.
pub fn now_millis() -> i64 {
    unix_millis(SystemTime::now())
}

fn since_epoch(at: SystemTime) -> Option<Duration> {
    at.duration_since(UNIX_EPOCH).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_at_the_edges() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(unix_seconds(at), 1_700_000_000);
        assert_eq!(unix_millis(at), 1_700_000_000_123);
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!((unix_seconds(before), unix_millis(before)), (0, 0));
        assert_eq!(unix_seconds(UNIX_EPOCH), 0);
        // Milliseconds overflow an i64 some 292 million years on; the reading saturates.
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 999)) {
            assert_eq!(unix_millis(far), i64::MAX);
        }
        let now = now_seconds();
        assert!(now > 1_700_000_000 && now_millis() / 1000 >= now, "{now}");
    }
}
