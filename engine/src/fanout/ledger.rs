//! The delivery ledger: what happened to each accepted message and call, for
//! `GET /v1/messages/{id}` and `GET /v1/calls/{id}` (API.md, "Delivery ledger").
//!
//! Each accepted message or call gets one [`Entry`]: when it was accepted, its device
//! targets, how many ended in each [`Final`] outcome, and up to [`MAX_FAILURES`] of the
//! targets that did not end `delivered`, with the vendor's status and reason. Targets
//! whose vendor has no credentials (`unconfigured`) or no silent message type
//! (`rejected`) are settled when the entry is opened; the others are `pending` until
//! their job leaves its lane. A repeated id (dedup) opens nothing.
//!
//! Hot path: every job of a message carries an `Arc` to its entry (no map lookup, no
//! lock per push). A delivery is one atomic decrement of [`Entry`]'s `pending`; every
//! other outcome takes the entry's lock (counts and the bounded failure list live under
//! it) and decrements `pending` under it, so a reader holding the lock sees counts
//! that always add up to `targets` (`delivered` is what remains). The job that takes
//! `pending` to zero logs the message's final counts in one INFO line.
//!
//! Memory is bounded whatever the traffic. An entry costs at most
//! [`ENTRY_BYTES`] (struct, id of up to 128 bytes, map and FIFO slots) and each listed
//! failure at most [`FAILURE_BYTES`] (push id of up to 128 bytes, reason cut to
//! [`MAX_REASON_BYTES`]); at most [`MAX_ENTRIES`] entries and [`MAX_FAILURE_RECORDS`]
//! failures are held at once, about 37 MiB + 24 MiB at worst (ids of realistic length
//! take about half). Entries leave oldest first, when older than
//! `messages.ledger_retention_s` or to make room; a shed entry's failures are freed at
//! once (jobs still in a lane keep only its counters alive). Past the failure budget a
//! failure is counted but not listed until older entries leave.
//! `messages.ledger_retention_s = 0` turns the ledger off (every lookup is `404`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

use super::dedup::Space;
use super::plan::Targets;
use crate::clock::Clock;
use crate::providers::{Cause, Outcome, Verdict};
use crate::state::{Device, ProviderKind};

/// Failed targets listed per entry (API.md).
pub const MAX_FAILURES: usize = 100;
/// Entries held at once; the oldest leaves first to make room.
pub const MAX_ENTRIES: usize = 100_000;
/// Failure records held across all entries.
pub const MAX_FAILURE_RECORDS: usize = 100_000;
/// A vendor reason longer than this is cut (at a character boundary).
pub const MAX_REASON_BYTES: usize = 64;
/// Upper bound of one entry's memory without its failures: the `Arc`ed [`Entry`]
/// (about 170 bytes), its id (up to 128 bytes plus the `Arc` header) and its map and
/// FIFO slots.
pub const ENTRY_BYTES: usize = 384;
/// Upper bound of one listed failure: the record, its push id (up to 128 bytes) and
/// its reason (up to [`MAX_REASON_BYTES`]), with allocator rounding.
pub const FAILURE_BYTES: usize = 256;

/// How a device target ended. `pending` is not one: it is what has not ended yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Delivered,
    /// The vendor said the token is dead (the binding is removed).
    TokenDead,
    /// The vendor refused the push for good, the vendor has no silent message type for
    /// a silent push, or it failed after `retry.max_attempts` sends.
    Rejected,
    /// Its time ran out (`ttl_s`, a call's timeout) before a vendor took it.
    Expired,
    /// A call's cancel dropped the invitation before it was (re)sent.
    Withdrawn,
    /// The vendor has no credentials configured.
    Unconfigured,
}

impl Final {
    pub const COUNT: usize = 6;

    pub fn as_str(self) -> &'static str {
        match self {
            Final::Delivered => "delivered",
            Final::TokenDead => "token_dead",
            Final::Rejected => "rejected",
            Final::Expired => "expired",
            Final::Withdrawn => "withdrawn",
            Final::Unconfigured => "unconfigured",
        }
    }

    /// The final outcome a vendor's verdict gives; `None` for a retry.
    pub fn of(outcome: Outcome) -> Option<Self> {
        match outcome {
            Outcome::Delivered => Some(Final::Delivered),
            Outcome::TokenDead(_) => Some(Final::TokenDead),
            Outcome::Rejected(Cause::Unconfigured) => Some(Final::Unconfigured),
            Outcome::Rejected(_) => Some(Final::Rejected),
            Outcome::Retry { .. } => None,
        }
    }
}

/// One target that did not end `delivered`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub push_id: Box<str>,
    pub provider: ProviderKind,
    pub outcome: Final,
    /// The vendor's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The vendor's reason (or why no answer came), cut to [`MAX_REASON_BYTES`].
    pub reason: Option<Box<str>>,
}

