//! Durable state through the public surface: the real binary killed with SIGKILL under
//! load, torn and corrupt log files, snapshot + log replay equivalence, SIGTERM.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_recovers, bind, call, config_file, data_files, edit_file, get, http, log_of_random_ops,
    ops_on, push_ids_of, restart_expecting, snapshots_of_random_ops, start, start_refused,
    stop_holding, Proc,
};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// One worker's knowledge: acknowledged state of its keys and the op in flight.
#[derive(Default)]
struct Ledger {
    bindings: BTreeMap<String, Option<String>>,
    group_size: usize,
    /// (push_id, owner after the op) or (group delta) of the unacknowledged op.
    in_flight_bind: Option<(String, Option<String>)>,
    in_flight_group: Option<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots while the load runs, so recovery is snapshot + log.
    let cfg = config_file(dir.path(), "fsync", "wal_max_bytes = 20000\n");
    let mut proc = Proc::spawn_until(&cfg, "/healthz").await;
    let http = http();

    const WORKERS: usize = 8;
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..WORKERS)
        .map(|_| Arc::new(Mutex::new(Ledger::default())))
        .collect();
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (w, ledger) in ledgers.iter().enumerate() {
        let (http, base, ledger, acked) = (
            http.clone(),
            proc.base.clone(),
            ledger.clone(),
            acked.clone(),
        );
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            for i in 0..5_000usize {
                let roll = rng.gen_range(0..10);
                if roll < 6 {
                    let d = format!("d-{w}-{}", rng.gen_range(0..40));
                    let user = format!("u-{w}-{}", rng.gen_range(0..5));
                    ledger.lock().in_flight_bind = Some((d.clone(), Some(user.clone())));
                    let body = json!({"user_id": user, "provider": "fcm", "token": format!("tok-{w}-{i}")});
                    match call(&http, &base, "PUT", &format!("/v1/push-ids/{d}"), Some(body)).await {
                        Ok((200, _)) => {
                            let mut l = ledger.lock();
                            l.bindings.insert(d, Some(user));
                            l.in_flight_bind = None;
                        }
                        _ => return,
                    }
                } else if roll < 8 {
                    let d = format!("d-{w}-{}", rng.gen_range(0..40));
                    ledger.lock().in_flight_bind = Some((d.clone(), None));
                    match call(&http, &base, "DELETE", &format!("/v1/push-ids/{d}"), None).await {
                        Ok((200 | 404, _)) => {
                            let mut l = ledger.lock();
                            l.bindings.insert(d, None);
                            l.in_flight_bind = None;
                        }
                        _ => return,
                    }
                } else {
                    let members: Vec<String> = (0..3).map(|k| format!("m-{w}-{i}-{k}")).collect();
                    ledger.lock().in_flight_group = Some(3);
                    match call(&http, &base, "POST", &format!("/v1/groups/g-{w}/members"), Some(json!({"add": members}))).await {
                        Ok((200, v)) => {
                            let mut l = ledger.lock();
                            l.group_size += 3;
                            assert_eq!(v["members"].as_u64(), Some(l.group_size as u64));
                            l.in_flight_group = None;
                        }
                        _ => return,
                    }
                }
                acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    // Kill at a moment chosen by progress (enough acknowledged writes, and at least one
    // snapshot behind them), while every worker has a request in flight.
    let data = dir.path().join("data");
    let has_snapshot = || {
        std::fs::read_dir(&data)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".rkyv"))
            })
            .unwrap_or(false)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (acked.load(std::sync::atomic::Ordering::Relaxed) < 1_500 || !has_snapshot())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let writes land after the snapshot too, so recovery needs snapshot + log.
    let after_snapshot = acked.load(std::sync::atomic::Ordering::Relaxed) + 200;
    while acked.load(std::sync::atomic::Ordering::Relaxed) < after_snapshot
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proc.kill_9();
    while tasks.join_next().await.is_some() {}
    let total = acked.load(std::sync::atomic::Ordering::Relaxed);
    assert!(total >= 300, "too little load before the kill: {total}");
    assert!(
        has_snapshot(),
        "the run should have snapshotted (wal_max_bytes is small)"
    );

    let proc2 = Proc::spawn_until(&cfg, "/healthz").await;
    for (w, ledger) in ledgers.iter().enumerate() {
        let l = std::mem::take(&mut *ledger.lock());
        // Actual owner of each of this worker's push ids.
        let mut actual: BTreeMap<String, String> = BTreeMap::new();
        for u in 0..5 {
            let (s, v) = get(&http, &proc2.base, &format!("/v1/users/u-{w}-{u}/push-ids")).await;
            assert_eq!(s, 200);
            for d in v["push_ids"].as_array().unwrap() {
                actual.insert(
                    d["push_id"].as_str().unwrap().to_string(),
                    format!("u-{w}-{u}"),
                );
            }
        }
        for (d, owner) in &l.bindings {
            let got = actual.get(d).cloned();
            let in_flight = l
                .in_flight_bind
                .as_ref()
                .filter(|(id, _)| id == d)
                .map(|(_, o)| o.clone());
            assert!(
                got == *owner || in_flight.is_some_and(|o| o == got),
                "worker {w}: {d} acknowledged as {owner:?}, recovered as {got:?}"
            );
        }
        for (d, got) in &actual {
            if !l.bindings.contains_key(d) {
                let in_flight = l
                    .in_flight_bind
                    .as_ref()
                    .is_some_and(|(id, o)| id == d && o.as_ref() == Some(got));
                assert!(
                    in_flight,
                    "worker {w}: {d} recovered but never acknowledged"
                );
            }
        }
        let (s, v) = get(&http, &proc2.base, &format!("/v1/groups/g-{w}")).await;
        let size = if s == 404 {
            0
        } else {
            v["members"].as_u64().unwrap() as usize
        };
        let ok =
            size == l.group_size || l.in_flight_group.is_some_and(|n| size == l.group_size + n);
        assert!(
            ok,
            "worker {w}: group has {size}, acknowledged {} (in flight {:?}): half applied?",
            l.group_size, l.in_flight_group
        );
    }
    let log = proc2.log();
    assert!(log.contains("recovery finished"), "{log}");
    drop(proc2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), "batch", "");
    let mut proc = Proc::spawn_until(&cfg, "/healthz").await;
    for i in 0..50 {
        assert_eq!(bind(&proc.base, &format!("d{i}"), "u1").await, 200);
    }
    let pid = proc.child.id();
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let status = proc.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let log = proc.log();
    assert!(log.contains("final snapshot written"), "{log}");
    // Restart: everything comes back from the snapshot, nothing left to replay.
    let proc2 = Proc::spawn_until(&cfg, "/healthz").await;
    assert_eq!(push_ids_of(&proc2.base, "u1").await.len(), 50);
    let log = proc2.log();
    assert!(log.contains("wal_records=0"), "{log}");
}

