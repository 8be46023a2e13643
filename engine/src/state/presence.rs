//! Presence: who is online right now.
//!
//! Two structures, kept in step:
//! - a segmented atomic bitset indexed by [`UserIdx`]: bit set ⇔ the user has at least
//!   one unexpired session. Fan-out reads it lock-free, one load per member;
//! - the sessions themselves (multi-device, each with an optional deadline) in
//!   [`SHARDS`] independently locked shards, each with its own expiry wheel keyed by
//!   deadline second. [`Presence::sweep`] pops due buckets; no task or timer per session.
//!
//! A user whose last session expired is offline as soon as anything looks at them
//! exactly ([`Presence::status`]) and at the latest one sweep interval later for the
//! lock-free bit.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;
use smallvec::SmallVec;

use super::ids::UserIdx;
use crate::clock::Clock;

const SHARDS: usize = 64;
const SEGMENT_BITS: usize = 1 << 16;
const SEGMENT_WORDS: usize = SEGMENT_BITS / 64;
const SEGMENTS: usize = 1 << 16; // 2^16 segments × 2^16 bits covers every u32

/// Lock-free growable bitset over the whole `u32` range; segments are allocated on
/// first set.
pub struct Bitset {
    segments: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Bitset {
    pub fn new() -> Self {
        Self {
            segments: (0..SEGMENTS).map(|_| OnceLock::new()).collect(),
        }
    }

    #[inline]
    fn locate(i: u32) -> (usize, usize, u64) {
        let i = i as usize;
        (i / SEGMENT_BITS, (i % SEGMENT_BITS) / 64, 1u64 << (i % 64))
    }

    #[inline]
    pub fn get(&self, i: u32) -> bool {
        let (s, w, m) = Self::locate(i);
        match self.segments[s].get() {
            Some(seg) => seg[w].load(Ordering::Acquire) & m != 0,
            None => false,
        }
    }

    /// Sets bit `i`; returns whether it was clear before.
    pub fn set(&self, i: u32) -> bool {
        let (s, w, m) = Self::locate(i);
        let seg = self.segments[s]
            .get_or_init(|| (0..SEGMENT_WORDS).map(|_| AtomicU64::new(0)).collect());
        seg[w].fetch_or(m, Ordering::AcqRel) & m == 0
    }

    /// Clears bit `i`; returns whether it was set before.
    pub fn clear(&self, i: u32) -> bool {
        let (s, w, m) = Self::locate(i);
        match self.segments[s].get() {
            Some(seg) => seg[w].fetch_and(!m, Ordering::AcqRel) & m != 0,
            None => false,
        }
    }
}

impl Default for Bitset {
    fn default() -> Self {
        Self::new()
    }
}

struct Session {
    id: Box<str>,
    /// Clock milliseconds after which the session is gone; `u64::MAX` = never.
    deadline_ms: u64,
}

#[derive(Default)]
struct Shard {
    users: HashMap<UserIdx, SmallVec<[Session; 2]>>,
    /// deadline second → users that may have a session expiring then.
    wheel: BTreeMap<u64, Vec<UserIdx>>,
}

/// What [`Presence::status`] reports for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub online: bool,
    pub sessions: usize,
}

pub struct Presence {
    clock: Clock,
    bits: Bitset,
    shards: Box<[Mutex<Shard>]>,
    online: AtomicUsize,
}

impl Presence {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            bits: Bitset::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            online: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn shard(&self, user: UserIdx) -> &Mutex<Shard> {
        &self.shards[user as usize % SHARDS]
    }

    /// Lock-free: does the user have an unexpired session (as of the last sweep)?
    #[inline]
    pub fn is_online(&self, user: UserIdx) -> bool {
        self.bits.get(user)
    }

    /// Number of users online now.
    pub fn online_users(&self) -> usize {
        self.online.load(Ordering::Relaxed)
    }

    /// Apply one presence event. `ttl_s == 0` means the session never expires.
    pub fn apply(&self, user: UserIdx, session_id: &str, online: bool, ttl_s: u64) {
        let now = self.clock.now_ms();
        let mut shard = self.shard(user).lock();
        if online {
            let deadline_ms = if ttl_s == 0 {
                u64::MAX
            } else {
                now.saturating_add(ttl_s.saturating_mul(1000))
            };
            let sessions = shard.users.entry(user).or_default();
            match sessions.iter_mut().find(|s| &*s.id == session_id) {
                Some(s) => s.deadline_ms = deadline_ms,
                None => sessions.push(Session {
                    id: session_id.into(),
                    deadline_ms,
                }),
            }
            if deadline_ms != u64::MAX {
                shard
                    .wheel
                    .entry(deadline_ms.div_ceil(1000))
                    .or_default()
                    .push(user);
            }
            if self.bits.set(user) {
                self.online.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let now_empty = match shard.users.get_mut(&user) {
                Some(sessions) => {
                    sessions.retain(|s| &*s.id != session_id && s.deadline_ms > now);
                    sessions.is_empty()
                }
                None => true,
            };
            if now_empty {
                shard.users.remove(&user);
                self.set_offline(user);
            }
        }
    }

    fn set_offline(&self, user: UserIdx) {
        if self.bits.clear(user) {
            self.online.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Exact status of one user, expiring their stale sessions on the way.
    pub fn status(&self, user: UserIdx) -> Status {
        let now = self.clock.now_ms();
        let mut shard = self.shard(user).lock();
        let live = match shard.users.get_mut(&user) {
            Some(sessions) => {
                sessions.retain(|s| s.deadline_ms > now);
                sessions.len()
            }
            None => 0,
        };
        if live == 0 {
            shard.users.remove(&user);
            self.set_offline(user);
        }
        Status {
            online: live > 0,
            sessions: live,
        }
    }

    /// Expire every session whose deadline has passed. Cheap when nothing is due.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        let due_sec = now / 1000;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            while let Some(entry) = shard.wheel.first_entry() {
                if *entry.key() > due_sec {
                    break;
                }
                let users = entry.remove();
                for user in users {
                    let empty = match shard.users.get_mut(&user) {
                        Some(sessions) => {
                            sessions.retain(|s| s.deadline_ms > now);
                            sessions.is_empty()
                        }
                        None => false,
                    };
                    if empty {
                        shard.users.remove(&user);
                        self.set_offline(user);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_spans_segments() {
        let b = Bitset::new();
        for i in [0u32, 63, 64, 65_535, 65_536, u32::MAX] {
            assert!(!b.get(i));
            assert!(b.set(i));
            assert!(!b.set(i));
            assert!(b.get(i));
        }
        assert!(b.clear(65_536));
        assert!(!b.get(65_536));
        assert!(b.get(65_535));
    }

    #[test]
    fn multi_session_user_stays_online_until_last_session_leaves() {
        let p = Presence::new(Clock::new());
        p.apply(7, "phone", true, 0);
        p.apply(7, "web", true, 0);
        assert!(p.is_online(7));
        p.apply(7, "phone", false, 0);
        assert!(p.is_online(7));
        assert_eq!(p.status(7).sessions, 1);
        p.apply(7, "web", false, 0);
        assert!(!p.is_online(7));
        assert_eq!(p.online_users(), 0);
    }

    #[test]
    fn zero_ttl_never_expires_and_offline_for_unknown_is_harmless() {
        let p = Presence::new(Clock::new());
        p.apply(1, "s", false, 0);
        assert!(!p.is_online(1));
        p.apply(1, "s", true, 0);
        p.sweep();
        assert!(p.is_online(1));
        assert_eq!(p.online_users(), 1);
    }
}
