//! JSON request bodies of API.md and their validation.
//!
//! Bodies are parsed strictly with the failing field's path in the message: unknown
//! fields are errors (so a typo is caught rather than ignored), every object of the
//! API must be a JSON object (serde would also take an array of the fields in order,
//! so `["u","apns","<hex>"]` bound a device), and nothing may follow the body's JSON
//! value (a second document used to be dropped silently). Validation turns a request
//! into engine values or an error naming the field; nothing is changed until a whole
//! request has validated.
//!
//! The request structs also derive `Serialize` and the answers live in [`response`]:
//! [`crate::client`] speaks the API with these same types.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::ApiError;
use crate::providers::{Content, Priority};
use crate::state::ids::validate;
use crate::state::{Binding, Environment, ProviderKind, Token};

mod admin;
mod ledger;
mod response;
mod users;
pub use admin::*;
pub use ledger::*;
pub use response::*;
pub use users::*;

/// A `T` that must be written as a JSON object (not as an array of its fields).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// `deserialize_with` for an optional object field.
fn opt_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
}

/// `deserialize_with` for an array of objects.
fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let objects = Vec::<Object<T>>::deserialize(d)?;
    Ok(objects.into_iter().map(|o| o.0).collect())
}

/// Parse a JSON body that must be one JSON object, naming the offending field on
/// error.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, Object<T>>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("request body is not valid JSON: {inner}")
        } else if path == "." {
            format!("request body: {inner}")
        } else {
            format!("field {path}: {inner}")
        };
        ApiError::invalid(msg)
    })?;
    de.end().map_err(|e| {
        ApiError::invalid(format!(
            "request body has data after its JSON object (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    Ok(value.0)
}

/// Check an identifier from a body or path.
pub fn id(field: &str, value: &str) -> Result<Arc<str>, ApiError> {
    validate(field, value).map_err(ApiError::invalid)?;
    Ok(Arc::from(value))
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    pub user_id: String,
    #[schema(schema_with = super::openapi::enums::provider)]
    pub provider: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::openapi::enums::environment)]
    pub environment: Option<String>,
}

impl BindRequest {
    pub fn into_binding(self) -> Result<Binding, ApiError> {
        let user_id = id("user_id", &self.user_id)?;
        let provider = ProviderKind::parse(&self.provider).ok_or_else(|| {
            ApiError::invalid(format!(
                "provider {:?} is not one of apns, apns_voip, fcm, huawei, honor, xiaomi, oppo, vivo, webpush",
                self.provider
            ))
        })?;
        let environment = match self.environment.as_deref() {
            None => Environment::Production,
            Some(e) => Environment::parse(e).ok_or_else(|| {
                ApiError::invalid(format!("environment {e:?} is not production or sandbox"))
            })?,
        };
        let app_id = match self.app_id {
            None => None,
            Some(a) => {
                validate("app_id", &a).map_err(ApiError::invalid)?;
                if !a.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ApiError::invalid(
                        "app_id must be printable ASCII without spaces (it is the apns-topic bundle id)",
                    ));
                }
                Some(Arc::from(a))
            }
        };
        let token = validate_token(provider, &self.token)?;
        Ok(Binding {
            user_id,
            provider,
            environment,
            app_id,
            token,
        })
    }
}

