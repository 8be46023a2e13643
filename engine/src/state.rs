//! In-memory state: who exists, who is online, which devices they have, which groups.
//!
//! - [`ids`]: identifier validation and user interning (string → dense `u32`).
//! - [`presence`]: atomic "online now" bitset plus sharded sessions with TTLs.
//! - [`registry`]: push ID → owner and each user's devices (one owner per push ID).
//! - [`groups`]: group → sorted member indexes.
//! - [`notify`]: do-not-disturb, the conversations each user muted.
//! - [`badges`]: each user's badge counter (sets are durable, increments are not
//!   journaled; see the module for what a kill -9 can cost).
//!
//! Every durable change goes through [`State::apply`] with a [`Mutation`]: that is the
//! single seam the write-ahead log hooks into. Presence is not durable and is changed
//! directly.
//!
//! [`State::sweep`] runs the periodic work: presence expiry, and releasing the indexes
//! of users nothing refers to any more ([`State::referenced`]; the protocol that makes
//! that safe is in [`ids`]).

pub mod badges;
pub mod groups;
pub mod ids;
pub mod notify;
pub mod presence;
pub mod registry;
mod undo;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::config::PresenceCfg;

pub use ids::{Interner, UserIdx};
pub use registry::{Binding, Device, Environment, ProviderKind, Token, TokenRef};

/// A change to durable state. The API builds these after validating a request;
/// nothing else writes to the registry or the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Bind (or move) a push ID to a user.
    Bind { push_id: Arc<str>, binding: Binding },
    /// Remove one push ID (logout / unregisterPush).
    Unbind { push_id: Arc<str> },
    /// Remove a push ID only if it still holds this token (vendor said it is dead).
    RemoveDeadToken { push_id: Arc<str>, token: Token },
    /// Remove every push ID of a user.
    RemoveUser { user_id: Arc<str> },
    /// Add and remove group members (creating the group on first add).
    GroupUpdate {
        group_id: Arc<str>,
        add: Vec<Arc<str>>,
        remove: Vec<Arc<str>>,
    },
    /// Delete a group (and the mutes of it).
    GroupDelete { group_id: Arc<str> },
    /// Mute (`do_not_disturb`) or unmute (`notify`) a conversation for a user.
    SetNotification {
        user_id: Arc<str>,
        kind: notify::Kind,
        conversation_id: Arc<str>,
        muted: bool,
    },
    /// Set a user's badge counter.
    SetBadge { user_id: Arc<str>, count: u32 },
    /// Add `n` to each user's badge counter: cluster mode's `badge_increment` of a
    /// message's recipients, so every engine counts them (a single engine counts in
    /// memory and never records this).
    AddBadges { users: Vec<Arc<str>>, n: u32 },
}

/// What applying a [`Mutation`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Bound {
        previous_user: Option<Arc<str>>,
    },
    /// `Some(owner)` when a binding was removed.
    Unbound(Option<Arc<str>>),
    UserRemoved(usize),
    GroupSize(usize),
    GroupDeleted(bool),
    /// The notification status was set.
    NotificationSet,
    /// The user already muted [`notify::MAX_MUTED_PER_USER`] conversations: nothing
    /// was changed or logged.
    TooManyMuted,
    /// The badge counter was set.
    BadgeSet,
    /// [`Mutation::AddBadges`]: each user's new total, in order.
    BadgesAdded(Vec<u32>),
    /// The journal is failing: the change was not made (only [`State::apply`] reports
    /// this; [`State::apply_logged`] returns [`Refused`]).
    Refused,
}

/// See [`State::durable_view`]: push id → (user, provider, environment, app, token),
/// group → sorted member ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DurableView {
    pub bindings: std::collections::BTreeMap<
        String,
        (String, &'static str, &'static str, Option<String>, String),
    >,
    pub groups: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// (user, conversation type, conversation id) of every mute.
    pub mutes: std::collections::BTreeSet<(String, &'static str, String)>,
    /// Non-zero badge counters by user.
    pub badges: std::collections::BTreeMap<String, u32>,
}

