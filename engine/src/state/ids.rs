//! Identifier rules and user interning.
//!
//! Every user id is interned once into a dense [`UserIdx`]; the hot paths (presence
//! bits, group member lists, the device index) work on indexes, never on strings.
//! The string → index map is a sharded `DashMap`; the index → string table is
//! append-only and only read when a response must name a user.

use std::hash::BuildHasher;
use std::sync::Arc;

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

const SHARDS: usize = 64;

/// Index → name, append-only: all names in one byte buffer plus end offsets, so a user
/// costs its name's bytes and 4 bytes, not an allocation.
#[derive(Default)]
struct Arena {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Arena {
    fn get(&self, idx: UserIdx) -> &str {
        let i = idx as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        std::str::from_utf8(&self.bytes[start..self.ends[i] as usize]).expect("stored from a str")
    }
}

/// Append-only user interner: string → dense index in sharded hash tables that store
/// only the 4-byte index (the name lives once, in the arena).
///
/// Lock order: a shard, then the arena. `name` takes only the arena's read lock.
pub struct Interner {
    hasher: hashbrown::DefaultHashBuilder,
    shards: Box<[RwLock<hashbrown::HashTable<UserIdx>>]>,
    arena: RwLock<Arena>,
}

impl Interner {
    pub fn new() -> Self {
        Self {
            hasher: hashbrown::DefaultHashBuilder::default(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(hashbrown::HashTable::new()))
                .collect(),
            arena: RwLock::new(Arena::default()),
        }
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// The index of `name`, creating it on first sight.
    pub fn intern(&self, name: &str) -> UserIdx {
        let h = self.hash(name);
        let shard = &self.shards[(h as usize) % SHARDS];
        {
            let table = shard.read();
            let arena = self.arena.read();
            if let Some(idx) = table.find(h, |&i| arena.get(i) == name) {
                return *idx;
            }
        }
        let mut table = shard.write();
        let mut arena = self.arena.write();
        if let Some(idx) = table.find(h, |&i| arena.get(i) == name) {
            return *idx;
        }
        let idx = UserIdx::try_from(arena.ends.len()).expect("fewer than 2^32 users");
        arena.bytes.extend_from_slice(name.as_bytes());
        let end = u32::try_from(arena.bytes.len()).expect("fewer than 4 GiB of user ids");
        arena.ends.push(end);
        let hasher = &self.hasher;
        let arena = &*arena;
        table.insert_unique(h, idx, |&i| hasher.hash_one(arena.get(i)));
        idx
    }

    /// The index of `name` if it was ever interned.
    pub fn get(&self, name: &str) -> Option<UserIdx> {
        let h = self.hash(name);
        let table = self.shards[(h as usize) % SHARDS].read();
        let arena = self.arena.read();
        table.find(h, |&i| arena.get(i) == name).copied()
    }

    /// The name of an index handed out by [`Interner::intern`] (allocates: for
    /// responses and snapshots, not the hot path).
    pub fn name(&self, idx: UserIdx) -> Arc<str> {
        Arc::from(self.arena.read().get(idx))
    }

    pub fn len(&self) -> usize {
        self.arena.read().ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Call `f` with every name in index order. The table is append-only, so a walk
    /// taken after reading other state covers every index that state holds.
    pub fn for_each_name(&self, mut f: impl FnMut(&str)) {
        let arena = self.arena.read();
        for i in 0..arena.ends.len() {
            f(arena.get(i as UserIdx));
        }
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
