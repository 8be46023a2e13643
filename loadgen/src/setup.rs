//! The rig of one load run: the mock vendors (in this process, so that they share the
//! driver's `quanta` clock), the engine's config file pointing at them, the engine
//! itself (a child process, or one already running), and the h2c client of the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fanfare::client::Client;
use fanfare_loadgen::mock::rig::{self, Rig};
use fanfare_loadgen::nats::Nats;
use serde_json::{json, Value};

use crate::engine_proc::{EngineProc, ProcStats, Program};

pub(crate) use fanfare_loadgen::mock::rig::TOPIC;
/// Pushes each mock keeps for attribution between two `take_received` calls.
const RECORD_LIMIT: usize = 4_000_000;
/// Admission is all-or-nothing per message: the largest group must fit.
const QUEUE_CAPACITY: u64 = 2_000_000;

/// Which engine a run measures.
#[derive(Debug, Clone)]
pub(crate) enum EngineChoice {
    /// Start it as a child process and stop it at the end.
    Spawn(Program),
    /// One started by hand on `url` with the config this run writes to `dir`;
    /// `pid` for its CPU time and memory (else the process listening on the URL's
    /// address, when /proc shows it).
    External {
        url: String,
        dir: PathBuf,
        pid: Option<u32>,
        wait: Duration,
    },
    /// No engine (the `ceiling` scenario).
    None,
}

/// The mocks of one run and the engine's vendor config for them.
pub(crate) type Mocks = Rig;

/// Start the mocks (the six OEM and Web Push ones `with_vendors`) writing their CA and
/// keys into `dir`.
fn start_mocks(dir: &Path, with_vendors: bool) -> anyhow::Result<Mocks> {
    Rig::start(
        dir,
        &rig::Options {
            vendors: with_vendors,
            record_limit: RECORD_LIMIT,
            ..rig::Options::default()
        },
    )
}

/// Write the engine's config file: the mocks, the API on `listen`, state in
/// `dir/data` without durability (a load run keeps nothing); with `nats`, cluster mode
/// on that one server (replicas 1; `--nats 1`).
fn write_engine_config(
    mocks: &Mocks,
    dir: &Path,
    listen: &str,
    nats: Option<&Nats>,
) -> anyhow::Result<PathBuf> {
    let mut more = json!({
        "messages": {"queue_capacity": QUEUE_CAPACITY},
        "api": {"listen": listen},
        "storage": {"dir": dir.join("data"), "durability": "none"},
    });
    if let Some(nats) = nats {
        more["cluster"] = json!({
            "nats_urls": nats.urls(),
            "node_id": "e0",
            "stream_replicas": nats.len(),
        });
    }
    let path = dir.join("engine.toml");
    mocks.write_engine_config(&path, &more)?;
    Ok(path)
}

/// The engine a run drives.
enum Engine {
    Child(Box<EngineProc>),
    External(Option<u32>),
    None,
}

/// One run's rig.
pub(crate) struct Env {
    /// Keeps the temporary directory (keys, config, engine data) alive.
    _tmp: Option<tempfile::TempDir>,
    pub mocks: Arc<Mocks>,
    engine: Engine,
    /// The engine's API over h2c (`Client::base` is its URL).
    pub api: Client,
    /// The NATS server of an engine in cluster mode (`--nats 1`); dropped (killed)
    /// after the engine.
    nats: Option<Nats>,
}

impl Env {
    /// Start the mocks and the chosen engine; returns once the engine is ready.
    pub async fn start(choice: &EngineChoice, with_vendors: bool) -> anyhow::Result<Env> {
        Self::start_on(choice, with_vendors, None).await
    }

