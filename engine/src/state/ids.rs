//! Identifier rules and user interning.
//!
//! Every user id is interned once into a dense [`UserIdx`]; the hot paths (presence
//! bits, group member lists, the device index) work on indexes, never on strings.
//! The string → index map is a sharded `DashMap`; the index → string table is
//! append-only and only read when a response must name a user.

use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;

/// Dense index of an interned user id.
pub type UserIdx = u32;

/// Longest identifier accepted by the API, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Checks the API's identifier rule: 1..=128 bytes of UTF-8 without control characters.
/// The error is a sentence naming the field.
pub fn validate(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(format!(
            "{field} is {} bytes long; at most {MAX_ID_BYTES} are allowed",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// Append-only user interner.
pub struct Interner {
    map: DashMap<Arc<str>, UserIdx>,
    names: RwLock<Vec<Arc<str>>>,
}

impl Interner {
    pub fn new() -> Self {
        Self {
            map: DashMap::new(),
            names: RwLock::new(Vec::new()),
        }
    }

    /// The index of `name`, creating it on first sight.
    pub fn intern(&self, name: &str) -> UserIdx {
        if let Some(idx) = self.map.get(name) {
            return *idx;
        }
        let key: Arc<str> = Arc::from(name);
        *self.map.entry(key.clone()).or_insert_with(|| {
            // The entry lock for this name is held, so only one index is minted per name.
            let mut names = self.names.write();
            let idx = UserIdx::try_from(names.len()).expect("fewer than 2^32 users");
            names.push(key);
            idx
        })
    }

    /// The index of `name` if it was ever interned.
    pub fn get(&self, name: &str) -> Option<UserIdx> {
        self.map.get(name).map(|i| *i)
    }

    /// The name of an index handed out by [`Interner::intern`].
    pub fn name(&self, idx: UserIdx) -> Arc<str> {
        self.names.read()[idx as usize].clone()
    }

    pub fn len(&self) -> usize {
        self.names.read().len()
    }

    /// A copy of the index → name table (cheap `Arc` clones). The table is append-only,
    /// so a copy taken after reading other state covers every index that state holds.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.names.read().clone()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_dense() {
        let i = Interner::new();
        assert_eq!(i.intern("a"), 0);
        assert_eq!(i.intern("b"), 1);
        assert_eq!(i.intern("a"), 0);
        assert_eq!(i.get("b"), Some(1));
        assert_eq!(i.get("c"), None);
        assert_eq!(&*i.name(1), "b");
    }

    #[test]
    fn identifier_rules() {
        assert!(validate("user_id", "u1").is_ok());
        assert!(validate("user_id", "").unwrap_err().contains("user_id"));
        assert!(validate("user_id", &"x".repeat(129)).is_err());
        assert!(validate("user_id", &"é".repeat(64)).is_ok());
        assert!(validate("user_id", "a\nb").is_err());
    }
}
