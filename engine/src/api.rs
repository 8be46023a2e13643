//! The sidecar HTTP API of API.md: HTTP/1.1 and h2c (prior knowledge) on one port.
//!
//! - [`server`]: accept loop (backoff on failures), timeouts, HTTP/2 limits, graceful stop.
//! - [`connections`]: the connection cap that sheds the idle; request-body budgets.
//! - [`http_errors`]: hyper's own error answers rewritten into the JSON error.
//! - [`routes`]: routing, auth, body reading and limits, and the handlers.
//! - [`wire`]: request bodies and their validation.
//! - [`error`]: the JSON error answer.
//! - [`openapi`]: the OpenAPI 3.1 document of the API, derived from [`wire`].
//! - [`console`]: the operator's web console (`/console`) and the redacted running
//!   configuration it shows (`GET /v1/admin/config`).

pub mod connections;
pub mod console;
pub mod error;
pub mod http_errors;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod wire;

#[cfg(test)]
mod tests;
