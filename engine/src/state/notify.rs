//! Do not disturb: the conversations each user muted (ZIM's conversation notification
//! status), consulted by the planner.
//!
//! A mute is `(user, conversation)` where the conversation is as that user sees it:
//! `(group, group_id)`, or `(peer, other_user_id)`. It is durable state like a binding:
//! changed only through `Mutation::SetNotification` (so it is journaled and taken back
//! if the journal fails), written in snapshots, replayed on restart.
//!
//! Two tables, shaped for the planner:
//! - group id → the sorted indexes of the users who muted it, as an immutable
//!   `Arc<[UserIdx]>` swapped on change (copy on write, like group members). A group
//!   fan-out takes one `Arc` clone per message and, because members are scanned in
//!   ascending index order, checks each offline member with a forward-moving cursor:
//!   a comparison or two per member, nothing at all when nobody muted the group.
//! - user index → that user's muted peers (sorted ids) and their number of muted
//!   groups. A peer message checks its one recipient here.
//!
//! Memory is bounded per user: at most [`MAX_MUTED_PER_USER`] muted conversations
//! (peers and groups together). The limit is checked under [`Mutes::gate`] before the
//! mutation is recorded (see `State::apply_logged`), never while applying or replaying
//! one: replay after a fuzzy snapshot must reproduce exactly what was acknowledged.
//!
//! A user who muted something is referenced (`State::referenced`): their index is not
//! released and reused while a mute names it; setting their last conversation back to
//! notify marks them for the user sweep. Deleting a group drops its mutes with it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use super::ids::{IdleHints, UserIdx};

/// Most conversations one user may mute (peers and groups together). Past it a new
/// mute is refused with `409 limit_exceeded`; re-muting a muted one or unmuting is
/// always accepted. At most about 100 bytes each, so one user's mutes stay under
/// 100 KiB.
pub const MAX_MUTED_PER_USER: usize = 1_000;

/// The type of a conversation, as in API.md's `conversation_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A one-to-one conversation; its id is the other user's id.
    Peer,
    /// A group conversation; its id is the group id.
    Group,
}

impl Kind {
    /// `peer` or `group`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "peer" => Some(Kind::Peer),
            "group" => Some(Kind::Group),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Peer => "peer",
            Kind::Group => "group",
        }
    }
}

/// A conversation as one of its members sees it: what a mute names and what a message
/// is planned for (a peer message from `u0` is, for its recipient, `(Peer, "u0")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversation<'a> {
    pub kind: Kind,
    pub id: &'a str,
}

/// One user's mutes.
#[derive(Debug, Default)]
struct Muter {
    /// Muted peers, sorted.
    peers: Vec<Arc<str>>,
    /// Number of groups this user muted (the indexes are in the group table).
    groups: u32,
}

impl Muter {
    fn count(&self) -> usize {
        self.peers.len() + self.groups as usize
    }
}

#[derive(Default)]
struct Tables {
    /// Group id → sorted indexes of the users who muted it (never empty).
    groups: HashMap<Arc<str>, Arc<[UserIdx]>>,
    /// Users with at least one mute.
    users: HashMap<UserIdx, Muter>,
}

/// Every user's muted conversations.
pub struct Mutes {
    tables: RwLock<Tables>,
    /// Held from the limit check until the mutation is recorded (see the module doc).
    gate: Mutex<()>,
    hints: Arc<IdleHints>,
}

impl Mutes {
    pub fn new(hints: Arc<IdleHints>) -> Self {
        Self {
            tables: RwLock::default(),
            gate: Mutex::new(()),
            hints,
        }
    }