/// An entry as `GET /v1/messages/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: Arc<str>,
    pub accepted_at_ms: u64,
    pub targets: u64,
    pub pending: u64,
    /// By [`Final`] (index = the variant).
    pub counts: [u64; Final::COUNT],
    pub failures: Vec<Failure>,
}

impl Report {
    pub fn count(&self, outcome: Final) -> u64 {
        self.counts[outcome as usize]
    }
}

/// What the lock of an entry guards.
#[derive(Default)]
struct Book {
    /// Ended targets by [`Final`], except `Delivered` (derived: what remains).
    counts: [u64; Final::COUNT],
    failures: Vec<Failure>,
    /// The entry left the ledger: failures are no longer listed.
    shed: bool,
}

/// One message's or call's record. Shared by the ledger and every job of the message.
pub struct Entry {
    space: Space,
    id: Arc<str>,
    accepted_at_ms: u64,
    /// [`Clock::now_ms`] at acceptance, for retention.
    born_ms: u64,
    targets: u64,
    /// Targets queued and not yet ended.
    pending: AtomicU64,
    book: Mutex<Book>,
    /// Failure records held across the ledger.
    held: Arc<AtomicUsize>,
    /// Cluster mode's work chunk entries: notified when the last target ends.
    done: Option<Arc<tokio::sync::Notify>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("targets", &self.targets)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// A queued target ended as `outcome` (`verdict`: the vendor's last answer).
    #[inline]
    pub fn end(&self, device: &Device, outcome: Final, verdict: Option<&Verdict>) {
        if outcome == Final::Delivered {
            if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.ended();
            }
        } else {
            self.fail(std::iter::once(device), outcome, verdict, true);
        }
    }

    /// A call's cancel dropped the queued invitations to `devices`.
    pub fn withdraw(&self, devices: &[Device]) {
        if !devices.is_empty() {
            self.fail(devices.iter(), Final::Withdrawn, None, true);
        }
    }

    /// Count `devices` as `outcome` under the lock, listing them while there is room;
    /// `queued` when they were pending (else settled at acceptance).
    fn fail<'a>(
        &self,
        devices: impl Iterator<Item = &'a Device>,
        outcome: Final,
        verdict: Option<&Verdict>,
        queued: bool,
    ) {
        let mut book = self.book.lock();
        let mut n = 0u64;
        for device in devices {
            n += 1;
            if book.shed || book.failures.len() >= MAX_FAILURES {
                continue;
            }
            if self.held.fetch_add(1, Ordering::AcqRel) >= MAX_FAILURE_RECORDS {
                self.held.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            book.failures.push(Failure {
                push_id: device.push_id().into(),
                provider: device.provider(),
                outcome,
                status: verdict.and_then(|v| v.status),
                reason: verdict.and_then(|v| v.reason.as_deref()).map(cut),
            });
        }
        book.counts[outcome as usize] += n;
        let last = queued && self.pending.fetch_sub(n, Ordering::AcqRel) == n;
        drop(book);
        if last {
            self.ended();
        }
    }

    /// Every queued target has ended.
    pub fn is_done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// The last target ended: one INFO line with the final counts (a work chunk's
    /// entry wakes its chunk instead).
    fn ended(&self) {
        if let Some(done) = &self.done {
            done.notify_one();
            return;
        }
        let r = self.report();
        tracing::info!(
            kind = match self.space {
                Space::Message => "message",
                Space::Call => "call",
            },
            id = %self.id,
            targets = r.targets,
            delivered = r.count(Final::Delivered),
            token_dead = r.count(Final::TokenDead),
            rejected = r.count(Final::Rejected),
            expired = r.count(Final::Expired),
            withdrawn = r.count(Final::Withdrawn),
            unconfigured = r.count(Final::Unconfigured),
            "all targets ended"
        );
    }

    /// The counts as they are now: they add up to `targets`.
    pub fn report(&self) -> Report {
        let book = self.book.lock();
        let pending = self.pending.load(Ordering::Acquire);
        let mut counts = book.counts;
        let others: u64 = counts.iter().sum();
        counts[Final::Delivered as usize] = self.targets.saturating_sub(pending + others);
        Report {
            id: self.id.clone(),
            accepted_at_ms: self.accepted_at_ms,
            targets: self.targets,
            pending,
            counts,
            failures: book.failures.clone(),
        }
    }

    /// The entry left the ledger: give its failure records back.
    fn forget(&self) {
        let mut book = self.book.lock();
        book.shed = true;
        self.held.fetch_sub(book.failures.len(), Ordering::AcqRel);
        book.failures = Vec::new();
    }
}

impl Drop for Entry {
    /// An entry never inserted (its request was refused) gives its records back here.
    fn drop(&mut self) {
        let listed = self.book.get_mut().failures.len();
        self.held.fetch_sub(listed, Ordering::AcqRel);
    }
}

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary.
fn cut(reason: &str) -> Box<str> {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].into()
}

