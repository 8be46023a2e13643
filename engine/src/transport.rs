//! The HTTP/2 client side: long-lived, multiplexed vendor connections.
//!
//! - [`tls`]: rustls client configs (system roots plus an optional extra CA file).
//! - [`pool`]: a fixed number of h2 connections per vendor endpoint, each carrying
//!   many concurrent streams up to the server's `SETTINGS_MAX_CONCURRENT_STREAMS`,
//!   re-established on GOAWAY or error; streams the server provably did not process
//!   are retried once on a fresh connection.

pub mod pool;
pub mod tls;

pub use pool::{Endpoint, Pool, Response};
