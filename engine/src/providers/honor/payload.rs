//! Honor message bodies: Huawei's v1 layout in camelCase, rendered once per message
//! with one slot, the token.
//!
//! ```text
//! {"data":"{\"payload\":..}","notification":{"title":..,"body":..},
//!  "android":{"ttl":"86400s","notification":{"title":..,"body":..,"clickAction":{"type":3}}},
//!  "token":["<TOKEN>"]}
//! ```

use crate::providers::splice::{json_str, Spliced};
use crate::providers::{data_fields, Content, Kind, TooLarge};

/// Message size limit, as Huawei's. [U]
pub const MAX_BYTES: usize = 4096;

pub fn render(kind: &Kind, c: &Content, ttl_s: u64) -> Result<Spliced, TooLarge> {
    let data = data_fields(kind, c);
    let title = json_str(c.title.as_deref().unwrap_or(""));
    let body = json_str(c.content.as_deref().unwrap_or(""));
    let mut head = String::from("{");
    if !data.is_empty() {
        let data = serde_json::to_string(&data).expect("json values serialize");
        head.push_str(&format!(r#""data":{},"#, json_str(&data)));
    }
    head.push_str(&format!(
        r#""notification":{{"title":{title},"body":{body}}},"android":{{"ttl":"{ttl_s}s","notification":{{"title":{title},"body":{body},"clickAction":{{"type":3}}}}}},"token":[""#
    ));
    let t = Spliced::new(vec![head.into_bytes(), br#""]}"#.to_vec()]);
    if t.fixed_len() > MAX_BYTES {
        return Err(TooLarge {
            vendor: "honor",
            size: t.fixed_len(),
            limit: MAX_BYTES,
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_valid_json() {
        let c = Content {
            title: Some("t".into()),
            content: Some("c".into()),
            payload: Some("p".into()),
            ..Content::default()
        };
        let t = render(
            &Kind::Message {
                message_id: "m".into(),
            },
            &c,
            5,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.fill(&[b"TOK"])).unwrap();
        assert_eq!(v["token"][0], "TOK");
        assert_eq!(v["android"]["notification"]["clickAction"]["type"], 3);
        assert_eq!(v["android"]["ttl"], "5s");
        assert!(v["data"].as_str().unwrap().contains("payload"));
    }
}
