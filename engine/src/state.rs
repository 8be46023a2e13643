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

use std::sync::Arc;

use crate::clock::Clock;

pub use ids::{Interner, UserIdx};
pub use registry::{Binding, Device, Environment, ProviderKind, Token};

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

/// All engine state.
pub struct State {
    pub clock: Clock,
    pub users: Interner,
    pub presence: presence::Presence,
    pub registry: registry::Registry,
    pub groups: groups::Groups,
}

impl State {
    pub fn new(clock: Clock) -> Self {
        Self {
            presence: presence::Presence::new(clock.clone()),
            clock,
            users: Interner::new(),
            registry: registry::Registry::new(),
            groups: groups::Groups::new(),
        }
    }

    /// Apply one durable mutation. Mutations are validated by their producer; applying
    /// one never fails.
    pub fn apply(&self, m: &Mutation) -> Applied {
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
