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
    /// Only for a push with `badge_increment` (else empty): beside each device of
    /// `lanes`, its recipient's index, which [`Targets::count_badges`] replaces with the
    /// recipient's new badge total.
    pub badges: [Vec<u32>; Lane::COUNT],
    /// Only for a push with `badge_increment`: the recipients with a device in
    /// `lanes`, in planning order (each once).
    pub pushed: Vec<UserIdx>,
    /// Devices whose vendor has no credentials, by provider.
    pub unconfigured: Vec<Device>,
    /// Devices left out of a silent push because their vendor has no silent message
    /// type (OPPO, vivo): never shown an alert instead.
    pub no_silent: Vec<Device>,
}

impl Targets {
    pub fn queued(&self) -> usize {
        self.lanes.iter().map(Vec::len).sum()
    }

    /// Add `n` to the badge counter of each pushed recipient, once however many devices
    /// they have, and give each of their devices the new total. Planning put a
    /// recipient's devices in each lane together and in recipient order, so one
    /// cursor per lane pairs them: no lookup, no allocation.
    pub fn count_badges(&mut self, mut add: impl FnMut(UserIdx, u32) -> u32, n: u32) {
        let mut cursor = [0usize; Lane::COUNT];
        for &user in &self.pushed {
            let total = add(user, n);
            for (lane, at) in self.badges.iter_mut().zip(&mut cursor) {
                while lane.get(*at) == Some(&user) {
                    lane[*at] = total;
                    *at += 1;
                }
            }
        }
        debug_assert!(
            self.badges
                .iter()
                .zip(&cursor)
                .all(|(l, at)| l.len() == *at),
            "every device got its recipient's total"
        );
    }
}

/// What a plan collects besides the devices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A call (VoIP rules apply; do-not-disturb does not).
    pub is_call: bool,
    /// The push has `badge_increment`: record who gets a badge total.
    pub badges: bool,
    /// The push is silent: leave out devices of vendors without a silent type.
    pub silent: bool,
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
///
/// The push's [`Options`]: with `badges`, each device is recorded with its recipient
/// and each recipient with a device once ([`Targets::count_badges`]); with `silent`,
/// devices of vendors without a silent type go to [`Targets::no_silent`].
pub fn plan(
    state: &State,
    _pin: &Pin<'_>,
    recipients: impl IntoIterator<Item = Option<UserIdx>>,
    conversation: Option<Conversation<'_>>,
    options: Options,
    configured: impl Fn(ProviderKind) -> bool,
) -> (Summary, Targets) {
    let Options {
        is_call,
        badges,
        silent,
    } = options;
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
                Some(lane) if silent && !crate::providers::has_silent(lane) => {
                    targets.no_silent.push(d.clone())
                }
                Some(lane) => {
                    targets.lanes[lane as usize].push(d.clone());
                    if badges {
                        targets.badges[lane as usize].push(user);
                        if targets.pushed.last() != Some(&user) {
                            targets.pushed.push(user);
                        }
                    }
                }
                None => targets.unconfigured.push(d.clone()),
            }
        });
    }
    (summary, targets)
}

#[cfg(test)]
mod tests;
