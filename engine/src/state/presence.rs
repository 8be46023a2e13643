//! Presence: who is online right now.
//!
//! Two structures, kept in step:
//! - a segmented atomic bitset indexed by [`UserIdx`]: bit set ⇔ the user has at least
//!   one unexpired session. Fan-out reads it lock-free, one load per member;
//! - the sessions themselves (multi-device, each with an optional deadline) in
//!   [`SHARDS`] independently locked shards, each with its own expiry wheel.
//!   [`Presence::sweep`] pops due entries; no task or timer per session.
//!
//! Bounded by construction: a user holds at most `max_sessions` sessions (a new one
//! evicts the least recently announced), so finding a session is a scan of a short
//! list; and the wheel holds exactly one entry per user that has an expiring session,
//! filed at or before that user's earliest deadline. A refresh that pushes a deadline
//! later leaves the entry where it is (it fires early, finds the session still live and
//! files the user again at its new earliest deadline); one that brings a deadline
//! earlier moves it. Refreshing the same sessions forever therefore keeps the wheel's
//! size flat, and a user with no sessions has no entry and no record.
//!
//! A user whose last session expired is offline as soon as anything looks at them
//! exactly ([`Presence::status`]) and at the latest one sweep interval later for the
//! lock-free bit.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use smallvec::SmallVec;

use super::ids::{IdleHints, UserIdx};
use crate::clock::Clock;

const SHARDS: usize = 64;
const SEGMENT_BITS: usize = 1 << 16;
const SEGMENT_WORDS: usize = SEGMENT_BITS / 64;
const SEGMENTS: usize = 1 << 16; // 2^16 segments × 2^16 bits covers every u32

/// Sessions a user may hold when the configuration says nothing.
pub const DEFAULT_MAX_SESSIONS: usize = 32;
/// The most `presence.max_sessions_per_user` may be: finding a session scans the
/// user's list, which must stay short.
pub const MAX_SESSIONS_LIMIT: usize = 256;

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

/// One user's sessions, least recently announced first.
struct Sessions {
    list: SmallVec<[Session; 2]>,
    /// The wheel second this user is filed under, or [`NOT_FILED`].
    filed: u64,
}

const NOT_FILED: u64 = u64::MAX;

/// A wheel entry: deadline second in the high half, user in the low half, so the
/// set orders entries by due time.
#[inline]
fn wheel_key(sec: u64, user: UserIdx) -> u64 {
    (sec.min(u64::from(u32::MAX)) << 32) | u64::from(user)
}

#[derive(Default)]
struct Shard {
    users: HashMap<UserIdx, Sessions>,
    /// Exactly `wheel_key(s.filed, user)` for each user whose `filed` is set.
    wheel: BTreeSet<u64>,
}

impl Shard {
    /// File `user` (whose record is `rec`) so it is looked at by `deadline_ms`.
    fn file(wheel: &mut BTreeSet<u64>, rec: &mut Sessions, user: UserIdx, deadline_ms: u64) {
        if deadline_ms == u64::MAX {
            return;
        }
        let sec = deadline_ms.div_ceil(1000);
        if rec.filed != NOT_FILED {
            if rec.filed <= sec {
                return;
            }
            wheel.remove(&wheel_key(rec.filed, user));
        }
        wheel.insert(wheel_key(sec, user));
        rec.filed = sec;
    }

    /// Drop `user`'s record and wheel entry; true if there was a record.
    fn forget(&mut self, user: UserIdx) -> bool {
        match self.users.remove(&user) {
            Some(rec) => {
                if rec.filed != NOT_FILED {
                    self.wheel.remove(&wheel_key(rec.filed, user));
                }
                true
            }
            None => false,
        }
    }
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
    max_sessions: usize,
    evicted: AtomicU64,
    /// Where a user whose last session record goes is marked for the user sweep.
    hints: Arc<IdleHints>,
}

