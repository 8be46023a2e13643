//! vivo single-send bodies, rendered once per message:
//! `{<client fields>"regId":<regId>,"requestId":"<id>","notifyType":4,"title":..,
//! "content":..,"timeToLive":N,"skipType":1,"clientCustomMap":{"payload":..}}`.
//! Titles are cut to 40 units and contents to 100 (a CJK character counts two), TTL
//! is clamped to vivo's 900 s … 7 days. Slots: client fields, the regId (as a JSON
//! string), the request id.
//!
//! Options: `ttl_s` → `timeToLive` (clamped); the rule's `category` → `category`.
//! vivo has no silent (pass-through) message type: a silent push is not sent to vivo
//! devices ([`Body::unsendable`]); nor a priority, collapse, sound-name or badge
//! field: those options are not sent.

use crate::config::Resource;
use crate::providers::oem::Body;
use crate::providers::splice::{data_json, json_str, json_text, Spliced};
use crate::providers::{Content, Kind, TooLarge};

/// Body size limit. [U]
pub const MAX_BYTES: usize = 4096;
const MAX_TITLE_UNITS: usize = 40;
const MAX_CONTENT_UNITS: usize = 100;
const MIN_TTL_S: u64 = 900;
const MAX_TTL_S: u64 = 7 * 86_400;

pub fn render(kind: &Kind, c: &Content, rule: &Resource, ttl_s: u64) -> Result<Body, TooLarge> {
    let mut rest = format!(
        r#"","notifyType":4,"title":{},"content":{},"timeToLive":{},"skipType":1"#,
        json_text(&c.title, MAX_TITLE_UNITS),
        json_text(&c.content, MAX_CONTENT_UNITS),
        ttl_s.clamp(MIN_TTL_S, MAX_TTL_S)
    );
    if let Some(cat) = &rule.vivo.category {
        rest.push_str(&format!(r#","category":{}"#, json_str(cat)));
    }
    if let Some(data) = data_json(kind, c) {
        rest.push_str(&format!(r#","clientCustomMap":{data}"#));
    }
    rest.push('}');
    let spliced = Spliced::new(vec![
        b"{".to_vec(),
        br#""regId":"#.to_vec(),
        br#","requestId":""#.to_vec(),
        rest.into_bytes(),
    ])
    .within("vivo", MAX_BYTES)?;
    Ok(Body {
        unsendable: c.silent,
        ..Body::new(spliced)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::oem::render_plain;

    #[test]
    fn body_is_valid_json() {
        let t = render_plain(render, &Content::sample("t".repeat(60), "c", "p"), 60);
        let body = t.spliced.fill(&[
            br#""appId":1,"classification":1,"pushMode":0,"#,
            br#""12345678901234567890123""#,
            b"rid",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["regId"], "12345678901234567890123");
        assert_eq!(v["requestId"], "rid");
        assert_eq!(v["title"].as_str().unwrap().len(), 40);
        assert_eq!(v["timeToLive"], 900);
        assert_eq!(v["clientCustomMap"]["payload"], "p");
        assert_eq!(v["appId"], 1);
    }
}
