//! What the engine tells its operators: counters, histograms and their two
//! renderings (JSON for `/v1/stats`, Prometheus text for `/metrics`:
//! [`prometheus`]), the log ([`logging`], the access log of [`api`]) and vendor health
//! ([`health`]: the failure log and what `/readyz` says about each vendor).
//!
//! Counters are relaxed atomics indexed by provider; histograms ([`Histogram`]) are
//! fixed buckets of atomics: recording never locks or allocates. No label carries a
//! user id or token; the vendor's label is `provider` everywhere. Process metrics
//! ([`process`]) are read from `/proc` when scraped. For tests, [`CapturedLog`] keeps
//! the log lines a test asserts on.

pub mod api;
pub mod health;
mod histogram;
pub mod logging;
mod process;
mod prometheus;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::fanout::plan::Lane;
use crate::providers::Cause;
use crate::state::ProviderKind;
pub use histogram::Histogram;

#[derive(Default)]
pub struct ProviderStats {
    /// Requests sent to the vendor (each attempt counts).
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Pushes that finally failed (rejected, dead token, or retries exhausted).
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub invalid_tokens_removed: AtomicU64,
    /// Pushes not sent because the vendor has no credentials configured.
    pub unconfigured: AtomicU64,
    /// Pushes dropped because they expired before they could be delivered.
    pub expired: AtomicU64,
    /// Verdicts that the token is dead (the binding is then removed if it still holds
    /// that token; see `invalid_tokens_removed`).
    pub dead_tokens: AtomicU64,
    /// Pushes the vendor rejected for good (never retried), by [`Cause`].
    pub rejected: [AtomicU64; Cause::COUNT],
    /// Sends whose fate is unknown (reset or timeout after the request went out);
    /// they are resent, so each may have become a duplicate.
    pub unknown_fate: AtomicU64,
    /// Sends the vendor provably did not process (GOAWAY above the last stream id,
    /// REFUSED_STREAM, connect failure), resent without counting an attempt.
    pub resent_unprocessed: AtomicU64,
    /// 429-style answers (app or device throttled).
    pub throttled: AtomicU64,
    /// Time of each request to the vendor, from send to verdict.
    pub request_seconds: Histogram,
}

/// Live state of one vendor lane, written by its dispatcher.
#[derive(Default)]
pub struct LaneStats {
    /// Sends in flight now.
    pub in_flight: AtomicU64,
    /// Pushes waiting in the retry delay queue.
    pub waiting_retry: AtomicU64,
    /// [`BreakerState`] as a number.
    pub breaker: AtomicU8,
    /// Times the breaker opened.
    pub breaker_opened: AtomicU64,
    /// Current pace in requests per second; 0 = unpaced.
    pub pace_rps: AtomicU64,
}

/// A lane's circuit breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The feedback webhook ([`crate::feedback`]).
#[derive(Default)]
pub struct FeedbackStats {
    /// Events dropped because the feedback queue was full.
    pub overflow: AtomicU64,
    /// Batches the receiver took (answered 2xx).
    pub batches_sent: AtomicU64,
    /// POSTs that failed (no answer, or not 2xx); the batch is retried.
    pub posts_failed: AtomicU64,
}

/// Cluster mode's shared fan-out work (all zero on a single engine).
#[derive(Default)]
pub struct ClusterStats {
    /// Work chunks this engine queued.
    pub chunks: AtomicU64,
    /// Targets of chunks delivered to this engine again (their first engine died or
    /// stalled): pushes that may repeat.
    pub duplicates: AtomicU64,
}

#[derive(Default)]
pub struct Stats {
    pub feedback: FeedbackStats,
    pub cluster: ClusterStats,
    pub messages_accepted: AtomicU64,
    pub messages_duplicate: AtomicU64,
    pub calls_accepted: AtomicU64,
    pub requests_shed: AtomicU64,
    providers: [ProviderStats; ProviderKind::ALL.len()],
    lanes: [LaneStats; Lane::COUNT],
    /// API request time by [`api::Route`].
    pub api: [Histogram; api::Route::COUNT],
    /// A message's fan-out: accepted → its last device push finished ([`Fanout`]).
    pub fanout_seconds: Histogram,
    failure_logs: [health::FailureLog; ProviderKind::ALL.len()],
    last_failure: [Mutex<Option<health::Failure>>; Lane::COUNT],
}

