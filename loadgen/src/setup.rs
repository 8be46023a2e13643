//! The rig of one load run: the mock vendors (in this process, so that they share the
//! driver's `quanta` clock), the engine's config file pointing at them, the engine
//! itself (a child process, or one already running), and the h2c client of the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fanfare::client::Client;
use fanfare_loadgen::mock::apns::{self, Credentials, MockApns};
use fanfare_loadgen::mock::fcm::{self, MockFcm};
use fanfare_loadgen::mock::tls::TestCa;
use fanfare_loadgen::mock::vendor::{self, VendorPush};
use fanfare_loadgen::mock::{honor, huawei, oppo, vivo, webpush, xiaomi};
use serde_json::{json, Value};

use crate::engine_proc::{EngineProc, ProcStats, Program};

pub(crate) const TOPIC: &str = "com.example.chat";
const PACKAGE: &str = "com.example.chat";
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

/// The Chinese OEM and Web Push mocks of the `vendors` scenario.
pub(crate) struct VendorMocks {
    pub huawei: huawei::MockHuawei,
    pub honor: honor::MockHonor,
    pub xiaomi: xiaomi::MockXiaomi,
    pub oppo: oppo::MockOppo,
    pub vivo: vivo::MockVivo,
    pub webpush: webpush::MockWebpush,
}

impl VendorMocks {
    /// (provider, pushes received) per mock.
    pub fn counts(&self) -> [(&'static str, usize); 6] {
        [
            ("huawei", self.huawei.received_count()),
            ("honor", self.honor.received_count()),
            ("xiaomi", self.xiaomi.received_count()),
            ("oppo", self.oppo.received_count()),
            ("vivo", self.vivo.received_count()),
            ("webpush", self.webpush.received_count()),
        ]
    }

    pub fn received(&self) -> Vec<VendorPush> {
        let mut all = self.huawei.received();
        all.extend(self.honor.received());
        all.extend(self.xiaomi.received());
        all.extend(self.oppo.received());
        all.extend(self.vivo.received());
        all.extend(self.webpush.received());
        all
    }

    pub fn rejections(&self) -> usize {
        self.huawei.rejections().len()
            + self.honor.rejections().len()
            + self.xiaomi.rejections().len()
            + self.oppo.rejections().len()
            + self.vivo.rejections().len()
            + self.webpush.rejections().len()
    }
}

/// The mock vendors and the files the engine needs to reach and trust them.
pub(crate) struct Mocks {
    pub apns: MockApns,
    pub fcm: MockFcm,
    pub vendors: Option<VendorMocks>,
    pub ca_file: PathBuf,
    pub creds: Credentials,
    /// The engine's config (TOML) for these mocks, without `[api]` and `[storage]`.
    engine_config: toml::Table,
}

impl Mocks {
    /// Start mock APNs and FCM (and with `with_vendors` the six others) on loopback,
    /// writing their CA, keys and service account into `dir`.
    pub fn start(dir: &Path, with_vendors: bool) -> anyhow::Result<Mocks> {
        let ca = TestCa::generate()?;
        let ca_file = ca.write_ca_file(dir)?;
        let creds = Credentials::generate()?;
        let key_file = creds.write_key_file(dir)?;
        let apns = MockApns::start(
            &ca,
            &creds,
            apns::Config {
                topic: TOPIC.into(),
                record_limit: RECORD_LIMIT,
                ..apns::Config::default()
            },
        )?;
        let fcm = MockFcm::start(
            &ca,
            fcm::Config {
                record_limit: RECORD_LIMIT,
                ..fcm::Config::default()
            },
        )?;
        let sa_file = fcm.write_service_account(dir)?;
        let defaults = fanfare::config::Config::default();
        let mut config = json!({
            "messages": {"queue_capacity": QUEUE_CAPACITY},
            "apns": {
                "key_file": key_file, "key_id": creds.key_id, "team_id": creds.team_id,
                "topic": TOPIC, "endpoint_production": apns.url(), "endpoint_sandbox": apns.url(),
                "ca_file": ca_file,
                // Written out so that the ceiling client uses the same values.
                "connections": defaults.apns.connections, "max_in_flight": defaults.apns.max_in_flight,
            },
            "fcm": {"service_account_file": sa_file, "endpoint": fcm.url(), "ca_file": ca_file},
        });
        let vendors = if with_vendors {
            let common = || vendor::Common {
                record_limit: RECORD_LIMIT,
                ..vendor::Common::default()
            };
            let m = VendorMocks {
                huawei: huawei::start(&ca, common())?,
                honor: honor::start(&ca, common())?,
                xiaomi: xiaomi::start(&ca, PACKAGE, common())?,
                oppo: oppo::start(&ca, common())?,
                vivo: vivo::start(&ca, common())?,
                webpush: webpush::start(&ca, common())?,
            };
            let (h, o, x, p, v) = (
                m.huawei.vendor(),
                m.honor.vendor(),
                m.xiaomi.vendor(),
                m.oppo.vendor(),
                m.vivo.vendor(),
            );
            let vapid = dir.join("vapid.pem");
            std::fs::write(&vapid, webpush::generate_vapid_key_pem()?)?;
            let more = json!({
                "huawei": {"app_id": h.app_id, "client_secret": h.client_secret, "endpoint": m.huawei.url(),
                           "token_endpoint": m.huawei.token_endpoint(), "ca_file": ca_file},
                "honor": {"app_id": o.app_id, "client_id": o.client_id, "client_secret": o.client_secret,
                          "endpoint": m.honor.url(), "token_endpoint": m.honor.token_endpoint(), "ca_file": ca_file},
                "xiaomi": {"app_secret": x.app_secret, "package_name": PACKAGE, "endpoint": m.xiaomi.url(),
                           "ca_file": ca_file},
                "oppo": {"app_key": p.app_key, "master_secret": p.master_secret, "endpoint": m.oppo.url(),
                         "endpoint_intl": m.oppo.url(), "ca_file": ca_file},
                "vivo": {"app_id": v.app_id.to_string(), "app_key": v.app_key, "app_secret": v.app_secret,
                         "endpoint": m.vivo.url(), "ca_file": ca_file},
                "webpush": {"vapid_private_key_file": vapid, "subject": "mailto:loadgen@example.com",
                            "ca_file": ca_file},
            });
            if let (Some(c), Value::Object(more)) = (config.as_object_mut(), more) {
                c.extend(more);
            }
            Some(m)
        } else {
            None
        };
        let engine_config: toml::Table = toml::Table::try_from(&config)
            .context("the engine config for the mocks is a TOML table")?;
        Ok(Mocks {
            apns,
            fcm,
            vendors,
            ca_file,
            creds,
            engine_config,
        })
    }