/// The entries of the retention window, by space and id, oldest first.
pub struct Ledger {
    clock: Clock,
    /// 0 = the ledger is off.
    retention_ms: u64,
    ids: [DashMap<Arc<str>, Arc<Entry>>; 2],
    /// Every entry held, in acceptance order (an entry replaced under its id stays
    /// until its turn, still counted against [`MAX_ENTRIES`]).
    fifo: Mutex<VecDeque<Arc<Entry>>>,
    held: Arc<AtomicUsize>,
}

impl Ledger {
    /// A ledger keeping entries `retention_s` seconds (0 = off).
    pub fn new(clock: Clock, retention_s: u64) -> Self {
        Self {
            clock,
            retention_ms: retention_s.saturating_mul(1000),
            ids: Default::default(),
            fifo: Mutex::default(),
            held: Arc::default(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.retention_ms > 0
    }

    /// A new entry for `id` with `targets` (the queued ones pending, the others settled
    /// now); `None` when the ledger is off. Not findable until [`Ledger::insert`]: a
    /// refused request leaves no entry.
    pub fn open(&self, space: Space, id: &Arc<str>, targets: &Targets) -> Option<Arc<Entry>> {
        if !self.is_on() {
            return None;
        }
        Some(Arc::new(self.entry(space, id, targets, None)))
    }

    /// A cluster work chunk's own entry (opened whether the ledger is on or not, never
    /// findable): `done` is notified when its last queued target ends.
    pub fn chunk(
        &self,
        space: Space,
        id: &Arc<str>,
        targets: &Targets,
        done: Arc<tokio::sync::Notify>,
    ) -> Arc<Entry> {
        Arc::new(self.entry(space, id, targets, Some(done)))
    }

    fn entry(
        &self,
        space: Space,
        id: &Arc<str>,
        targets: &Targets,
        done: Option<Arc<tokio::sync::Notify>>,
    ) -> Entry {
        let queued = targets.queued() as u64;
        let settled = (targets.unconfigured.len() + targets.no_silent.len()) as u64;
        let entry = Entry {
            space,
            id: id.clone(),
            accepted_at_ms: self.clock.unix_now_ms(),
            born_ms: self.clock.now_ms(),
            targets: queued + settled,
            pending: AtomicU64::new(queued),
            book: Mutex::default(),
            held: self.held.clone(),
            done,
        };
        let unconfigured = targets.unconfigured.iter();
        entry.fail(unconfigured, Final::Unconfigured, None, false);
        let no_silent = Verdict::failed(
            Cause::NoSilent.as_str().into(),
            Outcome::Rejected(Cause::NoSilent),
        );
        entry.fail(
            targets.no_silent.iter(),
            Final::Rejected,
            Some(&no_silent),
            false,
        );
        entry
    }

    /// Make an accepted entry findable, shedding expired and excess entries first.
    pub fn insert(&self, entry: Arc<Entry>) {
        let mut fifo = self.fifo.lock();
        self.shed(&mut fifo, MAX_ENTRIES - 1);
        if let Some(old) = self.ids[entry.space as usize].insert(entry.id.clone(), entry.clone()) {
            // The id was reused after its dedup window: the old record is no longer
            // findable; it leaves the FIFO in its turn.
            old.forget();
        }
        fifo.push_back(entry.clone());
        drop(fifo);
        if entry.targets > 0 && entry.pending.load(Ordering::Acquire) == 0 {
            entry.ended();
        }
    }

    /// The entry of `id`, unless unknown or past retention.
    pub fn get(&self, space: Space, id: &str) -> Option<Arc<Entry>> {
        let now = self.clock.now_ms();
        self.ids[space as usize]
            .get(id)
            .map(|e| e.value().clone())
            .filter(|e| self.fresh(e, now))
    }

    /// Forget entries past retention (housekeeping; [`Ledger::insert`] does it too).
    pub fn sweep(&self) {
        self.shed(&mut self.fifo.lock(), MAX_ENTRIES);
    }

    /// Entries held (including replaced ones not yet shed).
    pub fn len(&self) -> usize {
        self.fifo.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Failure records held across all entries.
    pub fn failures_held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn fresh(&self, e: &Entry, now: u64) -> bool {
        now.saturating_sub(e.born_ms) < self.retention_ms
    }

    /// Drop the oldest entries while they are past retention, more than `keep` are
    /// held, or the failure budget is spent.
    fn shed(&self, fifo: &mut VecDeque<Arc<Entry>>, keep: usize) {
        let now = self.clock.now_ms();
        while let Some(oldest) = fifo.front() {
            let over =
                fifo.len() > keep || self.held.load(Ordering::Relaxed) >= MAX_FAILURE_RECORDS;
            if !over && self.fresh(oldest, now) {
                break;
            }
            let e = fifo.pop_front().expect("front exists");
            self.ids[e.space as usize].remove_if(&e.id, |_, v| Arc::ptr_eq(v, &e));
            e.forget();
        }
    }
}

#[cfg(test)]
mod tests;
