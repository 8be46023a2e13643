//! Fanfare load generator and mock vendor push servers.
//!
//! # Architecture
//!
//! - [`mock`]: faithful TLS + HTTP/2 mocks of the push vendors (APNs, FCM HTTP v1 with
//!   its OAuth2 token endpoint). End-to-end tests, benches and load runs point the
//!   engine's configurable vendor URLs at them and trust their test CA
//!   ([`mock::tls::TestCa`]). Each mock checks what the real vendor checks, answers
//!   the vendor's status codes and error bodies, records what it accepted, and can be
//!   told per device token to answer dead-token errors.
//!
//! - [`nats`]: real `nats-server` processes (one, or a JetStream cluster of three) for
//!   cluster mode's tests and load runs.
//!
//! Data flows engine → (TLS, ALPN `h2`) → `mock::server` (shared accept loop, one task
//! per connection, one task per stream) → the vendor module's validation
//! (`mock::apns`, `mock::fcm`) → a recorded push or a vendor rejection → back to the
//! engine as the vendor's exact wire answer.

pub mod mock;
pub mod nats;
