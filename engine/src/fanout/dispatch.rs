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
//!
//! Calls ([`Dispatcher::ring`]) are also tracked in [`calls::Table`], so a cancel can
//! withdraw the invitations not yet sent and reach the devices that were
//! ([`Dispatcher::cancel`]); the module docs of [`calls`] say how a job and a cancel
//! agree on each invitation without a lock. A push with `ttl_s = 0` ("now or never")
//! is never retried after a send that counted as an attempt.

pub(crate) mod backoff;
mod breaker;
pub mod calls;
mod delay;
mod job;
mod pace;
mod share;
mod verdict;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::ledger::{Entry, Final};
use super::plan::{Lane, Targets};
use crate::providers::{Attempt, Cause, Delivery, Outcome, Providers, Push, Verdict};
use crate::shutdown::Shutdown;
use crate::state::{Device, ProviderKind, State};
use crate::telemetry::{inc, Fanout, Stats};
use breaker::Signal;
use calls::Live;
use job::Job;
pub use share::DurableWriter;

/// A lane (or the table of live calls) was full; the request should be retried
/// after this long.
#[derive(Debug, Clone, Copy)]
pub struct Overloaded {
    /// The lane's name, or `calls`.
    pub queue: &'static str,
    pub retry_after_s: u64,
}

/// How often timed-out calls leave [`calls::Table`].
const CALL_SWEEP: Duration = Duration::from_secs(1);

struct Batch {
    push: Arc<Push>,
    devices: Vec<Device>,
    /// Each device's recipient badge total (`badge_increment`), else empty.
    badges: Vec<u32>,
    /// The call these invitations belong to, and the slot of `devices[0]`.
    call: Option<(Arc<Live>, u32)>,
    ledger: Option<Arc<Entry>>,
    /// A message's fan-out timer, shared by all its jobs.
    fanout: Option<Arc<Fanout>>,
}

struct LaneQueue {
    tx: mpsc::UnboundedSender<Batch>,
    depth: Arc<AtomicUsize>,
}

pub struct Dispatcher<V = Providers> {
    lanes: [LaneQueue; Lane::COUNT],
    capacity: usize,
    ctx: Arc<Ctx<V>>,
    /// The live calls, for cancel.
    pub calls: Arc<calls::Table>,
}

/// What the dispatcher needs from the vendors: the delivery settings it applies and
/// one send. [`Providers`] in the engine; the lane worker's paused-time tests put a
/// scripted vendor here (a real socket would let paused time run past its timeouts).
/// Generic, not a trait object: the send future stays one unboxed value per push.
pub trait Vendors: Send + Sync + 'static {
    fn delivery(&self) -> &Delivery;

    /// Send one push and return the vendor's verdict; `badge` is the recipient's own
    /// total of a push with `badge_increment`.
    fn send<'a>(
        &'a self,
        device: &'a Device,
        push: &'a Push,
        badge: Option<u32>,
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
        badge: Option<u32>,
    ) -> impl Future<Output = Verdict> + Send + 'a {
        Providers::send(
            self,
            Attempt {
                device,
                push,
                badge,
                detail: false,
            },
        )
    }
}

