//! Honor message bodies: Huawei's v1 layout in camelCase, rendered once per message
//! with one slot, the token.
//!
//! ```text
//! {"data":"{\"payload\":..}","notification":{"title":..,"body":..},
//!  "android":{"urgency":"HIGH","ttl":"86400s","notification":{"title":..,"body":..,
//!  "clickAction":{"type":3},"defaultSound":true,"tag":..}},"token":["<TOKEN>"]}
//! ```
//! Options as Huawei's ([`crate::providers::huawei::payload`]), in Honor's camelCase
//! (field names beyond Huawei's family are unverified, VENDORS.md §3.2): a silent push
//! is a data message (no `notification` objects); the rule's `category` goes in
//! `android`, its `importance` in `android.notification`.

use crate::config::Resource;
use crate::providers::oem::Body;
use crate::providers::splice::{data_json, json_str, json_text, Spliced};
use crate::providers::{Content, Kind, TooLarge};

/// Message size limit, as Huawei's. [U]
pub const MAX_BYTES: usize = 4096;

pub fn render(kind: &Kind, c: &Content, rule: &Resource, ttl_s: u64) -> Result<Body, TooLarge> {
    let rule = &rule.honor;
    let title = json_text(&c.title, usize::MAX);
    let body = json_text(&c.content, usize::MAX);
    let urgency = if c.is_high_priority() {
        "HIGH"
    } else {
        "NORMAL"
    };
    let mut head = String::from("{");
    if let Some(data) = data_json(kind, c) {
        head.push_str(&format!(r#""data":{},"#, json_str(&data)));
    }
    if !c.silent {
        head.push_str(&format!(
            r#""notification":{{"title":{title},"body":{body}}},"#
        ));
    }
    head.push_str(&format!(
        r#""android":{{"urgency":"{urgency}","ttl":"{ttl_s}s""#
    ));
    if let Some(cat) = &rule.category {
        head.push_str(&format!(r#","category":{}"#, json_str(cat)));
    }
    if !c.silent {
        head.push_str(&format!(
            r#","notification":{{"title":{title},"body":{body},"clickAction":{{"type":3}}"#
        ));
        match c.alert_sound(None) {
            Some(s) if s != "default" => {
                head.push_str(&format!(r#","sound":{},"defaultSound":false"#, json_str(s)))
            }
            _ => head.push_str(r#","defaultSound":true"#),
        }
        if let Some(i) = &rule.importance {
            head.push_str(&format!(r#","importance":{}"#, json_str(i)));
        }
        if let Some(id) = &c.collapse_id {
            head.push_str(&format!(r#","tag":{}"#, json_str(id)));
        }
        head.push('}');
    }
    head.push_str(r#"},"token":[""#);
    let spliced =
        Spliced::new(vec![head.into_bytes(), br#""]}"#.to_vec()]).within("honor", MAX_BYTES)?;
    Ok(Body::new(spliced))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::oem::render_plain;

    #[test]
    fn body_is_valid_json() {
        let t = render_plain(render, &Content::sample("t", "c", "p"), 5);
        let v: serde_json::Value = serde_json::from_slice(&t.spliced.fill(&[b"TOK"])).unwrap();
        assert_eq!(v["token"][0], "TOK");
        assert_eq!(v["android"]["notification"]["clickAction"]["type"], 3);
        assert_eq!(v["android"]["ttl"], "5s");
        assert!(v["data"].as_str().unwrap().contains("payload"));
    }

    #[test]
    fn a_silent_push_is_a_data_message() {
        let t = render_plain(render, &Content::silent_sample(None), 5);
        let v: serde_json::Value = serde_json::from_slice(&t.spliced.fill(&[b"TOK"])).unwrap();
        assert!(v.get("notification").is_none());
        assert!(v["android"].get("notification").is_none());
        assert_eq!(v["android"]["urgency"], "NORMAL");
    }
}
