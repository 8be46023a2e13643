//! Fault injection shared by every mock vendor (`VENDORS.md` §1.5, §2.5–2.6, §5).
//!
//! A [`Faults`] handle belongs to one mock server and can be changed while it runs
//! (tests flip faults between requests; the load generator schedules an outage). What
//! each fault does on the wire, and whether the vendor *processed* the push (recorded
//! it) — which is what decides if a client resend is a duplicate:
//!
//! | fault | wire | processed |
//! | --- | --- | --- |
//! | `throttle` (probability or per token in the vendor mock) | 429 + `Retry-After`, vendor body | no |
//! | `unavailable` / `internal` | 503 (+ `Retry-After`) / 500, vendor body | no |
//! | `latency` | answer delayed | yes |
//! | `refuse_stream` / `refuse_next(n)` | RST_STREAM `REFUSED_STREAM` | no |
//! | `reset_after_processing` / `reset_next_after_processing(n)` | push recorded, then RST_STREAM `INTERNAL_ERROR` | **yes** |
//! | `goaway_every(n)` | graceful GOAWAY on the connection carrying the server's every n-th stream | streams ≤ last id: yes |
//! | `goaway_error_every(n)` | the same with GOAWAY `INTERNAL_ERROR`, connection closed at once | streams ≤ last id may be, unanswered |
//! | `drop_every(n, mode)` | the server's every n-th stream closes its TCP connection with streams in flight | per [`DropMode`] |
//! | `idle_timeout` | graceful GOAWAY after a connection idled | — |
//! | `outage(d, close)` | open connections closed (GOAWAY or abrupt), new ones reset for `d` | no |
//!
//! Faults apply to push requests only, never to a vendor's own token endpoint.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// Probabilities are kept in parts per million.
const PPM: u32 = 1_000_000;

/// When a dropped connection's triggering stream is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropMode {
    /// Before the vendor looks at the push: nothing is recorded, yet the client cannot
    /// know (its fate is unknown to it).
    BeforeProcessing,
    /// After the push was recorded: the answer is lost, so a client resend is a
    /// duplicate.
    AfterProcessing,
}

/// How an outage treats connections that are open when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// GOAWAY with the last processed stream: in-flight streams still get answers,
    /// later ones are refused (a front end draining before it goes down).
    Graceful,
    /// The TCP connections are closed at once: in-flight streams get no answer
    /// (a crash or a network cut).
    Abrupt,
}

/// An injected answer instead of the vendor's own; each mock renders it with its
/// vendor's status body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// 429 with `Retry-After: retry_after_s` (APNs `TooManyRequests`, FCM
    /// `QUOTA_EXCEEDED`).
    Throttle { retry_after_s: u32 },
    /// 503 (APNs `ServiceUnavailable`, FCM `UNAVAILABLE`), `Retry-After` when non-zero.
    Unavailable { retry_after_s: u32 },
    /// 500 (APNs `InternalServerError`, FCM `INTERNAL`).
    Internal,
}

/// What to do with one push stream, decided before the vendor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamFault {
    None,
    Answer(Injected),
    Refuse,
    ResetAfterProcessing,
}

/// Counts of injected faults.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub throttled: AtomicU64,
    pub unavailable: AtomicU64,
    pub internal: AtomicU64,
    pub refused_streams: AtomicU64,
    pub reset_after_processing: AtomicU64,
    pub goaways: AtomicU64,
    pub dropped_connections: AtomicU64,
    pub refused_connections: AtomicU64,
    pub idle_closes: AtomicU64,
}

impl FaultCounts {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Inner {
    latency_us: AtomicU64,
    throttle_ppm: AtomicU32,
    throttle_retry_after_s: AtomicU32,
    unavailable_ppm: AtomicU32,
    unavailable_retry_after_s: AtomicU32,
    internal_ppm: AtomicU32,
    refuse_ppm: AtomicU32,
    reset_after_ppm: AtomicU32,
    refuse_next: AtomicU64,
    reset_after_next: AtomicU64,
    goaway_every: AtomicU64,
    goaway_error_every: AtomicU64,
    drop_every: AtomicU64,
    drop_mode: Mutex<Option<DropMode>>,
    idle_timeout_ms: AtomicU64,
    down_until: Mutex<Option<Instant>>,
    counts: FaultCounts,
}

/// Handle to one mock's faults; clones share them.
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<Inner>,
    /// Bumped when an outage starts, so every open connection closes.
    outage: Arc<watch::Sender<(u64, Close)>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            inner: Arc::default(),
            outage: Arc::new(watch::channel((0, Close::Graceful)).0),
        }
    }
}

