//! Resident memory of the bench process, from /proc/self (Linux).

/// A `kB` field of /proc/self/status (`VmRSS:`, `VmHWM:`), in KiB; 0 if unreadable.
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` value 5).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
