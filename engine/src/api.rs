//! The sidecar HTTP API of API.md: HTTP/1.1 and h2c (prior knowledge) on one port.
//!
//! - [`server`]: accept loop (TCP_NODELAY, connection cap, graceful stop).
//! - [`routes`]: routing, auth, body limits and the handlers.
//! - [`wire`]: request bodies and their validation.
//! - [`error`]: the JSON error answer.

pub mod error;
pub mod routes;
pub mod server;
pub mod wire;
