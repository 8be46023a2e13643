//! The engine's own sections: `[api]`, `[storage]`, `[presence]`, `[messages]`,
//! `[retry]`, `[breaker]` and `[transport]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Deserialize, PartialEq)]
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
    #[serde(deserialize_with = "super::units::secs")]
    pub shutdown_grace_s: Duration,
    /// Most open API connections. When they are all open, a new connection closes the
    /// one idle the longest (no request in flight) and is served; only when none is
    /// idle is the new one refused. Keep it below the open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// HTTP/1.1: a connection must deliver a complete request head (request line and
    /// headers) within this many milliseconds of opening or of its previous answer,
    /// else it is closed. This also closes keep-alive connections idle that long.
    #[serde(deserialize_with = "super::units::millis")]
    pub header_read_timeout_ms: Duration,
    /// A request body must arrive in full within this many milliseconds of its
    /// headers, else the answer is 408 and the connection is closed.
    #[serde(deserialize_with = "super::units::millis")]
    pub body_read_timeout_ms: Duration,
    /// A connection with no request in flight for this many milliseconds is closed
    /// (HTTP/2 with a GOAWAY). HTTP/1.1 connections are closed sooner by
    /// `header_read_timeout_ms`.
    #[serde(deserialize_with = "super::units::millis")]
    pub idle_timeout_ms: Duration,
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
            shutdown_grace_s: Duration::from_secs(10),
            max_connections: 4096,
            header_read_timeout_ms: Duration::from_millis(10_000),
            body_read_timeout_ms: Duration::from_millis(30_000),
            idle_timeout_ms: Duration::from_millis(60_000),
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Directory for the write-ahead log and snapshots.
    pub dir: PathBuf,
    /// `fsync` (ack after the fsync of its group commit), `batch` (fsync every few ms)
    /// or `none` (tests only).
    pub durability: Durability,
    /// With `durability = batch`: the longest time between fsyncs, in milliseconds.
    #[serde(deserialize_with = "super::units::millis")]
    pub fsync_interval_ms: Duration,
    /// Take a snapshot this often (seconds); 0 = only when the WAL grows past
    /// `wal_max_bytes` and at shutdown.
    #[serde(deserialize_with = "super::units::secs")]
    pub snapshot_interval_s: Duration,
    /// Take a snapshot once the write-ahead log has grown past this many bytes.
    pub wal_max_bytes: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./fanfare-data"),
            durability: Durability::Fsync,
            fsync_interval_ms: Duration::from_millis(5),
            snapshot_interval_s: Duration::from_secs(300),
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Messages {
    /// A repeated `message_id` within this many seconds is not pushed again.
    pub dedup_window_s: u64,
    /// How long a message push stays deliverable (APNs expiration, FCM TTL).
    pub ttl_s: u64,
    /// Device pushes that may wait per vendor before the API sheds load with 429.
    pub queue_capacity: usize,
    /// How long `GET /v1/messages/{id}` and `GET /v1/calls/{id}` answer after the
    /// message or call was accepted, in seconds (default: `dedup_window_s`); 0 turns
    /// the delivery ledger off.
    pub ledger_retention_s: Option<u64>,
}

impl Default for Messages {
    fn default() -> Self {
        Self {
            dedup_window_s: 600,
            ttl_s: 86_400,
            queue_capacity: 100_000,
            ledger_retention_s: None,
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
