//! JSON response bodies of API.md, shared by the engine (which serializes them) and
//! [`crate::client`] (which deserializes them).
//!
//! Field order is alphabetical in every struct: the answers used to be built with
//! `json!`, whose map sorts its keys, and keeping that order keeps every body
//! byte-for-byte what it was. Optional fields that API.md shows as `null` are written
//! as `null`, never left out.

use serde::{Deserialize, Serialize};

/// `GET /healthz`, `GET /readyz`: `{"status": "ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
}

/// `PUT /v1/push-ids/{push_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bound {
    /// The user the push id belonged to before, when the bind moved it.
    pub previous_user_id: Option<String>,
    pub push_id: String,
    pub user_id: String,
}

/// `DELETE /v1/push-ids/{push_id}`: the binding removed and its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unbound {
    pub push_id: String,
    pub user_id: String,
}

/// `GET /v1/users/{user_id}/push-ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushIds {
    pub push_ids: Vec<BoundDevice>,
    pub user_id: String,
}

/// One binding of a user; the token is shown by its first characters only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BoundDevice {
    pub app_id: Option<String>,
    #[schema(schema_with = crate::api::openapi::enums::environment)]
    pub environment: String,
    #[schema(schema_with = crate::api::openapi::enums::provider)]
    pub provider: String,
    pub push_id: String,
    pub token_prefix: String,
}

/// `DELETE /v1/users/{user_id}/push-ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserRemoved {
    pub removed: usize,
    pub user_id: String,
}

/// `POST /v1/presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresenceApplied {
    pub applied: usize,
}

/// `GET /v1/presence/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresenceStatus {
    pub online: bool,
    pub sessions: usize,
    pub user_id: String,
}

/// `POST /v1/groups/{group_id}/members`, `GET /v1/groups/{group_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupSize {
    pub group_id: String,
    pub members: usize,
}

/// `DELETE /v1/groups/{group_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupDeleted {
    pub group_id: String,
}

/// `POST /v1/messages`: `202` accepted, or `200` for a repeated `message_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MessageAnswer {
    /// Listed first: a body with `duplicate` is never read as an acceptance.
    Duplicate(MessageDuplicate),
    Accepted(MessageAccepted),
}

impl MessageAnswer {
    /// The acceptance, unless the message was a repeat.
    pub fn accepted(&self) -> Option<&MessageAccepted> {
        match self {
            MessageAnswer::Accepted(a) => Some(a),
            MessageAnswer::Duplicate(_) => None,
        }
    }
}

/// `202` to `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageAccepted {
    pub message_id: String,
    /// Offline recipients skipped because of do-not-disturb (API 1.1).
    pub muted: usize,
    pub offline_recipients: usize,
    pub recipients: usize,
    /// Device pushes queued.
    pub targets: usize,
    /// Device targets whose vendor has no credentials, not queued (API 1.1).
    pub unconfigured: usize,
}

/// `200` to a repeated `POST /v1/messages`: nothing was pushed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageDuplicate {
    pub duplicate: bool,
    pub message_id: String,
}

/// `POST /v1/calls`: `202` accepted, or `200` for a repeated `call_id` (API 1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CallAnswer {
    /// Listed first: a body with `duplicate` is never read as an acceptance.
    Duplicate(CallDuplicate),
    Accepted(CallAccepted),
}

/// `202` to `POST /v1/calls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallAccepted {
    pub call_id: String,
    /// Always 0: do-not-disturb does not apply to calls (API 1.1).
    pub muted: usize,
    pub offline_invitees: usize,
    /// Device pushes queued.
    pub targets: usize,
    /// Device targets whose vendor has no credentials, not queued (API 1.1).
    pub unconfigured: usize,
}

/// `200` to a repeated `POST /v1/calls`: nothing rang again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallDuplicate {
    pub call_id: String,
    pub duplicate: bool,
}

/// `200` to `POST /v1/calls/{call_id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallCancelled {
    pub call_id: String,
    /// Cancellation pushes queued: one per device already sent the invitation.
    pub cancel_pushes: usize,
    /// Invitations dropped before they were sent.
    pub withdrawn: usize,
}

