//! A body rendered once per message with slots filled per device.
//!
//! Vendors that put the device token (and a few per-client fields such as a channel
//! id) inside the body get a [`Spliced`]: the fixed bytes between the slots are
//! rendered once; each device costs one buffer of the right size and a few copies.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::{data_fields, Content, Kind, TooLarge};

#[derive(Debug, Clone, Default)]
pub struct Spliced {
    parts: Box<[Bytes]>,
    fixed: usize,
}

impl Spliced {
    /// `parts.len() - 1` slots sit between the parts.
    pub fn new(parts: Vec<Vec<u8>>) -> Self {
        let fixed = parts.iter().map(Vec::len).sum();
        Self {
            parts: parts.into_iter().map(Bytes::from).collect(),
            fixed,
        }
    }

    /// Bytes of the fixed parts (the body without its slots).
    pub fn fixed_len(&self) -> usize {
        self.fixed
    }

    /// This body, if its fixed parts fit `vendor`'s `limit`.
    pub fn within(self, vendor: &'static str, limit: usize) -> Result<Self, TooLarge> {
        TooLarge::check(vendor, self.fixed, limit)?;
        Ok(self)
    }

    /// The body with `slots` filled in order.
    pub fn fill(&self, slots: &[&[u8]]) -> Bytes {
        debug_assert_eq!(slots.len() + 1, self.parts.len(), "slot count");
        let mut b =
            BytesMut::with_capacity(self.fixed + slots.iter().map(|s| s.len()).sum::<usize>());
        for (i, part) in self.parts.iter().enumerate() {
            b.put_slice(part);
            if let Some(s) = slots.get(i) {
                b.put_slice(s);
            }
        }
        b.freeze()
    }

    /// The body with `slots` filled in order, each encoded as it says: one buffer of
    /// the exact size, no other allocation.
    pub fn fill_slots(&self, slots: &[Slot<'_>]) -> Bytes {
        debug_assert_eq!(slots.len() + 1, self.parts.len(), "slot count");
        let mut b =
            BytesMut::with_capacity(self.fixed + slots.iter().map(Slot::len).sum::<usize>());
        for (i, part) in self.parts.iter().enumerate() {
            b.put_slice(part);
            if let Some(s) = slots.get(i) {
                s.write(&mut b);
            }
        }
        b.freeze()
    }
}

/// The placeholder a per-recipient badge is rendered with before its body is cut
/// around it ([`badge_slot`]): no real total is this large in a body.
pub const BADGE_MARK: u32 = u32::MAX;

/// The digits a badge slot takes at most.
pub const BADGE_DIGITS: usize = 10;

/// Cut `body` (serialized JSON) around the value of its one `"<key>":`[`BADGE_MARK`]
/// member: the bytes before the value and after it, so the badge becomes a slot.
/// Inside JSON strings a quote is escaped, so the unescaped `"<key>":4294967295` can
/// only be that member.
pub fn cut_badge(body: &[u8], key: &str) -> (Vec<u8>, Vec<u8>) {
    let mark = format!("\"{key}\":{BADGE_MARK}");
    let at = body
        .windows(mark.len())
        .position(|w| w == mark.as_bytes())
        .expect("the body was rendered with the badge mark");
    let value = at + key.len() + 3;
    let end = at + mark.len();
    (body[..value].to_vec(), body[end..].to_vec())
}

/// The badge number a visible push's JSON carries: [`BADGE_MARK`] when each recipient
/// gets their own total (the body is then cut around it, [`badge_slot`]), else
/// `push.badge`; `None` without a badge.
pub fn badge_value(c: &Content) -> Option<u32> {
    if c.per_recipient_badge() {
        Some(BADGE_MARK)
    } else {
        c.badge
    }
}

/// A rendered JSON `body` and, with a per-recipient badge, the same body cut into a
/// slot around its `"<key>":`[`BADGE_MARK`] member ([`cut_badge`]); with the largest
/// size a device's body can reach (what the vendor's size limit is checked against).
pub fn badge_slot(body: &[u8], key: &str, per_recipient: bool) -> (Option<Spliced>, usize) {
    let badged = per_recipient.then(|| {
        let (head, tail) = cut_badge(body, key);
        Spliced::new(vec![head, tail])
    });
    let size = badged
        .as_ref()
        .map_or(body.len(), |b| b.fixed_len() + BADGE_DIGITS);
    (badged, size)
}

/// `title` and `body` of a visible push, those that are set: APNs `aps.alert`, FCM
/// `notification`, the top level of Web Push's plaintext.
pub fn alert_fields(c: &Content) -> Map<String, Value> {
    let mut alert = Map::new();
    insert_some(&mut alert, "title", c.title.as_deref());
    insert_some(&mut alert, "body", c.content.as_deref());
    alert
}

/// Add `key` to a JSON object when `value` is set (an optional field of a body).
pub fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        map.insert(key.into(), v.into());
    }
}

