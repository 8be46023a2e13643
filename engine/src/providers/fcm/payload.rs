//! FCM message bodies, pre-rendered around the device token.
//!
//! The message JSON is `{"message":{"token":"<TOKEN>",<rest>}}` where `<rest>` holds
//! `notification`, `data` (all values strings) and `android`; it is serialized once
//! per message and each device's body is `prefix + token + rest` in one buffer.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Map, Value};

use crate::providers::{Content, Kind, TooLarge};

/// FCM's limit on the payload (data, and notification with it).
pub const MAX_BYTES: usize = 4096;

const PREFIX: &[u8] = br#"{"message":{"token":""#;

#[derive(Debug, Clone, Default)]
pub struct Template {
    /// `","notification":...}}` — everything after the token.
    rest: Bytes,
}

impl Template {
    pub fn render(kind: &Kind, c: &Content, ttl_s: u64) -> Result<Self, TooLarge> {
        let data = crate::providers::data_fields(kind, c);
        let data_bytes: usize = data
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        let mut notification = Map::new();
        if let Some(t) = &c.title {
            notification.insert("title".into(), json!(t));
        }
        if let Some(b) = &c.content {
            notification.insert("body".into(), json!(b));
        }
        let mut android = Map::new();
        android.insert("priority".into(), json!("HIGH"));
        android.insert("ttl".into(), json!(format!("{ttl_s}s")));
        if let Some(badge) = c.badge {
            android.insert("notification".into(), json!({"notification_count": badge}));
        }
        let mut rest = Map::new();
        if !notification.is_empty() {
            rest.insert("notification".into(), Value::Object(notification));
        }
        if !data.is_empty() {
            rest.insert("data".into(), Value::Object(data));
        }
        rest.insert("android".into(), Value::Object(android));
        let rest = serde_json::to_vec(&Value::Object(rest)).expect("json values serialize");
        let size = data_bytes.max(rest.len());
        TooLarge::check("fcm", size, MAX_BYTES)?;
        // rest = {"notification":...}; the body continues after the token as `",` + rest[1..] + `}`.
        let mut tail = BytesMut::with_capacity(rest.len() + 3);
        tail.put_slice(b"\",");
        tail.put_slice(&rest[1..]);
        tail.put_u8(b'}');
        Ok(Self {
            rest: tail.freeze(),
        })
    }

    /// The full request body for one device. Tokens are validated at bind time to
    /// need no JSON escaping.
    pub fn for_token(&self, token: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(PREFIX.len() + token.len() + self.rest.len());
        b.put_slice(PREFIX);
        b.put_slice(token.as_bytes());
        b.put_slice(&self.rest);
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_makes_valid_json_with_string_data() {
        let c = Content {
            badge: Some(2),
            ..Content::sample("Incoming \"call\"", "hi", "{\"k\":1}")
        };
        let kind = Kind::Call {
            call_id: "c1".into(),
            inviter_id: "u0".into(),
            timeout_s: 90,
        };
        let t = Template::render(&kind, &c, 90).unwrap();
        let v: Value = serde_json::from_slice(&t.for_token("tok:1")).unwrap();
        let m = &v["message"];
        assert_eq!(m["token"], "tok:1");
        assert_eq!(m["notification"]["title"], "Incoming \"call\"");
        assert_eq!(m["android"]["ttl"], "90s");
        assert_eq!(m["android"]["priority"], "HIGH");
        for (_, val) in m["data"].as_object().unwrap() {
            assert!(val.is_string());
        }
        assert_eq!(m["data"]["timeout_s"], "90");
    }
}