/// The fan-out of one message being timed: shared by its device pushes, it observes
/// `fanout_seconds` when the last of them lets go of it (delivered, failed, expired).
/// One per message, never per push.
pub struct Fanout {
    started: quanta::Instant,
    stats: Arc<Stats>,
}

impl Fanout {
    pub fn start(stats: &Arc<Stats>) -> Arc<Self> {
        Arc::new(Self {
            started: quanta::Instant::now(),
            stats: stats.clone(),
        })
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.stats.fanout_seconds.since(self.started);
    }
}

/// Storage figures the store writes and `/metrics` reads.
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Time of each fsync of the write-ahead log.
    pub fsync_seconds: Histogram,
    /// Time of each snapshot, from the log's rotation to the file's fsync.
    pub snapshot_seconds: Histogram,
    /// Bytes appended to the write-ahead log since start.
    pub wal_written_bytes: AtomicU64,
    /// UNIX ms of the newest snapshot written, or recovered from (its file's time);
    /// 0 when there is none.
    pub last_snapshot_unix_ms: AtomicU64,
    /// UNIX ms when the store opened.
    pub opened_unix_ms: AtomicU64,
    /// How long recovery took, in microseconds.
    pub recovery_us: AtomicU64,
}

#[inline]
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    #[inline]
    pub fn provider(&self, p: ProviderKind) -> &ProviderStats {
        &self.providers[p as usize]
    }

    #[inline]
    pub fn lane(&self, l: Lane) -> &LaneStats {
        &self.lanes[l as usize]
    }
}

/// Gauges read from the rest of the engine at render time.
pub struct Gauges {
    pub bindings: usize,
    pub users: usize,
    pub online_users: usize,
    pub groups: usize,
    /// Durable writes refused because the log could not take them (since start).
    pub storage_refused_writes: u64,
    /// Whether durable writes are failing now (`/readyz` answers 503 meanwhile).
    pub storage_writes_failing: bool,
    /// (queue name, queued device pushes)
    pub queues: Vec<(&'static str, usize)>,
    /// The store's figures and the bytes in the current log segment, once recovered.
    pub storage: Option<(Arc<StorageStats>, u64)>,
    /// Wall clock now, UNIX ms (snapshot age).
    pub now_unix_ms: u64,
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// One per-provider counter: its key in `/v1/stats`, its Prometheus name and help,
/// and where it lives. Both renderings read this one table.
type ProviderCounter = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ProviderStats) -> &AtomicU64,
);

#[rustfmt::skip]
const PROVIDER_COUNTERS: [ProviderCounter; 11] = [
    ("dead_tokens", "pushes_dead_tokens_total", "Verdicts that a device token is dead.", |s| &s.dead_tokens),
    ("unknown_fate", "pushes_unknown_fate_total", "Sends with an unknown fate (reset or timeout after sending), resent.", |s| &s.unknown_fate),
    ("resent_unprocessed", "pushes_resent_unprocessed_total", "Sends the vendor provably did not process, resent without an attempt.", |s| &s.resent_unprocessed),
    ("throttled", "pushes_throttled_total", "429-style throttling answers.", |s| &s.throttled),
    ("sent", "pushes_sent_total", "Requests sent to the vendor.", |s| &s.sent),
    ("delivered", "pushes_delivered_total", "Pushes the vendor accepted.", |s| &s.delivered),
    ("failed", "pushes_failed_total", "Pushes that finally failed.", |s| &s.failed),
    ("retried", "pushes_retried_total", "Push attempts retried.", |s| &s.retried),
    ("invalid_tokens_removed", "invalid_tokens_removed_total", "Bindings removed because the vendor said the token is dead.", |s| &s.invalid_tokens_removed),
    ("unconfigured", "pushes_unconfigured_total", "Pushes for vendors without credentials.", |s| &s.unconfigured),
    ("expired", "pushes_expired_total", "Pushes dropped after their expiry.", |s| &s.expired),
];

