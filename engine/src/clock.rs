//! The engine's one source of time, monotonic and wall.
//!
//! `quanta` gives a TSC-backed monotonic clock whose reads cost a few nanoseconds;
//! presence TTLs, dedup windows and token caches all use [`Clock::now_ms`]. Wall-clock
//! readings (push expiry, vendor expirations, JWT `iat`) come from
//! [`Clock::unix_now_s`] / [`Clock::unix_now_ms`], or from the free [`unix_now_s`] /
//! [`unix_now_ms`] where no clock is at hand.
//!
//! This is the only module that reads `SystemTime::now` (`clippy.toml` forbids it
//! elsewhere), so a test can swap the time source: [`Clock::tokio`] follows
//! `tokio::time`, and under `#[tokio::test(start_paused = true)]` advancing paused time
//! moves both its monotonic and its wall readings, so timers and expiry agree.

use std::time::{SystemTime, UNIX_EPOCH};

/// Monotonic milliseconds since the clock was created, and the wall clock.
#[derive(Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    /// Production: TSC-backed monotonic reads, `SystemTime` for the wall clock.
    System {
        inner: quanta::Clock,
        origin: quanta::Instant,
    },
    /// Tests: `tokio::time` drives both readings, so paused time moves them.
    Tokio {
        origin: tokio::time::Instant,
        unix_origin_ms: u64,
    },
}

impl Clock {
    pub fn new() -> Self {
        let inner = quanta::Clock::new();
        let origin = inner.now();
        Self {
            source: Source::System { inner, origin },
        }
    }

    /// A clock that follows `tokio::time` (paused time in tests) and whose wall clock
    /// reads `unix_origin_ms` at the moment it is made.
    pub fn tokio(unix_origin_ms: u64) -> Self {
        Self {
            source: Source::Tokio {
                origin: tokio::time::Instant::now(),
                unix_origin_ms,
            },
        }
    }

    /// Milliseconds since this clock was made; never goes backwards.
    pub fn now_ms(&self) -> u64 {
        match &self.source {
            Source::System { inner, origin } => {
                inner.now().duration_since(*origin).as_millis() as u64
            }
            Source::Tokio { origin, .. } => origin.elapsed().as_millis() as u64,
        }
    }

    /// Milliseconds since the UNIX epoch (wall clock).
    pub fn unix_now_ms(&self) -> u64 {
        match &self.source {
            Source::System { .. } => unix_now_ms(),
            Source::Tokio { unix_origin_ms, .. } => unix_origin_ms.saturating_add(self.now_ms()),
        }
    }

    /// Seconds since the UNIX epoch (wall clock).
    pub fn unix_now_s(&self) -> u64 {
        match &self.source {
            Source::System { .. } => unix_now_s(),
            Source::Tokio { .. } => self.unix_now_ms() / 1000,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::System { .. } => "system",
            Source::Tokio { .. } => "tokio",
        };
        f.debug_struct("Clock").field("source", &kind).finish()
    }
}

/// Seconds since the UNIX epoch (wall clock).
#[allow(clippy::disallowed_methods)] // the one place wall time is read
pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the UNIX epoch (wall clock), for vendors that want them.
#[allow(clippy::disallowed_methods)] // the one place wall time is read
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_on_both_readings() {
        let clock = Clock::tokio(1_000_000);
        assert_eq!((clock.now_ms(), clock.unix_now_ms()), (0, 1_000_000));
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.now_ms(), 2_500);
        assert_eq!(clock.unix_now_ms(), 1_002_500);
        assert_eq!(clock.unix_now_s(), 1_002);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let clock = Clock::new();
        let before = unix_now_ms();
        let read = clock.unix_now_ms();
        assert!(read >= before && read <= unix_now_ms());
    }
}