#[tokio::test]
async fn snapshot_plus_log_replay_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), "none").await;
    ops_on(&running, 1, 300).await;
    // A snapshot taken while writers run, then more writes only in the log.
    let store = running.engine().store().unwrap().clone();
    let (snap, ()) = tokio::join!(
        tokio::task::spawn_blocking(move || store.snapshot().unwrap()),
        ops_on(&running, 2, 200)
    );
    assert!(snap.unwrap().bindings > 0);
    ops_on(&running, 3, 200).await;
    let before = running.engine().state.durable_view();
    assert!(!before.bindings.is_empty() && !before.groups.is_empty());
    running.stop_without_snapshot().await;

    let running = restart_expecting(dir.path(), "none", &before).await;
    // And through a clean shutdown (final snapshot, empty log) once more.
    running.shutdown().await;
    assert_recovers(dir.path(), "none", &before).await;
}

#[tokio::test]
async fn a_torn_final_record_is_truncated_and_the_rest_recovered() {
    let (dir, before) = log_of_random_ops("fsync", 7, 100).await;
    let data = dir.path().join("data");
    let wal = data_files(&data, "wal-").pop().unwrap();
    let good_len = std::fs::metadata(&wal).unwrap().len();
    // Half a record: a header promising 300 bytes, then 20 of them.
    edit_file(&wal, |bytes| {
        bytes.extend_from_slice(&300u32.to_le_bytes());
        bytes.extend_from_slice(&[7u8; 24]);
    });

    let running = restart_expecting(dir.path(), "fsync", &before).await;
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        good_len,
        "torn tail truncated"
    );
    let kept: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "the cut bytes are kept aside: {kept:?}");
    // The log goes on working after the repair.
    ops_on(&running, 8, 20).await;
    let after = stop_holding(running).await;
    assert_recovers(dir.path(), "fsync", &after).await;
}

#[tokio::test]
async fn corruption_inside_the_log_is_a_clear_startup_error() {
    let (dir, _) = log_of_random_ops("fsync", 9, 50).await;
    let wal = data_files(&dir.path().join("data"), "wal-").pop().unwrap();
    let bytes = edit_file(&wal, |bytes| {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
    });
    let msg = start_refused(dir.path(), "fsync").await;
    assert!(msg.contains(&wal.display().to_string()), "{msg}");
    assert!(msg.contains("corrupt at byte"), "{msg}");
    assert_eq!(std::fs::read(&wal).unwrap(), bytes, "nothing is cut");
}

#[tokio::test]
async fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let (dir, before, _) = snapshots_of_random_ops("none", &[(11, 100), (12, 100), (13, 50)]).await;
    let data = dir.path().join("data");
    let snaps = data_files(&data, "snapshot-");
    assert_eq!(snaps.len(), 2);
    edit_file(snaps.last().unwrap(), |bytes| {
        let n = bytes.len();
        bytes[n - 10] ^= 0x55;
    });
    let running = restart_expecting(dir.path(), "none", &before).await;
    running.stop_without_snapshot().await;
    // With every snapshot damaged there is nothing safe to start from.
    for s in data_files(&data, "snapshot-") {
        edit_file(&s, |bytes| bytes[70] ^= 0x55);
    }
    let msg = start_refused(dir.path(), "none").await;
    assert!(msg.contains("snapshot"), "{msg}");
}

#[tokio::test]
async fn healthz_is_503_until_recovery_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), "none", "");
    // Recovery cannot finish: the data dir is a file.
    std::fs::write(dir.path().join("data"), b"not a directory").unwrap();
    let config = fanfare::config::Config::load(Some(&cfg), Vec::new()).unwrap();
    let mut running = fanfare::start_background(config).await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let http = http();
    let err = running.wait_ready().await.expect_err("recovery fails");
    assert!(err.to_string().contains("recovery"), "{err}");
    let (s, v) = get(&http, &base, "/healthz").await;
    assert_eq!(s, 503, "{v}");
    let (s, _) = call(
        &http,
        &base,
        "PUT",
        "/v1/push-ids/d1",
        Some(json!({"user_id": "u", "provider": "fcm", "token": "t"})),
    )
    .await
    .unwrap();
    assert_eq!(s, 503);
}
