//! In-process mock push vendors, speaking TLS + HTTP/2 on `127.0.0.1:0`.
//!
//! - [`tls`]: a throw-away test CA, the server certificate it signs, and matching
//!   rustls client/server configs (ALPN `h2` only).
//! - [`apns`]: Apple Push Notification service provider API (token auth, ES256 JWT).
//! - [`fcm`]: Firebase Cloud Messaging HTTP v1 plus the Google OAuth2 token endpoint
//!   it depends on, on one server.
//! - [`huawei`], [`honor`], [`xiaomi`], [`oppo`], [`vivo`]: the Chinese OEM push
//!   services with their auth endpoints (`VENDORS.md` §3); [`webpush`]: a Web Push
//!   service that decrypts every push and checks VAPID (§4). Each is a small
//!   `vendor::Dialect` (credentials, routes, checks, error bodies) under the one
//!   `vendor::Oem` mock (uniform handle, recorded pushes and refusals, scripted
//!   per-token answers). Huawei and Honor are one mock, [`push_kit::PushKit`], over a
//!   small `push_kit::Variant` each. OPPO and vivo serve HTTP/1.1 only; the others
//!   offer HTTP/2 and HTTP/1.1 by ALPN.
//! - `server` (private): the accept loop, HTTP/2 connection and stream serving, body
//!   collection, reply writing, recording and waiters shared by every vendor, and the
//!   hook points for fault injection.
//! - [`rig`]: the mocks a run or a test chooses, started together, and the engine's
//!   vendor config for them (CA, keys, endpoints) written once for loadgen, the e2e
//!   tests and the benches.
//! - [`faults`]: injected 429/503/500 answers, RST_STREAM, GOAWAY after N streams,
//!   connection drops mid-flight, idle timeouts, outages and latency, switchable while
//!   a mock runs (`mock.faults()`).
//!
//! Every mock is started with `start(..)` inside a Tokio runtime, returns a handle that
//! exposes what it received, and stops on `shutdown()` or when dropped. The wire
//! behaviour follows `VENDORS.md` §1 (APNs), §2 (FCM) and §5 (HTTP/2).

pub mod apns;
pub mod faults;
pub mod fcm;
pub mod honor;
pub mod huawei;
pub mod oppo;
pub mod push_kit;
pub mod rig;
mod server;
pub mod tls;
pub mod vendor;
pub mod vivo;
pub mod webpush;
pub mod xiaomi;

#[cfg(test)]
mod test_client;