/// Where a mutation stands in the journal: its sequence number and the journal's epoch
/// when it was recorded. The epoch changes each time the journal fails and takes back
/// the changes it could not make durable, so a waiter can tell whether its record
/// survived (see [`crate::store::wal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub seq: u64,
    pub epoch: u64,
}

impl Ticket {
    /// The ticket of a change made with no journal attached (nothing to wait for).
    pub const UNLOGGED: Ticket = Ticket { seq: 0, epoch: 0 };
}

/// The journal is failing and refused the change before it touched memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the journal refused the change: writes are failing")]
pub struct Refused;

/// What one mutation replaced, captured just before it was applied, so that a change
/// the journal fails to make durable can be taken back (see [`State::revert`]).
/// Holding one costs reference counts, not copies, except for a removed user's
/// device list.
#[derive(Debug)]
pub struct Undo(UndoKind);

#[derive(Debug)]
enum UndoKind {
    /// The record a push id held before (`None`: it was unbound).
    PushId {
        push_id: Arc<str>,
        prior: Option<Device>,
    },
    /// The devices a removed user had.
    Devices(Vec<Device>),
    /// A group's member list before (`None`: the group did not exist), and who had
    /// muted it (only a delete drops mutes).
    Group {
        group_id: Arc<str>,
        prior: Option<groups::Members>,
        muted: Option<Arc<[UserIdx]>>,
    },
    /// Whether the user had muted the conversation.
    Notification {
        user_id: Arc<str>,
        kind: notify::Kind,
        conversation_id: Arc<str>,
        was: bool,
    },
    /// The counter before the set, and the value set.
    Badge {
        user_id: Arc<str>,
        was: u32,
        set: u32,
    },
    /// Each counter before an add, and its total after.
    Badges(Vec<(Arc<str>, u32, u32)>),
}

/// Where durable mutations are logged. [`State::apply`] hands every mutation to the
/// journal, which must assign it the next sequence number, record it, and run `apply`
/// (the in-memory change, returning its [`Undo`]) before letting the next mutation in:
/// memory then changes in exactly log order, so replaying the log reproduces it.
///
/// A journal that cannot make a batch durable takes it back: under the same
/// serialisation it hands every not-yet-durable record's [`Undo`] to
/// [`State::revert`], newest first, and fails their waiters. While it is failing it
/// refuses new mutations before running `apply`. Memory therefore never holds a change
/// that was refused.
pub trait Journal: Send + Sync {
    fn record(&self, m: &Mutation, apply: &mut dyn FnMut() -> Undo) -> Result<Ticket, Refused>;

    /// Run `f` while no mutation is recorded or taken back. `f` gets `true` when every
    /// recorded mutation is durable, i.e. no [`Undo`] is pending: only then may a sweep
    /// that frees unreferenced user indexes run, since a pending [`Undo`] still refers
    /// to the indexes it would restore.
    fn exclusive(&self, f: &mut dyn FnMut(bool));
}

/// All engine state.
pub struct State {
    pub clock: Clock,
    pub users: Interner,
    pub presence: presence::Presence,
    pub registry: registry::Registry,
    pub groups: groups::Groups,
    pub notify: notify::Mutes,
    pub badges: badges::Badges,
    journal: OnceLock<Arc<dyn Journal>>,
    sweeper: Mutex<Sweeper>,
    user_sweep_interval_ms: u64,
}

/// Marked users the sweep takes from the hints before releasing what it found.
const SWEEP_STEP: usize = 32_768;
/// Milliseconds of work per [`State::sweep`] call (one housekeeping tick of 200 ms)
/// before the rest of a pass waits for the next call: at most a quarter of one core,
/// and only while junk is being released (a release-build sweep handles well over
/// 100,000 users in that time).
const SWEEP_BUDGET_MS: u64 = 50;
/// How long a sweep waits for the pins of in-flight requests to go away before it
/// leaves its candidates for the next call (a snapshot capture pins for its whole walk).
const RELEASE_WAIT: Duration = Duration::from_millis(1);
/// Candidates checked and released per hold of the release lock: requests that need
/// a pin wait for one batch (about a millisecond), not for a whole step.
const RELEASE_BATCH: usize = 4_096;

