//! The Web Push message, rendered once per message: the plaintext the service worker
//! receives (`{"title":..,"body":..,"payload":..,"badge":..}`, calls add
//! `type`/`call_id`/`inviter_id`/`timeout_s`) plus the RFC 8030 headers that do not
//! depend on the device. Encryption is per subscription (each has its own keys).

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Value};

use super::ece::MAX_PLAINTEXT;
use crate::config::Resource;
use crate::providers::splice::{alert_fields, badge_slot, badge_value, insert_some, Spliced};
use crate::providers::{data_fields, Content, Kind, Priority, TooLarge};

#[derive(Debug, Clone)]
pub struct Message {
    pub plaintext: Bytes,
    /// With a per-recipient badge: the plaintext with a slot for the total.
    pub badged: Option<Spliced>,
    /// `Urgency`: the request's `priority`, else the rule's `urgency`, else `high`
    /// for calls and `normal` for messages.
    pub urgency: HeaderValue,
    /// `Topic` from `collapse_id` (a newer push with the same topic replaces an
    /// undelivered older one, e.g. a call's cancellation): base64url, 32 characters.
    pub topic: Option<HeaderValue>,
}

impl Default for Message {
    /// Empty: what a push carries for Web Push when Web Push is not configured.
    fn default() -> Self {
        Self {
            plaintext: Bytes::new(),
            badged: None,
            urgency: HeaderValue::from_static("normal"),
            topic: None,
        }
    }
}

/// `Topic` for a `collapse_id`: RFC 8030 allows at most 32 base64url characters, so
/// it is the first 24 bytes of the id's SHA-256 (stable, and distinct ids stay apart).
pub fn topic(collapse_id: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(collapse_id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..24])
}

/// The plaintext the service worker gets: the data fields, and `title`, `body`,
/// `badge` for a visible push or `"silent": true` for a silent one (the service
/// worker is what shows a notification; Fanfare gives it nothing to show).
pub fn render(kind: &Kind, c: &Content, rule: &Resource) -> Result<Message, TooLarge> {
    let mut m = data_fields(kind, c);
    if c.silent {
        m.insert("silent".into(), json!(true));
    } else {
        m.extend(alert_fields(c));
        insert_some(&mut m, "badge", badge_value(c));
    }
    let plaintext = serde_json::to_vec(&Value::Object(m)).expect("json values serialize");
    let (badged, size) = badge_slot(&plaintext, "badge", c.per_recipient_badge());
    TooLarge::check("webpush", size, MAX_PLAINTEXT)?;
    let urgency = match (c.priority, rule.webpush.urgency.as_deref(), kind) {
        (Some(Priority::High), _, _) => "high",
        (Some(Priority::Normal), _, _) => "normal",
        (None, Some(u), _) => u,
        (None, None, Kind::Call { .. }) => "high",
        (None, None, Kind::Message { .. }) => "normal",
    };
    let urgency = HeaderValue::from_str(urgency).expect("urgencies are checked at load");
    drop(urgency.clone());
    let topic = c.collapse_id.as_deref().map(|id| {
        let t = HeaderValue::from_str(&topic(id)).expect("base64url is a header value");
        drop(t.clone());
        t
    });
    Ok(Message {
        plaintext: plaintext.into(),
        badged,
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
            &Content {
                collapse_id: Some("c1".into()),
                ..Content::default()
            },
            &Resource::default(),
        )
        .unwrap();
        assert_eq!(m.urgency, "high");
        let topic = m.topic.unwrap();
        assert_eq!(topic.len(), 32);
        let big = Content {
            payload: Some("x".repeat(4000)),
            ..Content::default()
        };
        assert!(render(&Kind::message(), &big, &Resource::default()).is_err());
    }
}
