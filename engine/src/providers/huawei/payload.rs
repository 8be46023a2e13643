//! Huawei v1 message bodies, rendered once per message.
//!
//! ```text
//! {"validate_only":false,"message":{"android":{<category>"urgency":"HIGH","ttl":"86400s",
//!  "notification":{<channel_id>"title":..,"body":..,"click_action":{"type":3},
//!  "default_sound":true,"tag":..}},"data":"{\"payload\":..}","token":["<TOKEN>"]}}
//! ```
//! `data` is a *string* holding a JSON object (Huawei's format); its `payload` key is
//! the message payload, calls add `type`/`call_id`/`inviter_id`/`timeout_s`. The three
//! slots are the client's `android` fields, its `notification` fields and the token.
//!
//! Options: `priority` → `android.urgency`; `ttl_s` → `android.ttl`; `sound` →
//! `notification.sound` with `default_sound: false`; `collapse_id` →
//! `notification.tag` (Huawei's `collapse_key` is an integer -1..100, too small to
//! hold an id: the tag replaces a shown notification with the same tag); a silent
//! push is a data message (no `notification` at all); the rule's `category` and
//! `importance` replace the section's; with `[huawei] badge_class` set, `badge` and
//! the recipient's total of `badge_increment` → `notification.badge.set_num` (the
//! client adds it in the notification slot, see `Huawei::body`).

use crate::config::Resource;
use crate::providers::oem::Body;
use crate::providers::splice::{data_json, json_str, json_text, Spliced};
use crate::providers::{Content, Kind, TooLarge};

/// Huawei's limit on a message body.
pub const MAX_BYTES: usize = 4096;

pub fn render(kind: &Kind, c: &Content, rule: &Resource, ttl_s: u64) -> Result<Body, TooLarge> {
    let rule = &rule.huawei;
    let urgency = if c.is_high_priority() {
        "HIGH"
    } else {
        "NORMAL"
    };
    let mut head = br#"{"validate_only":false,"message":{"android":{"#.to_vec();
    if let Some(cat) = &rule.category {
        head.extend(format!(r#""category":{},"#, json_str(cat)).into_bytes());
    }
    let mut android = format!(r#""urgency":"{urgency}","ttl":"{ttl_s}s""#);
    let mut tail = String::new();
    if !c.silent {
        android.push_str(r#","notification":{"#);
        if let Some(i) = &rule.importance {
            android.push_str(&format!(r#""importance":{},"#, json_str(i)));
        }
        tail.push_str(&format!(
            r#""title":{},"body":{},"click_action":{{"type":3}}"#,
            json_text(&c.title, usize::MAX),
            json_text(&c.content, usize::MAX),
        ));
        match c.alert_sound(None) {
            Some(s) if s != "default" => tail.push_str(&format!(
                r#","sound":{},"default_sound":false"#,
                json_str(s)
            )),
            _ => tail.push_str(r#","default_sound":true"#),
        }
        if let Some(id) = &c.collapse_id {
            tail.push_str(&format!(r#","tag":{}"#, json_str(id)));
        }
        tail.push('}');
    }
    tail.push('}');
    if let Some(data) = data_json(kind, c) {
        tail.push_str(&format!(r#","data":{}"#, json_str(&data)));
    }
    tail.push_str(r#","token":[""#);
    let spliced = Spliced::new(vec![
        head,
        android.into_bytes(),
        tail.into_bytes(),
        br#""]}}"#.to_vec(),
    ])
    .within("huawei", MAX_BYTES)?;
    Ok(Body {
        own: [rule.category.is_some(), c.silent],
        badge: c.badge_increment.is_some() && !c.silent,
        set_badge: c.badge.filter(|_| !c.silent),
        ..Body::new(spliced)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::oem::render_plain;
    use serde_json::Value;

    fn fill(b: &Body, android: &[u8], notification: &[u8]) -> Value {
        let body = b
            .spliced
            .fill(&[b.client(0, android), b.client(1, notification), b"TOK"]);
        serde_json::from_slice(&body).expect("valid json")
    }

    #[test]
    fn body_is_valid_json_with_data_string() {
        let c = Content::sample("T \"q\"", "b", "{\"k\":1}");
        let kind = Kind::message();
        let t = render(&kind, &c, &Resource::default(), 60).unwrap();
        let v = fill(&t, b"\"category\":\"IM\",", b"\"channel_id\":\"ch\",");
        let m = &v["message"];
        assert_eq!(m["token"][0], "TOK");
        assert_eq!(m["android"]["category"], "IM");
        assert_eq!(m["android"]["ttl"], "60s");
        assert_eq!(m["android"]["urgency"], "HIGH");
        assert_eq!(m["android"]["notification"]["title"], "T \"q\"");
        assert_eq!(m["android"]["notification"]["channel_id"], "ch");
        assert_eq!(m["android"]["notification"]["default_sound"], true);
        let data: Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["payload"], "{\"k\":1}");
        let plain = fill(&t, b"", b"");
        assert!(plain["message"].is_object());
    }

    #[test]
    fn a_silent_push_is_a_data_message_and_options_map() {
        let t = render_plain(render, &Content::silent_sample(Some("conv")), 5);
        let v = fill(&t, b"\"category\":\"IM\",", b"\"channel_id\":\"ch\",");
        assert!(v["message"]["android"].get("notification").is_none(), "{v}");
        assert!(v["message"].get("notification").is_none());
        assert_eq!(v["message"]["android"]["urgency"], "NORMAL");
        let mut rule = Resource::default();
        rule.huawei.category = Some("VOIP".into());
        rule.huawei.importance = Some("NORMAL".into());
        let c = Content {
            sound: Some("ring".into()),
            collapse_id: Some("conv".into()),
            ..Content::sample("t", "b", "p")
        };
        let t = render(&Kind::message(), &c, &rule, 5).unwrap();
        let v = fill(&t, b"\"category\":\"IM\",", b"\"channel_id\":\"ch\",");
        let a = &v["message"]["android"];
        assert_eq!(a["category"], "VOIP");
        assert_eq!(a["notification"]["importance"], "NORMAL");
        assert_eq!(a["notification"]["channel_id"], "ch");
        assert_eq!(a["notification"]["sound"], "ring");
        assert_eq!(a["notification"]["default_sound"], false);
        assert_eq!(a["notification"]["tag"], "conv");
    }
}