    /// Serialises "is this user under the limit" with the recording of the mute that
    /// depends on it, so two concurrent mutes cannot both take the last place.
    pub fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock()
    }

    /// Would muting `c` take `user` past [`MAX_MUTED_PER_USER`]? (Not if it is already
    /// muted.)
    pub fn would_exceed(&self, user: UserIdx, c: Conversation<'_>) -> bool {
        let t = self.tables.read();
        let count = t.users.get(&user).map_or(0, Muter::count);
        count >= MAX_MUTED_PER_USER && !is_muted(&t, user, c)
    }

    /// Whether `user` muted `c`.
    pub fn is_muted(&self, user: UserIdx, c: Conversation<'_>) -> bool {
        is_muted(&self.tables.read(), user, c)
    }

    /// Whether `user` muted anything (a mute refers to the user's index).
    pub fn has_mutes(&self, user: UserIdx) -> bool {
        self.tables.read().users.contains_key(&user)
    }

    /// How many conversations `user` muted.
    pub fn count(&self, user: UserIdx) -> usize {
        self.tables.read().users.get(&user).map_or(0, Muter::count)
    }

    /// The conversations `user` muted, peers then groups, each part sorted by id (at
    /// most [`MAX_MUTED_PER_USER`]). Finding the groups scans the muted groups under the
    /// read lock, stopping once the user's count is found: for looking up one user
    /// (the console), not for a hot path.
    pub fn muted_by(&self, user: UserIdx) -> Vec<(Kind, Arc<str>)> {
        let t = self.tables.read();
        let Some(m) = t.users.get(&user) else {
            return Vec::new();
        };
        let mut out: Vec<(Kind, Arc<str>)> =
            m.peers.iter().map(|p| (Kind::Peer, p.clone())).collect();
        let mut left = m.groups as usize;
        let first_group = out.len();
        for (g, users) in &t.groups {
            if left == 0 {
                break;
            }
            if users.binary_search(&user).is_ok() {
                out.push((Kind::Group, g.clone()));
                left -= 1;
            }
        }
        out[first_group..].sort_unstable_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// Users with at least one mute.
    pub fn users(&self) -> usize {
        self.tables.read().users.len()
    }

    /// Mute or unmute `c` for `user`; returns whether it was muted before. The caller
    /// holds a pin on `user`. A user who loses their last mute is marked for the sweep.
    pub fn set(&self, user: UserIdx, c: Conversation<'_>, muted: bool) -> bool {
        let mut guard = self.tables.write();
        let was = is_muted(&guard, user, c);
        if was == muted {
            return was;
        }
        let t = &mut *guard;
        match c.kind {
            Kind::Peer => {
                let m = t.users.entry(user).or_default();
                match m.peers.binary_search_by(|p| (**p).cmp(c.id)) {
                    Err(at) if muted => m.peers.insert(at, Arc::from(c.id)),
                    Ok(at) if !muted => {
                        m.peers.remove(at);
                    }
                    _ => unreachable!("`was` said whether the peer is in the list"),
                }
            }
            Kind::Group => {
                let current = t.groups.get(c.id).map_or(&[][..], |m| &m[..]);
                let next: Vec<UserIdx> = if muted {
                    let at = current.partition_point(|&u| u < user);
                    let mut v = Vec::with_capacity(current.len() + 1);
                    v.extend_from_slice(&current[..at]);
                    v.push(user);
                    v.extend_from_slice(&current[at..]);
                    v
                } else {
                    current.iter().copied().filter(|&u| u != user).collect()
                };
                if next.is_empty() {
                    t.groups.remove(c.id);
                } else {
                    t.groups.insert(Arc::from(c.id), next.into());
                }
                let m = t.users.entry(user).or_default();
                if muted {
                    m.groups += 1;
                } else {
                    m.groups -= 1;
                }
            }
        }
        if !muted && t.users.get(&user).is_some_and(|m| m.count() == 0) {
            t.users.remove(&user);
            drop(guard);
            self.hints.mark(user);
        }
        was
    }

    /// Drop every mute of group `id` (the group was deleted); returns who had muted it,
    /// for `State::revert`. Users left with no mute are marked for the sweep.
    pub fn drop_group(&self, id: &str) -> Option<Arc<[UserIdx]>> {
        let mut t = self.tables.write();
        let muted = t.groups.remove(id)?;
        let mut unreferenced = Vec::new();
        for &u in muted.iter() {
            let m = t
                .users
                .get_mut(&u)
                .expect("a user in a group's mute list has a muter entry");
            m.groups -= 1;
            if m.count() == 0 {
                t.users.remove(&u);
                unreferenced.push(u);
            }
        }
        drop(t);
        for u in unreferenced {
            self.hints.mark(u);
        }
        Some(muted)
    }

    /// The users who muted group `id`, sorted.
    pub fn muted_in(&self, id: &str) -> Option<Arc<[UserIdx]>> {
        self.tables.read().groups.get(id).cloned()
    }

    /// Visit every mute: user, conversation type, conversation id.
    pub fn for_each(&self, mut f: impl FnMut(UserIdx, Kind, &str)) {
        let t = self.tables.read();
        for (&user, m) in &t.users {
            for p in &m.peers {
                f(user, Kind::Peer, p);
            }
        }
        for (g, users) in &t.groups {
            for &u in users.iter() {
                f(u, Kind::Group, g);
            }
        }
    }

    /// The filter a plan applies to the recipients of a message in `c` (`None`: a call,
    /// which do-not-disturb does not affect).
    pub fn filter<'a>(&'a self, c: Option<Conversation<'a>>) -> Filter<'a> {
        Filter(match c {
            None => Only::Nobody,
            Some(Conversation {
                kind: Kind::Group,
                id,
            }) => match self.tables.read().groups.get(id) {
                Some(muted) => Only::Members {
                    muted: muted.clone(),
                    next: 0,
                },
                None => Only::Nobody,
            },
            Some(
                c @ Conversation {
                    kind: Kind::Peer, ..
                },
            ) => Only::Peer { mutes: self, c },
        })
    }
}