struct Ctx<V> {
    /// The vendors, swapped whole by a reload ([`Dispatcher::set_providers`]): each
    /// send takes the current clients; a push keeps the body it was rendered with.
    providers: arc_swap::ArcSwap<V>,
    /// Bumped by every swap, so each lane worker re-reads its limits once.
    generation: std::sync::atomic::AtomicU64,
    /// Wakes every idle lane worker after a change to its limits (a reload, the
    /// cluster's share), so that its pace and gauges follow at once and not only
    /// when it next has work.
    limits_changed: tokio::sync::watch::Sender<()>,
    state: Arc<State>,
    stats: Arc<Stats>,
    /// (provider, cause) pairs already logged at warn level; later ones are counted
    /// and logged at debug only.
    logged: [[AtomicBool; Cause::COUNT]; ProviderKind::ALL.len()],
    /// Where dead tokens and rejections are reported ([`Dispatcher::set_feedback`]).
    feedback: arc_swap::ArcSwapOption<crate::feedback::Queue>,
    /// Cluster mode's share of `max_rps` and dead-token writer ([`share`]).
    cluster: share::Hooks,
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
            providers: arc_swap::ArcSwap::new(providers),
            generation: Default::default(),
            limits_changed: tokio::sync::watch::Sender::new(()),
            state,
            stats,
            logged: Default::default(),
            feedback: Default::default(),
            cluster: share::Hooks::default(),
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
        let calls = Arc::new(calls::Table::default());
        tokio::spawn(sweep_calls(calls.clone(), ctx.clone(), shutdown));
        Self {
            lanes,
            capacity,
            ctx,
            calls,
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
        self.submit_then(push, targets, None, |_| {})
    }

    /// The vendors sends go to now.
    pub fn providers(&self) -> arc_swap::Guard<Arc<V>> {
        self.ctx.providers.load()
    }

    /// Send with `providers` from now on (a reload): queued pushes and retries go
    /// out through them; sends in flight finish on the clients they started with.
    /// Each lane takes the new `max_in_flight`, `max_rps` and breaker settings.
    pub fn set_providers(&self, providers: Arc<V>) {
        self.ctx.providers.store(providers);
        self.ctx.generation.fetch_add(1, Ordering::Release);
        self.ctx.limits_changed.send_replace(());
    }

    /// Report dead tokens and permanent rejections to `queue` from now on.
    pub fn set_feedback(&self, queue: Option<Arc<crate::feedback::Queue>>) {
        self.ctx.feedback.store(queue);
    }

    /// [`Dispatcher::submit`], running `admitted` on the targets once every lane has
    /// room for them and before any is queued (the message's badge increments: a
    /// refused request must not count them, and every push must carry its total).
    /// Each job ends in `ledger`, the message's entry.
    pub fn submit_then(
        &self,
        push: Arc<Push>,
        targets: Targets,
        ledger: Option<Arc<Entry>>,
        admitted: impl FnOnce(&mut Targets),
    ) -> Result<usize, Overloaded> {
        self.admit(push, targets, (None, ledger), true, admitted)
    }

    /// Admit every target of one call invitation or none, and track the call for
    /// [`Dispatcher::cancel`] until it times out at `expires_at` (UNIX seconds).
    pub fn ring(
        &self,
        push: Arc<Push>,
        targets: Targets,
        call_id: Arc<str>,
        inviter_id: Arc<str>,
        expires_at: u64,
        ledger: Option<Arc<Entry>>,
    ) -> Result<usize, Overloaded> {
        let live = Arc::new(Live::new(call_id, inviter_id, expires_at, &targets));
        self.calls
            .reserve(&live)
            .map_err(|calls::Full| Overloaded {
                queue: "calls",
                retry_after_s: 1,
            })?;
        match self.admit(push, targets, (Some(&live), ledger), true, |_| {}) {
            Ok(queued) => {
                self.calls.insert(live);
                Ok(queued)
            }
            Err(e) => {
                self.calls.unreserve(&live);
                Err(e)
            }
        }
    }

