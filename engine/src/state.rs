//! In-memory state: who exists, who is online, which devices they have, which groups.
//!
//! - [`ids`]: identifier validation and user interning (string → dense `u32`).
//! - [`presence`]: atomic "online now" bitset plus sharded sessions with TTLs.
//! - [`registry`]: push ID → owner and each user's devices (one owner per push ID).
//! - [`groups`]: group → sorted member indexes.
//!
//! Every durable change goes through [`State::apply`] with a [`Mutation`]: that is the
//! single seam the write-ahead log hooks into. Presence is not durable and is changed
//! directly.

pub mod groups;
pub mod ids;
pub mod presence;
pub mod registry;

use std::sync::{Arc, OnceLock};

use crate::clock::Clock;

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
    /// Delete a group.
    GroupDelete { group_id: Arc<str> },
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
}

/// Where durable mutations are logged. [`State::apply`] hands every mutation to the
/// journal, which must assign it the next sequence number, record it, and run `apply`
/// (the in-memory change) before letting the next mutation in: memory then changes in
/// exactly log order, so replaying the log reproduces it.
pub trait Journal: Send + Sync {
    fn record(&self, m: &Mutation, apply: &mut dyn FnMut()) -> u64;
}

/// All engine state.
pub struct State {
    pub clock: Clock,
    pub users: Interner,
    pub presence: presence::Presence,
    pub registry: registry::Registry,
    pub groups: groups::Groups,
    journal: OnceLock<Arc<dyn Journal>>,
}

impl State {
    pub fn new(clock: Clock) -> Self {
        Self {
            presence: presence::Presence::new(clock.clone()),
            clock,
            users: Interner::new(),
            registry: registry::Registry::new(),
            groups: groups::Groups::new(),
            journal: OnceLock::new(),
        }
    }

    /// From now on every [`State::apply`] goes through `journal` (set once, after
    /// recovery has replayed the log).
    pub fn attach_journal(&self, journal: Arc<dyn Journal>) {
        if self.journal.set(journal).is_err() {
            panic!("a journal is attached once");
        }
    }

    /// Apply one durable mutation, logging it first when a journal is attached.
    /// Mutations are validated by their producer; applying one never fails.
    pub fn apply(&self, m: &Mutation) -> Applied {
        self.apply_logged(m).0
    }

    /// [`State::apply`], also returning the mutation's log sequence number (0 when no
    /// journal is attached) so the caller can wait for it to be durable.
    pub fn apply_logged(&self, m: &Mutation) -> (Applied, u64) {
        match self.journal.get() {
            None => (self.apply_in_memory(m), 0),
            Some(j) => {
                let mut out = None;
                let seq = j.record(m, &mut || out = Some(self.apply_in_memory(m)));
                (out.expect("the journal runs apply"), seq)
            }
        }
    }

    /// The durable state in a canonical, comparable form (sorted; tokens as their
    /// wire form): what a snapshot and the log must reproduce exactly.
    pub fn durable_view(&self) -> DurableView {
        let mut view = DurableView::default();
        self.registry.for_each(|user, d| {
            view.bindings.insert(
                d.push_id().to_string(),
                (
                    self.users.name(user).to_string(),
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
                members
                    .iter()
                    .map(|u| self.users.name(*u).to_string())
                    .collect(),
            );
        });
        view
    }

    /// Change memory only: recovery replays the log through this.
    pub fn apply_in_memory(&self, m: &Mutation) -> Applied {
        match m {
            Mutation::Bind { push_id, binding } => {
                let user = self.users.intern(&binding.user_id);
                let prev = self.registry.bind(push_id, user, binding);
                Applied::Bound {
                    previous_user: prev.filter(|p| *p != user).map(|p| self.users.name(p)),
                }
            }
            Mutation::Unbind { push_id } => Applied::Unbound(
                self.registry
                    .unbind(push_id, None)
                    .map(|u| self.users.name(u)),
            ),
            Mutation::RemoveDeadToken { push_id, token } => Applied::Unbound(
                self.registry
                    .unbind(push_id, Some(token))
                    .map(|u| self.users.name(u)),
            ),
            Mutation::RemoveUser { user_id } => match self.users.get(user_id) {
                Some(user) => Applied::UserRemoved(self.registry.remove_user(user)),
                None => Applied::UserRemoved(0),
            },
            Mutation::GroupUpdate {
                group_id,
                add,
                remove,
            } => {
                let add: Vec<UserIdx> = add.iter().map(|u| self.users.intern(u)).collect();
                let remove: Vec<UserIdx> =
                    remove.iter().filter_map(|u| self.users.get(u)).collect();
                Applied::GroupSize(self.groups.update(group_id, &add, &remove))
            }
            Mutation::GroupDelete { group_id } => {
                Applied::GroupDeleted(self.groups.delete(group_id))
            }
        }
    }
}
