//! Cheap clocks for the hot path.
//!
//! `quanta` gives a TSC-backed monotonic clock whose reads cost a few nanoseconds;
//! presence TTLs, dedup windows and token caches all use [`Clock::now_ms`]. Wall-clock
//! seconds (for vendor expirations and JWT `iat`) come from [`unix_now_s`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Monotonic milliseconds since the clock was created.
#[derive(Clone)]
pub struct Clock {
    inner: quanta::Clock,
    origin: quanta::Instant,
}

impl Clock {
    pub fn new() -> Self {
        let inner = quanta::Clock::new();
        let origin = inner.now();
        Self { inner, origin }
    }

    /// Milliseconds since this clock was made; never goes backwards.
    pub fn now_ms(&self) -> u64 {
        self.inner.now().duration_since(self.origin).as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since the UNIX epoch (wall clock).
pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the UNIX epoch (wall clock), for vendors that want them.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
