//! MiPush form bodies, rendered once per message.
//!
//! `title=..&description=..&pass_through=0&notify_type=-1&time_to_live=<ms>
//! &extra.notify_effect=1[&payload=..][&extra.type=call_invite&extra.call_id=..]`
//! then the client's fields, then `&registration_id=<regId>`. Titles are cut below
//! 50 characters and descriptions below 128, as MiPush requires.

use crate::providers::splice::Spliced;
use crate::providers::{Content, Kind, TooLarge};

/// Content limit (error 65009 "message too long" above it). [U]
pub const MAX_BYTES: usize = 4096;
const MAX_TITLE_CHARS: usize = 49;
const MAX_DESCRIPTION_CHARS: usize = 127;

fn cut(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

pub fn render(kind: &Kind, c: &Content, ttl_s: u64) -> Result<Spliced, TooLarge> {
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    let title = cut(c.title.as_deref().unwrap_or(""), MAX_TITLE_CHARS);
    let description = cut(c.content.as_deref().unwrap_or(""), MAX_DESCRIPTION_CHARS);
    let mut form = format!(
        "title={}&description={}&pass_through=0&notify_type=-1&time_to_live={}&extra.notify_effect=1",
        enc(title),
        enc(description),
        ttl_s.saturating_mul(1000)
    );
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
    Ok(Spliced::new(vec![
        form.into_bytes(),
        b"&registration_id=".to_vec(),
        Vec::new(),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_round_trips() {
        let c = Content::sample("t&=x", "c".repeat(200), "{\"k\":1}");
        let t = render(&Kind::message(), &c, 2).unwrap();
        let body = t.fill(&[b"&restricted_package_name=com.x", b"a%2Bb"]);
        let body = std::str::from_utf8(&body).unwrap();
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
    }
}
