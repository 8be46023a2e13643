//! The HTTP/2 client side: long-lived, multiplexed vendor connections.
//!
//! - [`tls`]: rustls client configs (system roots plus an optional extra CA file).
//! - [`pool`]: a fixed number of h2 connections per vendor endpoint, each carrying
//!   many concurrent streams up to the server's `SETTINGS_MAX_CONCURRENT_STREAMS`,
//!   re-established on GOAWAY or error; streams the server provably did not process
//!   are retried once on a fresh connection.
//! - [`auto`]: a pooled client for vendors that may not speak HTTP/2: HTTP/2 where
//!   the server offers it (ALPN), keep-alive HTTP/1.1 otherwise.

pub mod auto;
pub mod pool;
pub mod tls;

pub use pool::{Endpoint, Pool, Response};
