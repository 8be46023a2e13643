//! The HTTP/2 client side: long-lived, multiplexed vendor connections.
//!
//! - [`tls`]: rustls client configs (system roots plus an optional extra CA file).
//! - [`pool`]: a fixed number of h2 connections per vendor endpoint, each carrying
//!   many concurrent streams up to the server's `SETTINGS_MAX_CONCURRENT_STREAMS`,
//!   re-established on GOAWAY or error; streams the server provably did not process
//!   are retried once on a fresh connection.
//! - [`auto`]: a pooled client for vendors that may not speak HTTP/2: HTTP/2 where
//!   the server offers it (ALPN), keep-alive HTTP/1.1 otherwise.
//!
//! Both clients bound every phase of reaching a vendor: establishing a connection
//! (TCP connect, TLS handshake, and in the pool the HTTP/2 SETTINGS exchange) by
//! `[transport] connect_timeout_ms`, the request by `request_timeout_ms`. A failed or
//! timed-out connect is a provably unprocessed request (resent elsewhere or later),
//! backs the endpoint off, and is logged once per outage at warn level, naming the
//! phase that failed.

pub mod auto;
pub mod pool;
pub mod tls;

pub use pool::{Endpoint, Pool, Response};

/// A phase of establishing a vendor connection, named in errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TCP three-way handshake.
    Connect,
    /// The TLS handshake.
    Tls,
    /// The HTTP/2 preface and the server's SETTINGS.
    Http2,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "tcp connect",
            Phase::Tls => "tls handshake",
            Phase::Http2 => "http/2 handshake",
        })
    }
}
