//! Identifier rules and user interning.
//!
//! Every user id the state refers to is interned into a dense [`UserIdx`]; the hot paths
//! (presence bits, group member lists, the device index) work on indexes, never on
//! strings. Indexes are not forever: a user nothing refers to any more (no binding, no
//! session, no group membership) is released by a sweep (`State::sweep`) and its slot
//! is reused, lowest first, so junk ids cost nothing after a short while.
//!
//! The sweep does not test every user: whoever drops a reference (the last device, the
//! last session, the last membership) or interns a new user marks that user in the
//! [`IdleHints`], *after* the change, and the sweep takes the marks and tests only
//! those users. A mark taken before a drop is followed by a test that sees the
//! reference and forgets the user; the drop then marks it again. So a user that
//! becomes unreferenced is always tested once more, and the sweep costs the number of
//! marks plus one load per 64 slots, not one test per user.
//!
//! # Why a released index cannot be confused with another user
//!
//! An index is only a name for a user while nobody can release it. The rule:
//!
//! 1. Indexes are obtained ([`Pin::intern`], [`Pin::get`]) and used only through a
//!    [`Pin`], a shared hold on the interner's release lock. A pin lives on the stack
//!    of one request or one durable mutation (it is `!Send`, so it is never held across
//!    an `.await`), and everything that stores an index into state (a binding, a
//!    session, a group member) does so while its pin is held.
//! 2. Indexes are released only through a [`Release`], the exclusive hold on the same
//!    lock: while it exists no pin exists, so no thread is between obtaining an index
//!    and storing or using it. Whatever refers to an index at that moment is in the
//!    state itself, and the sweep checks the state for references under the `Release`
//!    before releasing (`State::referenced`). Nothing can add a reference while it
//!    checks, because adding one needs a pin.
//! 3. Anything that keeps an index beyond its pin keeps it *in the state* (and so
//!    prevents its release), or must not use it as a user's name: the push records
//!    queued in the dispatcher carry their owner's index but are only ever matched by
//!    push id and token.
//!
//! Durable mutations intern inside `State::apply_in_memory` under their own pin, i.e.
//! under the journal's sequence lock; the log records user *names*, so replaying it
//! after a restart rebuilds the same state whatever indexes the names get. Snapshot
//! capture holds one pin for its whole walk, so every index it writes names the same
//! user from the moment it reads it until it resolves the name.
//!
//! Pins are recursive read locks: a pin never waits for a sweep that is only *waiting*
//! for the lock while other pins are held (so a long snapshot never blocks requests
//! behind a queued sweep, and nested pins cannot deadlock), and a sweep waits for the
//! lock a bounded time and otherwise tries again on its next round.
//!
//! The string → index map is a set of sharded hash tables storing only the 4-byte
//! index; the names live once, in an arena (one byte buffer, compacted when more than
//! half of it is released names).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

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

const HINT_SEGMENT_WORDS: usize = 1024;

/// Users that may have lost their last reference (or were just interned): one bit per
/// slot, in segments of 65,536 allocated on first use. Set by whoever drops a
/// reference, taken by the sweep a word (64 users) at a time.
#[derive(Default)]
pub struct IdleHints {
    segments: RwLock<Vec<Box<[AtomicU64]>>>,
}

impl IdleHints {
    /// Mark `user` for the next sweep. Call it after the reference is gone.
    pub fn mark(&self, user: UserIdx) {
        let w = user as usize / 64;
        let (s, i, bit) = (
            w / HINT_SEGMENT_WORDS,
            w % HINT_SEGMENT_WORDS,
            1u64 << (user % 64),
        );
        {
            let segs = self.segments.read();
            if let Some(seg) = segs.get(s) {
                seg[i].fetch_or(bit, Ordering::AcqRel);
                return;
            }
        }
        let mut segs = self.segments.write();
        while segs.len() <= s {
            segs.push((0..HINT_SEGMENT_WORDS).map(|_| AtomicU64::new(0)).collect());
        }
        segs[s][i].fetch_or(bit, Ordering::AcqRel);
    }

    /// Clear and return the marks of users `64 * w .. 64 * w + 63`.
    pub fn take_word(&self, w: usize) -> u64 {
        let segs = self.segments.read();
        match segs.get(w / HINT_SEGMENT_WORDS) {
            Some(seg) => {
                let word = &seg[w % HINT_SEGMENT_WORDS];
                if word.load(Ordering::Acquire) == 0 {
                    0
                } else {
                    word.swap(0, Ordering::AcqRel)
                }
            }
            None => 0,
        }
    }

    /// Whether `user` is marked (tests).
    pub fn is_marked(&self, user: UserIdx) -> bool {
        let w = user as usize / 64;
        let segs = self.segments.read();
        segs.get(w / HINT_SEGMENT_WORDS).is_some_and(|seg| {
            seg[w % HINT_SEGMENT_WORDS].load(Ordering::Acquire) & (1u64 << (user % 64)) != 0
        })
    }
}