fn ppm(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * f64::from(PPM)).round() as u32
}

/// Store `probability` (clamped to 0..=1) into a per-million share.
fn set_share(share: &AtomicU32, probability: f64) {
    share.store(ppm(probability), Ordering::Relaxed);
}

fn roll(rng: &mut impl rand::Rng, ppm: u32) -> bool {
    ppm > 0 && rng.gen_range(0..PPM) < ppm
}

impl Faults {
    /// No faults, answers delayed by `latency`.
    pub fn with_latency(latency: Duration) -> Faults {
        let f = Faults::default();
        f.set_latency(latency);
        f
    }

    pub fn set_latency(&self, d: Duration) {
        self.inner
            .latency_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.inner.latency_us.load(Ordering::Relaxed))
    }

    /// Answer this share of pushes 429 with `Retry-After: retry_after_s`.
    pub fn set_throttle(&self, probability: f64, retry_after_s: u32) {
        self.inner
            .throttle_retry_after_s
            .store(retry_after_s, Ordering::Relaxed);
        set_share(&self.inner.throttle_ppm, probability);
    }

    /// Answer this share of pushes 503 (with `Retry-After` when `retry_after_s > 0`).
    pub fn set_unavailable(&self, probability: f64, retry_after_s: u32) {
        self.inner
            .unavailable_retry_after_s
            .store(retry_after_s, Ordering::Relaxed);
        set_share(&self.inner.unavailable_ppm, probability);
    }

    /// Answer this share of pushes 500.
    pub fn set_internal(&self, probability: f64) {
        set_share(&self.inner.internal_ppm, probability);
    }

    /// Refuse this share of push streams with RST_STREAM `REFUSED_STREAM`.
    pub fn set_refuse_stream(&self, probability: f64) {
        set_share(&self.inner.refuse_ppm, probability);
    }

    /// Record this share of pushes, then reset their stream (`INTERNAL_ERROR`)
    /// instead of answering.
    pub fn set_reset_after_processing(&self, probability: f64) {
        set_share(&self.inner.reset_after_ppm, probability);
    }

    /// Refuse the next `n` push streams (RST_STREAM `REFUSED_STREAM`).
    pub fn refuse_next(&self, n: u64) {
        self.inner.refuse_next.store(n, Ordering::Relaxed);
    }

    /// Record the next `n` pushes, then reset their streams instead of answering.
    pub fn reset_next_after_processing(&self, n: u64) {
        self.inner.reset_after_next.store(n, Ordering::Relaxed);
    }

    /// Graceful GOAWAY on the connection that carries the server's every `n`-th
    /// stream; 0 = never.
    pub fn set_goaway_every(&self, n: u64) {
        self.inner.goaway_every.store(n, Ordering::Relaxed);
    }

    /// GOAWAY `INTERNAL_ERROR` and close the connection carrying every `n`-th stream.
    pub fn set_goaway_error_every(&self, n: u64) {
        self.inner.goaway_error_every.store(n, Ordering::Relaxed);
    }

    /// Close the TCP connection of the server's every `n`-th stream, with other
    /// streams in flight.
    pub fn set_drop_every(&self, n: u64, mode: DropMode) {
        *self.inner.drop_mode.lock() = Some(mode);
        self.inner.drop_every.store(n, Ordering::Relaxed);
    }

    /// Close connections (graceful GOAWAY) that carried no stream for `d`; zero = never.
    pub fn set_idle_timeout(&self, d: Duration) {
        self.inner
            .idle_timeout_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// The vendor goes down for `d`: open connections are closed per `close`, new
    /// ones are reset right after being accepted until `d` has passed.
    pub fn outage(&self, d: Duration, close: Close) {
        *self.inner.down_until.lock() = Some(Instant::now() + d);
        self.outage.send_modify(|(n, c)| {
            *n += 1;
            *c = close;
        });
    }

    /// End an outage early.
    pub fn end_outage(&self) {
        *self.inner.down_until.lock() = None;
    }

    /// True while an outage refuses connections.
    pub fn is_down(&self) -> bool {
        self.inner
            .down_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    pub fn counts(&self) -> &FaultCounts {
        &self.inner.counts
    }

    pub(crate) fn outage_watch(&self) -> watch::Receiver<(u64, Close)> {
        self.outage.subscribe()
    }

    pub(crate) fn goaway_every(&self) -> u64 {
        self.inner.goaway_every.load(Ordering::Relaxed)
    }

    pub(crate) fn goaway_error_every(&self) -> u64 {
        self.inner.goaway_error_every.load(Ordering::Relaxed)
    }

    pub(crate) fn drop_every(&self) -> Option<(u64, DropMode)> {
        let n = self.inner.drop_every.load(Ordering::Relaxed);
        let mode = (*self.inner.drop_mode.lock())?;
        (n > 0).then_some((n, mode))
    }

    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        let ms = self.inner.idle_timeout_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Decide the fault for one push stream (and count it).
    pub(crate) fn for_stream(&self) -> StreamFault {
        let i = &self.inner;
        let c = &i.counts;
        let take = |n: &AtomicU64| {
            n.load(Ordering::Relaxed) > 0
                && n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
                    .is_ok()
        };
        if take(&i.refuse_next) {
            c.refused_streams.fetch_add(1, Ordering::Relaxed);
            return StreamFault::Refuse;
        }
        if take(&i.reset_after_next) {
            c.reset_after_processing.fetch_add(1, Ordering::Relaxed);
            return StreamFault::ResetAfterProcessing;
        }
        let (throttle, unavailable, internal, refuse, reset) = (
            i.throttle_ppm.load(Ordering::Relaxed),
            i.unavailable_ppm.load(Ordering::Relaxed),
            i.internal_ppm.load(Ordering::Relaxed),
            i.refuse_ppm.load(Ordering::Relaxed),
            i.reset_after_ppm.load(Ordering::Relaxed),
        );
        if throttle | unavailable | internal | refuse | reset == 0 {
            return StreamFault::None;
        }
        let mut rng = rand::thread_rng();
        if roll(&mut rng, refuse) {
            c.refused_streams.fetch_add(1, Ordering::Relaxed);
            StreamFault::Refuse
        } else if roll(&mut rng, throttle) {
            c.throttled.fetch_add(1, Ordering::Relaxed);
            StreamFault::Answer(Injected::Throttle {
                retry_after_s: i.throttle_retry_after_s.load(Ordering::Relaxed),
            })
        } else if roll(&mut rng, unavailable) {
            c.unavailable.fetch_add(1, Ordering::Relaxed);
            StreamFault::Answer(Injected::Unavailable {
                retry_after_s: i.unavailable_retry_after_s.load(Ordering::Relaxed),
            })
        } else if roll(&mut rng, internal) {
            c.internal.fetch_add(1, Ordering::Relaxed);
            StreamFault::Answer(Injected::Internal)
        } else if roll(&mut rng, reset) {
            c.reset_after_processing.fetch_add(1, Ordering::Relaxed);
            StreamFault::ResetAfterProcessing
        } else {
            StreamFault::None
        }
    }

    pub(crate) fn count(&self, f: impl Fn(&FaultCounts) -> &AtomicU64) {
        f(&self.inner.counts).fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_honoured_roughly() {
        let f = Faults::default();
        assert_eq!(f.for_stream(), StreamFault::None);
        f.set_unavailable(0.05, 0);
        f.set_throttle(0.01, 1);
        let n = 200_000;
        let mut unavailable = 0;
        let mut throttled = 0;
        for _ in 0..n {
            match f.for_stream() {
                StreamFault::Answer(Injected::Unavailable { .. }) => unavailable += 1,
                StreamFault::Answer(Injected::Throttle { retry_after_s: 1 }) => throttled += 1,
                StreamFault::None => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let share = |k: u32| f64::from(k) / f64::from(n);
        assert!((0.04..0.06).contains(&share(unavailable)), "{unavailable}");
        assert!((0.006..0.014).contains(&share(throttled)), "{throttled}");
        assert_eq!(
            FaultCounts::get(&f.counts().unavailable),
            u64::from(unavailable)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_ends_by_itself() {
        let f = Faults::default();
        assert!(!f.is_down());
        f.outage(Duration::from_secs(2), Close::Abrupt);
        assert!(f.is_down());
        assert_eq!(f.outage_watch().borrow().0, 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!f.is_down());
    }
}