/// Where the user sweep is: passes over the idle hints, at most one pass starting per
/// `presence.user_sweep_interval_ms`, each continued over as many calls as it needs.
#[derive(Default)]
struct Sweeper {
    in_pass: bool,
    /// Next hint word to take.
    word: usize,
    next_pass_ms: u64,
    /// Marked users found unreferenced, waiting for the release lock.
    candidates: Vec<UserIdx>,
    /// Released since the interner was last tidied.
    untidy: bool,
}

impl State {
    /// State with the default presence settings (tests, benches).
    pub fn new(clock: Clock) -> Self {
        Self::with_presence(clock, &PresenceCfg::default())
    }

    /// State with the `[presence]` settings of the configuration.
    pub fn with_presence(clock: Clock, cfg: &PresenceCfg) -> Self {
        let users = Interner::new();
        let hints = users.hints().clone();
        Self {
            presence: presence::Presence::new(
                clock.clone(),
                cfg.max_sessions_per_user,
                hints.clone(),
            ),
            clock,
            users,
            registry: registry::Registry::new(hints.clone()),
            groups: groups::Groups::new(hints.clone()),
            notify: notify::Mutes::new(hints.clone()),
            badges: badges::Badges::new(hints),
            journal: OnceLock::new(),
            sweeper: Mutex::new(Sweeper::default()),
            user_sweep_interval_ms: cfg.user_sweep_interval_ms,
        }
    }

    /// Periodic work, called every housekeeping tick (200 ms): expire presence
    /// sessions, then continue the user sweep. Returns the users released.
    pub fn sweep(&self) -> usize {
        self.presence.sweep();
        self.release_idle_users()
    }

    /// Does anything in the state refer to `user`? A user with no binding, no session,
    /// no group membership, no mute and no badge count is released by the sweep. Each
    /// of these marks the user in `users.hints()` when it drops its last reference.
    pub fn referenced(&self, user: UserIdx) -> bool {
        self.registry.has_devices(user)
            || self.presence.has_sessions(user)
            || self.groups.memberships(user) > 0
            || self.badges.get(user) != 0
            || self.notify.has_mutes(user)
    }

    /// Continue the user sweep for up to [`SWEEP_BUDGET_MS`]: take marked users from
    /// the hints and keep those unreferenced, without stopping anyone; then take the
    /// release lock (no pin exists while it is held, so nothing can add a reference)
    /// and release, batch by batch, those still unreferenced.
    fn release_idle_users(&self) -> usize {
        let Some(mut guard) = self.sweeper.try_lock() else {
            return 0;
        };
        let sw = &mut *guard;
        let started = self.clock.now_ms();
        let mut released = 0;
        if sw.in_pass || started >= sw.next_pass_ms {
            sw.in_pass = true;
            loop {
                if sw.candidates.is_empty() && !self.take_marked(sw) {
                    sw.in_pass = false;
                    sw.word = 0;
                    sw.next_pass_ms = started.saturating_add(self.user_sweep_interval_ms);
                    break;
                }
                let all = self.release_candidates(sw, &mut released);
                if !all || self.clock.now_ms().saturating_sub(started) >= SWEEP_BUDGET_MS {
                    break;
                }
            }
        }
        sw.untidy |= released > 0;
        if sw.untidy {
            if let Some(release) = self.users.try_release(RELEASE_WAIT) {
                release.tidy();
                sw.untidy = false;
            }
        }
        if released > 0 {
            tracing::debug!(released, users = self.users.len(), "released idle users");
        }
        released
    }

    /// Take the marks of the next [`SWEEP_STEP`] or so marked users and keep the
    /// unreferenced ones as candidates; false once every mark of the pass is taken and
    /// no candidate is left.
    fn take_marked(&self, sw: &mut Sweeper) -> bool {
        let hints = self.users.hints();
        let words = self.users.slots().div_ceil(64);
        let mut examined = 0;
        while sw.word < words && examined < SWEEP_STEP {
            let mut bits = hints.take_word(sw.word);
            examined += bits.count_ones() as usize;
            while bits != 0 {
                let user = (sw.word * 64) as UserIdx + bits.trailing_zeros();
                bits &= bits - 1;
                // A referenced user is forgotten: dropping that reference marks it.
                if !self.referenced(user) {
                    sw.candidates.push(user);
                }
            }
            sw.word += 1;
        }
        sw.word < words || !sw.candidates.is_empty()
    }

