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

use crate::providers::splice::{json_str, Spliced};
use crate::providers::{data_fields, Content, Kind, TooLarge};

/// Huawei's limit on a message body.
pub const MAX_BYTES: usize = 4096;

pub fn render(kind: &Kind, c: &Content, ttl_s: u64) -> Result<Spliced, TooLarge> {
    let data = data_fields(kind, c);
    let mut head = String::from(r#"{"validate_only":false,"message":{"android":{"#);
    let mut mid = format!(r#""urgency":"HIGH","ttl":"{ttl_s}s","notification":{{"#);
    let mut tail = format!(
        r#""title":{},"body":{},"click_action":{{"type":3}}}}}}"#,
        json_str(c.title.as_deref().unwrap_or("")),
        json_str(c.content.as_deref().unwrap_or("")),
    );
    if !data.is_empty() {
        let data = serde_json::to_string(&data).expect("json values serialize");
        tail.push_str(&format!(r#","data":{}"#, json_str(&data)));
    }
    tail.push_str(r#","token":[""#);
    let end = r#""]}}"#;
    let t = Spliced::new(vec![
        std::mem::take(&mut head).into_bytes(),
        std::mem::take(&mut mid).into_bytes(),
        tail.into_bytes(),
        end.as_bytes().to_vec(),
    ]);
    if t.fixed_len() > MAX_BYTES {
        return Err(TooLarge {
            vendor: "huawei",
            size: t.fixed_len(),
            limit: MAX_BYTES,
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn body_is_valid_json_with_data_string() {
        let c = Content {
            title: Some("T \"q\"".into()),
            content: Some("b".into()),
            payload: Some("{\"k\":1}".into()),
            ..Content::default()
        };
        let kind = Kind::Message {
            message_id: "m".into(),
        };
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
