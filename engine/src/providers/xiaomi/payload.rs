//! MiPush form bodies, rendered once per message.
//!
//! `title=..&description=..&pass_through=0&notify_type=-1&time_to_live=<ms>
//! &extra.notify_effect=1[&payload=..][&extra.type=call_invite&extra.call_id=..]`
//! then the client's fields (package, channel), then `&registration_id=<regId>`.
//! Titles are cut below 50 characters and descriptions below 128, as MiPush requires.
//!
//! Options: a silent push is a pass-through message (`pass_through=1`, handed to the
//! app, nothing shown); `collapse_id` → `notify_id` (a number derived from the id: the
//! same id replaces); `ttl_s` → `time_to_live` (ms); the rule's `channel_id` replaces
//! the section's `extra.channel_id`. MiPush has no priority field and takes a sound
//! only as a resource URI of the app (`extra.sound_uri`): neither is sent.

use crate::config::Resource;
use crate::providers::oem::Body;
use crate::providers::splice::Spliced;
use crate::providers::{collapse_number, Content, Kind, TooLarge};

/// Content limit (error 65009 "message too long" above it). [U]
pub const MAX_BYTES: usize = 4096;
const MAX_TITLE_CHARS: usize = 49;
const MAX_DESCRIPTION_CHARS: usize = 127;

fn cut(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

pub fn render(kind: &Kind, c: &Content, rule: &Resource, ttl_s: u64) -> Result<Body, TooLarge> {
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    let title = cut(c.title.as_deref().unwrap_or(""), MAX_TITLE_CHARS);
    let description = cut(c.content.as_deref().unwrap_or(""), MAX_DESCRIPTION_CHARS);
    let mut form = format!(
        "title={}&description={}&time_to_live={}",
        enc(title),
        enc(description),
        ttl_s.saturating_mul(1000)
    );
    if c.silent {
        form.push_str("&pass_through=1");
    } else {
        form.push_str("&pass_through=0&notify_type=-1&extra.notify_effect=1");
        if let Some(ch) = &rule.xiaomi.channel_id {
            form.push_str(&format!("&extra.channel_id={}", enc(ch)));
        }
    }
    if let Some(id) = &c.collapse_id {
        form.push_str(&format!("&notify_id={}", collapse_number(id)));
    }
    let mut size = title.len() + description.len();
    if let Some(p) = &c.payload {
        form.push_str(&format!("&payload={}", enc(p)));
        size += p.len();
    }
    if let Kind::Call {
        call_id,
        inviter_id,
        timeout_s,
    } = kind
    {
        form.push_str(&format!(
            "&extra.type=call_invite&extra.call_id={}&extra.inviter_id={}&extra.timeout_s={timeout_s}",
            enc(call_id),
            enc(inviter_id)
        ));
    }
    TooLarge::check("xiaomi", size, MAX_BYTES)?;
    let spliced = Spliced::new(vec![
        form.into_bytes(),
        Vec::new(),
        b"&registration_id=".to_vec(),
        Vec::new(),
    ]);
    Ok(Body {
        own: [false, c.silent || rule.xiaomi.channel_id.is_some()],
        ..Body::new(spliced)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form of `c` as a client with package `com.x` and channel `ch` sends it to
    /// registration id `a+b`.
    fn form(c: &Content) -> String {
        let t = render(&Kind::message(), c, &Resource::default(), 2).unwrap();
        let body = t.spliced.fill(&[
            b"&restricted_package_name=com.x",
            t.client(1, b"&extra.channel_id=ch"),
            b"a%2Bb",
        ]);
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[test]
    fn form_round_trips() {
        let body = form(&Content::sample("t&=x", "c".repeat(200), "{\"k\":1}"));
        let kv: std::collections::HashMap<String, String> = body
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_string(), urlencoding::decode(v).unwrap().into_owned())
            })
            .collect();
        assert_eq!(kv["title"], "t&=x");
        assert_eq!(kv["description"].len(), 127);
        assert_eq!(kv["payload"], "{\"k\":1}");
        assert_eq!(kv["registration_id"], "a+b");
        assert_eq!(kv["time_to_live"], "2000");
        assert_eq!(kv["restricted_package_name"], "com.x");
        assert_eq!(kv["extra.channel_id"], "ch");
        assert_eq!(kv["pass_through"], "0");
    }

    #[test]
    fn a_silent_push_passes_through_and_collapse_ids_become_notify_ids() {
        let body = form(&Content::silent_sample(Some("conv-1")));
        assert!(body.contains("pass_through=1"), "{body}");
        assert!(!body.contains("notify_type"), "{body}");
        assert!(!body.contains("channel_id"), "{body}");
        assert!(body.contains(&format!("notify_id={}", collapse_number("conv-1"))));
    }
}