    /// Release the candidates in batches under the release lock, adding to
    /// `released`; false when the lock could not be had or the journal is not settled
    /// (the rest wait for the next call).
    ///
    /// Each batch runs inside [`State::exclusive`] and only when it reports every
    /// recorded mutation durable: a pending [`Undo`] (a change the journal may still
    /// take back) refers to user indexes that the state no longer shows, and a revert
    /// must find them alive. Lock order: the journal's serialisation, then the release
    /// lock (which is only tried, with a bound), so a writer holding a pin while it
    /// waits for the journal cannot deadlock with the sweep.
    fn release_candidates(&self, sw: &mut Sweeper, released: &mut usize) -> bool {
        while !sw.candidates.is_empty() {
            let done = self.exclusive(|settled| {
                if !settled {
                    return false;
                }
                let Some(release) = self.users.try_release(RELEASE_WAIT) else {
                    return false;
                };
                let mut batch = sw
                    .candidates
                    .split_off(sw.candidates.len().saturating_sub(RELEASE_BATCH));
                batch.retain(|&u| release.is_live(u) && !self.referenced(u));
                *released += release.release(&batch);
                true
            });
            if !done {
                return false;
            }
        }
        true
    }

    /// From now on every [`State::apply`] goes through `journal` (set once, after
    /// recovery has replayed the log).
    pub fn attach_journal(&self, journal: Arc<dyn Journal>) {
        if self.journal.set(journal).is_err() {
            panic!("a journal is attached once");
        }
    }

    /// Apply one durable mutation, logging it when a journal is attached, without
    /// waiting for it to be durable: for best-effort changes (the dispatcher removing a
    /// dead token). A change the journal refuses is dropped and reported as
    /// [`Applied::Refused`]. Mutations are validated by their producer.
    pub fn apply(&self, m: &Mutation) -> Applied {
        self.apply_logged(m)
            .map_or(Applied::Refused, |(applied, _)| applied)
    }

    /// [`State::apply`], returning the mutation's [`Ticket`] ([`Ticket::UNLOGGED`] when
    /// no journal is attached) so the caller can wait for it to be durable, or
    /// [`Refused`] when the journal is failing (memory is then unchanged).
    pub fn apply_logged(&self, m: &Mutation) -> Result<(Applied, Ticket), Refused> {
        if matches!(m, Mutation::SetNotification { muted: true, .. }) {
            // The limit is checked here, before the record, and the gate is held until
            // the record is made: replay never re-checks it (see `notify`).
            let _gate = self.notify.gate();
            if self.over_mute_cap(m) {
                return Ok((Applied::TooManyMuted, Ticket::UNLOGGED));
            }
            return self.record(m);
        }
        self.record(m)
    }

    /// Would `m` mute one conversation more than [`notify::MAX_MUTED_PER_USER`]?
    fn over_mute_cap(&self, m: &Mutation) -> bool {
        let Mutation::SetNotification {
            user_id,
            kind,
            conversation_id,
            muted: true,
        } = m
        else {
            return false;
        };
        let c = notify::Conversation {
            kind: *kind,
            id: conversation_id,
        };
        (self.users.pin().get(user_id)).is_some_and(|u| self.notify.would_exceed(u, c))
    }

    fn record(&self, m: &Mutation) -> Result<(Applied, Ticket), Refused> {
        match self.journal.get() {
            None => Ok((self.apply_in_memory(m), Ticket::UNLOGGED)),
            Some(j) => {
                let mut out = None;
                let ticket = j.record(m, &mut || {
                    let undo = self.undo_of(m);
                    out = Some(self.apply_in_memory(m));
                    undo
                })?;
                Ok((out.expect("the journal runs apply when it records"), ticket))
            }
        }
    }

    /// Run `f` with durable mutations held off (see [`Journal::exclusive`]); with no
    /// journal attached nothing can be taken back, so `f` gets `true`.
    pub fn exclusive<R>(&self, f: impl FnOnce(bool) -> R) -> R {
        match self.journal.get() {
            None => f(true),
            Some(j) => {
                let mut f = Some(f);
                let mut out = None;
                j.exclusive(&mut |settled| {
                    if let Some(f) = f.take() {
                        out = Some(f(settled));
                    }
                });
                out.expect("the journal runs f once")
            }
        }
    }