/// `POST /v1/debug/push`: the vendor's verdict on one push sent now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DebugVerdict {
    /// `delivered`, `retry`, `token_dead` or `rejected`.
    #[schema(schema_with = crate::api::openapi::enums::verdict_outcome)]
    pub outcome: String,
    #[schema(schema_with = crate::api::openapi::enums::provider)]
    pub provider: String,
    pub reason: Option<String>,
    /// The vendor's HTTP status; `null` when no answer came (transport failure).
    pub status: Option<u16>,
    pub vendor_id: Option<String>,
}

/// Every error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorAnswer {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `invalid_argument`, `not_found`, `overloaded`, ... (API.md).
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What each answer serialized to when it was built with `json!`.
    fn same<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        typed: T,
        old: serde_json::Value,
    ) {
        let text = serde_json::to_string(&typed).expect("answers serialize");
        assert_eq!(text, old.to_string());
        let back: T = serde_json::from_str(&text).expect("answers read back");
        assert_eq!(back, typed);
    }

    #[test]
    fn every_typed_answer_is_byte_for_byte_the_json_it_replaces() {
        same(
            Bound {
                previous_user_id: None,
                push_id: "d1".into(),
                user_id: "u1".into(),
            },
            json!({"push_id": "d1", "user_id": "u1", "previous_user_id": null}),
        );
        same(
            Unbound {
                push_id: "d1".into(),
                user_id: "u1".into(),
            },
            json!({"push_id": "d1", "user_id": "u1"}),
        );
        same(
            PushIds {
                push_ids: vec![BoundDevice {
                    app_id: None,
                    environment: "production".into(),
                    provider: "apns".into(),
                    push_id: "d1".into(),
                    token_prefix: "5e5e5e5e…".into(),
                }],
                user_id: "u1".into(),
            },
            json!({"user_id": "u1", "push_ids": [{"push_id": "d1", "provider": "apns",
                   "app_id": null, "environment": "production", "token_prefix": "5e5e5e5e…"}]}),
        );
        same(
            UserRemoved {
                removed: 2,
                user_id: "u1".into(),
            },
            json!({"user_id": "u1", "removed": 2}),
        );
        same(PresenceApplied { applied: 2 }, json!({"applied": 2}));
        same(
            PresenceStatus {
                online: true,
                sessions: 1,
                user_id: "u1".into(),
            },
            json!({"user_id": "u1", "online": true, "sessions": 1}),
        );
        same(
            GroupSize {
                group_id: "g1".into(),
                members: 2,
            },
            json!({"group_id": "g1", "members": 2}),
        );
        same(
            GroupDeleted {
                group_id: "g1".into(),
            },
            json!({"group_id": "g1"}),
        );
        same(
            MessageAnswer::Accepted(MessageAccepted {
                message_id: "m".into(),
                muted: 0,
                offline_recipients: 1,
                recipients: 1,
                targets: 2,
                unconfigured: 1,
            }),
            json!({"message_id": "m", "recipients": 1, "offline_recipients": 1, "targets": 2,
                   "unconfigured": 1, "muted": 0}),
        );
        same(
            MessageAnswer::Duplicate(MessageDuplicate {
                duplicate: true,
                message_id: "m".into(),
            }),
            json!({"message_id": "m", "duplicate": true}),
        );
        same(
            CallAnswer::Accepted(CallAccepted {
                call_id: "c".into(),
                muted: 0,
                offline_invitees: 2,
                targets: 3,
                unconfigured: 0,
            }),
            json!({"call_id": "c", "offline_invitees": 2, "targets": 3, "unconfigured": 0,
                   "muted": 0}),
        );
        same(
            CallAnswer::Duplicate(CallDuplicate {
                call_id: "c-77".into(),
                duplicate: true,
            }),
            json!({"call_id": "c-77", "duplicate": true}),
        );
        same(
            CallCancelled {
                call_id: "c-77".into(),
                cancel_pushes: 1,
                withdrawn: 2,
            },
            json!({"call_id": "c-77", "withdrawn": 2, "cancel_pushes": 1}),
        );
        same(
            DebugVerdict {
                outcome: "delivered".into(),
                provider: "apns".into(),
                reason: None,
                status: Some(200),
                vendor_id: Some("id".into()),
            },
            json!({"provider": "apns", "status": 200, "reason": null, "vendor_id": "id",
                   "outcome": "delivered"}),
        );
        same(
            Health {
                status: "ok".into(),
            },
            json!({"status": "ok"}),
        );
    }
}
