//! APNs bodies, rendered once per message and shared by every device.
//!
//! Alert: `{"aps":{"alert":{"title","body"},"badge","sound":"default"},"payload":...}`
//! with the ZIM `payload` as a top-level key. VoIP (calls to PushKit tokens):
//! `{"aps":{},"payload":...,"call":{...}}` — PushKit hands the whole dictionary to the
//! app, which must report the call.

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Map, Value};

use crate::config::Resource;
use crate::providers::splice::{alert_fields, badge_slot, badge_value, insert_some, Spliced};
use crate::providers::{Content, Kind, TooLarge};

/// Apple's limit for every push type but VoIP.
pub const MAX_ALERT_BYTES: usize = 4096;
/// Apple's limit for VoIP pushes.
pub const MAX_VOIP_BYTES: usize = 5120;

/// A push's APNs bodies and the headers that depend on its options, rendered once.
#[derive(Debug, Clone)]
pub struct Bodies {
    pub alert: Bytes,
    /// With a per-recipient badge: the alert with a slot for the recipient's total.
    pub badged: Option<Spliced>,
    pub voip: Bytes,
    /// `apns-push-type` of the alert body: `alert`, or `background` when silent.
    pub push_type: HeaderValue,
    /// `apns-priority` of the alert body: 10, or 5 for `normal` and silent pushes.
    pub priority: HeaderValue,
    /// `apns-collapse-id`, from `collapse_id`.
    pub collapse_id: Option<HeaderValue>,
}

impl Default for Bodies {
    /// Empty: what a push carries for APNs when no target uses it.
    fn default() -> Self {
        Self {
            alert: Bytes::new(),
            badged: None,
            voip: Bytes::new(),
            push_type: HeaderValue::from_static("alert"),
            priority: HeaderValue::from_static("10"),
            collapse_id: None,
        }
    }
}

impl Bodies {
    /// The alert (or, silent, background) body: `aps` from the content and the APNs
    /// part of `rule`, the ZIM payload as a top-level key.
    pub fn render(kind: &Kind, c: &Content, rule: &Resource) -> Result<Self, TooLarge> {
        let rule = &rule.apns;
        let mut aps = Map::new();
        if c.silent {
            // Background: wakes the app, shows and plays nothing (Apple refuses an
            // alert, sound or badge with it).
            aps.insert("content-available".into(), json!(1));
        } else {
            aps.insert("alert".into(), Value::Object(alert_fields(c)));
            insert_some(&mut aps, "badge", badge_value(c));
            aps.insert("sound".into(), json!(c.alert_sound(rule.sound.as_deref())));
            insert_some(&mut aps, "category", rule.category.as_deref());
            insert_some(&mut aps, "thread-id", rule.thread_id.as_deref());
            insert_some(
                &mut aps,
                "interruption-level",
                rule.interruption_level.as_deref(),
            );
            if rule.mutable_content == Some(true) {
                aps.insert("mutable-content".into(), json!(1));
            }
        }
        let mut top = Map::new();
        top.insert("aps".into(), Value::Object(aps));
        insert_some(&mut top, "payload", c.payload.as_deref());
        let voip = match kind {
            Kind::Call {
                call_id,
                inviter_id,
                timeout_s,
            } => {
                top.insert(
                    "call".into(),
                    json!({"call_id": &**call_id, "inviter_id": &**inviter_id, "timeout_s": timeout_s}),
                );
                let mut v = Map::new();
                v.insert("aps".into(), json!({}));
                for k in ["payload", "call"] {
                    if let Some(x) = top.get(k) {
                        v.insert(k.into(), x.clone());
                    }
                }
                v.insert("alert".into(), json!({"title": c.title, "body": c.content}));
                serde_json::to_vec(&Value::Object(v)).expect("json values serialize")
            }
            Kind::Message { .. } => Vec::new(),
        };
        let alert = serde_json::to_vec(&Value::Object(top)).expect("json values serialize");
        let (badged, size) = badge_slot(&alert, "badge", c.per_recipient_badge());
        TooLarge::check("apns", size, MAX_ALERT_BYTES)?;
        TooLarge::check("apns voip", voip.len(), MAX_VOIP_BYTES)?;
        let collapse_id = c.collapse_id.as_deref().map(|id| {
            // An id with a control character cannot be a header: its stable hash
            // still collapses.
            let v = HeaderValue::from_str(id).unwrap_or_else(|_| {
                let hashed = format!("{:08x}", crate::providers::collapse_number(id));
                HeaderValue::from_str(&hashed).expect("hex digits are a header value")
            });
            // Promote its buffer to a shared one now, so each device's clone only
            // counts a reference.
            drop(v.clone());
            v
        });
        Ok(Self {
            alert: alert.into(),
            badged,
            voip: voip.into(),
            push_type: HeaderValue::from_static(if c.silent { "background" } else { "alert" }),
            priority: HeaderValue::from_static(if !c.silent && c.is_high_priority() {
                "10"
            } else {
                "5"
            }),
            collapse_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_body_carries_title_body_badge_and_payload() {
        let c = Content {
            badge: Some(3),
            ..Content::sample("t", "hello", "{\"k\":1}")
        };
        let b = Bodies::render(&Kind::message(), &c, &Resource::default()).unwrap();
        let v: Value = serde_json::from_slice(&b.alert).unwrap();
        assert_eq!(v["aps"]["alert"]["title"], "t");
        assert_eq!(v["aps"]["alert"]["body"], "hello");
        assert_eq!(v["aps"]["badge"], 3);
        assert_eq!(v["payload"], "{\"k\":1}");
        assert!(b.voip.is_empty());
    }

    #[test]
    fn oversized_payload_is_refused() {
        let c = Content {
            payload: Some("x".repeat(5000)),
            ..Content::default()
        };
        let e = Bodies::render(&Kind::message(), &c, &Resource::default()).unwrap_err();
        assert_eq!(e.limit, MAX_ALERT_BYTES);
    }
}