    /// [`Env::start`], a spawned engine in cluster mode on `nats` when given.
    pub async fn start_on(
        choice: &EngineChoice,
        with_vendors: bool,
        nats: Option<Nats>,
    ) -> anyhow::Result<Env> {
        let tmp = tempfile::Builder::new()
            .prefix("fanfare-loadgen")
            .tempdir()?;
        let (mocks, engine, base) = match choice {
            EngineChoice::Spawn(program) => {
                let mocks = start_mocks(tmp.path(), with_vendors)?;
                let config = write_engine_config(&mocks, tmp.path(), "127.0.0.1:0", nats.as_ref())?;
                let child = EngineProc::spawn(program, &config).await?;
                let base = child.base_url();
                (mocks, Engine::Child(Box::new(child)), base)
            }
            EngineChoice::External {
                url,
                dir,
                pid,
                wait,
            } => {
                let base = url.trim_end_matches('/').to_string();
                let api = api_client(&base);
                let listen = base
                    .strip_prefix("http://")
                    .context("--engine takes an http:// URL (the API is plain HTTP/h2c)")?;
                if api.healthz().await.is_ok() {
                    bail!(
                        "an engine already answers at {base}: start it after the mocks, with the config \
                         this run writes to {}/engine.toml",
                        dir.display()
                    );
                }
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
                let dir = std::fs::canonicalize(dir)?;
                let mocks = start_mocks(&dir, with_vendors)?;
                let config = write_engine_config(&mocks, &dir, listen, None)?;
                eprintln!(
                    "mocks are up; start the engine now (within {} s):\n  fanfare serve --config {}",
                    wait.as_secs(),
                    config.display()
                );
                let deadline = tokio::time::Instant::now() + *wait;
                while api.healthz().await.is_err() {
                    if tokio::time::Instant::now() >= deadline {
                        bail!("no engine became healthy at {base} within {wait:?}");
                    }
                    // Waiting for a process started by hand: nothing to subscribe to.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let pid = pid.or_else(|| {
                    let addr = listen.parse().ok()?;
                    crate::engine_proc::pid_listening_on(addr)
                });
                match pid {
                    Some(pid) => eprintln!("engine is up (pid {pid})"),
                    None => eprintln!("engine is up (pid unknown: its CPU and RSS are not measured; see --engine-pid)"),
                }
                (mocks, Engine::External(pid), base)
            }
            EngineChoice::None => (
                start_mocks(tmp.path(), with_vendors)?,
                Engine::None,
                String::new(),
            ),
        };
        Ok(Env {
            _tmp: Some(tmp),
            mocks: Arc::new(mocks),
            engine,
            api: api_client(&base),
            nats,
        })
    }

    /// "spawned" (with its cluster mode), "external" or "none".
    pub fn engine_mode(&self) -> &'static str {
        match self.engine {
            Engine::Child(_) if self.nats.is_some() => "spawned, cluster mode on one nats-server",
            Engine::Child(_) => "spawned",
            Engine::External(_) => "external",
            Engine::None => "none",
        }
    }

    /// The engine's process, when known.
    pub fn engine_pid(&self) -> Option<u32> {
        match &self.engine {
            Engine::Child(c) => Some(c.pid()),
            Engine::External(pid) => *pid,
            Engine::None => None,
        }
    }

    /// The engine process's CPU and memory now, when its pid is known.
    pub fn engine_proc(&self) -> Option<ProcStats> {
        self.engine_pid().and_then(|pid| ProcStats::read(Some(pid)))
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.api.stats().await.context("GET /v1/stats")
    }

    /// Stop a spawned engine (SIGTERM, drain, exit); an external one is left running.
    pub async fn finish(self) -> anyhow::Result<()> {
        match self.engine {
            Engine::Child(c) => c.stop().await,
            Engine::External(_) | Engine::None => Ok(()),
        }
    }
}

/// How long one API request may take before it counts as a transport error (so that
/// a stuck engine cannot keep a run from ending).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The h2c client of the engine at `base`: one connection, TCP_NODELAY, every request
/// bounded by [`REQUEST_TIMEOUT`].
fn api_client(base: &str) -> Client {
    Client::builder(base).timeout(REQUEST_TIMEOUT).build()
}

/// The APNs token of device `k`: its index in the first 8 hex digits.
pub(crate) fn apns_token(k: u32) -> String {
    format!("{k:08x}{}", "5e".repeat(28))
}

/// The device index an [`apns_token`] encodes.
pub(crate) fn apns_device(token: &str) -> Option<u32> {
    token.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok())
}

/// The FCM token of device `k`.
pub(crate) fn fcm_token(k: u32) -> String {
    format!("lg{k}:APA91b{}", "Qz-_".repeat(34))
}

/// The device index an [`fcm_token`] encodes.
pub(crate) fn fcm_device(token: &str) -> Option<u32> {
    token
        .strip_prefix("lg")
        .and_then(|t| t.split(':').next())
        .and_then(|n| n.parse().ok())
}

/// `is_online(i)` for the users a scenario reports online: every `1/share`-th one.
pub(crate) fn online_rule(share: f64) -> impl Fn(u32) -> bool + Copy {
    let every = if share > 0.0 {
        (1.0 / share).round() as u32
    } else {
        u32::MAX
    };
    move |i: u32| every != u32::MAX && i % every == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_device() {
        for k in [0, 7, 123_456, 999_999] {
            assert_eq!(apns_device(&apns_token(k)), Some(k));
            assert_eq!(fcm_device(&fcm_token(k)), Some(k));
        }
        assert_eq!(apns_token(1).len(), 64);
        assert_eq!(apns_device("zz"), None);
        assert_eq!(fcm_device("other:token"), None);
    }

    #[test]
    fn every_tenth_user_is_online_at_ten_percent() {
        let online = online_rule(0.1);
        assert_eq!((0..1000).filter(|i| online(*i)).count(), 100);
        assert!(online(0) && online(10) && !online(1));
        let nobody = online_rule(0.0);
        assert!((0..1000).all(|i| !nobody(i)));
    }
}
