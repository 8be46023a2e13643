//! How pushes are retried, paced and circuit-broken: `[retry]`, `[breaker]` and each
//! vendor's `max_in_flight` / `max_rps`, validated and converted once (durations as
//! [`Duration`]s) for the dispatcher.

use std::time::Duration;

use super::Lane;
use crate::config::{Config, LaneLimits};

/// What the dispatcher applies to every lane.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub retry: Retry,
    pub breaker: Breaker,
    /// Each lane's limits, in [`Lane::ALL`] order.
    pub lanes: [LaneLimits; Lane::COUNT],
}

/// `[retry]`: full-jitter backoff whose ceiling doubles from `base` up to `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub base: Duration,
    pub max: Duration,
    /// Sends per push, the first included.
    pub max_attempts: u32,
}

/// `[breaker]`: `failures` in a row open a lane's circuit for `open`, doubling per
/// failed probe up to `max_open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub open: Duration,
    pub max_open: Duration,
}

impl Delivery {
    pub fn from_config(c: &Config) -> Self {
        Self {
            retry: Retry {
                base: Duration::from_millis(c.retry.base_ms),
                max: Duration::from_millis(c.retry.max_ms),
                max_attempts: c.retry.max_attempts,
            },
            breaker: Breaker {
                failures: c.breaker.failures,
                open: Duration::from_millis(c.breaker.open_ms),
                max_open: Duration::from_millis(c.breaker.max_open_ms),
            },
            lanes: Lane::ALL.map(|l| l.limits(c)),
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}
