//! One device push making its way through a lane, and what it tells its call's
//! [`Live`] record and its message's ledger [`Entry`] as it goes.
//!
//! Every way a job ends goes through [`Job::finish`] with its [`Final`] outcome, so the
//! call's slot and the ledger agree: a slot a cancel already settled (withdrawn or
//! dropped from the retry queue) was counted by the cancel and is not counted again.

use std::sync::Arc;

use crate::fanout::ledger::{Entry, Final};
use crate::providers::{Push, Verdict};
use crate::state::Device;

use super::calls::Live;

/// One device push making its way through a lane.
pub(super) struct Job {
    pub(super) push: Arc<Push>,
    pub(super) device: Device,
    /// The recipient's badge total (`badge_increment`).
    pub(super) badge: Option<u32>,
    /// The call this invitation belongs to (`None` for messages) and its slot there.
    pub(super) call: Option<Arc<Live>>,
    pub(super) slot: u32,
    /// The ledger entry of its message or call (`None` with the ledger off).
    pub(super) ledger: Option<Arc<Entry>>,
    /// Sends that counted (the vendor answered, or the fate is unknown).
    pub(super) attempts: u32,
    /// Resends of sends the vendor provably did not process.
    pub(super) unsent: u32,
    /// A send of this job may have reached the vendor (its fate was unknown).
    pub(super) maybe_sent: bool,
    /// The message's fan-out timer (the last job to drop it ends the fan-out).
    pub(super) _fanout: Option<Arc<crate::telemetry::Fanout>>,
}

impl Job {
    /// Still to be sent: not withdrawn by a cancel of its call.
    pub(super) fn pending(&self) -> bool {
        self.call.as_ref().is_none_or(|c| c.pending(self.slot))
    }

    /// The request is about to leave; false when its call's cancel withdrew it.
    pub(super) fn leave(&self) -> bool {
        self.call.as_ref().is_none_or(|c| c.leave(self.slot))
    }

    /// The send will be retried; false when its call was cancelled meanwhile (the
    /// invitation then ends withdrawn: the cancel counted it as sent, not dropped).
    pub(super) fn requeue(&self) -> bool {
        let maybe = self.maybe_sent;
        let again = self
            .call
            .as_ref()
            .is_none_or(|c| c.requeue(self.slot, maybe));
        if !again {
            if let Some(e) = &self.ledger {
                e.end(&self.device, Final::Withdrawn, None);
            }
        }
        again
    }

    /// The job leaves its lane as `outcome`; `verdict` is the vendor's last answer.
    pub(super) fn finish(&self, outcome: Final, verdict: Option<&Verdict>) {
        let sent = outcome == Final::Delivered || self.maybe_sent;
        let ours = self.call.as_ref().is_none_or(|c| c.finish(self.slot, sent));
        if let (true, Some(e)) = (ours, &self.ledger) {
            e.end(&self.device, outcome, verdict);
        }
    }
}
