//! Reconnect backoff after failed connects: per pool slot, and per origin of the
//! [`super::super::auto`] client.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

/// First reconnect backoff after a failed connect.
const CONNECT_BACKOFF_BASE: Duration = Duration::from_millis(50);

/// Reconnect backoff after `failures` consecutive failed connects: the ceiling
/// doubles from [`CONNECT_BACKOFF_BASE`] up to `max`; the wait is uniform in
/// [ceiling/2, ceiling] so slots do not reconnect in lockstep.
pub fn connect_backoff(failures: u32, max: Duration) -> Duration {
    let ceiling = CONNECT_BACKOFF_BASE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max);
    ceiling.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Failed connects in a row, when the next may be tried, and why the last one failed:
/// one per pool slot, and one per origin of the [`super::auto`] client.
pub(crate) struct Backoff<E> {
    failures: u32,
    until: Option<Instant>,
    cause: Option<Arc<E>>,
}

impl<E> Default for Backoff<E> {
    fn default() -> Self {
        Self {
            failures: 0,
            until: None,
            cause: None,
        }
    }
}

impl<E> Backoff<E> {
    /// Record a failed connect: returns the failures in a row and the wait before the
    /// next attempt ([`connect_backoff`], at most `max`).
    pub(crate) fn failed(&mut self, cause: Arc<E>, max: Duration) -> (u32, Duration) {
        self.failures += 1;
        let wait = connect_backoff(self.failures, max);
        self.until = Some(Instant::now() + wait);
        self.cause = Some(cause);
        (self.failures, wait)
    }

    /// While backing off: the time left and the failure that started it.
    pub(crate) fn active(&self) -> Option<(Duration, Arc<E>)> {
        let (until, cause) = (self.until?, self.cause.as_ref()?);
        let now = Instant::now();
        (until > now).then(|| (until - now, cause.clone()))
    }
}