/// Where a slot's name lies in the arena's buffer; `len == FREE` marks a released slot.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

const FREE: u32 = u32::MAX;

/// Index → name: all names in one byte buffer plus a span per slot, so a user costs
/// its name's bytes and 8 bytes, not an allocation.
#[derive(Default)]
struct Arena {
    bytes: Vec<u8>,
    spans: Vec<Span>,
    /// Released slots, highest first (so `pop` reuses the lowest and the tail of
    /// `spans` can be trimmed when the highest slots are free).
    free: Vec<UserIdx>,
    /// Bytes of released names still in `bytes`.
    garbage: usize,
}

impl Arena {
    fn get(&self, idx: UserIdx) -> &str {
        let s = self.spans[idx as usize];
        debug_assert!(s.len != FREE, "slot {idx} is released");
        let start = s.start as usize;
        let end = start + if s.len == FREE { 0 } else { s.len as usize };
        std::str::from_utf8(&self.bytes[start..end]).expect("stored from a str")
    }

    fn is_live(&self, idx: UserIdx) -> bool {
        self.spans.get(idx as usize).is_some_and(|s| s.len != FREE)
    }

    fn live(&self) -> usize {
        self.spans.len() - self.free.len()
    }

    fn store(&mut self, name: &str) -> UserIdx {
        let start = u32::try_from(self.bytes.len()).expect("fewer than 4 GiB of user ids");
        self.bytes.extend_from_slice(name.as_bytes());
        u32::try_from(self.bytes.len()).expect("fewer than 4 GiB of user ids");
        let span = Span {
            start,
            len: name.len() as u32,
        };
        match self.free.pop() {
            Some(idx) => {
                self.spans[idx as usize] = span;
                idx
            }
            None => {
                let idx = UserIdx::try_from(self.spans.len()).expect("fewer than 2^32 users");
                self.spans.push(span);
                idx
            }
        }
    }

    /// After releases: order the free list, drop free slots at the end of the table,
    /// and rewrite the name buffer once released names are most of it.
    fn tidy(&mut self) {
        // Stable sort: the list is one sorted run plus what was released since, which
        // it merges in linear time.
        self.free.sort_by(|a, b| b.cmp(a));
        let top = self
            .free
            .iter()
            .enumerate()
            .take_while(|(i, idx)| **idx as usize + i + 1 == self.spans.len())
            .count();
        if top > 0 {
            self.free.drain(..top);
            self.spans.truncate(self.spans.len() - top);
        }
        if self.spans.capacity() > 2 * self.spans.len() + 1024 {
            self.spans.shrink_to_fit();
        }
        if self.free.capacity() > 2 * self.free.len() + 1024 {
            self.free.shrink_to_fit();
        }
        if self.garbage > 4096 && self.garbage * 2 > self.bytes.len() {
            let mut bytes = Vec::with_capacity(self.bytes.len() - self.garbage);
            for span in self.spans.iter_mut().filter(|s| s.len != FREE) {
                let start = span.start as usize;
                let at = bytes.len() as u32;
                bytes.extend_from_slice(&self.bytes[start..start + span.len as usize]);
                span.start = at;
            }
            self.bytes = bytes;
            self.garbage = 0;
        }
    }
}

/// The user interner: string → dense index in sharded hash tables that store only the
/// 4-byte index (the name lives once, in the arena), with release and reuse of indexes
/// under the protocol in the module doc.
///
/// Lock order: the release lock, then a shard, then the arena. A [`Release`] takes the
/// arena first: nothing else touches the shards while it exists.
pub struct Interner {
    hasher: hashbrown::DefaultHashBuilder,
    shards: Box<[RwLock<hashbrown::HashTable<UserIdx>>]>,
    arena: RwLock<Arena>,
    /// Shared by every [`Pin`], exclusive for a [`Release`].
    release: RwLock<()>,
    hints: Arc<IdleHints>,
}

impl Interner {
    pub fn new() -> Self {
        Self {
            hasher: hashbrown::DefaultHashBuilder::default(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(hashbrown::HashTable::new()))
                .collect(),
            arena: RwLock::new(Arena::default()),
            release: RwLock::new(()),
            hints: Arc::default(),
        }
    }

    /// The marks of users that may be unreferenced: shared with the structures that
    /// hold references (registry, presence, groups), which mark what they drop.
    pub fn hints(&self) -> &Arc<IdleHints> {
        &self.hints
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// Hold indexes: no index is released while the pin lives (see the module doc).
    /// Never blocks behind a sweep that is waiting for the lock while other pins are
    /// held; waits only while a sweep is releasing (one bounded batch).
    pub fn pin(&self) -> Pin<'_> {
        Pin {
            users: self,
            _guard: self.release.read_recursive(),
        }
    }

