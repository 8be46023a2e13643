//! Taking back a mutation the journal could not make durable: [`State::undo_of`]
//! captures what a mutation is about to replace, [`State::revert`] restores it.

use super::{notify, Mutation, State, Undo, UndoKind};

impl State {
    /// What `m` is about to replace. Called by the journal's `apply`, under its
    /// serialisation, right before [`State::apply_in_memory`].
    pub(super) fn undo_of(&self, m: &Mutation) -> Undo {
        Undo(match m {
            Mutation::Bind { push_id, .. }
            | Mutation::Unbind { push_id }
            | Mutation::RemoveDeadToken { push_id, .. } => UndoKind::PushId {
                push_id: push_id.clone(),
                prior: self.registry.lookup(push_id).map(|(_, d)| d),
            },
            Mutation::RemoveUser { user_id } => UndoKind::Devices(
                self.users
                    .pin()
                    .get(user_id)
                    .map(|u| self.registry.devices_of(u))
                    .unwrap_or_default(),
            ),
            Mutation::GroupUpdate { group_id, .. } => UndoKind::Group {
                group_id: group_id.clone(),
                prior: self.groups.members(group_id),
                muted: None,
            },
            Mutation::GroupDelete { group_id } => UndoKind::Group {
                group_id: group_id.clone(),
                prior: self.groups.members(group_id),
                muted: self.notify.muted_in(group_id),
            },
            Mutation::SetNotification {
                user_id,
                kind,
                conversation_id,
                ..
            } => UndoKind::Notification {
                user_id: user_id.clone(),
                kind: *kind,
                conversation_id: conversation_id.clone(),
                was: self.users.pin().get(user_id).is_some_and(|u| {
                    self.notify.is_muted(
                        u,
                        notify::Conversation {
                            kind: *kind,
                            id: conversation_id,
                        },
                    )
                }),
            },
            Mutation::SetBadge { user_id, count } => UndoKind::Badge {
                user_id: user_id.clone(),
                was: (self.users.pin().get(user_id)).map_or(0, |u| self.badges.get(u)),
                set: *count,
            },
            Mutation::AddBadges { users, n } => {
                let pin = self.users.pin();
                UndoKind::Badges(
                    users
                        .iter()
                        .map(|u| {
                            let was = pin.get(u).map_or(0, |i| self.badges.get(i));
                            (u.clone(), was, was.saturating_add(*n))
                        })
                        .collect(),
                )
            }
        })
    }

    /// Take back one applied mutation. The journal calls this, newest first, for every
    /// record it could not make durable, with mutations held off: applied in that order
    /// each undo finds memory exactly as its mutation left it, so restoring what the
    /// mutation replaced restores the state before it. (User ids the mutation interned
    /// stay interned: an unreferenced index is not durable state.)
    pub fn revert(&self, undo: Undo) {
        match undo.0 {
            UndoKind::PushId { push_id, prior } => match prior {
                Some(device) => {
                    self.registry.insert(device);
                }
                None => {
                    self.registry.unbind(&push_id, None);
                }
            },
            UndoKind::Devices(devices) => {
                for d in devices {
                    self.registry.insert(d);
                }
            }
            UndoKind::Group {
                group_id,
                prior,
                muted,
            } => {
                match prior {
                    Some(members) => self.groups.install(group_id.clone(), members),
                    None => {
                        self.groups.delete(&group_id);
                    }
                }
                let c = notify::Conversation {
                    kind: notify::Kind::Group,
                    id: &group_id,
                };
                for u in muted.iter().flat_map(|m| m.iter()) {
                    self.notify.set(*u, c, true);
                }
            }
            UndoKind::Notification {
                user_id,
                kind,
                conversation_id,
                was,
            } => {
                let users = self.users.pin();
                let user = users.intern(&user_id);
                let c = notify::Conversation {
                    kind,
                    id: &conversation_id,
                };
                self.notify.set(user, c, was);
            }
            UndoKind::Badge { user_id, was, set } => {
                let users = self.users.pin();
                self.badges.unset(users.intern(&user_id), was, set);
            }
            UndoKind::Badges(list) => {
                let users = self.users.pin();
                // Newest first: a user listed twice gets its first `was` back.
                for (user_id, was, set) in list.into_iter().rev() {
                    self.badges.unset(users.intern(&user_id), was, set);
                }
            }
        }
    }
}
