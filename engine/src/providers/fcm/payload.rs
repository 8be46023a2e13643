//! FCM message bodies, pre-rendered around the device token.
//!
//! The message JSON is `{"message":{"token":"<TOKEN>",<rest>}}` where `<rest>` holds
//! `notification`, `data` (all values strings) and `android`; it is serialized once
//! per message and each device's body is `prefix + token + rest` in one buffer.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::config::Resource;
use crate::providers::splice::{
    alert_fields, badge_value, cut_badge, insert_some, Spliced, BADGE_DIGITS,
};
use crate::providers::{Content, Kind, TooLarge};

/// FCM's limit on the payload (data, and notification with it).
pub const MAX_BYTES: usize = 4096;

const PREFIX: &[u8] = br#"{"message":{"token":""#;

#[derive(Debug, Clone, Default)]
pub struct Template {
    /// `{"message":{"token":"` [token] `","notification":...}}`, and with a
    /// per-recipient badge a second slot: `notification_count`.
    body: Spliced,
    badge: bool,
}

impl Template {
    /// The message for every device: `notification` (none when silent: a data-only
    /// message), `data` (strings) and `android` (`priority`, `ttl`, `collapse_key`,
    /// and `notification` with `sound`, `tag`, the rule's `channel_id` and
    /// `click_action`, `notification_count`).
    pub fn render(kind: &Kind, c: &Content, rule: &Resource, ttl_s: u64) -> Result<Self, TooLarge> {
        let rule = &rule.fcm;
        let data = crate::providers::data_fields(kind, c);
        let data_bytes: usize = data
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        let mut android = Map::new();
        let priority = if c.is_high_priority() {
            "HIGH"
        } else {
            "NORMAL"
        };
        android.insert("priority".into(), json!(priority));
        android.insert("ttl".into(), json!(format!("{ttl_s}s")));
        insert_some(&mut android, "collapse_key", c.collapse_id.as_deref());
        let mut rest = Map::new();
        if !c.silent {
            let notification = alert_fields(c);
            if !notification.is_empty() {
                rest.insert("notification".into(), Value::Object(notification));
            }
            let mut an = Map::new();
            an.insert("sound".into(), json!(c.alert_sound(rule.sound.as_deref())));
            insert_some(&mut an, "tag", c.collapse_id.as_deref());
            insert_some(&mut an, "channel_id", rule.channel_id.as_deref());
            insert_some(&mut an, "click_action", rule.click_action.as_deref());
            insert_some(&mut an, "notification_count", badge_value(c));
            android.insert("notification".into(), Value::Object(an));
        }
        if !data.is_empty() {
            rest.insert("data".into(), Value::Object(data));
        }
        rest.insert("android".into(), Value::Object(android));
        let rest = serde_json::to_vec(&Value::Object(rest)).expect("json values serialize");
        let badge = c.per_recipient_badge();
        let size = data_bytes.max(rest.len() + if badge { BADGE_DIGITS } else { 0 });
        TooLarge::check("fcm", size, MAX_BYTES)?;
        // rest = {"notification":...}; the body continues after the token as `",` + rest[1..] + `}`.
        let mut tail = b"\",".to_vec();
        tail.extend_from_slice(&rest[1..]);
        tail.push(b'}');
        let parts = if badge {
            let (head, after) = cut_badge(&tail, "notification_count");
            vec![PREFIX.to_vec(), head, after]
        } else {
            vec![PREFIX.to_vec(), tail]
        };
        Ok(Self {
            body: Spliced::new(parts),
            badge,
        })
    }

    /// The full request body for one device, with its recipient's badge total when
    /// the push counts one. Tokens are validated at bind time to need no JSON
    /// escaping.
    pub fn for_token(&self, token: &str, badge: Option<u32>) -> Bytes {
        if self.badge {
            let mut digits = itoa::Buffer::new();
            let n = crate::providers::badge_digits(&mut digits, badge.unwrap_or(0));
            self.body.fill(&[token.as_bytes(), n])
        } else {
            self.body.fill(&[token.as_bytes()])
        }
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
        let t = Template::render(&kind, &c, &Resource::default(), 90).unwrap();
        let v: Value = serde_json::from_slice(&t.for_token("tok:1", None)).unwrap();
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
