//! The one mock rig shared by the load generator, the end-to-end tests and the benches:
//! start the mocks chosen ([`Options`]) on loopback, write their CA, APNs key, FCM
//! service account and VAPID key into a directory, and build the engine's vendor
//! sections (`[apns]`, `[fcm]`, `[huawei]`, ...) for them, once.
//!
//! Callers add what is theirs (`[api]`, `[storage]`, `[messages]`, test knobs) as a
//! TOML table and write the file with [`Rig::write_engine_config`]; the engine then
//! loads it like any operator's file (`fanfare::config::Config::load`), so every
//! caller exercises the real config path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::apns::{self, Credentials, MockApns};
use super::fcm::{self, MockFcm};
use super::push_kit::{self, MockPushKit};
use super::tls::TestCa;
use super::vendor::{self, MockOem, VendorPush};
use super::{honor, huawei, oppo, vivo, webpush, xiaomi};

/// The APNs topic (bundle id) the mock APNs expects and the engine is given.
pub const TOPIC: &str = "com.example.chat";
/// The Android package name the Xiaomi mock expects.
pub const PACKAGE: &str = "com.example.chat";
/// The notification channel written for the vendors that take one.
pub const CHANNEL: &str = "chat";

/// Which mocks a [`Rig`] starts and how the engine is told to use them.
#[derive(Clone, Debug)]
pub struct Options {
    /// Start mock FCM (with its OAuth token endpoint) and configure `[fcm]`.
    pub fcm: bool,
    /// Give APNs sandbox its own mock; otherwise both environments share one.
    pub apns_sandbox: bool,
    /// Start Huawei, Honor, Xiaomi, OPPO, vivo and Web Push and configure them.
    pub vendors: bool,
    /// Pushes (and rejections) each mock keeps; counting goes on past it.
    pub record_limit: usize,
    /// The engine's connections to APNs and FCM; `None` keeps the engine's default.
    pub connections: Option<usize>,
    /// Delay every mock adds before each answer (a slow vendor).
    pub latency: Duration,
    /// Further bundle ids the APNs mocks accept besides [`TOPIC`] (several apps of
    /// one team, signed with the same key).
    pub apns_other_topics: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fcm: true,
            apns_sandbox: false,
            vendors: false,
            record_limit: usize::MAX,
            connections: None,
            latency: Duration::ZERO,
            apns_other_topics: Vec::new(),
        }
    }
}

/// The Chinese OEM and Web Push mocks.
pub struct Vendors {
    pub huawei: MockPushKit<huawei::Huawei>,
    pub honor: MockPushKit<honor::Honor>,
    pub xiaomi: MockOem<xiaomi::Xiaomi>,
    pub oppo: MockOem<oppo::Oppo>,
    pub vivo: MockOem<vivo::Vivo>,
    pub webpush: MockOem<webpush::Webpush>,
}

impl Vendors {
    fn start(ca: &TestCa, common: &vendor::Common) -> anyhow::Result<Vendors> {
        Ok(Vendors {
            huawei: push_kit::start(ca, common.clone())?,
            honor: push_kit::start(ca, common.clone())?,
            xiaomi: xiaomi::start(ca, PACKAGE, common.clone())?,
            oppo: oppo::start(ca, common.clone())?,
            vivo: vivo::start(ca, common.clone())?,
            webpush: webpush::start(ca, common.clone())?,
        })
    }

    /// The engine's sections for these mocks.
    fn config(&self, ca_file: &Path, vapid_file: &Path) -> serde_json::Value {
        let (h, o, x, p, v) = (
            self.huawei.dialect(),
            self.honor.dialect(),
            self.xiaomi.dialect(),
            self.oppo.dialect(),
            self.vivo.dialect(),
        );
        json!({
            "huawei": {"app_id": h.app.app_id, "client_secret": h.app.client_secret,
                       "endpoint": self.huawei.url(), "token_endpoint": self.huawei.token_endpoint(),
                       "channel_id": CHANNEL, "ca_file": ca_file},
            "honor": {"app_id": o.app.app_id, "client_id": o.app.client_id, "client_secret": o.app.client_secret,
                      "endpoint": self.honor.url(), "token_endpoint": self.honor.token_endpoint(),
                      "ca_file": ca_file},
            "xiaomi": {"app_secret": x.app_secret, "package_name": PACKAGE,
                       "endpoint": self.xiaomi.url(), "channel_id": CHANNEL, "ca_file": ca_file},
            "oppo": {"app_key": p.app_key, "master_secret": p.master_secret,
                     "endpoint": self.oppo.url(), "endpoint_intl": self.oppo.url(),
                     "channel_id": CHANNEL, "ca_file": ca_file},
            "vivo": {"app_id": v.app_id.to_string(), "app_key": v.app_key, "app_secret": v.app_secret,
                     "endpoint": self.vivo.url(), "ca_file": ca_file},
            "webpush": {"vapid_private_key_file": vapid_file, "subject": "mailto:ops@example.com",
                        "ca_file": ca_file},
        })
    }

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

