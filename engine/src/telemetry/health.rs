//! Vendor health: the failure log and what `/readyz` says about each vendor lane.
//!
//! A vendor failure (a 5xx, a timeout, a transport or connect error, refused
//! credentials) is logged at WARN with its cause, HTTP status and reason as soon as it
//! happens, so an outage is visible at once rather than when the breaker opens, and
//! then at most once per provider every [`FAILURE_LOG_PERIOD`], each line counting the
//! failures it did not log (`suppressed`). The rate limit is two atomics per provider;
//! the lane's last logged failure is kept (under a lock taken only when a line is
//! logged) for `/readyz` and the breaker's log line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{BreakerState, Stats};
use crate::clock::Clock;
use crate::fanout::plan::Lane;
use crate::providers::{Cause, Outcome, Verdict};
use crate::state::ProviderKind;

/// At most one failure line per provider this often.
pub const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(10);
const NEVER: u64 = u64::MAX;

/// One provider's failure-log rate limit.
#[derive(Debug)]
pub struct FailureLog {
    /// `Clock::now_ms` of the last line, or [`NEVER`].
    last_ms: AtomicU64,
    /// Failures since then not logged.
    suppressed: AtomicU64,
}

impl Default for FailureLog {
    fn default() -> Self {
        Self {
            last_ms: AtomicU64::new(NEVER),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl FailureLog {
    /// `Some(suppressed since the last line)` when this failure is to be logged.
    fn tick(&self, now_ms: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let period = FAILURE_LOG_PERIOD.as_millis() as u64;
        let due = last == NEVER || now_ms.saturating_sub(last) >= period;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A vendor failure as logged and as `/readyz` shows it (no token, no user id, no
/// secret: the vendor's status and reason code, or a transport error naming only the
/// vendor's origin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub provider: &'static str,
    pub cause: &'static str,
    pub status: Option<u16>,
    pub reason: Option<String>,
    /// `Clock::now_ms` when it was logged.
    #[serde(skip)]
    pub at_ms: u64,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.provider, self.cause)?;
        if let Some(s) = self.status {
            write!(f, " (http {s})")?;
        }
        if let Some(r) = &self.reason {
            write!(f, ": {r}")?;
        }
        Ok(())
    }
}

/// Whether a retry cause is the vendor (or the path to it) failing, rather than a
/// verdict about one push: what the failure log reports.
pub fn is_vendor_failure(cause: Cause) -> bool {
    cause.trips_breaker() || cause == Cause::ProviderAuth
}

impl Stats {
    /// A vendor's verdict on a send that left at `started`: time the request (none
    /// left for an unconfigured vendor) and log a vendor failure, rate-limited.
    #[inline]
    pub fn verdict(&self, p: ProviderKind, v: &Verdict, started: quanta::Instant, clock: &Clock) {
        match v.outcome {
            Outcome::Rejected(Cause::Unconfigured) => return,
            Outcome::Retry { cause, .. } if is_vendor_failure(cause) => {
                let reason = v.reason.as_deref();
                self.vendor_failed(p, cause, v.status, reason, clock.now_ms());
            }
            _ => {}
        }
        self.provider(p).request_seconds.since(started);
    }

    /// A vendor failed a send (`cause` per [`is_vendor_failure`]): log it now unless
    /// this provider logged one less than [`FAILURE_LOG_PERIOD`] ago.
    pub fn vendor_failed(
        &self,
        provider: ProviderKind,
        cause: Cause,
        status: Option<u16>,
        reason: Option<&str>,
        now_ms: u64,
    ) {
        let Some(suppressed) = self.failure_logs[provider as usize].tick(now_ms) else {
            return;
        };
        let failure = Failure {
            provider: provider.as_str(),
            cause: cause.as_str(),
            status,
            reason: reason.map(str::to_string),
            at_ms: now_ms,
        };
        tracing::warn!(
            provider = failure.provider,
            cause = failure.cause,
            status = ?failure.status,
            reason = failure.reason.as_deref().unwrap_or(""),
            suppressed,
            "vendor failing (at most one line per provider every {}s; suppressed: failures since the last line)",
            FAILURE_LOG_PERIOD.as_secs()
        );
        *self.last_failure[provider.lane() as usize].lock() = Some(failure);
    }

    /// The last failure logged for `lane`, if any.
    pub fn last_failure(&self, lane: Lane) -> Option<Failure> {
        self.last_failure[lane as usize].lock().clone()
    }

    /// What `/readyz` says about the vendors: each lane's state (`unconfigured`; `ok`;
    /// `degraded` while its breaker is not closed), its breaker and its last failure.
    pub fn readiness(&self, configured: impl Fn(Lane) -> bool, now_ms: u64) -> Readiness {
        let vendors = Lane::ALL
            .iter()
            .map(|&lane| {
                let breaker =
                    BreakerState::from_u8(self.lane(lane).breaker.load(Ordering::Relaxed));
                let state = if !configured(lane) {
                    "unconfigured"
                } else if breaker == BreakerState::Closed {
                    "ok"
                } else {
                    "degraded"
                };
                let last_failure = self.last_failure(lane).map(|f| LastFailure {
                    age_s: now_ms.saturating_sub(f.at_ms) / 1000,
                    failure: f,
                });
                let health = LaneHealth {
                    breaker: breaker.as_str(),
                    last_failure,
                    state,
                };
                (lane.name(), health)
            })
            .collect();
        Readiness {
            status: "ok",
            vendors,
        }
    }
}

/// The body of `200 /readyz`: `status` stays `"ok"` (the engine takes work; a vendor's
/// outage must not take every instance out of a load balancer), and each vendor lane
/// says how it is doing.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub status: &'static str,
    pub vendors: std::collections::BTreeMap<&'static str, LaneHealth>,
}

#[derive(Debug, Serialize)]
pub struct LaneHealth {
    pub breaker: &'static str,
    /// The last failure logged for the lane, and how long ago.
    pub last_failure: Option<LastFailure>,
    /// `ok`, `degraded` (breaker open or probing) or `unconfigured`.
    pub state: &'static str,
}

#[derive(Debug, Serialize)]
pub struct LastFailure {
    pub age_s: u64,
    #[serde(flatten)]
    pub failure: Failure,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::CapturedLog;

    #[test]
    fn the_first_failure_is_logged_at_once_then_one_line_per_period_with_the_count() {
        let (log, _guard) = CapturedLog::install();
        let stats = Stats::default();
        let fail = |ms| {
            stats.vendor_failed(
                ProviderKind::Fcm,
                Cause::Unavailable,
                Some(503),
                Some("UNAVAILABLE"),
                ms,
            )
        };
        fail(0);
        let first = log.text();
        assert_eq!(first.lines().count(), 1, "{first}");
        assert!(first.contains("WARN"), "{first}");
        assert!(
            first.contains("provider=\"fcm\"") || first.contains("provider=fcm"),
            "{first}"
        );
        assert!(first.contains("cause=\"unavailable\"") || first.contains("cause=unavailable"));
        assert!(
            first.contains("Some(503)") && first.contains("UNAVAILABLE"),
            "{first}"
        );
        for ms in (100..9_900).step_by(100) {
            fail(ms);
        }
        assert_eq!(
            log.text().lines().count(),
            1,
            "rate-limited: {}",
            log.text()
        );
        // Another provider is not held back by this one.
        stats.vendor_failed(ProviderKind::Apns, Cause::Timeout, None, None, 5_000);
        assert_eq!(log.text().lines().count(), 2);
        fail(10_000);
        let text = log.text();
        let last = text.lines().last().unwrap();
        assert!(last.contains("suppressed=98"), "{last}");
        let f = stats.last_failure(Lane::Fcm).expect("kept for /readyz");
        assert_eq!(f.to_string(), "fcm unavailable (http 503): UNAVAILABLE");
    }

    #[test]
    fn readiness_says_degraded_while_a_breaker_is_open_with_the_last_failure() {
        let stats = Stats::default();
        stats.vendor_failed(
            ProviderKind::Apns,
            Cause::ServerError,
            Some(500),
            Some("InternalServerError"),
            1_000,
        );
        stats
            .lane(Lane::Apns)
            .breaker
            .store(BreakerState::Open as u8, Ordering::Relaxed);
        let r = serde_json::to_value(stats.readiness(|l| l != Lane::Vivo, 4_500)).unwrap();
        assert_eq!(r["status"], "ok");
        assert_eq!(r["vendors"]["apns"]["state"], "degraded");
        assert_eq!(r["vendors"]["apns"]["breaker"], "open");
        assert_eq!(
            r["vendors"]["apns"]["last_failure"],
            serde_json::json!({"provider": "apns", "cause": "server_error", "status": 500,
                               "reason": "InternalServerError", "age_s": 3})
        );
        assert_eq!(r["vendors"]["fcm"]["state"], "ok");
        assert_eq!(r["vendors"]["fcm"]["last_failure"], serde_json::Value::Null);
        assert_eq!(r["vendors"]["vivo"]["state"], "unconfigured");
    }
}
