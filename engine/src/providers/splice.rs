//! A body rendered once per message with slots filled per device.
//!
//! Vendors that put the device token (and a few per-client fields such as a channel
//! id) inside the body get a [`Spliced`]: the fixed bytes between the slots are
//! rendered once; each device costs one buffer of the right size and a few copies.

use bytes::{BufMut, Bytes, BytesMut};

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
}

/// `s` as a JSON string literal, quotes included.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
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
    fn truncation_counts_cjk_twice() {
        assert_eq!(truncate_units("abcdef", 4), "abcd");
        assert_eq!(truncate_units("你好世界", 5), "你好");
        assert_eq!(truncate_units("ok", 40), "ok");
    }
}