    /// Every kept push, mock by mock in the order of [`Vendors::counts`].
    pub fn received(&self) -> Vec<VendorPush> {
        let mut all = self.huawei.received();
        all.extend(self.honor.received());
        all.extend(self.xiaomi.received());
        all.extend(self.oppo.received());
        all.extend(self.vivo.received());
        all.extend(self.webpush.received());
        all
    }

    /// Rejected requests over the six mocks.
    pub fn rejections(&self) -> usize {
        self.huawei.rejections().len()
            + self.honor.rejections().len()
            + self.xiaomi.rejections().len()
            + self.oppo.rejections().len()
            + self.vivo.rejections().len()
            + self.webpush.rejections().len()
    }
}

/// Running mocks plus the engine's vendor sections for them. Dropping it stops them.
pub struct Rig {
    /// The CA that signed every mock's certificate (clients of the mocks trust it).
    pub ca: TestCa,
    /// The CA as a PEM file, what the engine's `ca_file` keys name.
    pub ca_file: PathBuf,
    /// The APNs signing key the mock trusts and the engine signs with.
    pub creds: Credentials,
    /// APNs production (and sandbox, unless [`Options::apns_sandbox`]).
    pub apns: MockApns,
    pub apns_sandbox: Option<MockApns>,
    pub fcm: Option<MockFcm>,
    pub vendors: Option<Vendors>,
    /// The engine's vendor sections.
    config: toml::Table,
}

impl Rig {
    /// Starts the chosen mocks (inside a Tokio runtime) and writes their CA and keys
    /// into `dir`, which must outlive the engine that reads them.
    pub fn start(dir: &Path, options: &Options) -> anyhow::Result<Rig> {
        let ca = TestCa::generate()?;
        let ca_file = ca.write_ca_file(dir)?;
        let creds = Credentials::generate()?;
        let key_file = creds.write_key_file(dir)?;
        let apns_config = apns::Config {
            topic: TOPIC.into(),
            other_topics: options.apns_other_topics.clone(),
            record_limit: options.record_limit,
            latency: options.latency,
            ..apns::Config::default()
        };
        let apns = MockApns::start(&ca, &creds, apns_config.clone())?;
        let apns_sandbox = options
            .apns_sandbox
            .then(|| MockApns::start(&ca, &creds, apns_config))
            .transpose()?;
        let defaults = fanfare::config::Config::default();
        let mut config = json!({
            "apns": {
                "key_file": key_file, "key_id": creds.key_id, "team_id": creds.team_id,
                "topic": TOPIC, "endpoint_production": apns.url(),
                "endpoint_sandbox": apns_sandbox.as_ref().unwrap_or(&apns).url(),
                "ca_file": ca_file,
                // Written out so that clients measured beside the engine use the same.
                "connections": options.connections.unwrap_or(defaults.apns.connections),
                "max_in_flight": defaults.apns.max_in_flight,
            },
            // The rule set tests and load runs name with `resources_id: "chat"`.
            "resources": {"chat": {
                "apns": {"thread_id": "chat"},
                "fcm": {"channel_id": "chat"},
                "huawei": {"importance": "NORMAL"},
                "xiaomi": {"channel_id": "chat"},
                "oppo": {"channel_id": "chat"},
                "vivo": {"category": "IM"},
                "webpush": {"urgency": "normal"},
            }},
        });
        let fcm = if options.fcm {
            let fcm = MockFcm::start(
                &ca,
                fcm::Config {
                    record_limit: options.record_limit,
                    latency: options.latency,
                    ..fcm::Config::default()
                },
            )?;
            let mut section = json!({
                "service_account_file": fcm.write_service_account(dir)?,
                "endpoint": fcm.url(), "ca_file": ca_file,
            });
            if let Some(connections) = options.connections {
                section["connections"] = connections.into();
            }
            config["fcm"] = section;
            Some(fcm)
        } else {
            None
        };
        let vendors = if options.vendors {
            let common = vendor::Common {
                record_limit: options.record_limit,
                latency: options.latency,
                ..vendor::Common::default()
            };
            let vendors = Vendors::start(&ca, &common)?;
            let vapid_file = dir.join("vapid.pem");
            std::fs::write(&vapid_file, webpush::generate_vapid_key_pem()?)
                .with_context(|| format!("write {}", vapid_file.display()))?;
            merge_json(&mut config, vendors.config(&ca_file, &vapid_file));
            Some(vendors)
        } else {
            None
        };
        let config = toml::Table::try_from(&config)
            .context("the engine's vendor sections are a TOML table")?;
        Ok(Rig {
            ca,
            ca_file,
            creds,
            apns,
            apns_sandbox,
            fcm,
            vendors,
            config,
        })
    }

