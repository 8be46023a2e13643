//! Per-vendor lanes: bounded admission, one worker per lane, retries, pacing and
//! circuit breaking, verdict handling.
//!
//! Overflow policy: **reject at admission**. A message's targets are admitted to all
//! their lanes at once or not at all; if any lane would exceed
//! `messages.queue_capacity` device pushes (queued, waiting for a retry, or in
//! flight), nothing is queued and the API answers `429 overloaded` with
//! `Retry-After`. Admitted pushes are never dropped for lack of room; they leave a
//! lane only delivered, dead, rejected, expired, or failed after `retry.max_attempts`.
//!
//! Each lane's worker picks the next push — a retry whose delay is over first, then
//! new work — and sends it when three gates agree:
//! - the [`breaker::Breaker`] (consecutive 5xx/timeouts/connection failures open it;
//!   one probe after a wait; the probe's success closes it), so a vendor that is down
//!   is not hammered and its pushes wait, still counted against the lane;
//! - the [`pace::Pace`] token bucket (`max_rps`; 429s that throttle the app halve it,
//!   quiet periods add to it);
//! - the lane's `max_in_flight` limit (the worker drives its sends in flight itself,
//!   no task per push).
//!
//! Retries wait in the lane's [`delay::DelayQueue`] (one heap and one timer per lane).
//! The delay is the vendor's `Retry-After` when given, else full-jitter backoff
//! (`retry.base_ms` doubling to `retry.max_ms`); a retry that would go out at or after
//! the push's expiry (a call's timeout, `messages.ttl_s`) is dropped as expired.
//! Rejections are never retried; they are counted by cause and logged once per
//! (vendor, cause).
//!
//! Exactly once: a send the vendor provably did not process (`Cause::Unsent`: GOAWAY
//! above the last stream id, REFUSED_STREAM, connect/TLS failure, reconnect backoff)
//! is resent without counting an attempt. A send whose fate is unknown (reset or
//! timeout after the request left) is resent as an attempt and counted in
//! `unknown_fate`: Fanfare prefers a rare duplicate notification to a lost one.

mod backoff;
mod breaker;
mod delay;
mod pace;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::plan::{Lane, Targets};
use crate::providers::{Cause, Delivery, Outcome, Providers, Push, Verdict};
use crate::shutdown::Shutdown;
use crate::state::{Device, Mutation, ProviderKind, State};
use crate::telemetry::{inc, Stats};
use breaker::Signal;

/// A lane was full; the request should be retried after this long.
#[derive(Debug, Clone, Copy)]
pub struct Overloaded {
    pub lane: Lane,
    pub retry_after_s: u64,
}

struct Batch {
    push: Arc<Push>,
    devices: Vec<Device>,
}

struct LaneQueue {
    tx: mpsc::UnboundedSender<Batch>,
    depth: Arc<AtomicUsize>,
}

pub struct Dispatcher<V = Providers> {
    lanes: [LaneQueue; Lane::COUNT],
    capacity: usize,
    ctx: Arc<Ctx<V>>,
}

/// What the dispatcher needs from the vendors: the delivery settings it applies and
/// one send. [`Providers`] in the engine; the lane worker's paused-time tests put a
/// scripted vendor here (a real socket would let paused time run past its timeouts).
/// Generic, not a trait object: the send future stays one unboxed value per push.
pub trait Vendors: Send + Sync + 'static {
    fn delivery(&self) -> &Delivery;

    /// Send one push and return the vendor's verdict.
    fn send<'a>(
        &'a self,
        device: &'a Device,
        push: &'a Push,
    ) -> impl Future<Output = Verdict> + Send + 'a;
}

impl Vendors for Providers {
    fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    fn send<'a>(
        &'a self,
        device: &'a Device,
        push: &'a Push,
    ) -> impl Future<Output = Verdict> + Send + 'a {
        Providers::send(self, device, push, false)
    }
}

struct Ctx<V> {
    providers: Arc<V>,
    state: Arc<State>,
    stats: Arc<Stats>,
    /// (provider, cause) pairs already logged at warn level; later ones are counted
    /// and logged at debug only.
    logged: [[AtomicBool; Cause::COUNT]; ProviderKind::ALL.len()],
}

/// One device push making its way through a lane.
struct Job {
    push: Arc<Push>,
    device: Device,
    /// Sends that counted (the vendor answered, or the fate is unknown).
    attempts: u32,
    /// Resends of sends the vendor provably did not process.
    unsent: u32,
}