impl Default for Mutes {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

fn is_muted(t: &Tables, user: UserIdx, c: Conversation<'_>) -> bool {
    match c.kind {
        Kind::Peer => t
            .users
            .get(&user)
            .is_some_and(|m| m.peers.binary_search_by(|p| (**p).cmp(c.id)).is_ok()),
        Kind::Group => t
            .groups
            .get(c.id)
            .is_some_and(|m| m.binary_search(&user).is_ok()),
    }
}

/// Which recipients of one message muted its conversation. Built once per plan.
pub struct Filter<'a>(Only<'a>);

enum Only<'a> {
    /// Nobody muted it (or it is a call).
    Nobody,
    /// The members who muted a group, sorted, and where the last lookup ended.
    Members { muted: Arc<[UserIdx]>, next: usize },
    /// A peer message: its recipient muted the sender if their mutes say so.
    Peer {
        mutes: &'a Mutes,
        c: Conversation<'a>,
    },
}

impl Filter<'_> {
    /// Did `user` mute this message's conversation? Amortised O(1) per call when users
    /// come in ascending order (a group's members do); correct in any order.
    #[inline]
    pub fn muted(&mut self, user: UserIdx) -> bool {
        match &mut self.0 {
            Only::Nobody => false,
            Only::Members { muted, next } => contains_ascending(muted, next, user),
            Only::Peer { mutes, c } => mutes.is_muted(user, *c),
        }
    }
}

