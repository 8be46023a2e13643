//! Cluster mode's hooks into the dispatcher: the share of every lane's `max_rps` this
//! engine takes (the lane workers read it each turn and re-pace when it changes), and
//! where dead-token removals go (the state stream, so that every engine applies them)
//! instead of this engine's memory. Alone, the share is 1 and removals go to
//! [`State::apply`](crate::state::State::apply) as always.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::{Ctx, Dispatcher, Vendors};
use crate::state::{Applied, Device, Mutation};

/// A best-effort durable writer: publishes a mutation without waiting; false when it
/// was dropped.
pub type DurableWriter = Arc<dyn Fn(&Mutation) -> bool + Send + Sync>;

pub(super) struct Hooks {
    /// Engines sharing each lane's `max_rps` (1 alone).
    pub(super) share: AtomicUsize,
    writer: OnceLock<DurableWriter>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            share: AtomicUsize::new(1),
            writer: OnceLock::new(),
        }
    }
}

impl<V: Vendors> Dispatcher<V> {
    /// `engines` share every lane's `max_rps`; each lane paces at its share from its
    /// next turn (an idle lane is woken for it, so its `pace_rps` gauge follows).
    pub fn set_share(&self, engines: usize) {
        let engines = engines.max(1);
        if self.ctx.cluster.share.swap(engines, Ordering::Relaxed) != engines {
            self.ctx.limits_changed.send_replace(());
        }
    }

    /// Dead-token removals go to `writer` instead of changing this engine's memory
    /// directly. Set once.
    pub fn set_durable_writer(&self, writer: DurableWriter) {
        let _ = self.ctx.cluster.writer.set(writer);
    }
}

impl<V> Ctx<V> {
    /// Remove `device`'s binding if it still holds this token (the vendor said it is
    /// dead). The owner when it was removed here, or handed to the cluster's writer
    /// (every engine removes it when the stream brings it); `None` when nothing was
    /// removed or the writer dropped it.
    pub(super) fn remove_dead_token(&self, device: &Device) -> Option<Arc<str>> {
        let dead = Mutation::RemoveDeadToken {
            push_id: device.push_id().into(),
            token: device.token().to_owned(),
        };
        match self.cluster.writer.get() {
            None => match self.state.apply(&dead) {
                Applied::Unbound(user) => user,
                _ => None,
            },
            Some(publish) => publish(&dead).then(|| self.state.users.pin().name(device.owner())),
        }
    }
}
