//! Groups: group id → sorted, deduplicated member indexes.
//!
//! Member lists are immutable `Arc<[UserIdx]>` swapped on change (copy on write):
//! a fan-out takes a cheap `Arc` clone and scans it sequentially against the presence
//! bitset while writers build the next version.
//!
//! Beside them, each user's number of memberships, kept in step with the lists under
//! the group's entry lock: the user sweep asks whether a user is in any group without
//! scanning every group.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::RwLock;

use super::ids::{IdleHints, UserIdx};

pub type Members = Arc<[UserIdx]>;

const COUNT_SEGMENT: usize = 1 << 14;

/// User index → number of groups the user is in: segments of 2^14 counters,
/// allocated when a user of that range first joins a group. A user whose count drops
/// to zero is marked for the user sweep.
struct Memberships {
    segments: RwLock<Vec<Option<Box<[AtomicU32]>>>>,
    hints: Arc<IdleHints>,
}

impl Memberships {
    fn get(&self, user: UserIdx) -> u32 {
        let (s, i) = (user as usize / COUNT_SEGMENT, user as usize % COUNT_SEGMENT);
        match self.segments.read().get(s) {
            Some(Some(seg)) => seg[i].load(Ordering::Acquire),
            _ => 0,
        }
    }

    fn joined(&self, user: UserIdx) {
        let (s, i) = (user as usize / COUNT_SEGMENT, user as usize % COUNT_SEGMENT);
        {
            let segs = self.segments.read();
            if let Some(Some(seg)) = segs.get(s) {
                seg[i].fetch_add(1, Ordering::AcqRel);
                return;
            }
        }
        let mut segs = self.segments.write();
        if segs.len() <= s {
            segs.resize_with(s + 1, || None);
        }
        segs[s].get_or_insert_with(|| (0..COUNT_SEGMENT).map(|_| AtomicU32::new(0)).collect())[i]
            .fetch_add(1, Ordering::AcqRel);
    }

    fn left(&self, user: UserIdx) {
        let (s, i) = (user as usize / COUNT_SEGMENT, user as usize % COUNT_SEGMENT);
        let segs = self.segments.read();
        let prev = match segs.get(s) {
            Some(Some(seg)) => seg[i].fetch_sub(1, Ordering::AcqRel),
            _ => 0,
        };
        debug_assert!(
            prev > 0,
            "user {user} left a group they were not counted in"
        );
        drop(segs);
        if prev == 1 {
            self.hints.mark(user);
        }
    }
}

pub struct Groups {
    map: DashMap<Arc<str>, Members>,
    memberships: Memberships,
}

impl Groups {
    pub fn new(hints: Arc<IdleHints>) -> Self {
        Self {
            map: DashMap::new(),
            memberships: Memberships {
                segments: RwLock::default(),
                hints,
            },
        }
    }

