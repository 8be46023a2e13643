//! Huawei v1 message bodies, rendered once per message.
//!
//! ```text
//! {"validate_only":false,"message":{"android":{<category>"urgency":"HIGH","ttl":"86400s",
//!  "notification":{<channel_id>"title":..,"body":..,"click_action":{"type":3}}},
//!  "data":"{\"payload\":..}","token":["<TOKEN>"]}}
//! ```
//! `data` is a *string* holding a JSON object (Huawei's format); its `payload` key is
//! the message payload, calls add `type`/`call_id`/`inviter_id`/`timeout_s`. The three
//! slots are the client's `android` fields, its `notification` fields and the token.

use crate::providers::splice::{data_json, json_str, json_text, Spliced};
use crate::providers::{Content, Kind, TooLarge};

/// Huawei's limit on a message body.
pub const MAX_BYTES: usize = 4096;

pub fn render(kind: &Kind, c: &Content, ttl_s: u64) -> Result<Spliced, TooLarge> {
    let mut tail = format!(
        r#""title":{},"body":{},"click_action":{{"type":3}}}}}}"#,
        json_text(&c.title, usize::MAX),
        json_text(&c.content, usize::MAX),
    );
    if let Some(data) = data_json(kind, c) {
        tail.push_str(&format!(r#","data":{}"#, json_str(&data)));
    }
    tail.push_str(r#","token":[""#);
    Spliced::new(vec![
        br#"{"validate_only":false,"message":{"android":{"#.to_vec(),
        format!(r#""urgency":"HIGH","ttl":"{ttl_s}s","notification":{{"#).into_bytes(),
        tail.into_bytes(),
        br#""]}}"#.to_vec(),
    ])
    .within("huawei", MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn body_is_valid_json_with_data_string() {
        let c = Content::sample("T \"q\"", "b", "{\"k\":1}");
        let kind = Kind::message();
        let t = render(&kind, &c, 60).unwrap();
        let body = t.fill(&[b"\"category\":\"IM\",", b"\"channel_id\":\"ch\",", b"TOK"]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let m = &v["message"];
        assert_eq!(m["token"][0], "TOK");
        assert_eq!(m["android"]["category"], "IM");
        assert_eq!(m["android"]["ttl"], "60s");
        assert_eq!(m["android"]["notification"]["title"], "T \"q\"");
        assert_eq!(m["android"]["notification"]["channel_id"], "ch");
        let data: Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["payload"], "{\"k\":1}");
        let plain = t.fill(&[b"", b"", b"TOK"]);
        assert!(serde_json::from_slice::<Value>(&plain).is_ok());
    }
}