impl Presence {
    /// `max_sessions` per user (clamped to 1..=[`MAX_SESSIONS_LIMIT`]).
    pub fn new(clock: Clock, max_sessions: usize, hints: Arc<IdleHints>) -> Self {
        Self {
            clock,
            bits: Bitset::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            online: AtomicUsize::new(0),
            max_sessions: max_sessions.clamp(1, MAX_SESSIONS_LIMIT),
            evicted: AtomicU64::new(0),
            hints,
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

    /// Sessions evicted because their user already had `max_sessions`.
    pub fn evicted_sessions(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Does the user have a session record (live or not yet swept)? What keeps their
    /// index from being released.
    pub fn has_sessions(&self, user: UserIdx) -> bool {
        self.shard(user).lock().users.contains_key(&user)
    }

    /// Apply one presence event. `ttl_s == 0` means the session never expires. An
    /// online event for a user at `max_sessions` evicts their expired sessions, or
    /// else the least recently announced one. The caller holds a pin for `user`
    /// (`ids::Pin`): this stores the index.
    pub fn apply(&self, user: UserIdx, session_id: &str, online: bool, ttl_s: u64) {
        let now = self.clock.now_ms();
        let mut guard = self.shard(user).lock();
        let shard = &mut *guard;
        if online {
            let deadline_ms = if ttl_s == 0 {
                u64::MAX
            } else {
                now.saturating_add(ttl_s.saturating_mul(1000))
            };
            let rec = shard.users.entry(user).or_insert_with(|| Sessions {
                list: SmallVec::new(),
                filed: NOT_FILED,
            });
            match rec.list.iter().position(|s| &*s.id == session_id) {
                Some(i) => {
                    let mut s = rec.list.remove(i);
                    s.deadline_ms = deadline_ms;
                    rec.list.push(s);
                }
                None => {
                    if rec.list.len() >= self.max_sessions {
                        rec.list.retain(|s| s.deadline_ms > now);
                    }
                    if rec.list.len() >= self.max_sessions {
                        rec.list.remove(0);
                        self.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    rec.list.push(Session {
                        id: session_id.into(),
                        deadline_ms,
                    });
                }
            }
            Shard::file(&mut shard.wheel, rec, user, deadline_ms);
            if self.bits.set(user) {
                self.online.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let now_empty = match shard.users.get_mut(&user) {
                Some(rec) => {
                    rec.list
                        .retain(|s| &*s.id != session_id && s.deadline_ms > now);
                    rec.list.is_empty()
                }
                None => true,
            };
            if now_empty {
                if shard.forget(user) {
                    self.hints.mark(user);
                }
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
            Some(rec) => {
                rec.list.retain(|s| s.deadline_ms > now);
                rec.list.len()
            }
            None => 0,
        };
        if live == 0 {
            if shard.forget(user) {
                self.hints.mark(user);
            }
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
            let mut guard = shard.lock();
            let shard = &mut *guard;
            while let Some(&key) = shard.wheel.first() {
                if key >> 32 > due_sec {
                    break;
                }
                shard.wheel.pop_first();
                let user = key as UserIdx;
                let Some(rec) = shard.users.get_mut(&user) else {
                    debug_assert!(false, "a wheel entry without a record");
                    continue;
                };
                rec.filed = NOT_FILED;
                rec.list.retain(|s| s.deadline_ms > now);
                if rec.list.is_empty() {
                    shard.users.remove(&user);
                    self.hints.mark(user);
                    self.set_offline(user);
                } else if let Some(next) = rec.list.iter().map(|s| s.deadline_ms).min() {
                    // Every remaining deadline is after `now`, so this files the user
                    // after `due_sec`: the loop ends.
                    Shard::file(&mut shard.wheel, rec, user, next);
                }
            }
        }
    }

    /// Entries in the expiry wheels (one per user with an expiring session).
    pub fn wheel_len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().wheel.len()).sum()
    }

    /// Users with a session record.
    pub fn users_with_sessions(&self) -> usize {
        self.shards.iter().map(|s| s.lock().users.len()).sum()
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
        let p = Presence::new(Clock::new(), DEFAULT_MAX_SESSIONS, Arc::default());
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
        let p = Presence::new(Clock::new(), DEFAULT_MAX_SESSIONS, Arc::default());
        p.apply(1, "s", false, 0);
        assert!(!p.is_online(1));
        p.apply(1, "s", true, 0);
        p.sweep();
        assert!(p.is_online(1));
        assert_eq!(p.online_users(), 1);
    }

    #[test]
    fn refreshing_the_same_sessions_keeps_the_wheel_flat() {
        let p = Presence::new(Clock::new(), DEFAULT_MAX_SESSIONS, Arc::default());
        for round in 0..2_000u64 {
            for user in 0..50u32 {
                for session in ["phone", "web"] {
                    // Alternate long and short TTLs so deadlines move both ways.
                    p.apply(user, session, true, 60 + (round % 7) * 100);
                }
            }
            assert!(p.wheel_len() <= 50, "round {round}: {}", p.wheel_len());
        }
        assert_eq!(p.wheel_len(), 50);
        assert_eq!(p.users_with_sessions(), 50);
        assert_eq!(p.status(3).sessions, 2);
    }

    #[test]
    fn online_offline_cycles_leave_no_wheel_entry_or_record() {
        let p = Presence::new(Clock::new(), DEFAULT_MAX_SESSIONS, Arc::default());
        for round in 0..1_000u32 {
            let user = round % 10;
            p.apply(user, "s", true, 3_600);
            p.apply(user, "s", false, 0);
        }
        assert_eq!(p.wheel_len(), 0);
        assert_eq!(p.users_with_sessions(), 0);
        assert_eq!(p.online_users(), 0);
        assert!(!p.has_sessions(3));
    }

    #[test]
    fn an_extra_session_evicts_the_least_recently_announced() {
        let p = Presence::new(Clock::new(), 4, Arc::default());
        for s in ["a", "b", "c", "d"] {
            p.apply(1, s, true, 0);
        }
        p.apply(1, "a", true, 0); // refreshed: now "b" is the oldest
        p.apply(1, "e", true, 0);
        assert_eq!(p.status(1).sessions, 4);
        assert_eq!(p.evicted_sessions(), 1);
        for s in ["a", "c", "d", "e"] {
            assert!(p.is_online(1), "{s} still counted");
            p.apply(1, s, false, 0);
        }
        assert!(!p.is_online(1), "b was the one evicted");
        assert!(!p.has_sessions(1));
        assert!(p.hints.is_marked(1), "the sweep will look at user 1");
    }

    #[test]
    fn an_earlier_deadline_moves_the_users_wheel_entry() {
        let p = Presence::new(Clock::new(), DEFAULT_MAX_SESSIONS, Arc::default());
        p.apply(9, "long", true, 3_600);
        p.apply(9, "short", true, 1);
        assert_eq!(p.wheel_len(), 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while p.status(9).sessions != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "short session expires"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The sweep finds "short" gone and files the user again for "long".
        p.sweep();
        assert_eq!(p.wheel_len(), 1);
        assert!(p.is_online(9));
        p.apply(9, "long", false, 0);
        assert_eq!(p.wheel_len(), 0);
        assert!(!p.is_online(9));
    }

    #[test]
    fn expired_sessions_are_swept_offline() {
        let p = Presence::new(Clock::new(), DEFAULT_MAX_SESSIONS, Arc::default());
        for user in 0..100 {
            p.apply(user, "s", true, 1);
        }
        assert_eq!(p.online_users(), 100);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while p.online_users() > 0 {
            assert!(std::time::Instant::now() < deadline, "sessions expire");
            std::thread::sleep(std::time::Duration::from_millis(20));
            p.sweep();
        }
        assert_eq!(p.wheel_len(), 0);
        assert_eq!(p.users_with_sessions(), 0);
    }
}
