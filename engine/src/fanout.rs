//! From a message to device pushes.
//!
//! - [`usecase`]: the message and call use cases the API calls: dedup claim and
//!   release, rendering for the configured vendors, planning, admission.
//! - [`plan`]: resolve recipients, drop online ones (one bitset load each), collect the
//!   offline users' devices grouped by vendor lane, once per message.
//! - [`dispatch`]: bounded per-vendor lanes; admission is all-or-nothing per message so
//!   a full lane sheds the request (429) before anything is queued; workers send over
//!   the vendor's HTTP/2 pool and act on the verdict (dead tokens are unbound).
//! - [`dedup`]: the `message_id` idempotency window.
//! - [`ledger`]: what happened to each message and call, counted as its jobs end.

pub mod dedup;
pub mod dispatch;
pub mod ledger;
pub mod plan;
pub mod usecase;
