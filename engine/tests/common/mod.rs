//! The harness shared by the engine's integration tests (the storage tests
//! `durability.rs`, `storage_hardening.rs`, `notify_durability.rs`; `accept_emfile.rs`):
//! the real `fanfare` binary on a config in a temporary directory, its API address and
//! log read from its pipes; an engine started in process on the same config; a raw
//! JSON request (these tests also send what the typed client never would); bounded
//! waits on what the engine says; and one random mix of every durable mutation.
//!
//! Each test binary uses a part of it, hence `dead_code` is allowed here.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fanfare::client::{request, Client, Protocol};
use http_body_util::Full;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// How long any wait on the engine may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The `[storage]` line that turns periodic snapshots off: a test takes its own.
pub const SNAPSHOTS_OFF: &str = "snapshot_interval_s = 0\n";

pub type Http = Client;

/// An HTTP/1.1 client for requests to any engine (each request names its engine's
/// base), with TCP_NODELAY and a bound on every request.
pub fn http() -> Http {
    Client::builder("")
        .protocol(Protocol::Http1)
        .timeout(DEADLINE)
        .build()
}

/// One request; the answer's status and JSON body (`Null` if none). Kept raw: these
/// tests also send what the typed client never would (and read any answer).
pub async fn call(
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
        .expect("method and path make a valid request");
    let raw = http.send(req).await.map_err(|e| e.to_string())?;
    Ok((
        raw.status.as_u16(),
        serde_json::from_slice(&raw.body).unwrap_or(Value::Null),
    ))
}

/// `GET path`, which must answer; its status and body.
pub async fn get(http: &Http, base: &str, path: &str) -> (u16, Value) {
    call(http, base, "GET", path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"))
}

/// `dir/fanfare.toml`: the API on a free port, storage in `dir/data` with the given
/// durability, then `extra` lines of the `[storage]` section.
pub fn config_file(dir: &Path, durability: &str, extra: &str) -> PathBuf {
    let path = dir.join("fanfare.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_s = 5\n[storage]\ndir = \"{}\"\ndurability = \"{durability}\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .expect("the temporary directory is writable");
    path
}

/// The engine in this process on `dir`, with no periodic snapshots (a test takes its
/// own): started, or the error it refused with.
pub async fn try_start(dir: &Path, durability: &str) -> Result<fanfare::Running, fanfare::Error> {
    let cfg = config_file(dir, durability, SNAPSHOTS_OFF);
    let config = fanfare::config::Config::load(Some(&cfg), Vec::new()).expect("a valid config");
    fanfare::start(config).await
}

/// The engine in this process on `dir`, which must start.
pub async fn start(dir: &Path, durability: &str) -> fanfare::Running {
    try_start(dir, durability)
        .await
        .unwrap_or_else(|e| panic!("the engine starts: {}", fanfare::providers::error_chain(&e)))
}

/// The engine in this process on `dir`, which must refuse to start: its error, with
/// every cause.
pub async fn start_refused(dir: &Path, durability: &str) -> String {
    match try_start(dir, durability).await {
        Ok(_) => panic!("the engine must refuse to start"),
        Err(e) => fanfare::providers::error_chain(&e),
    }
}

/// Restart the in-process engine on `dir` and check it recovered exactly `before`.
pub async fn restart_expecting(
    dir: &Path,
    durability: &str,
    before: &fanfare::state::DurableView,
) -> fanfare::Running {
    let running = start(dir, durability).await;
    assert_eq!(&running.engine().state.durable_view(), before);
    running
}

/// Restart on `dir`, check it recovered exactly `before`, and shut down cleanly.
pub async fn assert_recovers(dir: &Path, durability: &str, before: &fanfare::state::DurableView) {
    restart_expecting(dir, durability, before)
        .await
        .shutdown()
        .await;
}

/// Stop an in-process engine without a final snapshot (the files as a crash would
/// leave them, minus the crash); the durable state it held.
pub async fn stop_holding(running: fanfare::Running) -> fanfare::state::DurableView {
    let view = running.engine().state.durable_view();
    running.stop_without_snapshot().await;
    view
}

/// The API base URL of an in-process engine.
pub fn base_of(running: &fanfare::Running) -> String {
    format!("http://{}", running.local_addr())
}

/// `random_ops` on an in-process engine.
pub async fn ops_on(running: &fanfare::Running, seed: u64, n: usize) {
    random_ops(&http(), &base_of(running), seed, n).await;
}

/// A data dir whose in-process engine ran `n` random operations (`seed`) and stopped
/// without a snapshot, so every one of them is in the log: the dir and the state the
/// engine held. The start of every test that damages a log.
pub async fn log_of_random_ops(
    durability: &str,
    seed: u64,
    n: usize,
) -> (tempfile::TempDir, fanfare::state::DurableView) {
    let (dir, held, _) = snapshots_of_random_ops(durability, &[(seed, n)]).await;
    (dir, held)
}

/// A data dir whose in-process engine ran each batch of `(seed, n)` random operations
/// with a snapshot between batches, and stopped without a final one: the dir, the
/// state the engine held, and the snapshots oldest first. The start of every test
/// that damages a snapshot or a segment one covers.
pub async fn snapshots_of_random_ops(
    durability: &str,
    batches: &[(u64, usize)],
) -> (
    tempfile::TempDir,
    fanfare::state::DurableView,
    Vec<fanfare::store::SnapshotInfo>,
) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let running = start(dir.path(), durability).await;
    let store = running
        .engine()
        .store()
        .expect("the engine has a store")
        .clone();
    let mut snapshots = Vec::new();
    for (i, &(seed, n)) in batches.iter().enumerate() {
        if i > 0 {
            snapshots.push(store.snapshot().expect("a snapshot between batches"));
        }
        ops_on(&running, seed, n).await;
    }
    let held = stop_holding(running).await;
    (dir, held, snapshots)
}

/// Read `path`, change its bytes with `edit` (the test's damage), write them back;
/// the bytes now on disk.
pub fn edit_file(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("the file to damage exists");
    edit(&mut bytes);
    std::fs::write(path, &bytes).expect("the damaged file is written");
    bytes
}

/// The real binary on a config; its API address read from its log. Killed on drop.
pub struct Proc {
    pub child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Start `fanfare serve` and wait (bounded) for it to log its API address.
    pub fn spawn(config: &Path) -> Proc {
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
            Box::new(child.stdout.take().expect("stdout is piped"))
                as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr is piped")),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("API listening") {
                        if let Some(addr) = line.split("addr=").nth(1) {
                            let addr = addr.split_whitespace().next().unwrap_or("");
                            let _ = tx.send(addr.to_string());
                        }
                    }
                    log.lock().push(line);
                }
            });
        }
        let addr = rx
            .recv_timeout(DEADLINE)
            .expect("fanfare printed its address");
        Proc {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    /// Start `fanfare serve` and wait (bounded) until `GET path` answers 200 (`/healthz`:
    /// recovered; `/readyz`: taking writes).
    pub async fn spawn_until(config: &Path, path: &str) -> Proc {
        let proc = Proc::spawn(config);
        wait_status(&http(), &proc.base, path, 200).await;
        proc
    }

    /// Everything the process has logged so far, one line each.
    pub fn log(&self) -> String {
        self.log.lock().join("\n")
    }

    /// Wait (bounded) until the process has logged a line containing `needle`: its log
    /// is read from a pipe by another thread, a little after the event.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never logged {needle:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and reap the process.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("the child is ours to kill");
        self.child.wait().expect("the killed child is reaped");
    }

    /// Wait (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `GET path` until it answers `want` (bounded); the body of that answer.