    /// The mock FCM; panics unless started with [`Options::fcm`].
    pub fn fcm(&self) -> &MockFcm {
        self.fcm.as_ref().expect("the rig was started with fcm")
    }

    /// The engine's vendor sections for these mocks.
    pub fn engine_config(&self) -> &toml::Table {
        &self.config
    }

    /// Writes the engine's config file to `path`: the vendor sections with `more` (a
    /// JSON object of sections) merged over them; a table in both is merged key by
    /// key, `more` winning.
    pub fn write_engine_config(&self, path: &Path, more: &serde_json::Value) -> anyhow::Result<()> {
        let more = toml::Table::try_from(more).context("the engine config is a TOML table")?;
        self.write_merged(path, more)
    }

    /// [`Rig::write_engine_config`] with `more` as TOML text.
    pub fn write_engine_config_toml(&self, path: &Path, more: &str) -> anyhow::Result<()> {
        let more = toml::from_str(more).context("the engine config is valid TOML")?;
        self.write_merged(path, more)
    }

    fn write_merged(&self, path: &Path, more: toml::Table) -> anyhow::Result<()> {
        let mut table = self.config.clone();
        merge_toml(&mut table, more);
        let text = toml::to_string(&table).context("the engine config serializes")?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
    }

    /// The engine's APNs connections and streams in flight, as written.
    pub fn apns_limits(&self) -> (usize, usize) {
        let get = |key: &str| {
            self.config["apns"][key]
                .as_integer()
                .and_then(|v| usize::try_from(v).ok())
                .expect("the rig writes the APNs limits")
        };
        (get("connections"), get("max_in_flight"))
    }

    /// Pushes received by every mock so far.
    pub fn received_total(&self) -> u64 {
        let apns = self.apns.received_count()
            + self
                .apns_sandbox
                .as_ref()
                .map_or(0, MockApns::received_count);
        let fcm = self.fcm.as_ref().map_or(0, MockFcm::received_count);
        let vendors: usize = self
            .vendors
            .as_ref()
            .map_or(0, |v| v.counts().iter().map(|c| c.1).sum());
        (apns + fcm + vendors) as u64
    }

    /// Answers other than success the mocks gave (bad token, bad auth, bad body, ...).
    pub fn rejections(&self) -> u64 {
        let apns = self.apns.rejections().len()
            + self
                .apns_sandbox
                .as_ref()
                .map_or(0, |m| m.rejections().len());
        let fcm = self.fcm.as_ref().map_or(0, |m| m.rejections().len());
        let vendors = self.vendors.as_ref().map_or(0, Vendors::rejections);
        (apns + fcm + vendors) as u64
    }
}

fn merge_json(into: &mut serde_json::Value, more: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
}

/// Merges `more` into `into`: tables present in both are merged, other values replaced.
fn merge_toml(into: &mut toml::Table, more: toml::Table) {
    for (key, value) in more {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge_toml(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_engine_loads_the_config_the_rig_writes_for_every_mock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rig = Rig::start(
            dir.path(),
            &Options {
                apns_sandbox: true,
                vendors: true,
                connections: Some(2),
                ..Options::default()
            },
        )
        .expect("rig starts");
        let more = "[api]\nlisten = \"127.0.0.1:0\"\n[storage]\ndurability = \"none\"\n\
                    [apns]\nmax_in_flight = 7\n";
        let path = dir.path().join("engine.toml");
        rig.write_engine_config_toml(&path, more)
            .expect("config written");
        let config =
            fanfare::config::Config::load(Some(&path), Vec::new()).expect("engine loads it");
        assert_eq!(config.apns.endpoint_production, rig.apns.url());
        let sandbox = rig.apns_sandbox.as_ref().expect("sandbox mock started");
        assert_eq!(config.apns.endpoint_sandbox, sandbox.url());
        assert_eq!(config.fcm.endpoint, rig.fcm().url());
        let vendors = rig.vendors.as_ref().expect("vendors started");
        assert_eq!(config.huawei.endpoint, vendors.huawei.url());
        assert_eq!(config.vivo.endpoint, vendors.vivo.url());
        let written: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).expect("config readable"))
                .expect("TOML");
        assert_eq!(written["apns"]["connections"].as_integer(), Some(2));
        assert_eq!(written["fcm"]["connections"].as_integer(), Some(2));
        assert_eq!(
            written["apns"]["max_in_flight"].as_integer(),
            Some(7),
            "more wins"
        );
        assert_eq!(rig.apns_limits().0, 2);
    }
}
