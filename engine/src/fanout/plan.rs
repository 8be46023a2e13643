//! Fan-out planning: recipients → offline recipients → device targets per lane.
//!
//! One pass over the recipients: a presence bit test per member (lock-free), then for
//! offline members one `u32`-keyed registry lookup that yields their devices. Devices
//! are grouped into the vendor lanes that have queues; devices of vendors without
//! credentials are counted, not queued. Offline recipients who muted the message's
//! conversation (do-not-disturb, [`crate::state::notify`]) are counted in
//! [`Summary::muted`] and skipped: for a group, one sorted list of who muted it,
//! walked by a cursor as members ascend (nothing at all when nobody did).
//!
//! Recipients are looked up, never interned: a user the engine has no index for has
//! no binding and no session, so they are offline with nothing to push, and a message
//! to them leaves no trace in the state. The caller holds a [`Pin`] from the lookup
//! until planning is done, so no index changes owner in between.

use crate::state::ids::Pin;
use crate::state::notify::Conversation;
use crate::state::{Device, ProviderKind, State, UserIdx};

/// A vendor's delivery lane, from the vendor table.
pub use crate::providers::Lane;

/// The devices one message goes to.
#[derive(Debug, Default)]
pub struct Targets {
    pub lanes: [Vec<Device>; Lane::COUNT],
    /// Devices whose vendor has no credentials, by provider.
    pub unconfigured: Vec<Device>,
}

impl Targets {
    pub fn queued(&self) -> usize {
        self.lanes.iter().map(Vec::len).sum()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub recipients: usize,
    pub offline: usize,
    /// Offline recipients skipped because they set do-not-disturb on the conversation.
    pub muted: usize,
}

/// Plan a message or call to `recipients` (the sender already left out; `None` is a
/// user the engine does not know: offline, no devices). `_pin` is the pin the
/// recipients' indexes were obtained under. `conversation` is the message's
/// conversation as its recipients see it (a peer message from `u0`: `(peer, "u0")`),
/// `None` for a call: do-not-disturb does not silence calls.
///
/// Messages skip `apns_voip` bindings (Apple requires every VoIP push to report a
/// call). Calls send VoIP to `apns_voip` bindings and, for an invitee who has one, no
/// alert to their `apns` bindings (one ring per iPhone).
pub fn plan(
    state: &State,
    _pin: &Pin<'_>,
    recipients: impl IntoIterator<Item = Option<UserIdx>>,
    conversation: Option<Conversation<'_>>,
    is_call: bool,
    configured: impl Fn(ProviderKind) -> bool,
) -> (Summary, Targets) {
    let mut summary = Summary::default();
    let mut targets = Targets::default();
    let mut muted = state.notify.filter(conversation);
    let presence = &state.presence;
    let registry = &state.registry;
    for user in recipients {
        summary.recipients += 1;
        let Some(user) = user else {
            summary.offline += 1;
            continue;
        };
        if presence.is_online(user) {
            continue;
        }
        summary.offline += 1;
        if muted.muted(user) {
            summary.muted += 1;
            continue;
        }
        let mut has_voip = false;
        if is_call {
            registry.for_each_device(user, |d| has_voip |= d.provider() == ProviderKind::ApnsVoip);
        }
        registry.for_each_device(user, |d| {
            let wanted = match d.provider() {
                ProviderKind::ApnsVoip => is_call,
                ProviderKind::Apns => !(is_call && has_voip),
                _ => true,
            };
            if !wanted {
                return;
            }
            match Lane::of(d.provider()).filter(|_| configured(d.provider())) {
                Some(lane) => targets.lanes[lane as usize].push(d.clone()),
                None => targets.unconfigured.push(d.clone()),
            }
        });
    }
    (summary, targets)
}

#[cfg(test)]
mod tests;
