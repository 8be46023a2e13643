//! Honor message bodies: Huawei's v1 layout in camelCase, rendered once per message
//! with one slot, the token.
//!
//! ```text
//! {"data":"{\"payload\":..}","notification":{"title":..,"body":..},
//!  "android":{"ttl":"86400s","notification":{"title":..,"body":..,"clickAction":{"type":3}}},
//!  "token":["<TOKEN>"]}
//! ```

use crate::providers::splice::{data_json, json_str, json_text, Spliced};
use crate::providers::{Content, Kind, TooLarge};

/// Message size limit, as Huawei's. [U]
pub const MAX_BYTES: usize = 4096;

pub fn render(kind: &Kind, c: &Content, ttl_s: u64) -> Result<Spliced, TooLarge> {
    let title = json_text(&c.title, usize::MAX);
    let body = json_text(&c.content, usize::MAX);
    let mut head = String::from("{");
    if let Some(data) = data_json(kind, c) {
        head.push_str(&format!(r#""data":{},"#, json_str(&data)));
    }
    head.push_str(&format!(
        r#""notification":{{"title":{title},"body":{body}}},"android":{{"ttl":"{ttl_s}s","notification":{{"title":{title},"body":{body},"clickAction":{{"type":3}}}}}},"token":[""#
    ));
    Spliced::new(vec![head.into_bytes(), br#""]}"#.to_vec()]).within("honor", MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_valid_json() {
        let c = Content::sample("t", "c", "p");
        let t = render(&Kind::message(), &c, 5).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.fill(&[b"TOK"])).unwrap();
        assert_eq!(v["token"][0], "TOK");
        assert_eq!(v["android"]["notification"]["clickAction"]["type"], 3);
        assert_eq!(v["android"]["ttl"], "5s");
        assert!(v["data"].as_str().unwrap().contains("payload"));
    }
}