    /// Number of groups `user` is a member of.
    pub fn memberships(&self, user: UserIdx) -> u32 {
        self.memberships.get(user)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Add and remove members; creates the group when `add` is not empty. Returns the
    /// member count (0 and no group when it did not exist and nothing was added).
    pub fn update(&self, group: &Arc<str>, add: &[UserIdx], remove: &[UserIdx]) -> usize {
        let mut add = add.to_vec();
        add.sort_unstable();
        add.dedup();
        let mut remove = remove.to_vec();
        remove.sort_unstable();
        remove.dedup();
        let counts = &self.memberships;
        let (joined, left) = (|u| counts.joined(u), |u| counts.left(u));
        match self.map.entry(group.clone()) {
            Entry::Occupied(mut e) => {
                let next = merge(e.get(), &add, &remove, joined, left);
                let n = next.len();
                e.insert(next.into());
                n
            }
            Entry::Vacant(e) => {
                let next = merge(&[], &add, &remove, joined, left);
                let n = next.len();
                if n > 0 {
                    e.insert(next.into());
                }
                n
            }
        }
    }

    /// Visit every group with its current member list.
    pub fn for_each(&self, mut f: impl FnMut(&str, &[UserIdx])) {
        for entry in self.map.iter() {
            f(entry.key(), entry.value());
        }
    }

    /// Install a group's members as they are (recovery from a snapshot): `members` must
    /// be sorted and free of duplicates.
    pub fn install(&self, group: Arc<str>, members: Members) {
        debug_assert!(members.windows(2).all(|w| w[0] < w[1]));
        match self.map.entry(group) {
            Entry::Occupied(mut e) => {
                e.get().iter().for_each(|&u| self.memberships.left(u));
                members.iter().for_each(|&u| self.memberships.joined(u));
                e.insert(members);
            }
            Entry::Vacant(e) => {
                members.iter().for_each(|&u| self.memberships.joined(u));
                e.insert(members);
            }
        }
    }

    pub fn delete(&self, group: &str) -> bool {
        // The counts change under the entry's lock, like in `update`.
        let removed = self.map.remove_if(group, |_, members| {
            members.iter().for_each(|&u| self.memberships.left(u));
            true
        });
        removed.is_some()
    }

    pub fn members(&self, group: &str) -> Option<Members> {
        self.map.get(group).map(|m| m.clone())
    }
}

impl Default for Groups {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

/// `(current ∪ add) \ remove`, all sorted; a member both added and removed in one
/// request ends up removed. Calls `joined` for each member not in `current` and now
/// in the result, `left` for each member of `current` not in the result.
fn merge(
    current: &[UserIdx],
    add: &[UserIdx],
    remove: &[UserIdx],
    mut joined: impl FnMut(UserIdx),
    mut left: impl FnMut(UserIdx),
) -> Vec<UserIdx> {
    let mut out = Vec::with_capacity(current.len() + add.len());
    let (mut i, mut j) = (0, 0);
    while i < current.len() || j < add.len() {
        let (next, was_member) = match (current.get(i), add.get(j)) {
            (Some(&a), Some(&b)) if a == b => {
                i += 1;
                j += 1;
                (a, true)
            }
            (Some(&a), Some(&b)) if a < b => {
                i += 1;
                (a, true)
            }
            (Some(_), Some(&b)) | (None, Some(&b)) => {
                j += 1;
                (b, false)
            }
            (Some(&a), None) => {
                i += 1;
                (a, true)
            }
            (None, None) => unreachable!("loop condition"),
        };
        match (remove.binary_search(&next).is_ok(), was_member) {
            (false, was) => {
                out.push(next);
                if !was {
                    joined(next);
                }
            }
            (true, true) => left(next),
            (true, false) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_removes_and_dedups() {
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        assert_eq!(
            merge(
                &[1, 3, 5],
                &[2, 3, 6],
                &[5, 7],
                |u| joined.push(u),
                |u| left.push(u)
            ),
            vec![1, 2, 3, 6]
        );
        assert_eq!((joined, left), (vec![2, 6], vec![5]));
        assert_eq!(
            merge(&[], &[4], &[4], |_| panic!("joined"), |_| panic!("left")),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn membership_counts_follow_adds_removes_deletes_and_installs() {
        let g = Groups::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        g.update(&a, &[1, 2, 70_000], &[]);
        g.update(&b, &[2, 3], &[]);
        g.update(&a, &[2], &[]);
        assert_eq!(
            [1, 2, 3, 4, 70_000].map(|u| g.memberships(u)),
            [1, 2, 1, 0, 1]
        );
        g.update(&a, &[], &[1, 2, 4]);
        assert_eq!([1, 2, 3].map(|u| g.memberships(u)), [0, 1, 1]);
        let hints = &g.memberships.hints;
        assert!(hints.is_marked(1), "user 1 left its last group");
        assert!(!hints.is_marked(2), "user 2 is still in b");
        assert!(g.delete("b"));
        assert_eq!([2, 3, 70_000].map(|u| g.memberships(u)), [0, 0, 1]);
        g.install("c".into(), Arc::from([3, 5]));
        g.install("c".into(), Arc::from([5, 6]));
        assert_eq!([3, 5, 6].map(|u| g.memberships(u)), [0, 1, 1]);
    }

    #[test]
    fn group_lifecycle() {
        let g = Groups::default();
        let id: Arc<str> = "g".into();
        assert_eq!(g.update(&id, &[], &[1]), 0);
        assert!(g.members("g").is_none());
        assert_eq!(g.update(&id, &[3, 1, 2], &[]), 3);
        assert_eq!(g.update(&id, &[], &[2]), 2);
        assert_eq!(&*g.members("g").unwrap(), &[1, 3]);
        assert!(g.delete("g"));
        assert!(!g.delete("g"));
    }
}
