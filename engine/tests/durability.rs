//! Durable state through the public surface: the real binary killed with SIGKILL under
//! load, torn and corrupt log files, snapshot + log replay equivalence, SIGTERM.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare::client::{Client, Protocol};
use http_body_util::Full;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

type Http = Client;

/// An HTTP/1.1 client for requests to any engine (each request names its engine's
/// base), with TCP_NODELAY and a bound on every request.
fn http() -> Http {
    Client::builder("")
        .protocol(Protocol::Http1)
        .timeout(Duration::from_secs(20))
        .build()
}

/// One request; the answer's status and JSON body (`Null` if none). Kept raw: these
/// tests also send what the typed client never would (and read any answer).
async fn call(
    http: &Http,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let raw = http.send(req).await.map_err(|e| e.to_string())?;
    Ok((
        raw.status.as_u16(),
        serde_json::from_slice(&raw.body).unwrap_or(Value::Null),
    ))
}

fn config_file(dir: &Path, durability: &str, extra: &str) -> PathBuf {
    let path = dir.join("fanfare.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_s = 5\n[storage]\ndir = \"{}\"\ndurability = \"{durability}\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// The binary, started on a config; its API address read from its log.
struct Proc {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

fn spawn(config: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .args(["serve", "--config"])
        .arg(config)
        .env("FANFARE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fanfare");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = log.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    if line.contains("API listening") {
                        let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_string());
                    }
                }
                log.lock().push(line);
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("fanfare printed its address");
    Proc {
        child,
        base: format!("http://{addr}"),
        log,
    }
}

async fn wait_healthy(http: &Http, base: &str) {
    for _ in 0..400 {
        if let Ok((200, _)) = call(http, base, "GET", "/healthz", None).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{base} never became healthy");
}

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
    let mut proc = spawn(&cfg);
    let http = http();
    wait_healthy(&http, &proc.base).await;

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
    proc.child.kill().unwrap(); // SIGKILL
    proc.child.wait().unwrap();
    while tasks.join_next().await.is_some() {}
    let total = acked.load(std::sync::atomic::Ordering::Relaxed);
    assert!(total >= 300, "too little load before the kill: {total}");
    assert!(
        has_snapshot(),
        "the run should have snapshotted (wal_max_bytes is small)"
    );

    let proc2 = spawn(&cfg);
    wait_healthy(&http, &proc2.base).await;
    for (w, ledger) in ledgers.iter().enumerate() {
        let l = std::mem::take(&mut *ledger.lock());
        // Actual owner of each of this worker's push ids.
        let mut actual: BTreeMap<String, String> = BTreeMap::new();
        for u in 0..5 {
            let (s, v) = call(
                &http,
                &proc2.base,
                "GET",
                &format!("/v1/users/u-{w}-{u}/push-ids"),
                None,
            )
            .await
            .unwrap();
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
        let (s, v) = call(
            &http,
            &proc2.base,
            "GET",
            &format!("/v1/groups/g-{w}"),
            None,
        )
        .await
        .unwrap();
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
    let log = proc2.log.lock().join("\n");
    assert!(log.contains("recovery finished"), "{log}");
    drop(proc2);
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), "batch", "");
    let mut proc = spawn(&cfg);
    let http = http();
    wait_healthy(&http, &proc.base).await;
    for i in 0..50 {
        let (s, _) = call(
            &http,
            &proc.base,
            "PUT",
            &format!("/v1/push-ids/d{i}"),
            Some(json!({"user_id": "u1", "provider": "fcm", "token": format!("t{i}")})),
        )
        .await
        .unwrap();
        assert_eq!(s, 200);
    }
    let pid = proc.child.id();
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let status = proc.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let log = proc.log.lock().join("\n");
    assert!(log.contains("final snapshot written"), "{log}");
    // Restart: everything comes back from the snapshot, nothing left to replay.
    let proc2 = spawn(&cfg);
    wait_healthy(&http, &proc2.base).await;
    let (_, v) = call(&http, &proc2.base, "GET", "/v1/users/u1/push-ids", None)
        .await
        .unwrap();
    assert_eq!(v["push_ids"].as_array().unwrap().len(), 50);
    let log = proc2.log.lock().join("\n");
    assert!(log.contains("wal_records=0"), "{log}");
}

fn data_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

async fn start_in_process(
    dir: &Path,
    durability: &str,
) -> Result<fanfare::Running, fanfare::Error> {
    let cfg = config_file(dir, durability, "snapshot_interval_s = 0\n");
    let config = fanfare::config::Config::load(Some(&cfg), Vec::new()).unwrap();
    fanfare::start(config).await
}

/// A random mix of every durable mutation through the API.
async fn random_ops(http: &Http, base: &str, seed: u64, n: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..n {
        let r = match rng.gen_range(0..12) {
            0..=4 => {
                let provider = ["apns", "fcm", "apns_voip"][rng.gen_range(0..3)];
                let token = if provider == "fcm" {
                    format!("f{seed}x{i}")
                } else {
                    format!("{:064x}", rng.gen::<u128>())
                };
                let env = if rng.gen_bool(0.3) {
                    "sandbox"
                } else {
                    "production"
                };
                let mut body = json!({"user_id": format!("u{}", rng.gen_range(0..20)), "provider": provider, "token": token, "environment": env});
                if rng.gen_bool(0.2) {
                    body["app_id"] = json!("com.other.app");
                }
                call(
                    http,
                    base,
                    "PUT",
                    &format!("/v1/push-ids/d{}", rng.gen_range(0..60)),
                    Some(body),
                )
                .await
            }
            5 | 6 => {
                call(
                    http,
                    base,
                    "DELETE",
                    &format!("/v1/push-ids/d{}", rng.gen_range(0..60)),
                    None,
                )
                .await
            }
            7 => {
                call(
                    http,
                    base,
                    "DELETE",
                    &format!("/v1/users/u{}/push-ids", rng.gen_range(0..20)),
                    None,
                )
                .await
            }
            8..=10 => {
                let add: Vec<String> = (0..rng.gen_range(0..5))
                    .map(|_| format!("u{}", rng.gen_range(0..30)))
                    .collect();
                let remove: Vec<String> = (0..rng.gen_range(0..3))
                    .map(|_| format!("u{}", rng.gen_range(0..30)))
                    .collect();
                call(
                    http,
                    base,
                    "POST",
                    &format!("/v1/groups/g{}/members", rng.gen_range(0..4)),
                    Some(json!({"add": add, "remove": remove})),
                )
                .await
            }
            _ => {
                call(
                    http,
                    base,
                    "DELETE",
                    &format!("/v1/groups/g{}", rng.gen_range(0..4)),
                    None,
                )
                .await
            }
        };
        let (s, v) = r.unwrap();
        assert!(s == 200 || s == 404, "{s} {v}");
    }
}

#[tokio::test]
async fn snapshot_plus_log_replay_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let running = start_in_process(dir.path(), "none").await.unwrap();
    let base = format!("http://{}", running.local_addr());
    random_ops(&http, &base, 1, 300).await;
    // A snapshot taken while writers run, then more writes only in the log.
    let store = running.engine().store().unwrap().clone();
    let (snap, ()) = tokio::join!(
        tokio::task::spawn_blocking(move || store.snapshot().unwrap()),
        random_ops(&http, &base, 2, 200)
    );
    assert!(snap.unwrap().bindings > 0);
    random_ops(&http, &base, 3, 200).await;
    let before = running.engine().state.durable_view();
    assert!(!before.bindings.is_empty() && !before.groups.is_empty());
    running.stop_without_snapshot().await;

    let running = start_in_process(dir.path(), "none").await.unwrap();
    assert_eq!(running.engine().state.durable_view(), before);
    // And through a clean shutdown (final snapshot, empty log) once more.
    running.shutdown().await;
    let running = start_in_process(dir.path(), "none").await.unwrap();
    assert_eq!(running.engine().state.durable_view(), before);
    running.shutdown().await;
}

