//! Live calls: what `POST /v1/calls/{call_id}/cancel` needs to withdraw the
//! invitations not yet sent and to reach the devices that were.
//!
//! Each accepted call gets a [`Live`] record: its tracked device targets and one
//! one-byte atomic state per target. Every job of the call carries the record and its
//! slot number; messages carry none, so the message path pays one `None` check per
//! push and no atomic operation.
//!
//! A slot moves by single compare-and-swaps, made by exactly two parties: the lane
//! worker holding the job and [`Live::cancel`], which runs once per call (it runs
//! only after [`Table::remove`] took the record out, which succeeds once). Hence a
//! push is either withdrawn or counted as sent, never both, never neither:
//!
//! | slot | the worker | cancel makes it |
//! | --- | --- | --- |
//! | `WAITING` (queued, held at the gates, or waiting for a retry; the vendor has not got it) | `leave` → `IN_FLIGHT` just before the request goes | `WITHDRAWN`: dropped, never sent |
//! | `WAITING_MAYBE` (waiting for a retry after a send whose fate is unknown) | as above | `DROPPED`: the retry is dropped, the device gets a cancellation |
//! | `IN_FLIGHT` | on the answer: `DONE_SENT`, `DONE_UNSENT`, or back to waiting for a retry | `CANCELLED`: counted as sent whatever the answer; no retry follows |
//! | `DONE_SENT` (delivered, or finished after a send of unknown fate) | — | `CANCELLED`: a cancellation push |
//! | `DONE_UNSENT` (rejected, dead token, expired, failed) | — | stays: nothing to withdraw, nothing to cancel |
//!
//! The worker checks the slot with one load before the gates (a withdrawn job is
//! dropped without taking a place in flight) and moves it with one CAS when the
//! request leaves and one when the answer comes. The cancel reports the invitations it
//! dropped from the queues (`WITHDRAWN` and `DROPPED`) so the delivery ledger counts
//! them at once; [`Live::finish`] then tells the job not to count them again. A withdrawn job leaves its lane, and
//! frees its place in the lane's depth, when the worker next picks it: at once when it
//! was queued, when its retry falls due when it was waiting for one.
//!
//! Bounds: at most [`MAX_LIVE_CALLS`] live calls and [`MAX_TRACKED`] tracked devices
//! across them; a call that would exceed either is shed (`429`, like a full lane)
//! before anything is queued. A call tracks at most [`MAX_DEVICES_PER_CALL`] devices
//! (about 9 bytes each); the rest of a larger call is rung but can be neither
//! withdrawn nor sent a cancellation. A record leaves the table when the call is
//! cancelled or times out (the dispatcher sweeps every second); jobs still in a lane
//! keep it alive until they leave it, which their lane's admission limit bounds.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::fanout::plan::{Lane, Targets};
use crate::state::Device;

/// Live calls at once.
pub const MAX_LIVE_CALLS: usize = 65_536;
/// Devices tracked per call: the first ones in lane order.
pub const MAX_DEVICES_PER_CALL: usize = 1_024;
/// Devices tracked across all live calls (about 9 MiB of slots and device handles).
pub const MAX_TRACKED: usize = 1 << 20;

const WAITING: u8 = 0;
const WAITING_MAYBE: u8 = 1;
const IN_FLIGHT: u8 = 2;
const DONE_SENT: u8 = 3;
const DONE_UNSENT: u8 = 4;
const WITHDRAWN: u8 = 5;
const CANCELLED: u8 = 6;
const DROPPED: u8 = 7;

/// One live call: its devices and the state of the invitation to each.
#[derive(Debug)]
pub struct Live {
    pub call_id: Arc<str>,
    pub inviter_id: Arc<str>,
    /// UNIX seconds at which the call times out.
    pub expires_at: u64,
    /// The tracked devices, in lane order (slot `i` is `devices[i]`).
    devices: Box<[Device]>,
    slots: Box<[AtomicU8]>,
}

/// What cancelling a call did.
#[derive(Debug, Default)]
pub struct Cancelled {
    /// Invitations dropped before they were sent.
    pub withdrawn: usize,
    /// Devices that were (or may have been) sent the invitation.
    pub sent: Vec<Device>,
    /// Devices whose queued invitation the cancel dropped: the withdrawn ones and
    /// those waiting for a retry after a send of unknown fate.
    pub dropped: Vec<Device>,
}

