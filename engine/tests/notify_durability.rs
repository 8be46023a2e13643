//! Do-not-disturb and badge counters across crashes and restarts, through the public
//! surface: the real binary killed with SIGKILL while mutes and badge sets are being
//! acknowledged, and an in-process engine stopped as a crash would stop it (log
//! flushed, no final snapshot) to show exactly what badge increments a crash costs.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base_of, config_file, start, Proc};
use fanfare::client::{Client, Protocol};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

fn client(base: &str) -> Client {
    Client::builder(base)
        .protocol(Protocol::Http1)
        .timeout(common::DEADLINE)
        .build()
}

/// What one worker knows: the acknowledged value of each of its keys, and the value
/// its unanswered request would have set (either may be what recovery shows).
#[derive(Default)]
struct Ledger {
    /// (user, conversation type, conversation id) → muted.
    mutes: BTreeMap<(String, &'static str, String), bool>,
    badges: BTreeMap<String, u32>,
    in_flight_mute: Option<((String, &'static str, String), bool)>,
    in_flight_badge: Option<(String, u32)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_mute_or_badge_set() {
    let dir = tempfile::tempdir().unwrap();
    // A small log limit: snapshots are taken while the load runs, so recovery is a
    // snapshot (format 3, with settings) plus the log after it.
    let cfg = config_file(dir.path(), "fsync", "wal_max_bytes = 20000\n");
    let mut proc = Proc::spawn_until(&cfg, "/healthz").await;
    let api = client(&proc.base);

    const WORKERS: usize = 6;
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..WORKERS).map(|_| Arc::default()).collect();
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (w, ledger) in ledgers.iter().enumerate() {
        let (api, ledger, acked) = (api.clone(), ledger.clone(), acked.clone());
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            for _ in 0..20_000usize {
                let user = format!("u-{w}-{}", rng.gen_range(0..4));
                if rng.gen_bool(0.6) {
                    let kind = ["peer", "group"][rng.gen_range(0..2)];
                    let key = (user, kind, format!("c-{}", rng.gen_range(0..6)));
                    let muted = rng.gen_bool(0.5);
                    ledger.lock().in_flight_mute = Some((key.clone(), muted));
                    let status = if muted { "do_not_disturb" } else { "notify" };
                    let conversation = (key.1, key.2.as_str());
                    if api
                        .set_notification(&key.0, conversation, status)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let mut l = ledger.lock();
                    l.mutes.insert(key, muted);
                    l.in_flight_mute = None;
                } else {
                    let count = rng.gen_range(0..50);
                    ledger.lock().in_flight_badge = Some((user.clone(), count));
                    if api.set_badge(&user, count).await.is_err() {
                        return;
                    }
                    let mut l = ledger.lock();
                    l.badges.insert(user, count);
                    l.in_flight_badge = None;
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Kill once enough is acknowledged and a snapshot lies behind some of it.
    let data = dir.path().join("data");
    let has_snapshot = || {
        std::fs::read_dir(&data).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".rkyv"))
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while (acked.load(Ordering::Relaxed) < 1_500 || !has_snapshot())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after_snapshot = acked.load(Ordering::Relaxed) + 200;
    while acked.load(Ordering::Relaxed) < after_snapshot && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proc.kill_9();
    while tasks.join_next().await.is_some() {}
    assert!(
        has_snapshot(),
        "the run snapshotted (wal_max_bytes is small)"
    );
    assert!(
        acked.load(Ordering::Relaxed) >= 300,
        "too little load before the kill"
    );

    let mut proc = Proc::spawn_until(&cfg, "/healthz").await;
    let api = client(&proc.base);
    let mut checked = 0;
    for ledger in &ledgers {
        let l = std::mem::take(&mut *ledger.lock());
        for (key, muted) in &l.mutes {
            let got = api.notification(&key.0, (key.1, &key.2)).await.unwrap();
            let got = got.status == "do_not_disturb";
            let in_flight = l.in_flight_mute.as_ref().filter(|(k, _)| k == key);
            assert!(
                got == *muted || in_flight.is_some_and(|(_, m)| *m == got),
                "{key:?}: acknowledged {muted}, recovered {got}"
            );
            checked += 1;
        }
        for (user, count) in &l.badges {
            let got = api.badge(user).await.unwrap().count;
            let in_flight = l.in_flight_badge.as_ref().filter(|(u, _)| u == user);
            assert!(
                got == *count || in_flight.is_some_and(|(_, c)| *c == got),
                "{user}: acknowledged badge {count}, recovered {got}"
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "too few keys checked: {checked}");
    proc.kill_9();
}

/// Add `n` to `user`'s counter the way a fan-out does (under a pin).
fn increment(running: &fanfare::Running, user: &str, n: u32) -> u32 {
    let state = &running.engine().state;
    let users = state.users.pin();
    state.badges.add(users.intern(user), n)
}

async fn snapshot(running: &fanfare::Running) {
    let store = running.engine().store().unwrap().clone();
    tokio::task::spawn_blocking(move || store.snapshot().unwrap())
        .await
        .unwrap();
}

async fn badges(api: &Client, users: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    for u in users {
        out.push(api.badge(u).await.unwrap().count);
    }
    out
}

#[tokio::test]
async fn a_crash_costs_only_the_badge_increments_since_the_last_snapshot_and_never_a_set() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), "fsync").await;
    let api = client(&base_of(&running));
    api.set_badge("kept", 2).await.unwrap();
    increment(&running, "kept", 3);
    increment(&running, "late", 4);
    increment(&running, "reset", 10);
    api.set_notification("late", ("group", "g"), "do_not_disturb")
        .await
        .unwrap();
    snapshot(&running).await;
    // After the snapshot: increments (lost by a crash) and sets (never lost).
    increment(&running, "late", 6);
    assert_eq!(increment(&running, "kept", 0), 5);
    api.set_badge("reset", 0).await.unwrap();
    increment(&running, "reset", 1);
    api.set_badge("fresh", 8).await.unwrap();
    let users = ["kept", "late", "reset", "fresh"];
    assert_eq!(badges(&api, &users).await, [5, 10, 1, 8]);
    running.stop_without_snapshot().await;

    let running = start(dir.path(), "fsync").await;
    let api = client(&base_of(&running));
    // "late" lost its 6, "reset" its 1 (its reset is replayed over the snapshot's 10).
    assert_eq!(badges(&api, &users).await, [5, 4, 0, 8]);
    let status = api.notification("late", ("group", "g")).await.unwrap();
    assert_eq!(status.status, "do_not_disturb");

    // A clean shutdown ends with a snapshot: nothing is lost.
    increment(&running, "late", 6);
    increment(&running, "new", 1);
    running.shutdown().await;
    let running = start(dir.path(), "fsync").await;
    let api = client(&base_of(&running));
    assert_eq!(
        badges(&api, &["kept", "late", "reset", "fresh", "new"]).await,
        [5, 10, 0, 8, 1]
    );
    running.shutdown().await;
}
