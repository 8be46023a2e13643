//! OPPO unicast bodies, rendered once per message: the form
//! `message=<url-encoded JSON>&auth_token=<token>` where the JSON is
//! `{"target_type":2,"target_value":"<regId>","notification":{<client fields>"title":..,
//! "content":..,"click_action_type":0,"off_line":true,"off_line_ttl":N,
//! "action_parameters":"{\"payload\":..}"}}`. The payload (and call fields) travel as
//! `action_parameters`, a JSON string the app receives with the click intent.
//! Percent-encoding is per character, so the parts are encoded once and the slots
//! (regId, the client's channel and category, auth token) are encoded per request.
//!
//! Options: `ttl_s` → `off_line_ttl` (at most OPPO's 10 days); the rule's
//! `channel_id` replaces the section's. OPPO has no silent (pass-through) message
//! type: a silent push is not sent to OPPO devices ([`Body::unsendable`]), and no
//! priority, collapse or badge field: those options are not sent.

use crate::config::Resource;
use crate::providers::oem::Body;
use crate::providers::splice::{data_json, json_str, json_text, Spliced};
use crate::providers::{Content, Kind, TooLarge};

/// Message content limit. [U]
pub const MAX_BYTES: usize = 4096;
const MAX_TITLE_UNITS: usize = 100;
const MAX_CONTENT_UNITS: usize = 400;
/// OPPO keeps offline messages at most 10 days. [U]
const MAX_OFFLINE_TTL_S: u64 = 864_000;

pub fn render(kind: &Kind, c: &Content, rule: &Resource, ttl_s: u64) -> Result<Body, TooLarge> {
    let mut rest = format!(
        r#""title":{},"content":{},"click_action_type":0"#,
        json_text(&c.title, MAX_TITLE_UNITS),
        json_text(&c.content, MAX_CONTENT_UNITS),
    );
    // `ttl_s = 0` (now or never): OPPO does not store the message for an offline device.
    if ttl_s == 0 {
        rest.push_str(r#","off_line":false"#);
    } else {
        let ttl = ttl_s.min(MAX_OFFLINE_TTL_S);
        rest.push_str(&format!(r#","off_line":true,"off_line_ttl":{ttl}"#));
    }
    if let Some(params) = data_json(kind, c) {
        rest.push_str(&format!(r#","action_parameters":{}"#, json_str(&params)));
    }
    rest.push_str("}}");
    TooLarge::check("oppo", rest.len(), MAX_BYTES)?;
    let enc = |s: &str| urlencoding::encode(s).into_owned().into_bytes();
    let mut head = b"message=".to_vec();
    head.extend(enc(r#"{"target_type":2,"target_value":""#));
    let mut tail = enc(rest.as_str());
    tail.extend_from_slice(b"&auth_token=");
    let mut open = enc(r#"","notification":{"#);
    if let Some(ch) = &rule.oppo.channel_id {
        open.extend(enc(&format!(r#""channel_id":{},"#, json_str(ch))));
    }
    let spliced = Spliced::new(vec![head, open, Vec::new(), tail, Vec::new()]);
    Ok(Body {
        own: [rule.oppo.channel_id.is_some(), false],
        unsendable: c.silent,
        ..Body::new(spliced)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::oem::render_plain;

    #[test]
    fn form_carries_the_message_json() {
        let t = render_plain(render, &Content::sample("t", "c", "{\"k\":1}"), 60);
        let client = urlencoding::encode(r#""channel_id":"ch","#).into_owned();
        let body = t
            .spliced
            .fill(&[b"CN_abc", t.client(0, client.as_bytes()), b"", b"tok%2B"]);
        let body = std::str::from_utf8(&body).unwrap();
        let (msg, auth) = body.split_once('&').unwrap();
        assert_eq!(auth, "auth_token=tok%2B");
        let json = urlencoding::decode(msg.strip_prefix("message=").unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["target_value"], "CN_abc");
        assert_eq!(v["notification"]["channel_id"], "ch");
        assert_eq!(v["notification"]["off_line_ttl"], 60);
        let params: serde_json::Value =
            serde_json::from_str(v["notification"]["action_parameters"].as_str().unwrap()).unwrap();
        assert_eq!(params["payload"], "{\"k\":1}");
    }

    #[test]
    fn a_now_or_never_push_is_not_stored_for_an_offline_device() {
        let t = render_plain(render, &Content::sample("t", "c", "p"), 0);
        let body = t.spliced.fill(&[b"CN_abc", t.client(0, b""), b"", b"tok"]);
        let body = std::str::from_utf8(&body).unwrap();
        let msg = body.split_once('&').unwrap().0;
        let json = urlencoding::decode(msg.strip_prefix("message=").unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["notification"]["off_line"], false);
        assert!(v["notification"]["off_line_ttl"].is_null());
    }
}