impl Live {
    /// A record of the first [`MAX_DEVICES_PER_CALL`] devices of `targets`, in the
    /// order [`super::Dispatcher::submit`] numbers them.
    pub fn new(
        call_id: Arc<str>,
        inviter_id: Arc<str>,
        expires_at: u64,
        targets: &Targets,
    ) -> Self {
        let devices: Box<[Device]> = targets
            .lanes
            .iter()
            .flatten()
            .take(MAX_DEVICES_PER_CALL)
            .cloned()
            .collect();
        let slots = devices.iter().map(|_| AtomicU8::new(WAITING)).collect();
        Self {
            call_id,
            inviter_id,
            expires_at,
            devices,
            slots,
        }
    }

    /// Devices tracked (at most [`MAX_DEVICES_PER_CALL`]).
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// The tracked devices, for rendering the cancellation for their vendors.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// False once cancel withdrew or cancelled the invitation in `slot`: the worker
    /// drops the job. Untracked slots are always pending.
    pub(super) fn pending(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_none_or(|s| s.load(Ordering::Acquire) < WITHDRAWN)
    }

    /// The request is about to leave: claim the slot. False when cancel got there
    /// first (the job must be dropped unsent).
    pub(super) fn leave(&self, slot: u32) -> bool {
        let Some(s) = self.slots.get(slot as usize) else {
            return true;
        };
        s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            matches!(v, WAITING | WAITING_MAYBE).then_some(IN_FLIGHT)
        })
        .is_ok()
    }

    /// The send came back and will be retried; `maybe_sent` when a send of this job
    /// may have reached the vendor. False when cancel counted it as sent meanwhile
    /// (the retry must be dropped).
    pub(super) fn requeue(&self, slot: u32, maybe_sent: bool) -> bool {
        let Some(s) = self.slots.get(slot as usize) else {
            return true;
        };
        let to = if maybe_sent { WAITING_MAYBE } else { WAITING };
        s.compare_exchange(IN_FLIGHT, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The job is finished: `sent` when it was delivered or may have been. False when
    /// the cancel dropped it from its queue (and reported it in
    /// [`Cancelled::dropped`]).
    pub(super) fn finish(&self, slot: u32, sent: bool) -> bool {
        let Some(s) = self.slots.get(slot as usize) else {
            return true;
        };
        let to = if sent { DONE_SENT } else { DONE_UNSENT };
        // Fails only when cancel already settled the slot, which then stands.
        match s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v < WITHDRAWN).then_some(to)
        }) {
            Ok(_) => true,
            Err(v) => !matches!(v, WITHDRAWN | DROPPED),
        }
    }

    /// Withdraw what has not been sent and list the devices that were (or may have
    /// been). Called once per call, after [`Table::remove`] took the record out.
    pub fn cancel(&self) -> Cancelled {
        let mut c = Cancelled::default();
        for (slot, device) in self.slots.iter().zip(self.devices.iter()) {
            let before = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match v {
                WAITING => Some(WITHDRAWN),
                WAITING_MAYBE => Some(DROPPED),
                IN_FLIGHT | DONE_SENT => Some(CANCELLED),
                _ => None,
            });
            match before {
                Ok(WAITING) => {
                    c.withdrawn += 1;
                    c.dropped.push(device.clone());
                }
                Ok(WAITING_MAYBE) => {
                    c.sent.push(device.clone());
                    c.dropped.push(device.clone());
                }
                Ok(_) => c.sent.push(device.clone()),
                Err(_) => {}
            }
        }
        c
    }
}

/// The table of live calls is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many live calls")]
pub struct Full;

/// The live calls by id, with their budget.
#[derive(Default)]
pub struct Table {
    live: DashMap<Arc<str>, Arc<Live>>,
    /// Calls and tracked devices reserved, including calls being admitted.
    calls: AtomicUsize,
    tracked: AtomicUsize,
}

impl Table {
    /// Reserve room for `live` before its jobs are queued.
    pub(super) fn reserve(&self, live: &Live) -> Result<(), Full> {
        let n = live.tracked();
        let calls = self.calls.fetch_add(1, Ordering::AcqRel);
        let tracked = self.tracked.fetch_add(n, Ordering::AcqRel);
        if calls >= MAX_LIVE_CALLS || tracked + n > MAX_TRACKED {
            self.unreserve(live);
            return Err(Full);
        }
        Ok(())
    }

    /// Give back what [`Table::reserve`] took.
    pub(super) fn unreserve(&self, live: &Live) {
        self.calls.fetch_sub(1, Ordering::AcqRel);
        self.tracked.fetch_sub(live.tracked(), Ordering::AcqRel);
    }

    /// Make a reserved call findable by its id. A live call with the same id (reused
    /// after the dedup window) is replaced and can no longer be cancelled.
    pub(super) fn insert(&self, live: Arc<Live>) {
        if let Some(old) = self.live.insert(live.call_id.clone(), live) {
            self.unreserve(&old);
        }
    }

