//! The lane worker under paused time: a scripted vendor answers after a fixed latency,
//! the engine's `Clock` follows `tokio::time`, and each test reads the instants at
//! which pushes left to see how the gates (room in flight, pace, breaker), the probe
//! hand-off, held jobs and expiry combine.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::*;
use crate::clock::Clock;
use crate::providers::{Content, Kind};
use crate::shutdown::{self, Trigger};
use crate::state::{Environment, TokenRef};

/// A vendor that answers each send after `latency`, with the next scripted verdict
/// (delivered once the script is used up), and records when each push left.
struct Scripted {
    delivery: Delivery,
    latency: Duration,
    answers: Mutex<VecDeque<Outcome>>,
    /// (push id, milliseconds since the rig started) per send, in order.
    sent: Mutex<Vec<(String, u64)>>,
    start: Instant,
}

impl Vendors for Scripted {
    fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    fn send<'a>(
        &'a self,
        device: &'a Device,
        _push: &'a Push,
        _badge: Option<u32>,
    ) -> impl Future<Output = Verdict> + Send + 'a {
        let at = self.start.elapsed().as_millis() as u64;
        self.sent.lock().push((device.push_id().to_owned(), at));
        let outcome = self
            .answers
            .lock()
            .pop_front()
            .unwrap_or(Outcome::Delivered);
        async move {
            tokio::time::sleep(self.latency).await;
            Verdict {
                status: Some(if outcome == Outcome::Delivered {
                    200
                } else {
                    503
                }),
                reason: None,
                vendor_id: None,
                outcome,
            }
        }
    }
}

const UNAVAILABLE: Outcome = Outcome::Retry {
    after: None,
    cause: Cause::Unavailable,
};

struct Rig {
    dispatcher: Dispatcher<Scripted>,
    vendor: Arc<Scripted>,
    stats: Arc<Stats>,
    clock: Clock,
    _stop: Trigger,
}

/// A dispatcher whose FCM lane has `max_in_flight` and `max_rps`, a breaker that opens
/// after `failures` for `open_ms`, and retries that wait at most 1 ms.
fn rig(
    max_in_flight: usize,
    max_rps: u32,
    failures: u32,
    open_ms: u64,
    answers: &[Outcome],
) -> Rig {
    let mut delivery = Delivery::default();
    delivery.lanes[Lane::Fcm as usize].max_in_flight = max_in_flight;
    delivery.lanes[Lane::Fcm as usize].max_rps = max_rps;
    delivery.breaker.failures = failures;
    delivery.breaker.open = Duration::from_millis(open_ms);
    delivery.breaker.max_open = Duration::from_millis(open_ms * 4);
    delivery.retry.base = Duration::from_millis(1);
    delivery.retry.max = Duration::from_millis(1);
    delivery.retry.max_attempts = 10;
    let start = Instant::now();
    let vendor = Arc::new(Scripted {
        delivery,
        latency: Duration::from_millis(10),
        answers: Mutex::new(answers.iter().copied().collect()),
        sent: Mutex::default(),
        start,
    });
    let clock = Clock::tokio(1_700_000_000_000);
    let state = Arc::new(State::new(clock.clone()));
    let stats = Arc::new(Stats::default());
    let (stop, shutdown) = shutdown::channel();
    let dispatcher = Dispatcher::spawn(vendor.clone(), state, stats.clone(), 1_000, shutdown);
    Rig {
        dispatcher,
        vendor,
        stats,
        clock,
        _stop: stop,
    }
}

impl Rig {
    /// Submit one message with `ttl_s` to FCM devices named `push_ids`.
    fn submit(&self, ttl_s: u64, push_ids: &[&str]) {
        let kind = Kind::Message {
            message_id: "m".into(),
        };
        let push = Push::render(kind, &Content::default(), ttl_s, self.clock.unix_now_s())
            .expect("an empty message fits every vendor");
        let queued = self
            .dispatcher
            .submit(Arc::new(push), fcm_targets(push_ids));
        assert_eq!(queued.ok(), Some(push_ids.len()), "the lane has room");
    }

    /// Ring call `c` (expiring in `ttl_s`) on FCM devices named `push_ids`; returns
    /// its live record.
    fn ring(&self, ttl_s: u64, push_ids: &[&str]) -> Arc<Live> {
        let kind = Kind::Call {
            call_id: "c".into(),
            inviter_id: "u0".into(),
            timeout_s: ttl_s,
        };
        let now = self.clock.unix_now_s();
        let push = Push::render(kind, &Content::default(), ttl_s, now)
            .expect("an empty call fits every vendor");
        let queued = self.dispatcher.ring(
            Arc::new(push),
            fcm_targets(push_ids),
            "c".into(),
            "u0".into(),
            now + ttl_s,
            None,
        );
        assert_eq!(queued.ok(), Some(push_ids.len()), "the lane has room");
        self.dispatcher
            .calls
            .get("c", now)
            .expect("the call is live")
    }