    /// The exclusive hold a sweep releases indexes under, if no pin goes away within
    /// `wait` (a long snapshot capture holds one; the sweep then tries next round).
    pub fn try_release(&self, wait: Duration) -> Option<Release<'_>> {
        self.release.try_write_for(wait).map(|g| Release {
            users: self,
            _guard: g,
        })
    }

    /// Number of users interned now.
    pub fn len(&self) -> usize {
        self.arena.read().live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the highest slot: the range a sweep walks.
    pub fn slots(&self) -> usize {
        self.arena.read().spans.len()
    }
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

/// A shared hold on the interner's indexes: while it lives, every index obtained
/// through it (or found in the state) keeps naming the same user.
pub struct Pin<'a> {
    users: &'a Interner,
    _guard: RwLockReadGuard<'a, ()>,
}

impl Pin<'_> {
    /// The index of `name`, creating it on first sight. The caller stores it into the
    /// state (a binding, a session, a membership) before dropping the pin, or the next
    /// sweep releases it again.
    pub fn intern(&self, name: &str) -> UserIdx {
        let users = self.users;
        let h = users.hash(name);
        let shard = &users.shards[(h as usize) % SHARDS];
        {
            let table = shard.read();
            let arena = users.arena.read();
            if let Some(idx) = table.find(h, |&i| arena.get(i) == name) {
                return *idx;
            }
        }
        let mut table = shard.write();
        let mut arena = users.arena.write();
        if let Some(idx) = table.find(h, |&i| arena.get(i) == name) {
            return *idx;
        }
        let idx = arena.store(name);
        let hasher = &users.hasher;
        let arena = &*arena;
        table.insert_unique(h, idx, |&i| hasher.hash_one(arena.get(i)));
        // A caller may intern and then store nothing (a member added and removed in
        // one request): the sweep tests every new user once.
        users.hints.mark(idx);
        idx
    }

    /// The index of `name` if it is interned. A user without one has no binding, no
    /// session and no membership: offline, with nothing to push to.
    pub fn get(&self, name: &str) -> Option<UserIdx> {
        let users = self.users;
        let h = users.hash(name);
        let table = users.shards[(h as usize) % SHARDS].read();
        let arena = users.arena.read();
        table.find(h, |&i| arena.get(i) == name).copied()
    }

    /// [`Pin::intern`] when `create`, else [`Pin::get`]: a change that stores something
    /// for the user interns it, one that clears something leaves an unknown user
    /// unknown.
    pub fn find(&self, name: &str, create: bool) -> Option<UserIdx> {
        if create {
            Some(self.intern(name))
        } else {
            self.get(name)
        }
    }

    /// The name of an index obtained under this pin or found in the state (allocates:
    /// for responses, not the hot path).
    pub fn name(&self, idx: UserIdx) -> Arc<str> {
        Arc::from(self.users.arena.read().get(idx))
    }

    /// Call `f` with the name of each index in `idxs`, in order, under one lock.
    pub fn with_names(&self, idxs: impl IntoIterator<Item = UserIdx>, mut f: impl FnMut(&str)) {
        let arena = self.users.arena.read();
        for i in idxs {
            f(arena.get(i));
        }
    }
}

/// The exclusive hold on the interner's indexes: no [`Pin`] exists while it lives.
pub struct Release<'a> {
    users: &'a Interner,
    _guard: RwLockWriteGuard<'a, ()>,
}

impl Release<'_> {
    /// Whether `idx` is an interned user (not a released slot).
    pub fn is_live(&self, idx: UserIdx) -> bool {
        self.users.arena.read().is_live(idx)
    }

    /// Release every live index in `idxs` (the caller checked that nothing refers to
    /// them); their slots are reused by later interns. Returns how many were released.
    /// Cheap per index; [`Release::tidy`] does the per-table work once per batch run.
    pub fn release(&self, idxs: &[UserIdx]) -> usize {
        let users = self.users;
        let mut arena = users.arena.write();
        let mut released = 0;
        for &idx in idxs {
            if !arena.is_live(idx) {
                continue;
            }
            let h = users.hash(arena.get(idx));
            let mut table = users.shards[(h as usize) % SHARDS].write();
            if let Ok(e) = table.find_entry(h, |&i| i == idx) {
                e.remove();
            }
            let span = &mut arena.spans[idx as usize];
            let len = span.len as usize;
            span.len = FREE;
            arena.garbage += len;
            arena.free.push(idx);
            released += 1;
        }
        released
    }

    /// After releasing: order the free list (lowest slot reused first), drop free
    /// slots at the end of the table, rewrite the name buffer once released names are
    /// more than half of it, and shrink hash tables that are mostly empty. Linear in
    /// the table sizes: once per sweep step, not per batch.
    pub fn tidy(self) {
        let users = self.users;
        let mut arena = users.arena.write();
        for shard in users.shards.iter() {
            let mut table = shard.write();
            if table.capacity() > 4 * table.len() + 64 {
                let hasher = &users.hasher;
                let arena = &*arena;
                let len = table.len();
                table.shrink_to(len, |&i| hasher.hash_one(arena.get(i)));
            }
        }
        arena.tidy();
    }
}

#[cfg(test)]
mod tests;
