//! The lane worker: one task per lane that takes admitted pushes, holds each at the
//! gates (room in flight, pace, breaker) and drives the lane's sends in flight itself.
//!
//! [`run`] is the loop: settle finished sends, publish the lane's gauges, then
//! [`Worker::next`] says whether to send a job now, drop an expired or withdrawn one,
//! or wait (and until when). The state between turns lives in [`Worker`], so each step is a named
//! method; the sends in flight stay a local of [`run`] because their futures borrow
//! the context.
//!
//! Monotonic time is `tokio::time`; wall time (push expiry) is the state's `Clock`.
//! Both follow paused time, which is how `tests.rs` drives every combination.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt as _};
use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::breaker::{Admit, Breaker, Change};
use super::delay::DelayQueue;
use super::pace::Pace;
use super::{Batch, Ctx, Done, Job, Vendors};
use crate::clock::Clock;
use crate::fanout::ledger::Final;
use crate::fanout::plan::Lane;
use crate::shutdown::Shutdown;
use crate::telemetry::{inc, LaneStats, Stats};

/// One lane's state between turns of [`run`].
struct Worker<'a> {
    lane: Lane,
    stats: &'a Stats,
    lane_stats: &'a LaneStats,
    clock: &'a Clock,
    /// Device pushes admitted and not yet finished (shared with admission).
    depth: &'a AtomicUsize,
    breaker: Breaker,
    pace: Pace,
    /// The lane's configured `max_rps`, and the engines it is shared by now.
    max_rps: u32,
    share: &'a AtomicUsize,
    shared_by: usize,
    max_in_flight: usize,
    /// The providers' generation the limits were read from, and its breaker settings.
    generation: u64,
    breaker_settings: crate::providers::delivery::Breaker,
    /// Retries, each waiting for its time.
    delayed: DelayQueue<Job>,
    /// Admitted pushes not yet tried, in order.
    fresh: VecDeque<Job>,
    /// The push picked next, waiting at the gates.
    held: Option<Job>,
    /// Admission is gone (shutdown of the dispatcher): drain and stop.
    closed: bool,
}

/// What the worker does this turn.
enum Step {
    /// Send this job now; `probe` when the breaker admitted it as its probe.
    Send { job: Job, probe: bool },
    /// The held job expired, or its call's cancel withdrew it, and it was dropped;
    /// take another turn.
    Dropped,
    /// Nothing can go now: wait for a batch, a finished send, or this instant.
    Wait(Option<Instant>),
}

impl<'a> Worker<'a> {
    fn new<V: Vendors>(lane: Lane, ctx: &'a Ctx<V>, depth: &'a AtomicUsize) -> Self {
        let generation = ctx.generation.load(Ordering::Acquire);
        let providers = ctx.providers.load();
        let delivery = providers.delivery();
        let limits = delivery.lanes[lane as usize];
        let b = &delivery.breaker;
        Self {
            generation,
            breaker_settings: b.clone(),
            lane,
            stats: &ctx.stats,
            lane_stats: ctx.stats.lane(lane),
            clock: &ctx.state.clock,
            depth,
            breaker: Breaker::new(b.failures, b.open, b.max_open),
            pace: Pace::new(limits.max_rps, Instant::now()),
            max_rps: limits.max_rps,
            share: &ctx.cluster.share,
            shared_by: 1,
            max_in_flight: limits.max_in_flight.max(1),
            delayed: DelayQueue::default(),
            fresh: VecDeque::new(),
            held: None,
            closed: false,
        }
    }

    /// A send finished: release its place when the push is done, tell the breaker and
    /// the pace, and queue its retry.
    fn settle(&mut self, (done, finished): (Done, bool), now: Instant) {
        if finished {
            self.depth.fetch_sub(1, Ordering::AcqRel);
        }
        match self.breaker.record(done.signal, done.probe, now) {
            Some(Change::Opened { wait }) => {
                inc(&self.lane_stats.breaker_opened);
                let last_failure = self.stats.last_failure(self.lane);
                tracing::warn!(
                    provider = self.lane.name(),
                    wait_ms = wait.as_millis() as u64,
                    last_failure = %last_failure.map_or_else(String::new, |f| f.to_string()),
                    "vendor failing: circuit breaker opened, pushes wait for a probe"
                )
            }
            Some(Change::Closed) => {
                tracing::info!(
                    provider = self.lane.name(),
                    "vendor answering again: circuit breaker closed"
                )
            }
            None => {}
        }
        if done.throttled && self.pace.throttled(now) {
            tracing::debug!(
                provider = self.lane.name(),
                rps = self.pace.rps(),
                "vendor throttling: pace lowered"
            );
        }
        if let Some((job, delay)) = done.retry {
            self.delayed.push(now + delay, job);
        }
    }

    /// After a reload ([`super::Dispatcher::set_providers`]), take the lane's new
    /// limits: a changed `max_rps` restarts the pace at it (at this engine's share, in
    /// [`Worker::publish`]), a changed breaker setting starts a closed breaker with it;
    /// unchanged ones keep their state.
    fn reconfigure<V: Vendors>(&mut self, ctx: &Ctx<V>) {
        let generation = ctx.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let providers = ctx.providers.load();
        let delivery = providers.delivery();
        let limits = delivery.lanes[self.lane as usize];
        if limits.max_rps != self.max_rps {
            self.max_rps = limits.max_rps;
            // Never a share: `publish` re-paces at the share this turn.
            self.shared_by = 0;
        }
        self.max_in_flight = limits.max_in_flight.max(1);
        let b = &delivery.breaker;
        if *b != self.breaker_settings {
            self.breaker = Breaker::new(b.failures, b.open, b.max_open);
            self.breaker_settings = b.clone();
        }
    }

