//! Groups: group id → sorted, deduplicated member indexes.
//!
//! Member lists are immutable `Arc<[UserIdx]>` swapped on change (copy on write):
//! a fan-out takes a cheap `Arc` clone and scans it sequentially against the presence
//! bitset while writers build the next version.

use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::ids::UserIdx;

pub type Members = Arc<[UserIdx]>;

pub struct Groups {
    map: DashMap<Arc<str>, Members>,
}

impl Groups {
    pub fn new() -> Self {
        Self {
            map: DashMap::new(),
        }
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
        match self.map.entry(group.clone()) {
            Entry::Occupied(mut e) => {
                let next = merge(e.get(), &add, &remove);
                let n = next.len();
                e.insert(next.into());
                n
            }
            Entry::Vacant(e) => {
                let next = merge(&[], &add, &remove);
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
        self.map.insert(group, members);
    }

    pub fn delete(&self, group: &str) -> bool {
        self.map.remove(group).is_some()
    }

    pub fn members(&self, group: &str) -> Option<Members> {
        self.map.get(group).map(|m| m.clone())
    }
}

impl Default for Groups {
    fn default() -> Self {
        Self::new()
    }
}

/// `(current ∪ add) \ remove`, all sorted; a member both added and removed in one
/// request ends up removed.
fn merge(current: &[UserIdx], add: &[UserIdx], remove: &[UserIdx]) -> Vec<UserIdx> {
    let mut out = Vec::with_capacity(current.len() + add.len());
    let (mut i, mut j) = (0, 0);
    while i < current.len() || j < add.len() {
        let next = match (current.get(i), add.get(j)) {
            (Some(&a), Some(&b)) if a == b => {
                i += 1;
                j += 1;
                a
            }
            (Some(&a), Some(&b)) if a < b => {
                i += 1;
                a
            }
            (Some(_), Some(&b)) | (None, Some(&b)) => {
                j += 1;
                b
            }
            (Some(&a), None) => {
                i += 1;
                a
            }
            (None, None) => unreachable!("loop condition"),
        };
        if remove.binary_search(&next).is_err() {
            out.push(next);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_removes_and_dedups() {
        assert_eq!(merge(&[1, 3, 5], &[2, 3, 6], &[5]), vec![1, 2, 3, 6]);
        assert_eq!(merge(&[], &[4, 4], &[4]), Vec::<u32>::new());
    }

    #[test]
    fn group_lifecycle() {
        let g = Groups::new();
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