#[tokio::test]
async fn a_torn_final_record_is_truncated_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let running = start_in_process(dir.path(), "fsync").await.unwrap();
    let base = format!("http://{}", running.local_addr());
    random_ops(&http, &base, 7, 100).await;
    let before = running.engine().state.durable_view();
    running.stop_without_snapshot().await;
    let data = dir.path().join("data");
    let wal = data_files(&data, "wal-").pop().unwrap();
    let good_len = std::fs::metadata(&wal).unwrap().len();
    // Half a record: a header promising 300 bytes, then 20 of them.
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&300u32.to_le_bytes());
    bytes.extend_from_slice(&[7u8; 24]);
    std::fs::write(&wal, bytes).unwrap();

    let running = start_in_process(dir.path(), "fsync").await.unwrap();
    assert_eq!(running.engine().state.durable_view(), before);
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
    let base = format!("http://{}", running.local_addr());
    random_ops(&http, &base, 8, 20).await;
    let after = running.engine().state.durable_view();
    running.stop_without_snapshot().await;
    let running = start_in_process(dir.path(), "fsync").await.unwrap();
    assert_eq!(running.engine().state.durable_view(), after);
    running.shutdown().await;
}

#[tokio::test]
async fn corruption_inside_the_log_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let running = start_in_process(dir.path(), "fsync").await.unwrap();
    let base = format!("http://{}", running.local_addr());
    random_ops(&http, &base, 9, 50).await;
    running.stop_without_snapshot().await;
    let wal = data_files(&dir.path().join("data"), "wal-").pop().unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&wal, &bytes).unwrap();
    let err = start_in_process(dir.path(), "fsync")
        .await
        .err()
        .expect("must refuse to start");
    let msg = fanfare::providers::error_chain(&err);
    assert!(msg.contains(&wal.display().to_string()), "{msg}");
    assert!(msg.contains("corrupt at byte"), "{msg}");
    assert_eq!(std::fs::read(&wal).unwrap(), bytes, "nothing is cut");
}

#[tokio::test]
async fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let running = start_in_process(dir.path(), "none").await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let store = running.engine().store().unwrap().clone();
    random_ops(&http, &base, 11, 100).await;
    store.snapshot().unwrap();
    random_ops(&http, &base, 12, 100).await;
    store.snapshot().unwrap();
    random_ops(&http, &base, 13, 50).await;
    let before = running.engine().state.durable_view();
    running.stop_without_snapshot().await;
    let data = dir.path().join("data");
    let snaps = data_files(&data, "snapshot-");
    assert_eq!(snaps.len(), 2);
    let newest = snaps.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x55;
    std::fs::write(newest, bytes).unwrap();
    let running = start_in_process(dir.path(), "none").await.unwrap();
    assert_eq!(running.engine().state.durable_view(), before);
    running.stop_without_snapshot().await;
    // With every snapshot damaged there is nothing safe to start from.
    for s in data_files(&data, "snapshot-") {
        let mut bytes = std::fs::read(&s).unwrap();
        bytes[70] ^= 0x55;
        std::fs::write(&s, bytes).unwrap();
    }
    let err = start_in_process(dir.path(), "none")
        .await
        .err()
        .expect("must refuse");
    assert!(
        fanfare::providers::error_chain(&err).contains("snapshot"),
        "{err}"
    );
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
    let (s, v) = call(&http, &base, "GET", "/healthz", None).await.unwrap();
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