    /// Write the engine's config file: these mocks, the API on `listen`, state in
    /// `dir/data` without durability (a load run keeps nothing).
    pub fn write_engine_config(&self, dir: &Path, listen: &str) -> anyhow::Result<PathBuf> {
        let mut table = self.engine_config.clone();
        let extra = json!({
            "api": {"listen": listen},
            "storage": {"dir": dir.join("data"), "durability": "none"},
        });
        table.extend(toml::Table::try_from(&extra).context("api and storage as TOML")?);
        let path = dir.join("engine.toml");
        std::fs::write(&path, toml::to_string(&table)?)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// The engine's APNs connections and streams in flight (the ceiling client's load).
    pub fn apns_limits(&self) -> (usize, usize) {
        let get = |k: &str| {
            self.engine_config["apns"][k]
                .as_integer()
                .map_or(1, |v| v as usize)
        };
        (get("connections"), get("max_in_flight"))
    }

    /// Pushes received by every mock so far.
    pub fn received_total(&self) -> u64 {
        let vendors: usize = self
            .vendors
            .as_ref()
            .map_or(0, |v| v.counts().iter().map(|c| c.1).sum());
        (self.apns.received_count() + self.fcm.received_count() + vendors) as u64
    }

    /// Answers other than 200 the mocks gave (bad token, bad auth, bad body, ...).
    pub fn rejections(&self) -> u64 {
        (self.apns.rejections().len()
            + self.fcm.rejections().len()
            + self.vendors.as_ref().map_or(0, VendorMocks::rejections)) as u64
    }
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
}

impl Env {
    /// Start the mocks and the chosen engine; returns once the engine is ready.
    pub async fn start(choice: &EngineChoice, with_vendors: bool) -> anyhow::Result<Env> {
        let tmp = tempfile::Builder::new()
            .prefix("fanfare-loadgen")
            .tempdir()?;
        let (mocks, engine, base) = match choice {
            EngineChoice::Spawn(program) => {
                let mocks = Mocks::start(tmp.path(), with_vendors)?;
                let config = mocks.write_engine_config(tmp.path(), "127.0.0.1:0")?;
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
                let mocks = Mocks::start(&dir, with_vendors)?;
                let config = mocks.write_engine_config(&dir, listen)?;
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
                Mocks::start(tmp.path(), with_vendors)?,
                Engine::None,
                String::new(),
            ),
        };
        Ok(Env {
            _tmp: Some(tmp),
            mocks: Arc::new(mocks),
            engine,
            api: api_client(&base),
        })
    }

    /// "spawned", "external" or "none".
    pub fn engine_mode(&self) -> &'static str {
        match self.engine {
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