/// Is `user` in the sorted `list`? `next` is where the previous lookup stopped: when
/// lookups ascend it only moves forward; otherwise it is found again by bisection.
#[inline]
fn contains_ascending(list: &[UserIdx], next: &mut usize, user: UserIdx) -> bool {
    if *next > 0 && list[*next - 1] >= user {
        *next = list.partition_point(|&u| u < user);
    } else {
        while *next < list.len() && list[*next] < user {
            *next += 1;
        }
    }
    if list.get(*next) == Some(&user) {
        *next += 1;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str) -> Conversation<'_> {
        Conversation {
            kind: Kind::Group,
            id,
        }
    }

    fn peer(id: &str) -> Conversation<'_> {
        Conversation {
            kind: Kind::Peer,
            id,
        }
    }

    #[test]
    fn the_cursor_finds_members_in_any_order() {
        let list = [2, 5, 9, 40];
        let mut next = 0;
        let ascending: Vec<bool> = (0..45)
            .map(|u| contains_ascending(&list, &mut next, u))
            .collect();
        for (u, hit) in ascending.iter().enumerate() {
            assert_eq!(*hit, list.contains(&(u as u32)), "user {u}");
        }
        for u in [40, 2, 9, 9, 3, 5, 44, 0, 2] {
            assert_eq!(
                contains_ascending(&list, &mut next, u),
                list.contains(&u),
                "user {u}"
            );
        }
    }

    #[test]
    fn mutes_are_per_user_per_conversation_and_unmuting_marks_the_user() {
        let m = Mutes::default();
        assert!(!m.set(1, group("g"), true));
        assert!(m.set(1, group("g"), true), "muting twice changes nothing");
        m.set(3, group("g"), true);
        m.set(2, group("g"), true);
        m.set(1, peer("u0"), true);
        assert!(m.is_muted(1, group("g")) && m.is_muted(1, peer("u0")));
        assert!(
            !m.is_muted(1, peer("g")),
            "a peer named like the group is another conversation"
        );
        assert!(!m.is_muted(4, group("g")));
        assert_eq!((m.count(1), m.count(2), m.users()), (2, 1, 3));
        let mut f = m.filter(Some(group("g")));
        assert_eq!(
            (0..5).map(|u| f.muted(u)).collect::<Vec<_>>(),
            [false, true, true, true, false]
        );
        let mut f = m.filter(Some(peer("u0")));
        assert!(f.muted(1) && !f.muted(2));
        assert!(!m.filter(None).muted(1), "calls are not filtered");

        assert!(m.set(1, peer("u0"), false));
        assert!(!m.hints.is_marked(1), "user 1 still mutes g");
        m.set(1, group("g"), false);
        assert!(m.hints.is_marked(1), "user 1 muted nothing any more");
        assert!(!m.has_mutes(1));
        assert_eq!(m.drop_group("g").as_deref(), Some(&[2, 3][..]));
        assert!(m.hints.is_marked(2) && m.hints.is_marked(3));
        assert_eq!(m.users(), 0);
        assert!(m.drop_group("g").is_none());
    }

    #[test]
    fn a_users_mutes_are_listed_peers_first_then_groups_each_sorted() {
        let m = Mutes::default();
        for g in ["g9", "g1", "g5"] {
            m.set(1, group(g), true);
        }
        m.set(2, group("g1"), true);
        m.set(2, group("g7"), true);
        m.set(1, peer("u3"), true);
        m.set(1, peer("u2"), true);
        let listed = |u| -> Vec<(Kind, String)> {
            let mutes = m.muted_by(u);
            mutes
                .into_iter()
                .map(|(k, id)| (k, id.to_string()))
                .collect()
        };
        let want = [
            (Kind::Peer, "u2"),
            (Kind::Peer, "u3"),
            (Kind::Group, "g1"),
            (Kind::Group, "g5"),
            (Kind::Group, "g9"),
        ];
        assert_eq!(listed(1), want.map(|(k, id)| (k, id.to_string())));
        assert_eq!(listed(2).len(), 2, "another user's mutes are theirs");
        assert!(listed(3).is_empty());
    }

    #[test]
    fn the_limit_counts_peers_and_groups_and_spares_what_is_already_muted() {
        let m = Mutes::default();
        for i in 0..MAX_MUTED_PER_USER {
            let id = format!("c{i}");
            let c = if i % 2 == 0 { peer(&id) } else { group(&id) };
            assert!(!m.would_exceed(7, c));
            m.set(7, c, true);
        }
        assert!(m.would_exceed(7, peer("one-more")));
        assert!(m.would_exceed(7, group("one-more")));
        assert!(
            !m.would_exceed(7, peer("c0")),
            "re-muting is not a new mute"
        );
        assert!(
            !m.would_exceed(8, peer("one-more")),
            "the limit is per user"
        );
    }
}
