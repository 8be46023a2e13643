//! End-to-end tests: the real engine on 127.0.0.1:0, driven through its HTTP API,
//! pushing over TLS + HTTP/2 to the mock vendors of `fanfare-loadgen`.
//!
//! One test binary; the harness lives in `e2e/harness.rs`.

#[path = "e2e/harness.rs"]
mod harness;

#[path = "e2e/api.rs"]
mod api;
#[path = "e2e/apps.rs"]
mod apps;
#[path = "e2e/calls.rs"]
mod calls;
#[path = "e2e/client.rs"]
mod client;
#[path = "e2e/delivery.rs"]
mod delivery;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/feedback.rs"]
mod feedback;
#[path = "e2e/hardening_api.rs"]
mod hardening_api;
#[path = "e2e/hardening_memory.rs"]
mod hardening_memory;
#[path = "e2e/hardening_transport.rs"]
mod hardening_transport;
#[path = "e2e/ledger.rs"]
mod ledger;
#[path = "e2e/notify.rs"]
mod notify;
#[path = "e2e/openapi.rs"]
mod openapi;
#[path = "e2e/options.rs"]
mod options;
#[path = "e2e/reload.rs"]
mod reload;
#[path = "e2e/telemetry.rs"]
mod telemetry;
#[path = "e2e/vendors.rs"]
mod vendors;