/// Per-provider token formats, checked by each vendor; the stored form is compact.
pub fn validate_token(provider: ProviderKind, token: &str) -> Result<Token, ApiError> {
    crate::providers::parse_token(provider, token)
        .map_err(|why| ApiError::invalid(format!("token: {why}")))
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    #[serde(deserialize_with = "objects")]
    pub events: Vec<PresenceEvent>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceEvent {
    pub user_id: String,
    pub session_id: String,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

pub const MAX_PRESENCE_EVENTS: usize = 10_000;
pub const MAX_TTL_S: u64 = 30 * 86_400;

impl PresenceRequest {
    /// Check the event count, every id and every TTL.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.events.len() > MAX_PRESENCE_EVENTS {
            return Err(ApiError::invalid(format!(
                "events: at most {MAX_PRESENCE_EVENTS} events per request, got {}",
                self.events.len()
            )));
        }
        for (i, e) in self.events.iter().enumerate() {
            validate(&format!("events[{i}].user_id"), &e.user_id).map_err(ApiError::invalid)?;
            validate(&format!("events[{i}].session_id"), &e.session_id)
                .map_err(ApiError::invalid)?;
            if e.ttl_s.is_some_and(|t| t > MAX_TTL_S) {
                return Err(ApiError::invalid(format!(
                    "events[{i}].ttl_s: at most {MAX_TTL_S} seconds"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

pub const MAX_MEMBERS_PER_REQUEST: usize = 100_000;

impl MembersRequest {
    /// The checked ids to add and to remove.
    #[allow(clippy::type_complexity)]
    pub fn into_ids(self) -> Result<(Vec<Arc<str>>, Vec<Arc<str>>), ApiError> {
        let n = self.add.len() + self.remove.len();
        if n > MAX_MEMBERS_PER_REQUEST {
            return Err(ApiError::invalid(format!(
                "add and remove: at most {MAX_MEMBERS_PER_REQUEST} ids per request, got {n}"
            )));
        }
        let check = |field: &str, ids: Vec<String>| -> Result<Vec<Arc<str>>, ApiError> {
            ids.into_iter()
                .enumerate()
                .map(|(i, u)| id(&format!("{field}[{i}]"), &u))
                .collect()
        };
        Ok((check("add", self.add)?, check("remove", self.remove)?))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Legacy name of `payload` (ZIM before 2.5.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge_increment: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sound: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::openapi::Priority>)]
    pub priority: Option<Priority>,
}

/// The longest `push.collapse_id` (APNs `apns-collapse-id` allows 64 bytes).
pub const MAX_COLLAPSE_ID: usize = 64;
/// The longest `push.sound` name.
pub const MAX_SOUND: usize = 256;

impl PushConfig {
    pub fn into_content(self) -> Result<Content, ApiError> {
        if self.payload.is_some() && self.extended_data.is_some() {
            return Err(ApiError::invalid(
                "push: give payload or its legacy name extended_data, not both",
            ));
        }
        if let Some(r) = &self.resources_id {
            validate("push.resources_id", r).map_err(ApiError::invalid)?;
        }
        if self.badge.is_some() && self.badge_increment.is_some() {
            return Err(ApiError::invalid(
                "push: give badge (sets the number) or badge_increment (adds to it), not both",
            ));
        }
        if let Some(c) = &self.collapse_id {
            if c.is_empty() || c.len() > MAX_COLLAPSE_ID {
                return Err(ApiError::invalid(format!(
                    "push.collapse_id must be 1 to {MAX_COLLAPSE_ID} bytes"
                )));
            }
        }
        if let Some(s) = &self.sound {
            if s.is_empty() || s.len() > MAX_SOUND || s.chars().any(char::is_control) {
                return Err(ApiError::invalid(format!(
                    "push.sound must be 1 to {MAX_SOUND} bytes without control characters"
                )));
            }
        }
        if let Some(ttl) = self.ttl_s {
            if ttl > MAX_PUSH_TTL_S {
                return Err(ApiError::invalid(format!(
                    "push.ttl_s must be at most {MAX_PUSH_TTL_S} (28 days, the longest any vendor keeps a push)"
                )));
            }
        }
        Ok(Content {
            title: self.title,
            content: self.content,
            payload: self.payload.or(self.extended_data),
            resources_id: self.resources_id,
            badge: self.badge,
            badge_increment: self.badge_increment,
            sound: self.sound,
            silent: self.silent.unwrap_or(false),
            collapse_id: self.collapse_id,
            ttl_s: self.ttl_s,
            priority: self.priority,
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    pub message_id: String,
    pub sender_id: String,
    #[schema(schema_with = super::openapi::enums::conversation_type)]
    pub conversation_type: String,
    pub conversation_id: String,
    #[serde(
        default,
        deserialize_with = "opt_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub push: Option<PushConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    pub call_id: String,
    pub inviter_id: String,
    pub invitees: Vec<String>,
    pub timeout_s: u64,
    #[serde(
        default,
        deserialize_with = "opt_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub push: Option<PushConfig>,
}

/// `POST /v1/calls/{call_id}/cancel`: the body is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// The base of the cancellation push (title, sound, ...); Fanfare makes it
    /// silent, sets its `collapse_id` and TTL, and puts the call's id and
    /// `"type": "call_cancel"` in its payload (the caller's payload, if any, under
    /// `payload` there).
    #[serde(
        default,
        deserialize_with = "opt_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub push: Option<PushConfig>,
}

/// The longest `push.ttl_s`: FCM and APNs keep a push at most 28 days.
pub const MAX_PUSH_TTL_S: u64 = 28 * 86_400;
pub const MAX_INVITEES: usize = 10_000;
pub const MAX_CALL_TIMEOUT_S: u64 = 86_400;

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DebugPushRequest {
    pub push_id: String,
    #[serde(
        default,
        deserialize_with = "opt_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub push: Option<PushConfig>,
}