    /// The durable state in a canonical, comparable form (sorted; tokens as their
    /// wire form): what a snapshot and the log must reproduce exactly.
    pub fn durable_view(&self) -> DurableView {
        let users = self.users.pin();
        let mut view = DurableView::default();
        self.registry.for_each(|user, d| {
            view.bindings.insert(
                d.push_id().to_string(),
                (
                    users.name(user).to_string(),
                    d.provider().as_str(),
                    d.environment().as_str(),
                    d.app_id().map(str::to_string),
                    d.token().to_wire(),
                ),
            );
        });
        self.groups.for_each(|g, members| {
            view.groups.insert(
                g.to_string(),
                members.iter().map(|u| users.name(*u).to_string()).collect(),
            );
        });
        self.notify.for_each(|user, kind, id| {
            view.mutes
                .insert((users.name(user).to_string(), kind.as_str(), id.to_string()));
        });
        self.badges.for_each(|user, count| {
            view.badges.insert(users.name(user).to_string(), count);
        });
        view
    }

    /// Apply a mutation read from the cluster's state stream (`crate::cluster`): the
    /// check made before recording a change on a single engine (the do-not-disturb
    /// cap: [`Applied::TooManyMuted`], memory unchanged), then the change. It depends
    /// only on the state and the mutation, so every engine applying the stream in order
    /// ends with the same state. No journal is attached in cluster mode.
    pub fn apply_replicated(&self, m: &Mutation) -> Applied {
        if self.over_mute_cap(m) {
            return Applied::TooManyMuted;
        }
        self.apply_in_memory(m)
    }

    /// Change memory only: recovery replays the log through this. Holds a pin for the
    /// indexes it interns and stores (see [`ids`]).
    pub fn apply_in_memory(&self, m: &Mutation) -> Applied {
        let users = self.users.pin();
        match m {
            Mutation::Bind { push_id, binding } => {
                let user = users.intern(&binding.user_id);
                let prev = self.registry.bind(push_id, user, binding);
                Applied::Bound {
                    previous_user: prev.filter(|p| *p != user).map(|p| users.name(p)),
                }
            }
            Mutation::Unbind { push_id } => {
                Applied::Unbound(self.registry.unbind(push_id, None).map(|u| users.name(u)))
            }
            Mutation::RemoveDeadToken { push_id, token } => Applied::Unbound(
                self.registry
                    .unbind(push_id, Some(token))
                    .map(|u| users.name(u)),
            ),
            Mutation::RemoveUser { user_id } => match users.get(user_id) {
                Some(user) => Applied::UserRemoved(self.registry.remove_user(user)),
                None => Applied::UserRemoved(0),
            },
            Mutation::GroupUpdate {
                group_id,
                add,
                remove,
            } => {
                let add: Vec<UserIdx> = add.iter().map(|u| users.intern(u)).collect();
                let remove: Vec<UserIdx> = remove.iter().filter_map(|u| users.get(u)).collect();
                Applied::GroupSize(self.groups.update(group_id, &add, &remove))
            }
            Mutation::GroupDelete { group_id } => {
                self.notify.drop_group(group_id);
                Applied::GroupDeleted(self.groups.delete(group_id))
            }
            Mutation::SetNotification {
                user_id,
                kind,
                conversation_id: id,
                muted,
            } => {
                let c = notify::Conversation { kind: *kind, id };
                // Unmuting a user the engine does not know changes nothing.
                if let Some(user) = users.find(user_id, *muted) {
                    self.notify.set(user, c, *muted);
                }
                Applied::NotificationSet
            }
            Mutation::SetBadge { user_id, count } => {
                if let Some(user) = users.find(user_id, *count > 0) {
                    self.badges.set(user, *count);
                }
                Applied::BadgeSet
            }
            Mutation::AddBadges { users: names, n } => Applied::BadgesAdded(
                names
                    .iter()
                    .map(|u| self.badges.add(users.intern(u), *n))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
