//! The Web Push message, rendered once per message: the plaintext the service worker
//! receives (`{"title":..,"body":..,"payload":..,"badge":..}`, calls add
//! `type`/`call_id`/`inviter_id`/`timeout_s`) plus the RFC 8030 headers that do not
//! depend on the device. Encryption is per subscription (each has its own keys).

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Value};

use super::ece::MAX_PLAINTEXT;
use crate::providers::{data_fields, Content, Kind, TooLarge};

#[derive(Debug, Clone)]
pub struct Message {
    pub plaintext: Bytes,
    /// `Urgency`: `high` for calls, `normal` for messages.
    pub urgency: HeaderValue,
    /// `Topic` for calls (a newer push with the same topic replaces an undelivered
    /// older one, e.g. a cancellation): base64url, ≤ 32 characters.
    pub topic: Option<HeaderValue>,
}

impl Default for Message {
    /// Empty: what a push carries for Web Push when Web Push is not configured.
    fn default() -> Self {
        Self {
            plaintext: Bytes::new(),
            urgency: HeaderValue::from_static("normal"),
            topic: None,
        }
    }
}

pub fn render(kind: &Kind, c: &Content) -> Result<Message, TooLarge> {
    let mut m = data_fields(kind, c);
    if let Some(t) = &c.title {
        m.insert("title".into(), json!(t));
    }
    if let Some(b) = &c.content {
        m.insert("body".into(), json!(b));
    }
    if let Some(b) = c.badge {
        m.insert("badge".into(), json!(b));
    }
    let plaintext = serde_json::to_vec(&Value::Object(m)).expect("json values serialize");
    TooLarge::check("webpush", plaintext.len(), MAX_PLAINTEXT)?;
    let (urgency, topic) = match kind {
        Kind::Call { call_id, .. } => {
            use base64::Engine as _;
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(call_id.as_bytes());
            let topic = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..24]);
            (
                HeaderValue::from_static("high"),
                Some(HeaderValue::from_str(&topic).expect("base64url is a header value")),
            )
        }
        Kind::Message { .. } => (HeaderValue::from_static("normal"), None),
    };
    Ok(Message {
        plaintext: plaintext.into(),
        urgency,
        topic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_get_a_short_topic_and_high_urgency() {
        let m = render(
            &Kind::Call {
                call_id: "c1".into(),
                inviter_id: "u0".into(),
                timeout_s: 60,
            },
            &Content::default(),
        )
        .unwrap();
        assert_eq!(m.urgency, "high");
        let topic = m.topic.unwrap();
        assert_eq!(topic.len(), 32);
        let big = Content {
            payload: Some("x".repeat(4000)),
            ..Content::default()
        };
        assert!(render(&Kind::message(), &big).is_err());
    }
}
