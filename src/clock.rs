//! The one place wall-clock time is read. Pure logic takes `now_ms` as an
//! argument instead, so it can be tested deterministically.

/// Milliseconds since the Unix epoch.
#[allow(clippy::disallowed_methods)] // the one sanctioned read of the wall clock
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