    /// Cancel `live` as the use case does; returns (withdrawn, cancellations queued).
    fn cancel(&self, live: &Arc<Live>) -> (usize, usize) {
        assert!(self.dispatcher.calls.remove(live), "cancelled once");
        let kind = Kind::Message {
            message_id: "c".into(),
        };
        let push = Push::render(kind, &Content::default(), 60, self.clock.unix_now_s())
            .expect("an empty cancellation fits every vendor");
        self.dispatcher.cancel(live, Arc::new(push), None, None)
    }

    /// Wait (in paused time) until the lane has finished every push; returns when.
    async fn drained(&self) -> u64 {
        let depth = || {
            self.dispatcher.lanes[Lane::Fcm as usize]
                .depth
                .load(Ordering::Acquire)
        };
        for _ in 0..100_000 {
            if depth() == 0 {
                return self.vendor.start.elapsed().as_millis() as u64;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the lane did not drain within 100 s of paused time");
    }

    /// Submit push a, then push b `gap_ms` later; wait for both to finish.
    async fn a_then_b(&self, gap_ms: u64) -> Vec<(String, u64)> {
        self.submit(60, &["a"]);
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
        self.submit(60, &["b"]);
        self.drained().await;
        self.sent()
    }

    fn sent(&self) -> Vec<(String, u64)> {
        self.vendor.sent.lock().clone()
    }

    fn fcm(&self, read: impl Fn(&crate::telemetry::ProviderStats) -> &AtomicU64) -> u64 {
        read(self.stats.provider(ProviderKind::Fcm)).load(Ordering::Relaxed)
    }
}

/// FCM devices named `push_ids`.
fn fcm_targets(push_ids: &[&str]) -> Targets {
    let mut targets = Targets::default();
    targets.lanes[Lane::Fcm as usize] = push_ids
        .iter()
        .map(|id| {
            let token = TokenRef::Text("token");
            Device::from_parts(
                id,
                1,
                ProviderKind::Fcm,
                Environment::Production,
                None,
                token,
            )
        })
        .collect();
    targets
}

fn sends(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter()
        .map(|(id, at)| ((*id).to_owned(), *at))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn pushes_beyond_max_in_flight_wait_for_a_send_to_finish() {
    let rig = rig(2, 0, 5, 1_000, &[]);
    rig.submit(60, &["a", "b", "c", "d", "e"]);
    rig.drained().await;
    let expected = [("a", 0), ("b", 0), ("c", 10), ("d", 10), ("e", 20)];
    assert_eq!(rig.sent(), sends(&expected));
    assert_eq!(rig.fcm(|s| &s.delivered), 5);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_lets_one_probe_go_and_the_rest_follow_its_success() {
    // a and b fail in turn: the breaker opens at 20 ms for 1 s. c, picked while b was
    // out, is held at the breaker and goes as the probe at 1020 ms; the retries of a
    // and b wait for its answer and follow one by one.
    let rig = rig(1, 0, 2, 1_000, &[UNAVAILABLE, UNAVAILABLE]);
    rig.submit(60, &["a", "b", "c"]);
    rig.drained().await;
    let expected = [
        ("a", 0),
        ("b", 10),
        ("c", 1_020),
        ("a", 1_030),
        ("b", 1_040),
    ];
    assert_eq!(rig.sent(), sends(&expected));
    assert_eq!(rig.fcm(|s| &s.delivered), 3);
    assert_eq!(rig.fcm(|s| &s.retried), 2);
}

#[tokio::test(start_paused = true)]
async fn a_probe_is_not_lost_to_the_pace() {
    // One send a second. a fails and opens the breaker for 100 ms, but the pace has no
    // token until 1 s: the breaker must not be asked (and turn half-open) before the
    // pace agrees, or the probe it admitted would never leave and the lane would wedge.
    let rig = rig(1, 1, 1, 100, &[UNAVAILABLE]);
    rig.submit(60, &["a"]);
    rig.drained().await;
    let sent = rig.sent();
    assert_eq!(sent.len(), 2, "the probe went: {sent:?}");
    // The pace's next token is due at 1 s (give or take its float arithmetic).
    assert!((1_000..=1_002).contains(&sent[1].1), "{sent:?}");
    assert_eq!(rig.fcm(|s| &s.delivered), 1);
}

#[tokio::test(start_paused = true)]
async fn a_push_held_at_an_open_breaker_expires_there_instead_of_going_as_the_probe() {
    // The only push fails and opens the breaker for 10 s; it expires after 2 s while
    // held. Wall time follows paused time, so it is dropped when the worker wakes.
    let rig = rig(1, 0, 1, 10_000, &[UNAVAILABLE]);
    rig.submit(2, &["a"]);
    let at = rig.drained().await;
    assert_eq!(rig.sent(), sends(&[("a", 0)]));
    assert_eq!(rig.fcm(|s| &s.expired), 1);
    assert!(at <= 10_020, "dropped when the worker woke, at {at} ms");
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_would_land_after_expiry_is_dropped_at_once() {
    let after = Outcome::Retry {
        after: Some(Duration::from_secs(30)),
        cause: Cause::Unavailable,
    };
    let rig = rig(1, 0, 5, 1_000, &[after]);
    rig.submit(5, &["a"]);
    let at = rig.drained().await;
    assert_eq!(rig.sent(), sends(&[("a", 0)]));
    assert_eq!(rig.fcm(|s| &s.expired), 1);
    assert!(
        at < 100,
        "dropped on the vendor's answer, not after waiting: {at} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_push_keeps_its_place_ahead_of_a_retry_that_falls_due() {
    // b is picked while a is in flight and waits for room; a fails and its retry falls
    // due, but b, already held, goes first.
    let rig = rig(1, 0, 5, 1_000, &[UNAVAILABLE]);
    let sent = rig.a_then_b(5).await;
    assert_eq!(sent, sends(&[("a", 0), ("b", 10), ("a", 20)]));
}

#[tokio::test(start_paused = true)]
async fn new_work_does_not_overtake_a_retry_held_at_an_open_breaker() {
    // a's retry falls due while the breaker is open and is held there; b, admitted
    // meanwhile, does not overtake it: the retry goes as the probe, b after.
    let rig = rig(1, 0, 1, 100, &[UNAVAILABLE]);
    let sent = rig.a_then_b(50).await;
    assert_eq!(sent, sends(&[("a", 0), ("a", 110), ("b", 120)]));
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_invitation_waiting_for_its_retry_never_reaches_the_vendor() {
    // The vendor asks for a retry in 5 s; the call is cancelled meanwhile. The retry
    // falls due and is dropped at the worker: nothing more leaves, and the lane drains
    // when the retry would have gone, not when the call times out.
    let later = Outcome::Retry {
        after: Some(Duration::from_secs(5)),
        cause: Cause::Unavailable,
    };
    let rig = rig(1, 0, 5, 1_000, &[later]);
    let live = rig.ring(60, &["a"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rig.cancel(&live), (1, 0), "withdrawn, nothing to cancel");
    let at = rig.drained().await;
    assert_eq!(rig.sent(), sends(&[("a", 0)]));
    assert!((5_000..5_100).contains(&at), "dropped when due, at {at} ms");
    assert_eq!(rig.fcm(|s| &s.retried), 1);
    assert_eq!(rig.fcm(|s| &s.expired), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_withdraws_queued_invitations_and_cancels_the_one_in_flight() {
    // One send at a time: a is in flight (and will get a 503), b is held at the gates,
    // c queued. The cancel counts a as sent — its fate is unknown when the cancel
    // comes — and withdraws b and c. a's 503 is not retried; a gets the cancellation.
    let rig = rig(1, 0, 5, 1_000, &[UNAVAILABLE]);
    let live = rig.ring(60, &["a", "b", "c"]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(rig.cancel(&live), (2, 1));
    rig.drained().await;
    assert_eq!(
        rig.sent(),
        sends(&[("a", 0), ("a", 10)]),
        "invitation, then cancel"
    );
    assert_eq!(rig.fcm(|s| &s.retried), 0);
    assert_eq!(rig.fcm(|s| &s.delivered), 1, "the cancellation");
    assert!(rig.dispatcher.calls.is_empty());
}

/// The size of the future `f` returns, without calling it.
fn future_size<A, F>(_: impl FnOnce(A) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// Every push in flight is one heap-allocated `Ctx::attempt` future, so its size is
/// allocation and copying per push. The rarely taken connect path (TCP + TLS +
/// HTTP/2 handshakes) is boxed in the pool; unboxed it made this future ~6 KB.
#[test]
fn a_push_in_flight_stays_small() {
    let size = future_size(|(c, j): (&'static Ctx<Providers>, Job)| c.attempt(j, false));
    assert!(size < 3 * 1024, "Ctx::attempt future is {size} bytes");
}

/// The FCM lane's `pace_rps` gauge once it reads `want` (bounded: the worker is
/// idle, so only a wake-up from the change itself can move it).
async fn pace_reaches(rig: &Rig, want: u64) -> u64 {
    let gauge = &rig.stats.lane(Lane::Fcm).pace_rps;
    for _ in 0..1_000 {
        if gauge.load(Ordering::Relaxed) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gauge.load(Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn an_idle_lane_takes_its_cluster_share_of_max_rps_at_once() {
    let rig = rig(4, 1_000, 5, 1_000, &[]);
    assert_eq!(
        pace_reaches(&rig, 1_000).await,
        1_000,
        "alone: all of max_rps"
    );
    rig.dispatcher.set_share(4);
    assert_eq!(
        pace_reaches(&rig, 250).await,
        250,
        "a lane with no work paces at its share as soon as the engines change"
    );
    rig.dispatcher.set_share(1);
    assert_eq!(pace_reaches(&rig, 1_000).await, 1_000);
}
