//! Request and answer bodies of the per-user settings of API 1.1: do-not-disturb
//! (`.../conversations/{type}/{id}/notification`) and the badge counter
//! (`/v1/users/{user_id}/badge`). Answers keep their fields in alphabetical order like
//! every other answer (see [`super::response`]).

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;

/// `"do_not_disturb"`: messages of the conversation push nothing to the user.
pub const DO_NOT_DISTURB: &str = "do_not_disturb";
/// `"notify"`: the default.
pub const NOTIFY: &str = "notify";

/// `PUT .../notification` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    /// `do_not_disturb` or `notify`.
    #[schema(schema_with = crate::api::openapi::enums::notification_status)]
    pub status: String,
}

impl NotificationRequest {
    /// Whether the request mutes the conversation.
    pub fn muted(&self) -> Result<bool, ApiError> {
        match self.status.as_str() {
            DO_NOT_DISTURB => Ok(true),
            NOTIFY => Ok(false),
            other => Err(ApiError::invalid(format!(
                "status {other:?} is not {DO_NOT_DISTURB} or {NOTIFY}"
            ))),
        }
    }
}

/// `PUT`/`GET .../notification` answer: the three ids and the status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct NotificationStatus {
    pub conversation_id: String,
    #[schema(schema_with = crate::api::openapi::enums::conversation_type)]
    pub conversation_type: String,
    #[schema(schema_with = crate::api::openapi::enums::notification_status)]
    pub status: String,
    pub user_id: String,
}

/// `PUT /v1/users/{user_id}/badge` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BadgeRequest {
    pub count: u32,
}

/// `PUT`/`GET /v1/users/{user_id}/badge` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct BadgeCount {
    pub count: u32,
    pub user_id: String,
}

/// `GET /v1/users/{user_id}`: what the engine holds about one user, in one answer
/// (the console's user view). A user the engine never saw answers the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct UserOverview {
    /// The unread counter (`GET .../badge`).
    pub badge: u32,
    /// The conversations set to `do_not_disturb`: peers, then groups, each sorted.
    pub do_not_disturb: Vec<MutedConversation>,
    /// Whether a session is online (`GET /v1/presence/{user_id}`).
    pub online: bool,
    /// The bindings (`GET .../push-ids`); tokens by their first characters only.
    pub push_ids: Vec<super::BoundDevice>,
    /// Online sessions.
    pub sessions: usize,
    pub user_id: String,
}

/// One conversation a user set to `do_not_disturb`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct MutedConversation {
    pub conversation_id: String,
    /// `peer` or `group`.
    pub conversation_type: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_are_the_json_api_md_shows() {
        let status = NotificationStatus {
            conversation_id: "g1".into(),
            conversation_type: "group".into(),
            status: DO_NOT_DISTURB.into(),
            user_id: "u1".into(),
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"user_id": "u1", "conversation_type": "group", "conversation_id": "g1",
                   "status": "do_not_disturb"})
        );
        let badge = BadgeCount {
            count: 0,
            user_id: "u1".into(),
        };
        assert_eq!(
            serde_json::to_string(&badge).unwrap(),
            r#"{"count":0,"user_id":"u1"}"#
        );
    }

    #[test]
    fn only_the_two_statuses_are_accepted() {
        let req = |s: &str| NotificationRequest { status: s.into() };
        assert_eq!(req("do_not_disturb").muted(), Ok(true));
        assert_eq!(req("notify").muted(), Ok(false));
        let e = req("mute").muted().unwrap_err();
        assert_eq!(e.code, "invalid_argument");
        assert!(e.message.contains("\"mute\""), "{}", e.message);
    }
}