pub async fn wait_status(http: &Http, base: &str, path: &str, want: u16) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok((s, v)) = call(http, base, "GET", path, None).await {
            if s == want {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{base}{path} never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bind `push_id` to `user` (an FCM token) through the typed client; the status.
pub async fn bind(base: &str, push_id: &str, user: &str) -> u16 {
    let api = Client::builder(base).protocol(Protocol::Http1).build();
    let req = request::bind(user, "fcm", &format!("tok-{push_id}"));
    match api.bind(push_id, &req).await {
        Ok(_) => 200,
        Err(e) => e.status().expect("the engine answers").as_u16(),
    }
}

/// The push ids bound to `user`, sorted.
pub async fn push_ids_of(base: &str, user: &str) -> Vec<String> {
    let api = Client::builder(base).protocol(Protocol::Http1).build();
    let list = api.push_ids(user).await.expect("push ids are listed");
    let mut ids: Vec<String> = list.push_ids.into_iter().map(|d| d.push_id).collect();
    ids.sort();
    ids
}

/// The files in `dir` whose names start with `prefix`, sorted; damaged tails kept
/// aside by recovery (`….damaged-…`) are not among them.
pub fn data_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the data directory exists")
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| {
            let name = p
                .file_name()
                .expect("an entry has a name")
                .to_string_lossy();
            name.starts_with(prefix) && !name.contains(".damaged")
        })
        .collect();
    v.sort();
    v
}

/// One random durable mutation as a request: method, path and body. Every kind
/// (bind with each provider, environment and an app id; unbind; remove a user; group
/// add/remove; group delete), over small key spaces so that they collide.
fn random_request(
    rng: &mut impl Rng,
    seed: u64,
    i: usize,
) -> (&'static str, String, Option<Value>) {
    match rng.gen_range(0..12) {
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
            let user = format!("u{}", rng.gen_range(0..20));
            let mut body =
                json!({"user_id": user, "provider": provider, "token": token, "environment": env});
            if rng.gen_bool(0.2) {
                body["app_id"] = json!("com.other.app");
            }
            let path = format!("/v1/push-ids/d{}", rng.gen_range(0..60));
            ("PUT", path, Some(body))
        }
        5 | 6 => {
            let path = format!("/v1/push-ids/d{}", rng.gen_range(0..60));
            ("DELETE", path, None)
        }
        7 => {
            let path = format!("/v1/users/u{}/push-ids", rng.gen_range(0..20));
            ("DELETE", path, None)
        }
        8..=10 => {
            let add: Vec<String> = (0..rng.gen_range(0..5))
                .map(|_| format!("u{}", rng.gen_range(0..30)))
                .collect();
            let remove: Vec<String> = (0..rng.gen_range(0..3))
                .map(|_| format!("u{}", rng.gen_range(0..30)))
                .collect();
            let path = format!("/v1/groups/g{}/members", rng.gen_range(0..4));
            ("POST", path, Some(json!({"add": add, "remove": remove})))
        }
        _ => {
            let path = format!("/v1/groups/g{}", rng.gen_range(0..4));
            ("DELETE", path, None)
        }
    }
}

/// `n` random durable mutations through the API (seeded); each must answer 200 or 404.
pub async fn random_ops(http: &Http, base: &str, seed: u64, n: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..n {
        let (method, path, body) = random_request(&mut rng, seed, i);
        let (s, v) = call(http, base, method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(s == 200 || s == 404, "{method} {path}: {s} {v}");
    }
}