    /// Cancel `live` (already taken out of [`calls::Table`]): withdraw what was not
    /// sent and queue `push` (and `voip` for PushKit devices) to each device that was.
    /// Returns (withdrawn, cancellation pushes queued); the invitations dropped from
    /// the queues end `withdrawn` in `ledger`, the call's entry.
    ///
    /// The cancellations skip the lanes' capacity check: a lane may hold up to
    /// [`calls::MAX_DEVICES_PER_CALL`] more than `messages.queue_capacity` for a
    /// moment, and each of them stands for an invitation the cancel settled.
    pub fn cancel(
        &self,
        live: &Live,
        push: Arc<Push>,
        voip: Option<Arc<Push>>,
        ledger: Option<&Entry>,
    ) -> (usize, usize) {
        let cancelled = live.cancel();
        if let Some(e) = ledger {
            e.withdraw(&cancelled.dropped);
        }
        let (mut others, mut pushkit) = (Targets::default(), Targets::default());
        for d in cancelled.sent {
            let to = match (&voip, d.provider()) {
                (Some(_), ProviderKind::ApnsVoip) => &mut pushkit,
                _ => &mut others,
            };
            to.lanes[d.provider().lane() as usize].push(d);
        }
        let none = || (None, None);
        let mut queued = self.admit(push, others, none(), false, |_| {}).unwrap_or(0);
        if let Some(voip) = voip {
            queued += self
                .admit(voip, pushkit, none(), false, |_| {})
                .unwrap_or(0);
        }
        (cancelled.withdrawn, queued)
    }

    /// Queue `targets` all-or-nothing (unless `bounded` is false), running `admitted`
    /// on them once they are sure to be queued; with `call`, the devices are numbered
    /// in lane order, as [`Live::new`] tracked them; each job ends in `ledger`.
    fn admit(
        &self,
        push: Arc<Push>,
        mut targets: Targets,
        (call, ledger): (Option<&Arc<Live>>, Option<Arc<Entry>>),
        bounded: bool,
        admitted: impl FnOnce(&mut Targets),
    ) -> Result<usize, Overloaded> {
        let mut reserved = [0usize; Lane::COUNT];
        for lane in Lane::ALL {
            let n = targets.lanes[lane as usize].len();
            if n == 0 {
                continue;
            }
            let depth = &self.lanes[lane as usize].depth;
            let before = depth.fetch_add(n, Ordering::AcqRel);
            reserved[lane as usize] = n;
            if bounded && before + n > self.capacity {
                for l in Lane::ALL {
                    self.lanes[l as usize]
                        .depth
                        .fetch_sub(reserved[l as usize], Ordering::AcqRel);
                }
                return Err(Overloaded {
                    queue: lane.name(),
                    retry_after_s: self.retry_after_s(lane),
                });
            }
        }
        admitted(&mut targets);
        let message = bounded && call.is_none() && reserved.iter().any(|n| *n > 0);
        let fanout = message.then(|| Fanout::start(&self.ctx.stats));
        for d in &targets.unconfigured {
            inc(&self.ctx.stats.provider(d.provider()).unconfigured);
        }
        for d in &targets.no_silent {
            inc(&self.ctx.stats.provider(d.provider()).rejected[Cause::NoSilent.index()]);
        }
        if !targets.no_silent.is_empty() {
            tracing::debug!(
                count = targets.no_silent.len(),
                "silent pushes not sent to vendors without a silent message type"
            );
        }
        if !targets.unconfigured.is_empty() {
            tracing::debug!(
                count = targets.unconfigured.len(),
                "pushes for unconfigured vendors not sent"
            );
        }
        let mut queued = 0;
        let mut slot = 0u32;
        let mut badges = targets.badges;
        for (lane, devices) in Lane::ALL.into_iter().zip(targets.lanes) {
            if devices.is_empty() {
                continue;
            }
            let n = devices.len();
            queued += n;
            let batch = Batch {
                push: push.clone(),
                devices,
                badges: std::mem::take(&mut badges[lane as usize]),
                call: call.map(|c| (c.clone(), slot)),
                ledger: ledger.clone(),
                fanout: fanout.clone(),
            };
            slot = slot.saturating_add(n as u32);
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
            let providers = self.ctx.providers.load();
            let b = &providers.delivery().breaker;
            b.open.as_secs().clamp(1, 30)
        } else {
            1
        }
    }
}

