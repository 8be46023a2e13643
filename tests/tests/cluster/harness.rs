//! The cluster tests' rig: real `nats-server` processes ([`fanfare_loadgen::nats`]),
//! mock vendors ([`fanfare_loadgen::mock::rig`]) and engines as processes (this
//! package's `fanfare-engine` binary on a TOML config), each engine with its own data
//! directory and node id `e<i>`. Everything is killed and removed on drop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use fanfare::client::{request, Client, Protocol};
use fanfare_loadgen::mock::rig::{self, Rig};
use fanfare_loadgen::nats::Nats;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Every wait on the cluster gives up after this long.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub nats: Nats,
    pub rig: Rig,
    engines: Vec<Option<EngineProc>>,
    replicas: usize,
    /// Snapshot period of the engines started from now on (0: none).
    pub snapshot_interval_s: u64,
    /// More config for the engines started from now on, merged per section.
    pub more: serde_json::Value,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `servers` NATS servers (replicas = servers) and `engines` engines, all ready.
    pub async fn start(servers: usize, engines: usize) -> Cluster {
        if !fanfare_loadgen::nats::available() {
            panic!("nats-server is not installed (apt-get install nats-server; .ci/run does it)");
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let nats = tokio::task::spawn_blocking(move || Nats::start(servers))
            .await
            .expect("the nats start task")
            .expect("nats-server starts");
        let rig = Rig::start(dir.path(), &rig::Options::default()).expect("the mocks start");
        let mut c = Cluster {
            nats,
            rig,
            engines: Vec::new(),
            replicas: servers,
            snapshot_interval_s: 0,
            more: json!({}),
            dir,
        };
        for i in 0..engines {
            c.spawn(i).await;
        }
        c
    }

    /// The data directory of engine `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("e{i}")).join("data")
    }

    /// Start engine `i` (again) on its data directory; returns once it is ready.
    pub async fn spawn(&mut self, i: usize) {
        let config = self.config(i);
        let proc = EngineProc::spawn(&config).await;
        if self.engines.len() <= i {
            self.engines.resize_with(i + 1, || None);
        }
        self.engines[i] = Some(proc);
    }

    /// Start engine `i` expecting it to fail: its output once it exited.
    pub async fn spawn_failing(&mut self, i: usize) -> String {
        let config = self.config(i);
        let run = Command::new(env!("CARGO_BIN_EXE_fanfare-engine"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(DEADLINE, run)
            .await
            .expect("the engine exits in time")
            .expect("the engine runs");
        assert!(!out.status.success(), "the engine was expected to fail");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Write engine `i`'s config file; returns its path.
    fn config(&self, i: usize) -> PathBuf {
        let dir = self.dir.path().join(format!("e{i}"));
        std::fs::create_dir_all(&dir).expect("the engine dir");
        let config = dir.join("fanfare.toml");
        let mut table = json!({
            "api": {"listen": "127.0.0.1:0", "shutdown_grace_s": 5},
            "storage": {"dir": self.data_dir(i), "snapshot_interval_s": self.snapshot_interval_s},
            "cluster": {
                "nats_urls": self.nats.urls(),
                "node_id": format!("e{i}"),
                "stream_replicas": self.replicas,
                "write_timeout_ms": 3000,
                "connect_timeout_s": 20,
            },
        });
        for (section, keys) in self.more.as_object().into_iter().flatten() {
            let slot = &mut table[section];
            if slot.is_null() {
                *slot = json!({});
            }
            for (k, v) in keys.as_object().expect("a section is a table") {
                slot[k] = v.clone();
            }
        }
        self.rig
            .write_engine_config(&config, &table)
            .expect("the engine config is written");
        config
    }

    /// SIGKILL engine `i` and reap it.
    pub async fn kill(&mut self, i: usize) {
        let mut proc = self.engines[i].take().expect("engine is running");
        proc.child.kill().await.expect("the engine is ours to kill");
    }

    /// Wait (bounded) for engine `i` to exit by itself: its exit status and log.
    pub async fn exited(&mut self, i: usize) -> (std::process::ExitStatus, String) {
        let log = |p: &EngineProc| p.log.lock().expect("log lock").join("\n");
        let mut proc = self.engines[i].take().expect("engine is running");
        let Ok(status) = tokio::time::timeout(DEADLINE, proc.child.wait()).await else {
            panic!("engine {i} did not exit: {}", log(&proc));
        };
        (status.expect("the engine is ours to wait for"), log(&proc))
    }

    /// Engine `i`'s log so far (for a failing test's message).
    pub fn log(&self, i: usize) -> String {
        self.engines[i]
            .as_ref()
            .map(|p| p.log.lock().expect("log lock").join("\n"))
            .unwrap_or_default()
    }

    /// The API client of engine `i`.
    pub fn api(&self, i: usize) -> Client {
        let base = self.engines[i]
            .as_ref()
            .expect("engine is running")
            .base
            .clone();
        Client::builder(base)
            .protocol(Protocol::Http1)
            .timeout(DEADLINE)
            .build()
    }

    /// The token the tests bind for `push_id` (FCM).
    pub fn token(push_id: &str) -> String {
        format!("tok-{push_id}")
    }

    /// Bind `push_id` to `user` through engine `i` (must succeed).
    pub async fn bind(&self, i: usize, push_id: &str, user: &str) {
        self.api(i)
            .bind(push_id, &request::bind(user, "fcm", &Self::token(push_id)))
            .await
            .unwrap_or_else(|e| panic!("bind {push_id} through e{i}: {e}"));
    }

    /// Pushes the mock FCM received for `push_id`'s token so far.
    pub fn pushes_to(&self, push_id: &str) -> usize {
        let token = Self::token(push_id);
        self.rig
            .fcm()
            .received()
            .iter()
            .filter(|p| p.token == token)
            .count()
    }
}

/// Poll `f` until it is true (bounded by [`DEADLINE`]); panics with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !f().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The push ids of `user` as engine `api` lists them, sorted.
pub async fn push_ids(api: &Client, user: &str) -> Vec<String> {
    let mut ids: Vec<String> = api
        .push_ids(user)
        .await
        .map(|l| l.push_ids.into_iter().map(|d| d.push_id).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// One engine process: `fanfare-engine serve --config FILE`, its API base read from
/// its `fanfare ready addr=...` line (logged once it has joined). Killed on drop.
struct EngineProc {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl EngineProc {
    async fn spawn(config: &std::path::Path) -> EngineProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fanfare-engine"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("FANFARE_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the engine");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        tokio::spawn(follow(out, log.clone(), tx.clone()));
        tokio::spawn(follow(err, log.clone(), tx));
        let addr = tokio::time::timeout(DEADLINE, rx.recv()).await;
        let Ok(Some(addr)) = addr else {
            panic!(
                "the engine did not become ready: {}",
                log.lock().expect("log lock").join("\n")
            );
        };
        EngineProc {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }
}

async fn follow(
    stream: impl tokio::io::AsyncRead + Unpin,
    log: Arc<Mutex<Vec<String>>>,
    ready: tokio::sync::mpsc::Sender<String>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("fanfare ready") {
            if let Some(addr) = line.split("addr=").nth(1) {
                let _ = ready.try_send(addr.split_whitespace().next().unwrap_or("").into());
            }
        }
        let mut log = log.lock().expect("log lock");
        if log.len() < 2_000 {
            log.push(line);
        }
    }
}
