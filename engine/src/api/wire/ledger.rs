//! The delivery ledger's answer (API.md, "Delivery ledger"), shared by the engine and
//! [`crate::client`]. Fields are in API.md's order.

use serde::{Deserialize, Serialize};

/// `GET /v1/messages/{message_id}` or `GET /v1/calls/{call_id}`: what happened to one
/// message or call. Exactly one of `message_id` and `call_id` is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// UNIX milliseconds at which the message or call was accepted.
    pub accepted_at_ms: u64,
    /// Device targets: queued ones plus those settled at once (`unconfigured`, and
    /// silent pushes to vendors without a silent type, counted as `rejected`); the
    /// outcomes add up to it.
    pub targets: u64,
    pub outcomes: Outcomes,
    /// At most 100 targets that did not end `delivered`.
    pub failures: Vec<FailedTarget>,
}

/// Targets by outcome; `pending` ones are still queued, in flight or waiting for a
/// retry, the others are final.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Outcomes {
    pub delivered: u64,
    pub pending: u64,
    pub token_dead: u64,
    pub rejected: u64,
    pub expired: u64,
    pub withdrawn: u64,
    pub unconfigured: u64,
}

/// One target that did not end `delivered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedTarget {
    pub push_id: String,
    #[schema(schema_with = crate::api::openapi::enums::provider)]
    pub provider: String,
    /// `token_dead`, `rejected`, `expired`, `withdrawn` or `unconfigured`.
    #[schema(schema_with = crate::api::openapi::enums::failure_outcome)]
    pub outcome: String,
    /// The vendor's HTTP status; `null` when it did not answer.
    pub status: Option<u16>,
    /// The vendor's reason (cut to 64 bytes), or why no answer came.
    pub reason: Option<String>,
}