/// End the bookkeeping of timed-out calls, every [`CALL_SWEEP`], until shutdown.
async fn sweep_calls<V: Vendors>(
    calls: Arc<calls::Table>,
    ctx: Arc<Ctx<V>>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(CALL_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => calls.sweep(ctx.state.clock.unix_now_s()),
            _ = shutdown.wait() => return,
        }
    }
}

impl Dispatcher {
    /// Send one push now and return the vendor's verdict (the debug endpoint).
    /// A dead-token verdict removes the binding like any other push.
    pub async fn send_now(&self, device: &Device, push: &Push) -> Verdict {
        let started = quanta::Instant::now();
        let v = self
            .ctx
            .providers
            .load_full()
            .send(Attempt {
                device,
                push,
                badge: None,
                detail: true,
            })
            .await;
        self.ctx.record(device, push, &v, started);
        v
    }
}

impl<V: Vendors> Ctx<V> {
    /// Send `job` once and work out what happens next.
    async fn attempt(&self, mut job: Job, probe: bool) -> (Done, bool) {
        let mut done = Done {
            retry: None,
            signal: Signal::Neutral,
            throttled: false,
            probe,
        };
        // The last checks before the request leaves: a push held at the gates may
        // have expired since it was picked, or its call been cancelled.
        if self.state.clock.unix_now_s() >= job.push.expires_at {
            inc(&self.stats.provider(job.device.provider()).expired);
            job.finish(Final::Expired, None);
            return (done, true);
        }
        if !job.leave() {
            return (done, true);
        }
        let providers = self.providers.load_full();
        let started = quanta::Instant::now();
        let v = providers.send(&job.device, &job.push, job.badge).await;
        let finished = self.record(&job.device, &job.push, &v, started);
        done.signal = match v.outcome {
            Outcome::Retry { cause, .. } if cause.trips_breaker() => Signal::Down,
            Outcome::Retry {
                cause: Cause::ProviderAuth,
                ..
            } => Signal::Neutral,
            _ => Signal::Up,
        };
        if let Some(end) = Final::of(v.outcome).filter(|_| finished) {
            job.finish(end, Some(&v));
            return (done, true);
        }
        let Outcome::Retry { after, cause } = v.outcome else {
            unreachable!("record finishes every other outcome")
        };
        done.throttled = cause.slows_lane();
        job.maybe_sent |= cause.fate_unknown();
        let provider = job.device.provider();
        let s = self.stats.provider(provider);
        let retry = &providers.delivery().retry;
        let delay = if cause == Cause::Unsent {
            inc(&s.resent_unprocessed);
            job.unsent += 1;
            backoff::unsent(job.unsent)
        } else {
            job.attempts += 1;
            if job.push.ttl_s == 0 {
                // Now or never: the one attempt was made.
                inc(&s.expired);
                job.finish(Final::Expired, Some(&v));
                return (done, true);
            }
            if job.attempts >= retry.max_attempts {
                inc(&s.failed);
                if self.first(provider, cause) {
                    tracing::warn!(provider = provider.as_str(), cause = cause.as_str(), id = job.push.kind.id(), reason = ?v.reason, attempts = job.attempts, "push failed after its last attempt (further failures for this cause are counted in /v1/stats)");
                }
                job.finish(Final::Rejected, Some(&v));
                return (done, true);
            }
            after.unwrap_or_else(|| backoff::full_jitter(job.attempts, retry.base, retry.max))
        };
        match backoff::schedule(
            self.state.clock.unix_now_ms(),
            delay,
            job.push.expires_at.saturating_mul(1000),
        ) {
            // A cancel of its call that came meanwhile counted it as sent: no retry.
            Some(_) if !job.requeue() => (done, true),
            Some(delay) => {
                inc(&s.retried);
                done.retry = Some((job, delay));
                (done, false)
            }
            None => {
                inc(&s.expired);
                job.finish(Final::Expired, Some(&v));
                (done, true)
            }
        }
    }
}

#[cfg(test)]
mod tests;