    /// Let the pace recover and publish the lane's gauges for `/v1/stats`.
    fn publish(&mut self, now: Instant, in_flight: usize) {
        let share = self.share.load(Ordering::Relaxed);
        if share != self.shared_by {
            // Cluster mode: the live engines changed; pace at this engine's share.
            self.shared_by = share;
            let rps = match self.max_rps {
                0 => 0,
                max => max.div_ceil(share as u32).max(1),
            };
            self.pace = Pace::new(rps, now);
        }
        self.pace.tick(now);
        let s = self.lane_stats;
        s.in_flight.store(in_flight as u64, Ordering::Relaxed);
        s.waiting_retry
            .store(self.delayed.len() as u64, Ordering::Relaxed);
        s.breaker
            .store(self.breaker.state() as u8, Ordering::Relaxed);
        s.pace_rps.store(self.pace.rps(), Ordering::Relaxed);
    }

    /// Pick the next push (a due retry first, then new work) and hold it at the gates.
    fn next(&mut self, now: Instant, in_flight: usize) -> Step {
        if self.held.is_none() {
            self.held = self.delayed.pop_due(now).or_else(|| self.fresh.pop_front());
        }
        let Some(job) = self.held.take() else {
            // Nothing due: wake for the first retry to fall due.
            return Step::Wait(self.delayed.next_at());
        };
        if self.clock.unix_now_s() >= job.push.expires_at {
            inc(&self.stats.provider(job.device.provider()).expired);
            job.finish(Final::Expired, None);
            self.depth.fetch_sub(1, Ordering::AcqRel);
            return Step::Dropped;
        }
        if !job.pending() {
            // Withdrawn: it never takes a place at the gates or in flight.
            self.depth.fetch_sub(1, Ordering::AcqRel);
            return Step::Dropped;
        }
        match self.gates(now, in_flight) {
            Ok(probe) => Step::Send { job, probe },
            Err(until) => {
                // Only the gates hold this job up, so only they wake the worker: a retry
                // falling due meanwhile cannot go before it (waking for one that is
                // already due would spin the worker until a send finished). `None`: a
                // send in flight must finish first (room in flight or the probe's
                // answer); its completion wakes the loop.
                self.held = Some(job);
                Step::Wait(until)
            }
        }
    }

    /// Room in flight, then pace, then breaker: the breaker goes last because
    /// admitting a probe changes its state, and a probe must not be lost to a full
    /// lane. `Ok(probe)` to send; `Err(until)` to wait, until an instant or (`None`)
    /// until a send in flight finishes.
    fn gates(&mut self, now: Instant, in_flight: usize) -> Result<bool, Option<Instant>> {
        if in_flight >= self.max_in_flight {
            return Err(None);
        }
        self.pace.try_take(now).map_err(Some)?;
        match self.breaker.admit(now) {
            Admit::Yes => Ok(false),
            Admit::Probe => Ok(true),
            Admit::Until(t) => Err(Some(t)),
            Admit::AfterProbe => Err(None),
        }
    }

    /// Take a new batch when nothing is waiting at the gates or in line.
    fn wants_work(&self) -> bool {
        self.held.is_none() && self.fresh.is_empty() && !self.closed
    }

    fn admit(&mut self, batch: Option<Batch>) {
        match batch {
            Some(b) => {
                let (call, first) = b.call.map_or((None, 0), |(c, first)| (Some(c), first));
                let mut badges = b.badges.into_iter();
                self.fresh.extend(
                    b.devices
                        .into_iter()
                        .zip(first..)
                        .map(|(device, slot)| Job {
                            push: b.push.clone(),
                            device,
                            badge: badges.next(),
                            call: call.clone(),
                            slot,
                            ledger: b.ledger.clone(),
                            attempts: 0,
                            unsent: 0,
                            maybe_sent: false,
                            _fanout: b.fanout.clone(),
                        }),
                )
            }
            None => self.closed = true,
        }
    }

    /// Admission is closed and every admitted push is finished.
    fn drained(&self, in_flight: usize) -> bool {
        self.closed
            && self.held.is_none()
            && self.fresh.is_empty()
            && self.delayed.is_empty()
            && in_flight == 0
    }
}

/// The lane worker: see the module docs.
pub(super) async fn run<V: Vendors>(
    lane: Lane,
    ctx: Arc<Ctx<V>>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    depth: Arc<AtomicUsize>,
    mut shutdown: Shutdown,
) {
    let mut worker = Worker::new(lane, &ctx, &depth);
    let mut limits_changed = ctx.limits_changed.subscribe();
    // The lane's sends in flight, driven by this task itself: no task, channel or
    // semaphore per push (they cost more CPU than building the request did).
    let mut inflight = FuturesUnordered::new();
    loop {
        let now = Instant::now();
        // Collect every finished send without waiting (this also drives the others).
        while let Some(Some(done)) = inflight.next().now_or_never() {
            worker.settle(done, now);
        }
        worker.reconfigure(&ctx);
        worker.publish(now, inflight.len());
        let wake_at = match worker.next(now, inflight.len()) {
            Step::Send { job, probe } => {
                inflight.push(ctx.attempt(job, probe));
                continue;
            }
            Step::Dropped => continue,
            Step::Wait(at) => at,
        };
        if worker.drained(inflight.len()) {
            return;
        }
        tokio::select! {
            batch = rx.recv(), if worker.wants_work() => worker.admit(batch),
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                worker.settle(done, Instant::now());
            }
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
            // The sender lives in `ctx`, held here: this never ends in an error.
            _ = limits_changed.changed() => {}
            _ = shutdown.wait() => return,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