/// One per-lane metric: its Prometheus name, type and help, and how it is read.
type LaneMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LaneStats) -> u64,
);

#[rustfmt::skip]
const LANE_METRICS: [LaneMetric; 5] = [
    ("lane_in_flight", "gauge", "Sends in flight.", |s| load(&s.in_flight)),
    ("lane_waiting_retry", "gauge", "Pushes waiting in the retry delay queue.", |s| load(&s.waiting_retry)),
    ("breaker_state", "gauge", "Circuit breaker: 0 closed, 1 open, 2 half-open.", |s| u64::from(s.breaker.load(Ordering::Relaxed))),
    ("breaker_opened_total", "counter", "Times the circuit breaker opened.", |s| load(&s.breaker_opened)),
    ("lane_pace_rps", "gauge", "Current pace in requests/s (0 = unpaced).", |s| load(&s.pace_rps)),
];

impl Stats {
    pub fn to_json(&self, g: &Gauges) -> Value {
        let mut providers = Map::new();
        for p in ProviderKind::ALL {
            let s = self.provider(p);
            let mut counters: Map<String, Value> = PROVIDER_COUNTERS
                .iter()
                .map(|(key, _, _, f)| (key.to_string(), json!(load(f(s)))))
                .collect();
            // Every cause from the start, at zero, as in `/metrics`: a client sees the
            // key before the first rejection.
            let rejected: Map<String, Value> = Cause::ALL
                .iter()
                .map(|c| (c.as_str().to_string(), json!(load(&s.rejected[c.index()]))))
                .collect();
            counters.insert("rejected".into(), rejected.into());
            providers.insert(p.as_str().into(), counters.into());
        }
        let lanes: Map<String, Value> = Lane::ALL
            .iter()
            .map(|l| {
                let s = self.lane(*l);
                let depth = g.queues.iter().find(|(n, _)| *n == l.name()).map_or(0, |q| q.1);
                (
                    l.name().to_string(),
                    json!({
                        "queue_depth": depth,
                        "in_flight": load(&s.in_flight),
                        "waiting_retry": load(&s.waiting_retry),
                        "breaker": BreakerState::from_u8(s.breaker.load(Ordering::Relaxed)).as_str(),
                        "breaker_opened": load(&s.breaker_opened),
                        "pace_rps": load(&s.pace_rps),
                    }),
                )
            })
            .collect();
        let queues: Map<String, Value> = g
            .queues
            .iter()
            .map(|(n, d)| (n.to_string(), json!(d)))
            .collect();
        json!({
            "bindings": g.bindings,
            "users": g.users,
            "online_users": g.online_users,
            "groups": g.groups,
            "storage": {
                "writes_failing": g.storage_writes_failing,
                "refused_writes": g.storage_refused_writes,
            },
            "messages_accepted": load(&self.messages_accepted),
            "messages_duplicate": load(&self.messages_duplicate),
            "calls_accepted": load(&self.calls_accepted),
            "requests_shed": load(&self.requests_shed),
            "cluster": {
                "chunks": load(&self.cluster.chunks),
                "duplicates": load(&self.cluster.duplicates),
            },
            "feedback": {
                "overflow": load(&self.feedback.overflow),
                "batches_sent": load(&self.feedback.batches_sent),
                "posts_failed": load(&self.feedback.posts_failed),
            },
            "invalid_tokens_removed": ProviderKind::ALL.iter().map(|p| load(&self.provider(*p).invalid_tokens_removed)).sum::<u64>(),
            "providers": providers,
            "queue_depth": queues,
            "lanes": lanes,
        })
    }
}

#[cfg(test)]
mod tests;

/// Log output captured for a test that asserts on log lines: the writer of a
/// `tracing_subscriber::fmt` subscriber set as the test thread's default.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct CapturedLog(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

#[cfg(test)]
impl CapturedLog {
    /// Capture the log of this thread (text, without colours) until the guard drops.
    pub(crate) fn install() -> (CapturedLog, tracing::subscriber::DefaultGuard) {
        let log = CapturedLog::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    /// Everything logged so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

#[cfg(test)]
impl std::io::Write for CapturedLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> CapturedLog {
        self.clone()
    }
}
