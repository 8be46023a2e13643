//! Configuration: TOML file, embedded defaults, `FANFARE_<SECTION>_<KEY>` overrides.
//!
//! [`Config`] mirrors the file (every field documented; unknown keys are errors).
//! [`Config::load`] reads a file (or nothing), applies environment overrides and
//! deserializes; [`Config::validate`] checks what serde cannot (addresses, files,
//! keys) once, into the typed [`Settings`] the engine runs on, or reports every
//! problem at once, which is what `fanfare check-config` prints. Secrets are read
//! from files and never appear in `Debug` output or errors.
//!
//! Files: the engine's sections ([`sections`]), the vendor sections with their shared
//! client knobs ([`vendors`]), the engine's checks ([`problems`]), the checking of one
//! section into typed settings ([`check`]; each vendor checks its own keys with it)
//! and environment overrides ([`env`]).

mod apps;
mod check;
mod cluster;
mod env;
mod explain;
mod load;
mod problems;
mod resources;
mod sections;
mod units;
mod vendors;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use apps::{merged as merged_app_section, section_name as app_section_name, App};
pub use check::{Check, Filled, Needs};
pub use cluster::Cluster;
pub use resources::{ApnsRule, ChannelRule, FcmRule, PushKitRule, Resource, VivoRule, WebpushRule};
pub use sections::{
    Api, Breaker, Durability, LaneLimits, Messages, PresenceCfg, Retry, Storage, Transport,
};
pub use vendors::{Apns, Client, Fcm, Honor, Huawei, Oppo, Vivo, Webpush, Xiaomi};

use crate::providers::Lane;
pub use load::Loaded;

/// Every key of the file with its default and its documentation, as TOML: what
/// `fanfare config default` prints and the README's configuration reference. Tests
/// hold it to the format: it lists every key serde knows and sets each to its default.
pub const REFERENCE: &str = include_str!("config/reference.toml");

/// Sections besides the vendors' ([`Lane::name`]) that can be overridden from the
/// environment.
const SECTIONS: [&str; 10] = [
    "api",
    "log",
    "feedback",
    "storage",
    "presence",
    "messages",
    "retry",
    "breaker",
    "transport",
    "cluster",
];

/// Every section that can be overridden from the environment.
fn sections() -> impl Iterator<Item = &'static str> {
    SECTIONS.into_iter().chain(Lane::ALL.map(Lane::name))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The sidecar HTTP API.
    pub api: Api,
    /// Log format and the access log.
    pub log: crate::telemetry::logging::Log,
    /// Durable state (write-ahead log and snapshots).
    pub storage: Storage,
    /// Presence sessions.
    pub presence: PresenceCfg,
    /// Message handling.
    pub messages: Messages,
    /// Retries with backoff of pushes a vendor may still accept.
    pub retry: Retry,
    /// Per-vendor circuit breaker.
    pub breaker: Breaker,
    /// Vendor connections: timeouts, keep-alive PINGs, reconnect backoff.
    pub transport: Transport,
    /// Apple Push Notification service; absent key_file = APNs unconfigured.
    pub apns: Apns,
    /// Firebase Cloud Messaging HTTP v1; absent service_account_file = FCM unconfigured.
    pub fcm: Fcm,
    /// Huawei Push Kit v1; absent app_id = Huawei unconfigured.
    pub huawei: Huawei,
    /// Honor Push; absent app_id = Honor unconfigured.
    pub honor: Honor,
    /// Xiaomi MiPush; absent app_secret = Xiaomi unconfigured.
    pub xiaomi: Xiaomi,
    /// OPPO Push (HeyTap); absent app_key = OPPO unconfigured.
    pub oppo: Oppo,
    /// vivo Push; absent app_id = vivo unconfigured.
    pub vivo: Vivo,
    /// Standard Web Push (RFC 8030/8291/8292); absent vapid_private_key_file = unconfigured.
    pub webpush: Webpush,
    /// Named push rule sets, `[resources.<id>.<vendor>]`, selected by `push.resources_id`.
    pub resources: std::collections::BTreeMap<String, Resource>,
    /// The IM server's webhook for dead tokens and rejected pushes; absent url = off.
    pub feedback: crate::feedback::Section,
    /// Cluster mode over NATS JetStream; absent = one engine on its own log.
    pub cluster: Option<Cluster>,
    /// Further apps' credentials, `[apps.<app_id>.<vendor>]`, selected by a binding's
    /// `app_id`; unset keys inherit the top-level vendor section.
    pub apps: std::collections::BTreeMap<String, App>,
    /// Where this configuration was read from: what a reload reads again.
    #[serde(skip)]
    pub source: Source,
}

