//! APNs bodies, rendered once per message and shared by every device.
//!
//! Alert: `{"aps":{"alert":{"title","body"},"badge","sound":"default"},"payload":...}`
//! with the ZIM `payload` as a top-level key. VoIP (calls to PushKit tokens):
//! `{"aps":{},"payload":...,"call":{...}}` — PushKit hands the whole dictionary to the
//! app, which must report the call.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::providers::{Content, Kind, TooLarge};

/// Apple's limit for every push type but VoIP.
pub const MAX_ALERT_BYTES: usize = 4096;
/// Apple's limit for VoIP pushes.
pub const MAX_VOIP_BYTES: usize = 5120;

#[derive(Debug, Clone, Default)]
pub struct Bodies {
    pub alert: Bytes,
    pub voip: Bytes,
}

impl Bodies {
    pub fn render(kind: &Kind, c: &Content) -> Result<Self, TooLarge> {
        let mut alert = Map::new();
        if let Some(t) = &c.title {
            alert.insert("title".into(), json!(t));
        }
        if let Some(b) = &c.content {
            alert.insert("body".into(), json!(b));
        }
        let mut aps = Map::new();
        aps.insert("alert".into(), Value::Object(alert));
        if let Some(badge) = c.badge {
            aps.insert("badge".into(), json!(badge));
        }
        aps.insert("sound".into(), json!("default"));
        let mut top = Map::new();
        top.insert("aps".into(), Value::Object(aps));
        if let Some(p) = &c.payload {
            top.insert("payload".into(), json!(p));
        }
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
        TooLarge::check("apns", alert.len(), MAX_ALERT_BYTES)?;
        TooLarge::check("apns voip", voip.len(), MAX_VOIP_BYTES)?;
        Ok(Self {
            alert: alert.into(),
            voip: voip.into(),
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
        let b = Bodies::render(&Kind::message(), &c).unwrap();
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
        let e = Bodies::render(&Kind::message(), &c).unwrap_err();
        assert_eq!(e.limit, MAX_ALERT_BYTES);
    }
}