/// A finished send, back at its lane's worker.
struct Done {
    /// The job when it must be retried, with its delay.
    retry: Option<(Job, Duration)>,
    signal: Signal,
    /// The vendor throttled the whole app.
    throttled: bool,
    probe: bool,
}

impl<V: Vendors> Dispatcher<V> {
    /// Start one worker per lane; they stop when `shutdown` fires.
    pub fn spawn(
        providers: Arc<V>,
        state: Arc<State>,
        stats: Arc<Stats>,
        capacity: usize,
        shutdown: Shutdown,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            providers,
            state,
            stats,
            logged: Default::default(),
        });
        let lanes = Lane::ALL.map(|lane| {
            let (tx, rx) = mpsc::unbounded_channel();
            let depth = Arc::new(AtomicUsize::new(0));
            tokio::spawn(worker::run(
                lane,
                ctx.clone(),
                rx,
                depth.clone(),
                shutdown.clone(),
            ));
            LaneQueue { tx, depth }
        });
        Self {
            lanes,
            capacity,
            ctx,
        }
    }

    /// Device pushes queued, waiting for a retry, or in flight, per lane.
    pub fn depths(&self) -> Vec<(&'static str, usize)> {
        Lane::ALL
            .iter()
            .map(|l| {
                (
                    l.name(),
                    self.lanes[*l as usize].depth.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Admit every target of one message or none. Returns the number queued.
    pub fn submit(&self, push: Arc<Push>, targets: Targets) -> Result<usize, Overloaded> {
        let mut reserved = [0usize; Lane::COUNT];
        for lane in Lane::ALL {
            let n = targets.lanes[lane as usize].len();
            if n == 0 {
                continue;
            }
            let depth = &self.lanes[lane as usize].depth;
            let before = depth.fetch_add(n, Ordering::AcqRel);
            reserved[lane as usize] = n;
            if before + n > self.capacity {
                for l in Lane::ALL {
                    self.lanes[l as usize]
                        .depth
                        .fetch_sub(reserved[l as usize], Ordering::AcqRel);
                }
                return Err(Overloaded {
                    lane,
                    retry_after_s: self.retry_after_s(lane),
                });
            }
        }
        for d in &targets.unconfigured {
            inc(&self.ctx.stats.provider(d.provider()).unconfigured);
        }
        if !targets.unconfigured.is_empty() {
            tracing::debug!(
                count = targets.unconfigured.len(),
                "pushes for unconfigured vendors not sent"
            );
        }
        let mut queued = 0;
        for (lane, devices) in Lane::ALL.into_iter().zip(targets.lanes) {
            if devices.is_empty() {
                continue;
            }
            queued += devices.len();
            let batch = Batch {
                push: push.clone(),
                devices,
            };
            if let Err(e) = self.lanes[lane as usize].tx.send(batch) {
                // The worker is gone only during shutdown; undo the reservation.
                self.lanes[lane as usize]
                    .depth
                    .fetch_sub(e.0.devices.len(), Ordering::AcqRel);
                queued -= e.0.devices.len();
            }
        }
        Ok(queued)
    }

    /// `Retry-After` for a shed request: 1 s, or longer while the lane's breaker is
    /// open (the queue will not drain before it closes).
    fn retry_after_s(&self, lane: Lane) -> u64 {
        let open = self.ctx.stats.lane(lane).breaker.load(Ordering::Relaxed) != 0;
        if open {
            let b = &self.ctx.providers.delivery().breaker;
            b.open.as_secs().clamp(1, 30)
        } else {
            1
        }
    }
}

impl Dispatcher {
    /// Send one push now and return the vendor's verdict (the debug endpoint).
    /// A dead-token verdict removes the binding like any other push.
    pub async fn send_now(&self, device: &Device, push: &Push) -> Verdict {
        let v = self.ctx.providers.send(device, push, true).await;
        self.ctx.record(device, &v);
        v
    }
}

impl<V: Vendors> Ctx<V> {
    /// Count a verdict and act on a dead token. Returns true when the push is finished.
    fn record(&self, device: &Device, v: &Verdict) -> bool {
        let provider = device.provider();
        let s = self.stats.provider(provider);
        match v.outcome {
            Outcome::Delivered => {
                inc(&s.sent);
                inc(&s.delivered);
                true
            }
            Outcome::TokenDead(cause) => {
                inc(&s.sent);
                inc(&s.failed);
                inc(&s.dead_tokens);
                let removed = self.state.apply(&Mutation::RemoveDeadToken {
                    push_id: device.push_id().into(),
                    token: device.token().to_owned(),
                });
                if matches!(removed, crate::state::Applied::Unbound(Some(_))) {
                    inc(&s.invalid_tokens_removed);
                }
                tracing::debug!(
                    provider = provider.as_str(),
                    cause = cause.as_str(),
                    "vendor reported a dead token; binding removed"
                );
                true
            }
            Outcome::Rejected(cause) => {
                if cause == Cause::Unconfigured {
                    inc(&s.unconfigured);
                } else {
                    inc(&s.sent);
                    inc(&s.failed);
                    inc(&s.rejected[cause.index()]);
                    if self.first(provider, cause) {
                        tracing::warn!(provider = provider.as_str(), cause = cause.as_str(), status = ?v.status, reason = ?v.reason, "vendor rejected a push; not retried (further rejections for this cause are counted in /v1/stats)");
                    } else {
                        tracing::debug!(provider = provider.as_str(), cause = cause.as_str(), status = ?v.status, reason = ?v.reason, "vendor rejected a push");
                    }
                }
                true
            }
            Outcome::Retry { cause, .. } => {
                // Sent = the request reached the vendor (or may have).
                if v.status.is_some() || cause.fate_unknown() {
                    inc(&s.sent);
                }
                if matches!(
                    cause,
                    Cause::TooManyRequests | Cause::QuotaExceeded | Cause::DeviceThrottled
                ) {
                    inc(&s.throttled);
                }
                if cause.fate_unknown() {
                    inc(&s.unknown_fate);
                }
                false
            }
        }
    }

    /// True the first time `(provider, cause)` is seen.
    fn first(&self, provider: ProviderKind, cause: Cause) -> bool {
        !self.logged[provider as usize][cause.index()].swap(true, Ordering::Relaxed)
    }

    /// Send `job` once and work out what happens next.
    async fn attempt(&self, mut job: Job, probe: bool) -> (Done, bool) {
        // The last check before the request leaves: a push held at the gates may
        // have expired since it was picked.
        if self.state.clock.unix_now_s() >= job.push.expires_at {
            inc(&self.stats.provider(job.device.provider()).expired);
            let done = Done {
                retry: None,
                signal: Signal::Neutral,
                throttled: false,
                probe,
            };
            return (done, true);
        }
        let v = self.providers.send(&job.device, &job.push).await;
        let finished = self.record(&job.device, &v);
        let signal = match v.outcome {
            Outcome::Retry { cause, .. } if cause.trips_breaker() => Signal::Down,
            Outcome::Retry {
                cause: Cause::ProviderAuth,
                ..
            } => Signal::Neutral,
            _ => Signal::Up,
        };
        let mut done = Done {
            retry: None,
            signal,
            throttled: false,
            probe,
        };
        if finished {
            return (done, true);
        }
        let Outcome::Retry { after, cause } = v.outcome else {
            unreachable!("record finishes every other outcome")
        };
        done.throttled = cause.slows_lane();
        let provider = job.device.provider();
        let s = self.stats.provider(provider);
        let retry = &self.providers.delivery().retry;
        let delay = if cause == Cause::Unsent {
            inc(&s.resent_unprocessed);
            job.unsent += 1;
            backoff::unsent(job.unsent)
        } else {
            job.attempts += 1;
            if job.attempts >= retry.max_attempts {
                inc(&s.failed);
                if self.first(provider, cause) {
                    tracing::warn!(provider = provider.as_str(), cause = cause.as_str(), reason = ?v.reason, attempts = job.attempts, "push failed after its last attempt (further failures for this cause are counted in /v1/stats)");
                }
                return (done, true);
            }
            after.unwrap_or_else(|| backoff::full_jitter(job.attempts, retry.base, retry.max))
        };
        match backoff::schedule(
            self.state.clock.unix_now_ms(),
            delay,
            job.push.expires_at.saturating_mul(1000),
        ) {
            Some(delay) => {
                inc(&s.retried);
                done.retry = Some((job, delay));
                (done, false)
            }
            None => {
                inc(&s.expired);
                (done, true)
            }
        }
    }
}

#[cfg(test)]
mod tests;
