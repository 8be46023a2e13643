//! Badge counters: each user's unread count, which a push with `badge_increment: n`
//! raises by `n` for every pushed recipient, who then gets their own total.
//!
//! # Cost on the fan-out path
//! A counter is an `AtomicU32` in a table indexed by user index: [`Badges::add`] is two
//! acquire loads to find the counter and one atomic read-modify-write, with no lock,
//! no allocation (except the first time a range of 65,536 users gets a counter) and no
//! log record. A million-member fan-out is a million of those.
//!
//! # Persistence, and what a kill -9 can cost
//! Setting a counter (`PUT /v1/users/{id}/badge`, typically a reset to 0 when the app
//! is opened) is a durable mutation, journaled like a binding. Increments are not
//! journaled: a record per recipient would put a million-member fan-out on the log,
//! and a record per message would have to name every incremented recipient (presence
//! is not durable, so replay could not work them out) and be taken under the log's
//! lock to keep its order with resets. Instead every snapshot writes all counters, and
//! a clean shutdown ends with a snapshot, so a clean restart loses nothing.
//!
//! A kill -9 (or power loss) loses the increments made since the last snapshot
//! (`storage.snapshot_interval_s`, or sooner when the log reaches
//! `storage.wal_max_bytes`): a recovered counter is the snapshot's value with every
//! later set replayed. It is never a set undone: sets are in the log, replayed in
//! order after the snapshot. And it never over-counts: the snapshot only holds
//! increments that happened, and a replayed set overwrites whatever the snapshot held.
//! The device shows a smaller number until the next set or the next increments, which
//! is the failure a badge can best afford.
//!
//! # Why an index with a count is kept
//! A non-zero counter refers to its user (`State::referenced`): the index is not
//! released and given to someone else while it holds a count. Increments happen under
//! the pin the planner holds, so none can happen while the sweep releases indexes.
//! Setting a counter to 0 marks the user for the sweep.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use super::ids::{IdleHints, UserIdx};

/// Counters per leaf table (256 KiB of counters).
const LEAF_BITS: u32 = 16;
/// Leaf tables per middle table; middle tables per root: 2^8 × 2^8 × 2^16 = 2^32.
const DIR_BITS: u32 = 8;
const DIR: usize = 1 << DIR_BITS;
const LEAF: usize = 1 << LEAF_BITS;

type Leaf = Box<[AtomicU32]>;
type Middle = Box<[OnceLock<Leaf>]>;

/// Every user's badge counter (0 when never set).
pub struct Badges {
    root: Box<[OnceLock<Middle>]>,
    hints: Arc<IdleHints>,
}

fn split(user: UserIdx) -> (usize, usize, usize) {
    let u = user as usize;
    (
        u >> (LEAF_BITS + DIR_BITS),
        (u >> LEAF_BITS) & (DIR - 1),
        u & (LEAF - 1),
    )
}

impl Badges {
    pub fn new(hints: Arc<IdleHints>) -> Self {
        Self {
            root: (0..DIR).map(|_| OnceLock::new()).collect(),
            hints,
        }
    }

    /// The counter of `user` if its table exists (it does once any user of its range
    /// had a count).
    #[inline]
    fn counter(&self, user: UserIdx) -> Option<&AtomicU32> {
        let (r, m, l) = split(user);
        Some(&self.root[r].get()?[m].get()?[l])
    }

    /// The counter of `user`, creating its table on first use.
    fn counter_or_new(&self, user: UserIdx) -> &AtomicU32 {
        let (r, m, l) = split(user);
        let middle = self.root[r].get_or_init(|| (0..DIR).map(|_| OnceLock::new()).collect());
        &middle[m].get_or_init(|| (0..LEAF).map(|_| AtomicU32::new(0)).collect())[l]
    }

    /// The counter of `user`.
    pub fn get(&self, user: UserIdx) -> u32 {
        self.counter(user).map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Add `n` to the counter of `user` and return the new total (saturating at
    /// `u32::MAX`): what a fan-out calls once per pushed recipient, under the pin the
    /// recipient's index was obtained with.
    #[inline]
    pub fn add(&self, user: UserIdx, n: u32) -> u32 {
        if n == 0 {
            return self.get(user);
        }
        let c = match self.counter(user) {
            Some(c) => c,
            None => self.counter_or_new(user),
        };
        let prev = c
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_add(n))
            })
            .expect("the update always returns Some");
        prev.saturating_add(n)
    }

    /// Set the counter of `user` to `count`; returns the previous value. Setting 0
    /// marks the user for the sweep (the count no longer refers to them).
    pub fn set(&self, user: UserIdx, count: u32) -> u32 {
        let prev = match (self.counter(user), count) {
            (None, 0) => 0,
            (Some(c), _) => c.swap(count, Ordering::AcqRel),
            (None, _) => self.counter_or_new(user).swap(count, Ordering::AcqRel),
        };
        if count == 0 && prev != 0 {
            self.hints.mark(user);
        }
        prev
    }

    /// Take back a set of `user` from `was` to `set` (the journal could not make it
    /// durable), keeping the increments made since: the counter becomes `was` plus
    /// what was added on top of `set`.
    pub fn unset(&self, user: UserIdx, was: u32, set: u32) {
        let c = self.counter_or_new(user);
        let _ = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(was.saturating_add(v.saturating_sub(set)))
        });
        if c.load(Ordering::Acquire) == 0 {
            self.hints.mark(user);
        }
    }

    /// Visit every non-zero counter (snapshots, the durable view).
    pub fn for_each(&self, mut f: impl FnMut(UserIdx, u32)) {
        for (r, middle) in self.root.iter().enumerate() {
            let Some(middle) = middle.get() else { continue };
            for (m, leaf) in middle.iter().enumerate() {
                let Some(leaf) = leaf.get() else { continue };
                for (l, c) in leaf.iter().enumerate() {
                    let v = c.load(Ordering::Acquire);
                    if v != 0 {
                        let user = (r << (LEAF_BITS + DIR_BITS)) | (m << LEAF_BITS) | l;
                        f(user as UserIdx, v);
                    }
                }
            }
        }
    }
}

impl Default for Badges {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_set_and_saturate_per_user() {
        let b = Badges::default();
        assert_eq!(b.get(5), 0);
        assert_eq!(b.add(5, 0), 0);
        assert!(
            b.root.iter().all(|m| m.get().is_none()),
            "adding 0 allocates nothing"
        );
        assert_eq!(b.add(5, 2), 2);
        assert_eq!(b.add(5, 3), 5);
        assert_eq!(b.add(u32::MAX, 1), 1, "the last index has a counter too");
        assert_eq!(b.add(70_000, u32::MAX), u32::MAX);
        assert_eq!(b.add(70_000, 1), u32::MAX, "saturates");
        assert_eq!(b.set(5, 0), 5);
        assert!(b.hints.is_marked(5), "a reset user may be unreferenced");
        assert_eq!(b.set(6, 0), 0);
        assert!(!b.hints.is_marked(6));
        let mut all = Vec::new();
        b.for_each(|u, c| all.push((u, c)));
        assert_eq!(all, [(70_000, u32::MAX), (u32::MAX, 1)]);
    }

    #[test]
    fn taking_back_a_set_keeps_the_increments_made_after_it() {
        let b = Badges::default();
        b.add(1, 7);
        let was = b.set(1, 0);
        b.add(1, 2);
        b.unset(1, was, 0);
        assert_eq!(b.get(1), 9);
        let was = b.set(2, 4);
        b.unset(2, was, 4);
        assert_eq!(b.get(2), 0);
        assert!(b.hints.is_marked(2));
    }
}