/// A per-device value for one slot of a [`Spliced`] body, encoded while it is copied
/// in (so a device token never needs a `String` of its own).
#[derive(Debug, Clone, Copy)]
pub enum Slot<'a> {
    /// Copied as is.
    Raw(&'a [u8]),
    /// URL-encoded (`application/x-www-form-urlencoded` value).
    Form(&'a str),
    /// A JSON string literal, quotes included.
    Json(&'a str),
}

impl Slot<'_> {
    fn len(&self) -> usize {
        match self {
            Slot::Raw(b) => b.len(),
            Slot::Form(s) => s.bytes().map(|b| if form_safe(b) { 1 } else { 3 }).sum(),
            Slot::Json(s) => 2 + s.bytes().map(json_escaped_len).sum::<usize>(),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        match self {
            Slot::Raw(b) => out.put_slice(b),
            Slot::Form(s) => {
                for b in s.bytes() {
                    if form_safe(b) {
                        out.put_u8(b);
                    } else {
                        out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                    }
                }
            }
            Slot::Json(s) => {
                out.put_u8(b'"');
                for b in s.bytes() {
                    match b {
                        b'"' => out.put_slice(b"\\\""),
                        b'\\' => out.put_slice(b"\\\\"),
                        b'\n' => out.put_slice(b"\\n"),
                        b'\r' => out.put_slice(b"\\r"),
                        b'\t' => out.put_slice(b"\\t"),
                        0x08 => out.put_slice(b"\\b"),
                        0x0c => out.put_slice(b"\\f"),
                        b if b < 0x20 => out.put_slice(&[
                            b'\\',
                            b'u',
                            b'0',
                            b'0',
                            b'0' + (b >> 4),
                            b"0123456789abcdef"[usize::from(b & 15)],
                        ]),
                        b => out.put_u8(b),
                    }
                }
                out.put_u8(b'"');
            }
        }
    }
}

/// Bytes `urlencoding::encode` leaves as they are (RFC 3986 unreserved).
fn form_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn json_escaped_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        b if b < 0x20 => 6,
        _ => 1,
    }
}

/// `s` as a JSON string literal, quotes included.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// A title or text (empty when unset), cut to `max_units` ([`truncate_units`]), as a
/// JSON string literal.
pub fn json_text(s: &Option<String>, max_units: usize) -> String {
    json_str(truncate_units(s.as_deref().unwrap_or(""), max_units))
}

/// The data fields of a push ([`data_fields`]) as the text of a JSON object; `None`
/// when it has none.
pub fn data_json(kind: &Kind, c: &Content) -> Option<String> {
    let data = data_fields(kind, c);
    (!data.is_empty()).then(|| serde_json::to_string(&data).expect("json values serialize"))
}

/// At most `max` units of `s`, counting a non-ASCII character as two units (the
/// Chinese vendors' "40 characters, 20 CJK" rule).
pub fn truncate_units(s: &str, max: usize) -> &str {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += if c.is_ascii() { 1 } else { 2 };
        if units > max {
            return &s[..i];
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_interleaves_slots() {
        let t = Spliced::new(vec![b"a".to_vec(), b"c".to_vec(), b"e".to_vec()]);
        assert_eq!(&t.fill(&[b"b", b"d"])[..], b"abcde");
        assert_eq!(t.fixed_len(), 3);
    }

    #[test]
    fn slots_encode_like_urlencoding_and_serde_json() {
        let t = Spliced::new(vec![
            b"<".to_vec(),
            b"|".to_vec(),
            b"|".to_vec(),
            b">".to_vec(),
        ]);
        for s in [
            "abc_-.~09",
            "a+b/c=d",
            "q\"uo\\te\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "中文 x",
        ] {
            let body = t.fill_slots(&[Slot::Raw(b"r"), Slot::Form(s), Slot::Json(s)]);
            let want = format!("<r|{}|{}>", urlencoding::encode(s), json_str(s));
            assert_eq!(&body[..], want.as_bytes(), "{s:?}");
            assert_eq!(body.len(), want.len());
        }
    }

    #[test]
    fn truncation_counts_cjk_twice() {
        assert_eq!(truncate_units("abcdef", 4), "abcd");
        assert_eq!(truncate_units("你好世界", 5), "你好");
        assert_eq!(truncate_units("ok", 40), "ok");
    }
}
