//! Configuration: TOML file, embedded defaults, `FANFARE_<SECTION>_<KEY>` overrides.
//!
//! [`Config`] mirrors the file (every field documented; unknown keys are errors).
//! [`Config::load`] reads a file (or nothing), applies environment overrides and
//! deserializes; [`Config::validate`] checks what serde cannot (addresses, files,
//! keys) and reports every problem at once, which is what `fanfare check-config`
//! prints. Secrets are read from files and never appear in `Debug` output or errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::providers::Lane;

/// Sections besides the vendors' ([`Lane::name`]) that can be overridden from the
/// environment.
const SECTIONS: [&str; 7] = [
    "api",
    "storage",
    "presence",
    "messages",
    "retry",
    "breaker",
    "transport",
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
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {message}")]
    Schema { message: String },
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The sidecar HTTP API.
    pub api: Api,
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

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Huawei {
    /// The AppId: OAuth `client_id` and the `{appId}` of the send path. Unset = Huawei
    /// not configured.
    #[serde(deserialize_with = "opt_string_or_int")]
    pub app_id: Option<String>,
    /// The AppSecret (OAuth `client_secret`).
    pub client_secret: Option<Secret>,
    /// Base URL of the Push Kit API (`/v1/{appId}/messages:send` is appended).
    pub endpoint: String,
    /// Full URL of the OAuth 2.0 client-credentials token endpoint.
    pub token_endpoint: String,
    /// `android.category` sent with every message (message classification; `IM` for
    /// chat), empty = not sent. [U]: Huawei's classification values change.
    pub category: String,
    /// `android.notification.channel_id` (the app's notification channel), if any.
    pub channel_id: Option<String>,
    /// Connections: HTTP/2 when the server offers it, else keep-alive HTTP/1.1.
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Extra trusted root certificates (PEM) for the API and the token endpoint.
    pub ca_file: Option<PathBuf>,
}

impl Default for Huawei {
    fn default() -> Self {
        Self {
            app_id: None,
            client_secret: None,
            endpoint: "https://push-api.cloud.huawei.com".into(),
            token_endpoint: "https://oauth-login.cloud.huawei.com/oauth2/v3/token".into(),
            category: "IM".into(),
            channel_id: None,
            connections: 4,
            max_in_flight: 1024,
            max_rps: 0,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Honor {
    /// The Honor app id (`{appId}` of the send path). Unset = Honor not configured.
    #[serde(deserialize_with = "opt_string_or_int")]
    pub app_id: Option<String>,
    /// OAuth `client_id` of the app.
    #[serde(deserialize_with = "opt_string_or_int")]
    pub client_id: Option<String>,
    /// OAuth `client_secret` of the app.
    pub client_secret: Option<Secret>,
    /// Base URL of the Honor push API (`/api/v1/{appId}/sendMessage` is appended).
    pub endpoint: String,
    /// Full URL of the client-credentials token endpoint. [U]: some clients use
    /// `https://hnoauth-login.cloud.honor.com/oauth2/v3/token`.
    pub token_endpoint: String,
    /// Body `code`s that mean every token of the request is dead. [U]
    pub dead_token_codes: Vec<i64>,
    /// Connections: HTTP/2 when the server offers it, else keep-alive HTTP/1.1.
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Extra trusted root certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

impl Default for Honor {
    fn default() -> Self {
        Self {
            app_id: None,
            client_id: None,
            client_secret: None,
            endpoint: "https://push-api.cloud.honor.com".into(),
            token_endpoint: "https://iam.developer.honor.com/auth/token".into(),
            dead_token_codes: vec![80300007],
            connections: 4,
            max_in_flight: 1024,
            max_rps: 0,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Xiaomi {
    /// The AppSecret, sent as `Authorization: key=<secret>`. Unset = not configured.
    pub app_secret: Option<Secret>,
    /// The Android package (`restricted_package_name`).
    pub package_name: Option<String>,
    /// Regional base URL: mainland `https://api.xmpush.xiaomi.com`; overseas hosts are
    /// `https://{ru,idmb,fr,sgp}-api.xmpush.global.xiaomi.com`.
    pub endpoint: String,
    /// `extra.channel_id` (the app's notification channel), if any.
    pub channel_id: Option<String>,
    /// Connections: HTTP/2 when the server offers it, else keep-alive HTTP/1.1.
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Extra trusted root certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

impl Default for Xiaomi {
    fn default() -> Self {
        Self {
            app_secret: None,
            package_name: None,
            endpoint: "https://api.xmpush.xiaomi.com".into(),
            channel_id: None,
            connections: 4,
            max_in_flight: 1024,
            max_rps: 0,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Oppo {
    /// The AppKey. Unset = OPPO not configured.
    #[serde(deserialize_with = "opt_string_or_int")]
    pub app_key: Option<String>,
    /// The MasterSecret (only used inside the SHA-256 auth sign).
    pub master_secret: Option<Secret>,
    /// Base URL for mainland registration ids (no `_`, `CN_<id>`, `<brand>_CN_<id>`).
    pub endpoint: String,
    /// Base URL for overseas registration ids.
    pub endpoint_intl: String,
    /// `notification.channel_id` (the app's notification channel), if any.
    pub channel_id: Option<String>,
    /// `notification.category` (message classification, e.g. `IM`), empty = not sent. [U]
    pub category: String,
    /// Business `code`s of a unicast answer that mean the registration id is dead. [U]
    pub dead_token_codes: Vec<i64>,
    /// Keep-alive connections (HTTP/2 if the server offers it).
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Extra trusted root certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

impl Default for Oppo {
    fn default() -> Self {
        Self {
            app_key: None,
            master_secret: None,
            endpoint: "https://api.push.oppomobile.com".into(),
            endpoint_intl: "https://api-intl.push.oppomobile.com".into(),
            channel_id: None,
            category: "IM".into(),
            dead_token_codes: vec![10000],
            connections: 8,
            max_in_flight: 1024,
            max_rps: 0,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vivo {
    /// The numeric AppID. Unset = vivo not configured.
    #[serde(deserialize_with = "opt_string_or_int")]
    pub app_id: Option<String>,
    /// The AppKey.
    #[serde(deserialize_with = "opt_string_or_int")]
    pub app_key: Option<String>,
    /// The AppSecret (only used inside the MD5 auth sign).
    pub app_secret: Option<Secret>,
    /// Base URL of the vivo push API.
    pub endpoint: String,
    /// `classification`: 0 operational, 1 system (IM messages need approval). [U]
    pub classification: u8,
    /// `pushMode`: 0 formal, 1 test. [U]
    pub push_mode: u8,
    /// `result` codes meaning the authToken is invalid or expired (re-auth, retry). [U]
    pub auth_error_codes: Vec<i64>,
    /// Keep-alive connections (HTTP/2 if the server offers it).
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Extra trusted root certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

impl Default for Vivo {
    fn default() -> Self {
        Self {
            app_id: None,
            app_key: None,
            app_secret: None,
            endpoint: "https://api-push.vivo.com.cn".into(),
            classification: 1,
            push_mode: 0,
            auth_error_codes: vec![10040, 10050],
            connections: 8,
            max_in_flight: 1024,
            max_rps: 0,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webpush {
    /// VAPID key: a PEM EC P-256 private key (PKCS#8 or SEC1). Unset = not configured.
    pub vapid_private_key_file: Option<PathBuf>,
    /// VAPID `sub` claim: a `mailto:` or `https:` contact (push services require it).
    pub subject: Option<String>,
    /// Connections per push-service origin (HTTP/2 when offered, else HTTP/1.1).
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Push-service origins with an open connection pool at once (least recently
    /// used beyond it are closed).
    pub max_origins: usize,
    /// Extra trusted root certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

impl Default for Webpush {
    fn default() -> Self {
        Self {
            vapid_private_key_file: None,
            subject: None,
            connections: 4,
            max_in_flight: 1024,
            max_rps: 0,
            max_origins: 64,
            ca_file: None,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Address to listen on (HTTP/1.1 and h2c on one port).
    pub listen: String,
    /// Bearer token every `/v1/...` request must carry; required off loopback. Use 16
    /// characters or more (the engine warns at start-up otherwise).
    pub token: Option<String>,
    /// Largest request body accepted, in bytes (larger → 413).
    pub max_body_bytes: usize,
    /// On SIGTERM/SIGINT, how long in-flight pushes may take to finish before the final
    /// snapshot and exit.
    pub shutdown_grace_s: u64,
    /// Most open API connections. When they are all open, a new connection closes the
    /// one idle the longest (no request in flight) and is served; only when none is
    /// idle is the new one refused. Keep it below the open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// HTTP/1.1: a connection must deliver a complete request head (request line and
    /// headers) within this many milliseconds of opening or of its previous answer,
    /// else it is closed. This also closes keep-alive connections idle that long.
    pub header_read_timeout_ms: u64,
    /// A request body must arrive in full within this many milliseconds of its
    /// headers, else the answer is 408 and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight for this many milliseconds is closed
    /// (HTTP/2 with a GOAWAY). HTTP/1.1 connections are closed sooner by
    /// `header_read_timeout_ms`.
    pub idle_timeout_ms: u64,
    /// Most concurrent requests (streams) on one HTTP/2 connection; the client is told
    /// in SETTINGS and further streams are refused.
    pub h2_max_concurrent_streams: u32,
    /// Request-body bytes one connection may hold in memory at once, all its requests
    /// together; a request that would go over gets 503 `overloaded`. At least
    /// `max_body_bytes`.
    pub max_connection_body_bytes: usize,
    /// Request-body bytes all connections together may hold in memory at once; a
    /// request that would go over gets 503 `overloaded`. At least
    /// `max_connection_body_bytes`.
    pub max_total_body_bytes: usize,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".into(),
            token: None,
            max_body_bytes: 1 << 20,
            shutdown_grace_s: 10,
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            h2_max_concurrent_streams: 256,
            max_connection_body_bytes: 16 << 20,
            max_total_body_bytes: 128 << 20,
        }
    }
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("shutdown_grace_s", &self.shutdown_grace_s)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout_ms", &self.header_read_timeout_ms)
            .field("body_read_timeout_ms", &self.body_read_timeout_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("h2_max_concurrent_streams", &self.h2_max_concurrent_streams)
            .field("max_connection_body_bytes", &self.max_connection_body_bytes)
            .field("max_total_body_bytes", &self.max_total_body_bytes)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Directory for the write-ahead log and snapshots.
    pub dir: PathBuf,
    /// `fsync` (ack after the fsync of its group commit), `batch` (fsync every few ms)
    /// or `none` (tests only).
    pub durability: Durability,
    /// With `durability = batch`: the longest time between fsyncs, in milliseconds.
    pub fsync_interval_ms: u64,
    /// Take a snapshot this often (seconds); 0 = only when the WAL grows past
    /// `wal_max_bytes` and at shutdown.
    pub snapshot_interval_s: u64,
    /// Take a snapshot once the write-ahead log has grown past this many bytes.
    pub wal_max_bytes: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./fanfare-data"),
            durability: Durability::Fsync,
            fsync_interval_ms: 5,
            snapshot_interval_s: 300,
            wal_max_bytes: 256 << 20,
        }
    }
}

/// A vendor lane's `max_in_flight` and `max_rps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneLimits {
    pub max_in_flight: usize,
    /// 0 = unpaced.
    pub max_rps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Fsync,
    Batch,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceCfg {
    /// TTL of a session whose event gives no `ttl_s`; 0 = sessions never expire.
    pub default_ttl_s: u64,
    /// Sessions one user may hold (1 to 256). An online event for a new session of a
    /// user at the limit evicts that user's least recently announced session.
    pub max_sessions_per_user: usize,
    /// How often (milliseconds, at least 10) a sweep starts releasing the ids of users
    /// nothing refers to any more (no binding, no session, no group membership), so
    /// ids seen in passing cost no memory and are not written to snapshots. A sweep
    /// looks only at users that lost a reference since the last one.
    pub user_sweep_interval_ms: u64,
}

impl Default for PresenceCfg {
    fn default() -> Self {
        Self {
            default_ttl_s: 0,
            max_sessions_per_user: crate::state::presence::DEFAULT_MAX_SESSIONS,
            user_sweep_interval_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Messages {
    /// A repeated `message_id` within this many seconds is not pushed again.
    pub dedup_window_s: u64,
    /// How long a message push stays deliverable (APNs expiration, FCM TTL).
    pub ttl_s: u64,
    /// Device pushes that may wait per vendor before the API sheds load with 429.
    pub queue_capacity: usize,
}

impl Default for Messages {
    fn default() -> Self {
        Self {
            dedup_window_s: 600,
            ttl_s: 86_400,
            queue_capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Apns {
    /// The `.p8` token-signing key (PKCS#8 PEM, P-256). Unset = APNs not configured.
    pub key_file: Option<PathBuf>,
    /// The 10-character Key ID of that key (JWT `kid`).
    pub key_id: Option<String>,
    /// The 10-character Team ID (JWT `iss`).
    pub team_id: Option<String>,
    /// Default `apns-topic` (bundle id) for bindings without an `app_id`.
    pub topic: Option<String>,
    /// Base URL for production bindings.
    pub endpoint_production: String,
    /// Base URL for sandbox bindings.
    pub endpoint_sandbox: String,
    /// HTTP/2 connections per endpoint.
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Extra trusted root certificates (PEM), e.g. a test CA.
    pub ca_file: Option<PathBuf>,
}

impl Default for Apns {
    fn default() -> Self {
        Self {
            key_file: None,
            key_id: None,
            team_id: None,
            topic: None,
            endpoint_production: "https://api.push.apple.com".into(),
            endpoint_sandbox: "https://api.sandbox.push.apple.com".into(),
            connections: 2,
            max_in_flight: 1024,
            max_rps: 0,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fcm {
    /// Google service-account key file (JSON); its `project_id`, `client_email`,
    /// `private_key` and `token_uri` are used as given. Unset = FCM not configured.
    pub service_account_file: Option<PathBuf>,
    /// Base URL of the FCM HTTP v1 API.
    pub endpoint: String,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Pushes in flight to this vendor at once (the lane's concurrency limit).
    pub max_in_flight: usize,
    /// Requests per second this lane may send (token bucket); 0 = unpaced. 429 answers
    /// that throttle the whole app shrink the pace further (AIMD) and it recovers
    /// additively.
    pub max_rps: u32,
    /// Extra trusted root certificates (PEM) for the API and the token URI.
    pub ca_file: Option<PathBuf>,
}

impl Default for Fcm {
    fn default() -> Self {
        Self {
            service_account_file: None,
            endpoint: "https://fcm.googleapis.com".into(),
            connections: 2,
            max_in_flight: 1024,
            // FCM's default project quota: 600,000 messages per minute (VENDORS.md §2.7).
            max_rps: 10_000,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Backoff ceiling of the first retry, in milliseconds; it doubles per attempt up to
    /// `max_ms` and the actual delay is uniform in [0, ceiling] (full jitter).
    pub base_ms: u64,
    /// Largest backoff ceiling, in milliseconds.
    pub max_ms: u64,
    /// Sends per push, the first included, before it counts as failed. Sends the
    /// vendor provably did not process (GOAWAY above the last stream id,
    /// REFUSED_STREAM, connect/TLS failure) do not count.
    pub max_attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            base_ms: 250,
            max_ms: 30_000,
            max_attempts: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    /// Consecutive failed sends to one vendor (5xx, timeouts, connection failures)
    /// that open its circuit: sending stops, pushes wait.
    pub failures: u32,
    /// How long an open circuit waits before one probe send, in milliseconds; doubles
    /// after each failed probe up to `max_open_ms`. A successful probe closes it.
    pub open_ms: u64,
    /// Longest wait between probes, in milliseconds.
    pub max_open_ms: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            failures: 20,
            open_ms: 200,
            max_open_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transport {
    /// Establishing a vendor connection — TCP connect, TLS handshake and, for HTTP/2,
    /// the server's SETTINGS — must finish within this many milliseconds, or the
    /// attempt fails as a connection failure: the push is resent (the vendor provably
    /// did not get it), the circuit breaker counts it, and the connection slot backs
    /// off before reconnecting. Without this bound an endpoint that accepts TCP but
    /// never answers would hold every push sent to it.
    pub connect_timeout_ms: u64,
    /// A vendor request without a complete answer after this many milliseconds fails
    /// (its fate is unknown; it counts as an attempt).
    pub request_timeout_ms: u64,
    /// PING an HTTP/2 connection that carried no request for this many seconds; 0 =
    /// never.
    pub ping_interval_s: u64,
    /// A PING not acknowledged within this many seconds closes the connection.
    pub ping_timeout_s: u64,
    /// After a failed connect, a connection slot waits before reconnecting: from 50 ms,
    /// doubling per failure up to this many milliseconds.
    pub connect_backoff_max_ms: u64,
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            ping_interval_s: 30,
            ping_timeout_s: 10,
            connect_backoff_max_ms: 5_000,
        }
    }
}

impl Config {
    /// Read `path` (or start from the embedded defaults) and apply `FANFARE_*`
    /// overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let mut root = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| Error::Syntax {
                    path: path.to_path_buf(),
                    message: e.message().to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut root, env)?;
        serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
            let key = e.path().to_string();
            Error::Schema {
                message: explain(&key, e.inner()),
            }
        })
    }

    /// Every semantic problem, each as a sentence naming the key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.api.listen.parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() && self.api.token.as_deref().unwrap_or("").is_empty() {
                    p.push(format!(
                        "api.listen is {addr}, not a loopback address: set api.token so the API is not open to the network"
                    ));
                }
            }
            Err(_) => p.push(format!(
                "api.listen {:?} is not an IP:port address (for example 127.0.0.1:7070)",
                self.api.listen
            )),
        }
        if self.api.token.as_deref() == Some("") {
            p.push("api.token is empty; remove it or set a secret".into());
        }
        self.api_problems(&mut p);
        let limit = crate::state::presence::MAX_SESSIONS_LIMIT;
        if !(1..=limit).contains(&self.presence.max_sessions_per_user) {
            p.push(format!(
                "presence.max_sessions_per_user must be between 1 and {limit}, not {}",
                self.presence.max_sessions_per_user
            ));
        }
        if self.presence.user_sweep_interval_ms < 10 {
            p.push("presence.user_sweep_interval_ms must be at least 10".into());
        }
        if self.messages.queue_capacity == 0 {
            p.push("messages.queue_capacity must be at least 1".into());
        }
        if self.messages.ttl_s == 0 {
            p.push("messages.ttl_s must be at least 1".into());
        }
        let r = &self.retry;
        if r.base_ms == 0 || r.max_ms < r.base_ms {
            p.push(
                "retry.base_ms must be at least 1 and retry.max_ms at least retry.base_ms".into(),
            );
        }
        if r.max_attempts == 0 {
            p.push("retry.max_attempts must be at least 1".into());
        }
        let b = &self.breaker;
        if b.failures == 0 || b.open_ms == 0 || b.max_open_ms < b.open_ms {
            p.push("breaker.failures and breaker.open_ms must be at least 1, breaker.max_open_ms at least breaker.open_ms".into());
        }
        let t = &self.transport;
        if t.request_timeout_ms < 10 {
            p.push("transport.request_timeout_ms must be at least 10".into());
        }
        if t.connect_timeout_ms < 10 {
            p.push("transport.connect_timeout_ms must be at least 10".into());
        }
        if t.ping_interval_s > 0 && t.ping_timeout_s == 0 {
            p.push("transport.ping_timeout_s must be at least 1 when pings are on".into());
        }
        if t.connect_backoff_max_ms < 50 {
            p.push("transport.connect_backoff_max_ms must be at least 50".into());
        }
        for (name, in_flight) in self.lane_limits().map(|(n, l)| (n, l.max_in_flight)) {
            if !(1..=65_536).contains(&in_flight) {
                p.push(format!(
                    "{name}.max_in_flight must be between 1 and 65536, not {in_flight}"
                ));
            }
        }
        // APNs
        let a = &self.apns;
        if a.key_file.is_some() {
            for (key, v) in [
                ("key_id", &a.key_id),
                ("team_id", &a.team_id),
                ("topic", &a.topic),
            ] {
                if v.as_deref().unwrap_or("").is_empty() {
                    p.push(format!("apns.{key} is required when apns.key_file is set"));
                }
            }
            if let Some(path) = &a.key_file {
                if let Err(e) = crate::providers::apns::auth::load_key(path) {
                    p.push(format!("apns.key_file: {e}"));
                }
            }
        } else if a.key_id.is_some() || a.team_id.is_some() {
            p.push("apns.key_id/team_id are set but apns.key_file is not".into());
        }
        check_endpoint(&mut p, "apns.endpoint_production", &a.endpoint_production);
        check_endpoint(&mut p, "apns.endpoint_sandbox", &a.endpoint_sandbox);
        check_connections(&mut p, "apns.connections", a.connections);
        check_ca(&mut p, "apns.ca_file", a.ca_file.as_deref());
        // FCM
        let f = &self.fcm;
        if let Some(path) = &f.service_account_file {
            if let Err(e) = crate::providers::fcm::auth::ServiceAccount::load(path) {
                p.push(format!("fcm.service_account_file: {e}"));
            }
        }
        check_endpoint(&mut p, "fcm.endpoint", &f.endpoint);
        check_connections(&mut p, "fcm.connections", f.connections);
        check_ca(&mut p, "fcm.ca_file", f.ca_file.as_deref());
        self.vendor_problems(&mut p);
        p
    }

    /// Problems of the `[api]` limits and timeouts.
    fn api_problems(&self, p: &mut Vec<String>) {
        let a = &self.api;
        if a.max_body_bytes < 1024 {
            p.push("api.max_body_bytes must be at least 1024".into());
        }
        if !(1..=1_000_000).contains(&a.max_connections) {
            p.push(format!(
                "api.max_connections must be between 1 and 1000000, not {}",
                a.max_connections
            ));
        }
        for (key, ms) in [
            ("header_read_timeout_ms", a.header_read_timeout_ms),
            ("body_read_timeout_ms", a.body_read_timeout_ms),
            ("idle_timeout_ms", a.idle_timeout_ms),
        ] {
            if !(100..=86_400_000).contains(&ms) {
                p.push(format!(
                    "api.{key} must be between 100 and 86400000 milliseconds, not {ms}"
                ));
            }
        }
        if !(1..=65_536).contains(&a.h2_max_concurrent_streams) {
            p.push(format!(
                "api.h2_max_concurrent_streams must be between 1 and 65536, not {}",
                a.h2_max_concurrent_streams
            ));
        }
        if a.max_connection_body_bytes < a.max_body_bytes {
            p.push(format!(
                "api.max_connection_body_bytes ({}) must be at least api.max_body_bytes ({})",
                a.max_connection_body_bytes, a.max_body_bytes
            ));
        }
        if a.max_total_body_bytes < a.max_connection_body_bytes {
            p.push(format!(
                "api.max_total_body_bytes ({}) must be at least api.max_connection_body_bytes ({})",
                a.max_total_body_bytes, a.max_connection_body_bytes
            ));
        }
        // Body budgets are semaphores of bytes; tokio caps a semaphore's permits.
        if a.max_total_body_bytes > tokio::sync::Semaphore::MAX_PERMITS {
            p.push("api.max_total_body_bytes is too large".into());
        }
    }

    /// Problems of the Huawei, Honor, Xiaomi, OPPO, vivo and Web Push sections.
    fn vendor_problems(&self, p: &mut Vec<String>) {
        fn need(p: &mut Vec<String>, section: &str, on: &str, key: &str, set: bool) {
            if !set {
                p.push(format!(
                    "{section}.{key} is required when {section}.{on} is set"
                ));
            }
        }
        let filled = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let secret = |v: &Option<Secret>| v.as_ref().is_some_and(|s| !s.0.is_empty());
        let h = &self.huawei;
        if h.app_id.is_some() {
            need(
                p,
                "huawei",
                "app_id",
                "client_secret",
                secret(&h.client_secret),
            );
        } else if h.client_secret.is_some() {
            p.push("huawei.client_secret is set but huawei.app_id is not".into());
        }
        check_endpoint(p, "huawei.endpoint", &h.endpoint);
        check_url(p, "huawei.token_endpoint", &h.token_endpoint);
        check_connections(p, "huawei.connections", h.connections);
        check_ca(p, "huawei.ca_file", h.ca_file.as_deref());
        let o = &self.honor;
        if o.app_id.is_some() {
            need(p, "honor", "app_id", "client_id", filled(&o.client_id));
            need(
                p,
                "honor",
                "app_id",
                "client_secret",
                secret(&o.client_secret),
            );
        } else if o.client_secret.is_some() || o.client_id.is_some() {
            p.push("honor.client_id/client_secret are set but honor.app_id is not".into());
        }
        check_endpoint(p, "honor.endpoint", &o.endpoint);
        check_url(p, "honor.token_endpoint", &o.token_endpoint);
        check_connections(p, "honor.connections", o.connections);
        check_ca(p, "honor.ca_file", o.ca_file.as_deref());
        let x = &self.xiaomi;
        if x.app_secret.is_some() {
            need(
                p,
                "xiaomi",
                "app_secret",
                "package_name",
                filled(&x.package_name),
            );
            if !secret(&x.app_secret) {
                p.push("xiaomi.app_secret is empty".into());
            }
        } else if x.package_name.is_some() {
            p.push("xiaomi.package_name is set but xiaomi.app_secret is not".into());
        }
        check_endpoint(p, "xiaomi.endpoint", &x.endpoint);
        check_connections(p, "xiaomi.connections", x.connections);
        check_ca(p, "xiaomi.ca_file", x.ca_file.as_deref());
        let o = &self.oppo;
        if o.app_key.is_some() {
            need(
                p,
                "oppo",
                "app_key",
                "master_secret",
                secret(&o.master_secret),
            );
        } else if o.master_secret.is_some() {
            p.push("oppo.master_secret is set but oppo.app_key is not".into());
        }
        check_endpoint(p, "oppo.endpoint", &o.endpoint);
        check_endpoint(p, "oppo.endpoint_intl", &o.endpoint_intl);
        check_connections(p, "oppo.connections", o.connections);
        check_ca(p, "oppo.ca_file", o.ca_file.as_deref());
        let v = &self.vivo;
        if let Some(id) = &v.app_id {
            need(p, "vivo", "app_id", "app_key", filled(&v.app_key));
            need(p, "vivo", "app_id", "app_secret", secret(&v.app_secret));
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                p.push(format!("vivo.app_id {id:?} must be the numeric AppID"));
            }
        } else if v.app_key.is_some() || v.app_secret.is_some() {
            p.push("vivo.app_key/app_secret are set but vivo.app_id is not".into());
        }
        if v.classification > 1 {
            p.push("vivo.classification must be 0 (operational) or 1 (system)".into());
        }
        if v.push_mode > 1 {
            p.push("vivo.push_mode must be 0 (formal) or 1 (test)".into());
        }
        check_endpoint(p, "vivo.endpoint", &v.endpoint);
        check_connections(p, "vivo.connections", v.connections);
        check_ca(p, "vivo.ca_file", v.ca_file.as_deref());
        let w = &self.webpush;
        if let Some(path) = &w.vapid_private_key_file {
            if let Err(e) = crate::providers::webpush::vapid::load_key(path) {
                p.push(format!("webpush.vapid_private_key_file: {e}"));
            }
            match w.subject.as_deref() {
                Some(s) if s.starts_with("mailto:") || s.starts_with("https:") => {}
                _ => p.push(
                    "webpush.subject is required with a VAPID key: a mailto: or https: contact"
                        .into(),
                ),
            }
        }
        check_connections(p, "webpush.connections", w.connections);
        if w.max_origins == 0 {
            p.push("webpush.max_origins must be at least 1".into());
        }
        check_ca(p, "webpush.ca_file", w.ca_file.as_deref());
    }

    /// `Ok` when [`Config::problems`] is empty.
    pub fn validate(&self) -> Result<(), Error> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(p))
        }
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

fn check_endpoint(p: &mut Vec<String>, key: &str, url: &str) {
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("https") | Some("http")) && u.host().is_some() => {
            if u.path() != "/" && !u.path().is_empty() {
                p.push(format!("{key} {url:?} must be a base URL without a path"));
            }
        }
        _ => p.push(format!(
            "{key} {url:?} is not an http(s) URL with a host, such as https://api.push.apple.com"
        )),
    }
}

fn check_url(p: &mut Vec<String>, key: &str, url: &str) {
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("https") | Some("http")) && u.host().is_some() => {}
        _ => p.push(format!("{key} {url:?} is not an http(s) URL with a host")),
    }
}

fn check_connections(p: &mut Vec<String>, key: &str, n: usize) {
    if !(1..=64).contains(&n) {
        p.push(format!("{key} must be between 1 and 64, not {n}"));
    }
}

fn check_ca(p: &mut Vec<String>, key: &str, path: Option<&Path>) {
    if let Some(path) = path {
        if let Err(e) = crate::transport::tls::read_ca_file(path) {
            p.push(format!("{key}: {e}"));
        }
    }
}

/// Whether the value of `key` (a dotted path such as `api.token`) is a credential,
/// never to be printed: tokens and secrets.
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last == "token" || last.contains("secret") || last.contains("password")
}

/// A deserialization error of `key` as a sentence naming the key; for a secret, without
/// serde's message, which quotes the value.
fn explain(key: &str, e: &toml::de::Error) -> String {
    if key.is_empty() || key == "." {
        e.message().to_string()
    } else if is_secret(key) {
        format!("{key}: invalid value (not shown: it is a secret)")
    } else {
        format!("{key}: {}", e.message())
    }
}

/// Whether `[section] key = value` deserializes; the error says why not.
fn check_key(section: &str, key: &str, value: toml::Value) -> Result<(), toml::de::Error> {
    let mut keys = toml::Table::new();
    keys.insert(key.to_string(), value);
    let mut root = toml::Table::new();
    root.insert(section.to_string(), toml::Value::Table(keys));
    Config::deserialize(toml::Value::Table(root)).map(drop)
}

/// Apply `FANFARE_<SECTION>_<KEY>=value` overrides. A value is taken as the string it
/// is wherever the key accepts a string (so an all-digit token stays a string);
/// otherwise it is read as a TOML value (number, boolean, array). An override that
/// fits neither is an error naming the variable and the key, never a secret's value.
fn apply_env(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), Error> {
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("FANFARE_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some(section) = sections().find(|s| rest.len() > s.len() && rest.starts_with(s) && rest.as_bytes()[s.len()] == b'_') else {
            if rest == "log" {
                continue; // FANFARE_LOG is the log filter, not a config key
            }
            return Err(Error::Env {
                var,
                message: format!(
                    "unknown section; expected one of {}",
                    sections().collect::<Vec<_>>().join(", ")
                ),
            });
        };
        let key = &rest[section.len() + 1..];
        let as_toml = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table());
        let raw = toml::Value::String(value);
        let parsed = match check_key(section, key, raw.clone()) {
            Ok(()) => raw,
            Err(as_string) => match as_toml {
                Some(v) => match check_key(section, key, v.clone()) {
                    Ok(()) => v,
                    Err(e) => {
                        return Err(Error::Env {
                            var,
                            message: explain(&format!("{section}.{key}"), &e),
                        })
                    }
                },
                None => {
                    return Err(Error::Env {
                        var,
                        message: explain(&format!("{section}.{key}"), &as_string),
                    })
                }
            },
        };
        let table = root
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(table) = table.as_table_mut() else {
            return Err(Error::Env {
                var,
                message: format!("[{section}] in the file is not a table"),
            });
        };
        table.insert(key.to_string(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.api.listen, "127.0.0.1:7070");
        assert_eq!(c.messages.dedup_window_s, 600);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    #[test]
    fn retry_breaker_transport_and_pace_keys() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.fcm.max_rps, 10_000, "FCM's 600k/min quota by default");
        assert_eq!(c.apns.max_rps, 0);
        assert_eq!(c.retry.max_attempts, 8);
        let env = vec![
            ("FANFARE_RETRY_BASE_MS".to_string(), "10".to_string()),
            ("FANFARE_RETRY_MAX_MS".into(), "5".into()),
            ("FANFARE_BREAKER_FAILURES".into(), "3".into()),
            ("FANFARE_TRANSPORT_PING_INTERVAL_S".into(), "0".into()),
            ("FANFARE_FCM_MAX_RPS".into(), "50".into()),
            ("FANFARE_VIVO_MAX_IN_FLIGHT".into(), "0".into()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.breaker.failures, 3);
        assert_eq!(c.transport.ping_interval_s, 0);
        assert_eq!(c.lane_limits()[1].1.max_rps, 50);
        let p = c.problems();
        assert!(p.iter().any(|m| m.contains("retry.max_ms")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("vivo.max_in_flight")), "{p:?}");
    }

    #[test]
    fn env_overrides_keys() {
        let env = vec![
            ("FANFARE_API_LISTEN".to_string(), "127.0.0.1:0".to_string()),
            ("FANFARE_MESSAGES_DEDUP_WINDOW_S".into(), "5".into()),
            ("FANFARE_APNS_TOPIC".into(), "com.x".into()),
            ("PATH".into(), "/bin".into()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.api.listen, "127.0.0.1:0");
        assert_eq!(c.messages.dedup_window_s, 5);
        assert_eq!(c.apns.topic.as_deref(), Some("com.x"));
    }

    #[test]
    fn vendor_sections_validate_and_hide_secrets() {
        let env = vec![
            ("FANFARE_HUAWEI_APP_ID".to_string(), "1234".to_string()),
            ("FANFARE_VIVO_APP_ID".into(), "abc".into()),
            ("FANFARE_XIAOMI_APP_SECRET".into(), "xs3cret".into()),
            ("FANFARE_XIAOMI_PACKAGE_NAME".into(), "com.x".into()),
            ("FANFARE_OPPO_CONNECTIONS".into(), "0".into()),
        ];
        let c = Config::load(None, env).unwrap();
        let p = c.problems();
        assert!(
            p.iter()
                .any(|m| m.contains("huawei.client_secret is required")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("vivo.app_id")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("oppo.connections")), "{p:?}");
        assert!(!p.iter().any(|m| m.contains("xiaomi")), "{p:?}");
        assert!(!format!("{c:?}").contains("xs3cret"));
    }

    #[test]
    fn an_all_digit_api_token_from_the_environment_is_a_string() {
        let env = vec![(
            "FANFARE_API_TOKEN".to_string(),
            "1234567890123456789".to_string(),
        )];
        let c = Config::load(None, env).expect("an all-digit token is a valid token");
        assert_eq!(c.api.token.as_deref(), Some("1234567890123456789"));
        // Numbers still read as numbers where the key is a number.
        let env = vec![("FANFARE_API_MAX_CONNECTIONS".to_string(), "12".to_string())];
        assert_eq!(Config::load(None, env).unwrap().api.max_connections, 12);
    }

    #[test]
    fn a_bad_secret_value_names_its_key_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fanfare.toml");
        for (toml, key) in [
            ("[api]\ntoken = [\"hunter2hunter2hunter2\"]\n", "api.token"),
            ("[api]\ntoken = 98765432109876\n", "api.token"),
            (
                "[xiaomi]\napp_secret = { v = \"hunter2hunter2hunter2\" }\n",
                "xiaomi.app_secret",
            ),
        ] {
            std::fs::write(&path, toml).unwrap();
            let e = Config::load(Some(&path), Vec::new())
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
            assert!(!e.contains("hunter2") && !e.contains("98765"), "{e}");
        }
        // A non-secret bad value is quoted, with its key.
        let env = vec![(
            "FANFARE_API_MAX_CONNECTIONS".to_string(),
            "many".to_string(),
        )];
        let e = Config::load(None, env).unwrap_err().to_string();
        assert!(
            e.contains("FANFARE_API_MAX_CONNECTIONS") && e.contains("api.max_connections"),
            "{e}"
        );
        assert!(e.contains("many"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_explained() {
        let env = vec![("FANFARE_API_LISTN".to_string(), "x".to_string())];
        let e = Config::load(None, env).unwrap_err().to_string();
        assert!(e.contains("listn"), "{e}");
        let env = vec![("FANFARE_API_LISTEN".to_string(), "0.0.0.0:80".to_string())];
        let c = Config::load(None, env).unwrap();
        let p = c.problems();
        assert!(p.iter().any(|m| m.contains("api.token")), "{p:?}");
    }
}