/// The file a [`Config`] was read from and the `FANFARE_*` overrides applied over it.
#[derive(Clone, Default)]
pub struct Source {
    pub path: Option<PathBuf>,
    /// The `FANFARE_*` variables (values may be secrets: never shown).
    pub env: Vec<(String, String)>,
    /// The file's keys with those overrides applied, as the running values were read
    /// from them: what `GET /v1/admin/config` shows over the defaults, redacted.
    /// Holds secrets: never shown as is.
    pub tree: toml::Table,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("env", &self.env.iter().map(|v| &v.0).collect::<Vec<_>>())
            .finish()
    }
}

/// What the engine runs on, validated once at start-up ([`Config::validate`]): typed
/// values (durations as `Duration`s), so no client reads or checks the raw file again.
#[derive(Debug, Default)]
pub struct Settings {
    /// Retries, circuit breaker and each lane's limits.
    pub delivery: crate::providers::Delivery,
    /// Each configured vendor's settings, its keys checked and credentials loaded.
    pub vendors: crate::providers::Settings,
    /// The `[resources]` rule sets, checked.
    pub resources: std::collections::BTreeMap<String, Resource>,
    /// The `[feedback]` webhook, when it has a `url`.
    pub feedback: Option<crate::feedback::Settings>,
}

/// A credential from the config file or environment: deserialized as a string, shown
/// as `<redacted>` in `Debug`, never formatted into errors or logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "string_or_int")] String);

/// Vendor ids and secrets are strings, but an environment override such as
/// `FANFARE_VIVO_APP_ID=10004` reads as a TOML integer: accept both.
fn string_or_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        I(i64),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::I(i) => i.to_string(),
    })
}

fn opt_string_or_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string_or_int(d).map(Some)
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for signing and request bodies only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Serialized only to merge an app's vendor table over the top-level section
/// ([`apps::merged`]); never into logs or answers.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A loaded private key (APNs `.p8`, VAPID) in validated settings: shown as
/// `<redacted>` in `Debug`, so the settings can derive it.
#[derive(Clone)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Config {
    /// Read `path` (or start from the embedded defaults) and apply `FANFARE_*`
    /// overrides from `env`; every problem at once ([`Config::read`]) is an error.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(var, _)| var.starts_with("FANFARE_"))
            .collect();
        let loaded = Self::read(path, env.iter().cloned())?;
        if loaded.problems.is_empty() {
            let mut config = loaded.config;
            config.source = Source {
                path: path.map(Path::to_path_buf),
                env,
                tree: loaded.tree,
            };
            Ok(config)
        } else {
            Err(Error::Invalid(loaded.problems))
        }
    }

    /// Like [`Config::load`], but a key with a problem is left at its default and the
    /// problem listed (each with its key path, and its line and column in the file or
    /// its environment variable), so `fanfare check-config` can list every problem,
    /// including those [`Config::problems`] finds in the rest. Only a file that cannot
    /// be read or is not TOML is an error.
    pub fn read(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, Error> {
        load::read(path, env)
    }

    /// Every problem, each a sentence naming its key: the engine's sections, then the
    /// vendors' (what `fanfare check-config` lists).
    pub fn problems(&self) -> Vec<String> {
        self.check().1
    }

    /// The typed settings the engine runs on, or every problem ([`Config::problems`]).
    pub fn validate(&self) -> Result<Settings, Error> {
        match self.check() {
            (settings, p) if p.is_empty() => Ok(settings),
            (_, p) => Err(Error::Invalid(p)),
        }
    }

    /// One pass over everything: the settings, and the problems found on the way.
    fn check(&self) -> (Settings, Vec<String>) {
        let mut p = self.engine_problems();
        resources::problems(&self.resources, &mut p);
        apps::problems(self.apps.keys(), &mut p);
        let vendors = crate::providers::Settings::check(self, &mut p);
        let feedback = crate::feedback::Settings::check(&self.feedback, &self.transport, &mut p);
        let settings = Settings {
            feedback,
            delivery: crate::providers::Delivery::from_config(self),
            vendors,
            resources: self.resources.clone(),
        };
        (settings, p)
    }

    /// Concurrency and pace of each vendor lane, by section name, in lane order.
    pub fn lane_limits(&self) -> [(&'static str, LaneLimits); Lane::COUNT] {
        Lane::ALL.map(|l| (l.name(), l.limits(self)))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.api
            .listen
            .parse()
            .expect("validated by Config::validate")
    }
}

#[cfg(test)]
pub(crate) mod tests;
