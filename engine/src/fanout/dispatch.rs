//! Per-vendor lanes: bounded admission, workers, verdict handling.
//!
//! Overflow policy: **reject at admission**. A message's targets are admitted to all
//! their lanes at once or not at all; if any lane would exceed
//! `messages.queue_capacity` queued-or-in-flight device pushes, nothing is queued and
//! the API answers `429 overloaded`. Admitted pushes are never dropped for lack of
//! room. Each lane's worker feeds a bounded number of concurrent sends to the vendor's
//! HTTP/2 pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, Semaphore};

use super::plan::{Lane, Targets};
use crate::providers::{Outcome, Providers, Push, Verdict};
use crate::shutdown::Shutdown;
use crate::state::{Device, Mutation, State};
use crate::telemetry::{inc, Stats};

/// Sends in flight per lane.
const MAX_IN_FLIGHT: usize = 1024;
/// Attempts per push before it counts as failed.
const MAX_ATTEMPTS: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

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

pub struct Dispatcher {
    lanes: [LaneQueue; Lane::COUNT],
    capacity: usize,
    ctx: Arc<Ctx>,
}

struct Ctx {
    providers: Arc<Providers>,
    state: Arc<State>,
    stats: Arc<Stats>,
}

impl Dispatcher {
    /// Start one worker per lane; they stop when `shutdown` fires.
    pub fn spawn(
        providers: Arc<Providers>,
        state: Arc<State>,
        stats: Arc<Stats>,
        capacity: usize,
        shutdown: Shutdown,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            providers,
            state,
            stats,
        });
        let lanes = Lane::ALL.map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            let depth = Arc::new(AtomicUsize::new(0));
            tokio::spawn(run_lane(ctx.clone(), rx, depth.clone(), shutdown.clone()));
            LaneQueue { tx, depth }
        });
        Self {
            lanes,
            capacity,
            ctx,
        }
    }

    /// Device pushes queued or in flight, per lane.
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
                    retry_after_s: 1,
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

    /// Send one push now and return the vendor's verdict (the debug endpoint).
    /// A dead-token verdict removes the binding like any other push.
    pub async fn send_now(&self, device: &Device, push: &Push) -> Verdict {
        let v = self.ctx.providers.send(device, push, true).await;
        self.ctx.record(device, &v);
        v
    }
}

impl Ctx {
    /// Count a verdict and act on a dead token. Returns true when the push is finished.
    fn record(&self, device: &Device, v: &Verdict) -> bool {
        let s = self.stats.provider(device.provider());
        match v.outcome {
            Outcome::Delivered => {
                inc(&s.sent);
                inc(&s.delivered);
                true
            }
            Outcome::TokenDead(cause) => {
                inc(&s.sent);
                inc(&s.failed);
                let removed = self.state.apply(&Mutation::RemoveDeadToken {
                    push_id: device.push_id().into(),
                    token: device.token().to_owned(),
                });
                if matches!(removed, crate::state::Applied::Unbound(Some(_))) {
                    inc(&s.invalid_tokens_removed);
                }
                tracing::info!(
                    provider = device.provider().as_str(),
                    cause = cause.as_str(),
                    "vendor reported a dead token; binding removed"
                );
                true
            }
            Outcome::Rejected(cause) => {
                if cause == crate::providers::Cause::Unconfigured {
                    inc(&s.unconfigured);
                } else {
                    inc(&s.sent);
                    inc(&s.failed);
                    tracing::warn!(provider = device.provider().as_str(), cause = cause.as_str(), status = ?v.status, reason = ?v.reason, "vendor rejected a push");
                }
                true
            }
            Outcome::Retry { .. } => {
                if v.status.is_some() {
                    inc(&s.sent);
                }
                false
            }
        }
    }
}

async fn run_lane(
    ctx: Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    depth: Arc<AtomicUsize>,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let batch = tokio::select! {
            b = rx.recv() => match b { Some(b) => b, None => return },
            _ = shutdown.wait() => return,
        };
        for device in batch.devices {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let ctx = ctx.clone();
            let push = batch.push.clone();
            let depth = depth.clone();
            tokio::spawn(async move {
                deliver(&ctx, &device, &push).await;
                depth.fetch_sub(1, Ordering::AcqRel);
                drop(permit);
            });
        }
    }
}

/// Deliver one push with a bounded number of attempts, never past its expiry.
async fn deliver(ctx: &Ctx, device: &Device, push: &Push) {
    let stats = ctx.stats.provider(device.provider());
    for attempt in 1..=MAX_ATTEMPTS {
        if crate::clock::unix_now_s() >= push.expires_at {
            inc(&stats.expired);
            return;
        }
        let v = ctx.providers.send(device, push, false).await;
        if ctx.record(device, &v) {
            return;
        }
        let Outcome::Retry { after, cause } = v.outcome else {
            unreachable!("record finishes every other outcome")
        };
        if attempt == MAX_ATTEMPTS {
            inc(&stats.failed);
            tracing::warn!(provider = device.provider().as_str(), cause = cause.as_str(), reason = ?v.reason, "push failed after {MAX_ATTEMPTS} attempts");
            return;
        }
        inc(&stats.retried);
        let backoff = after.unwrap_or_else(|| {
            let cap = BACKOFF_BASE.saturating_mul(1 << attempt).min(BACKOFF_MAX);
            cap.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
        });
        let left = push.expires_at.saturating_sub(crate::clock::unix_now_s());
        if backoff.as_secs() >= left {
            inc(&stats.expired);
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}