    /// The live call `call_id`, unless it is unknown or timed out at `now`.
    pub fn get(&self, call_id: &str, now: u64) -> Option<Arc<Live>> {
        self.live
            .get(call_id)
            .map(|l| l.value().clone())
            .filter(|l| now < l.expires_at)
    }

    /// Take `live` out of the table; false when it was already gone (cancelled
    /// concurrently, swept, or replaced): only the caller that removed it cancels it.
    pub fn remove(&self, live: &Arc<Live>) -> bool {
        let removed = self
            .live
            .remove_if(&live.call_id, |_, l| Arc::ptr_eq(l, live))
            .is_some();
        if removed {
            self.unreserve(live);
        }
        removed
    }

    /// End the bookkeeping of calls that timed out by `now`.
    pub fn sweep(&self, now: u64) {
        self.live.retain(|_, l| {
            let keep = now < l.expires_at;
            if !keep {
                self.calls.fetch_sub(1, Ordering::AcqRel);
                self.tracked.fetch_sub(l.tracked(), Ordering::AcqRel);
            }
            keep
        });
    }

    /// Live calls (including those being admitted).
    pub fn len(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The lanes `devices` use, for rendering only what they need.
pub fn lanes_of(devices: &[Device]) -> [bool; Lane::COUNT] {
    let mut used = [false; Lane::COUNT];
    for d in devices {
        used[d.provider().lane() as usize] = true;
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Environment, ProviderKind, TokenRef};

    fn live(n: usize) -> Live {
        let mut targets = Targets::default();
        targets.lanes[Lane::Fcm as usize] = (0..n)
            .map(|i| {
                Device::from_parts(
                    &format!("d{i}"),
                    1,
                    ProviderKind::Fcm,
                    Environment::Production,
                    None,
                    TokenRef::Text("t"),
                )
            })
            .collect();
        Live::new("c".into(), "u0".into(), 100, &targets)
    }

    #[test]
    fn every_invitation_is_withdrawn_or_counted_as_sent_exactly_once() {
        let l = live(6);
        // 0 queued; 1 in flight; 2 delivered; 3 rejected; 4 retrying after a 503;
        // 5 retrying after a send whose fate is unknown.
        assert!(l.leave(1));
        assert!(l.leave(2));
        l.finish(2, true);
        assert!(l.leave(3));
        l.finish(3, false);
        assert!(l.leave(4) && l.requeue(4, false));
        assert!(l.leave(5) && l.requeue(5, true));
        let c = l.cancel();
        assert_eq!(c.withdrawn, 2, "0 and 4");
        let sent: Vec<&str> = c.sent.iter().map(|d| d.push_id()).collect();
        assert_eq!(sent, ["d1", "d2", "d5"]);
        let dropped: Vec<&str> = c.dropped.iter().map(|d| d.push_id()).collect();
        assert_eq!(dropped, ["d0", "d4", "d5"], "left their queues unsent");
        // The worker's later moves fail and change nothing.
        assert!(!l.pending(0) && !l.leave(0), "a withdrawn job is dropped");
        assert!(!l.requeue(1, false), "no retry after cancel");
        assert!(
            l.finish(1, false),
            "the send in flight is counted by its job"
        );
        assert!(
            !l.finish(0, false),
            "the withdrawn one was counted by the cancel"
        );
        assert!(!l.leave(5), "a cancelled retry is dropped");
        assert!(l.cancel().sent.is_empty(), "settled slots stay settled");
    }

    #[test]
    fn devices_past_the_cap_are_not_tracked() {
        let l = live(MAX_DEVICES_PER_CALL + 3);
        assert_eq!(l.tracked(), MAX_DEVICES_PER_CALL);
        let past = MAX_DEVICES_PER_CALL as u32 + 1;
        assert!(l.pending(past) && l.leave(past) && l.requeue(past, true));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_ended_calls() {
        let t = Table::default();
        let a = Arc::new(live(2));
        t.reserve(&a).expect("room");
        t.insert(a.clone());
        assert_eq!(t.len(), 1);
        assert!(t.get("c", 99).is_some());
        assert!(t.get("c", 100).is_none(), "timed out");
        assert!(t.remove(&a));
        assert!(!t.remove(&a), "removed once");
        assert!(t.is_empty());
        t.reserve(&a).expect("room");
        t.insert(a.clone());
        t.sweep(100);
        assert!(t.is_empty() && t.get("c", 0).is_none());
        assert_eq!(t.tracked.load(Ordering::Relaxed), 0);
        t.calls.store(MAX_LIVE_CALLS, Ordering::Relaxed);
        assert_eq!(t.reserve(&a), Err(Full));
        assert_eq!(
            t.calls.load(Ordering::Relaxed),
            MAX_LIVE_CALLS,
            "nothing kept"
        );
    }
}
