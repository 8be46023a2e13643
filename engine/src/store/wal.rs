//! The write-ahead log: segments of framed records, group commit, replay.
//!
//! Writers ([`Wal::record`], via the [`Journal`] seam of `State::apply`) take one short
//! lock to assign the next sequence number, append the encoded record to a shared
//! buffer and apply the change to memory, keeping its [`Undo`] beside the record, so
//! memory changes in log order. A dedicated flusher thread swaps the buffer out, writes
//! it, and — per `durability` — fsyncs (`fsync`: every write, so concurrent writers
//! share one `fdatasync`: group commit; `batch`: at most every `fsync_interval_ms`;
//! `none`: never), then publishes the sequence number the acks may rely on.
//!
//! # When a write fails
//!
//! A refused write must change nothing, in memory or on disk. Memory is changed before
//! the record is durable (that is what keeps it in log order at group-commit speed), so
//! the flusher takes back what it could not make durable:
//!
//! 1. it cuts the segment back to the end of the last good batch (a partial write of
//!    the failed batch must not be replayed after a restart);
//! 2. under the writers' lock it hands the [`Undo`] of every record after the durable
//!    point — the records buffered since, newest first, then the failed batch, newest
//!    first — to `State::revert`, which restores exactly the state before them;
//! 3. it resets the next sequence number to the durable point + 1 (the log stays
//!    gapless), starts a new *epoch* and fails every waiter of the old one whose record
//!    was not durable. A waiter holds a [`Ticket`] `(seq, epoch)`, so a sequence number
//!    reused in a later epoch can never acknowledge a record that was taken back.
//!
//! Why take back rather than the alternatives: applying to memory only once a batch is
//! durable (on the flusher, in log order) would be as exact, but every writer would
//! then wait for the flusher to learn its own result — including the dispatcher's
//! synchronous dead-token removal — and the flusher would apply every change alone;
//! rebuilding the state from disk would mean swapping the whole shared state under
//! every reader. An [`Undo`] is captured under the lock the writer already holds and
//! costs a lookup and a few reference counts (a removed user's device list is copied),
//! nothing at all is spent on the success path after the batch is durable, and the
//! take-back itself runs only on failure. Readers may briefly see a change that is
//! then taken back; they never see one acknowledged and later lost.
//!
//! While failing, [`Wal::record`] refuses before touching memory, and [`Wal::failure`]
//! says why (`/readyz` answers 503). After a failed *write* (full disk, file size limit)
//! the flusher probes after a back-off (100 ms doubling to 5 s): it writes a block past
//! the segment's end and cuts it back; once that works, changes are admitted again. No
//! client write is spent as a probe, and readiness does not flap while the disk is
//! still full. After a failed *fsync* the log stops for good: the kernel may have
//! dropped the dirty pages of records already acknowledged in `batch` mode, so only a
//! restart (recovery from what is really on disk) is safe. The first failure of an
//! incident is logged at ERROR; later ones are counted ([`Wal::refused`]) and
//! summarised every 30 s; the end of the incident is logged once.
//!
//! Segments are files `wal-<first seq>.log`, and the name is exact: a snapshot's
//! rotation splits the pending buffer at the snapshot point, so records after it never
//! land in the old segment. Recovery skips, and pruning deletes, segments by name.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::watch;

use super::codec;
use super::Error;
use crate::config::Durability;
use crate::state::{Journal, Mutation, Refused, State, Ticket, Undo};

mod flusher;
mod replay;

use flusher::Flusher;
pub use replay::{reaches_back_to, replay, Replayed};

/// First wait before writes are admitted again after a failed write.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a failing log says so again.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// Ended epochs remembered for late waiters (a waiter is normally woken within
/// microseconds of its epoch ending; one that is older than this many failures gets an
/// error, the safe answer).
const ENDED_EPOCHS: usize = 1024;

/// What the flusher has made safe to acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Every record of `epoch` with a sequence number ≤ this is written (and fsynced
    /// per mode).
    pub seq: u64,
    /// Changes each time a failure takes records back.
    pub epoch: u64,
    /// Changes are being refused.
    pub failing: bool,
}

struct Pending {
    buf: Vec<u8>,
    /// One per record in `buf`, in the same order.
    undo: Vec<Undo>,
    next_seq: u64,
    epoch: u64,
    /// Refusing changes (see the module doc).
    failing: bool,
    /// A snapshot point inside `buf`: the records from it on start a new segment.
    rotate_to: Option<Split>,
    stop: bool,
}

/// Where in the pending buffer a new segment starts.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// The first record of the new segment.
    first: u64,
    /// Bytes of `buf` and entries of `undo` before it.
    at_byte: usize,
    at_record: usize,
}

/// Where a snapshot's rotation request stands.
enum Rotation {
    Idle,
    Requested,
    Done(Result<(), String>),
}

pub struct Wal {
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    /// Where taken-back changes are reverted (weak: the state owns this log).
    state: Weak<State>,
    /// `(epoch, durable seq)` of epochs ended by a failure, oldest first.
    ended: Mutex<VecDeque<(u64, u64)>>,
    /// Why changes are refused, while they are.
    failure: Mutex<Option<String>>,
    /// Changes refused or taken back since start.
    refused: AtomicU64,
    /// Bytes written since the last rotation (drives size-triggered snapshots).
    segment_bytes: AtomicU64,
    rotation: Mutex<Rotation>,
    rotation_cv: Condvar,
    /// Fsync times and bytes written, for `/metrics`.
    stats: Arc<crate::telemetry::StorageStats>,
}

/// How long the idle flusher may sleep before a sync falls due: `None` = until woken.
/// Only `batch` leaves written-but-unsynced data behind between rounds; a timer in any
/// other mode would turn the idle flusher into a busy loop.
fn sync_due(
    mode: Durability,
    dirty: bool,
    last_sync: Instant,
    interval: Duration,
) -> Option<Duration> {
    (mode == Durability::Batch && dirty).then(|| interval.saturating_sub(last_sync.elapsed()))
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}.log"))
}

/// WAL segments in `dir`, sorted by first sequence number.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    super::numbered_files(dir, "wal-", ".log")
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The segment being appended to, and where its last good batch ends.
struct Segment {
    file: File,
    /// Length of the file after the last batch fully written (what a failed write is
    /// cut back to).
    good_len: u64,
}

/// Bytes a probe writes past the end of the segment (then cuts away).
const PROBE_BYTES: usize = 4096;

impl Segment {
    /// Can the segment grow? Write a block of zeros past its end and cut it back. (A
    /// crash in between leaves a zero tail, which recovery cuts as torn.)
    fn probe(&mut self) -> std::io::Result<()> {
        let wrote = self.file.write_all(&[0u8; PROBE_BYTES]);
        self.cut_to(self.good_len)?;
        wrote
    }

    /// Cut the file back to `len` and put the write position there.
    fn cut_to(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        self.good_len = len;
        Ok(())
    }
}

/// A failing stretch, from the first failure to the first write that succeeds after it.
struct Incident {
    since: Instant,
    refused_before: u64,
    next_summary: Instant,
    /// When writes are admitted again (`None`: never, after a failed fsync).
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Wal {
    /// Open a fresh segment starting at `next_seq` and start the flusher thread.
    /// Changes the log has to take back are reverted in `state`.
    pub fn start(
        dir: &Path,
        next_seq: u64,
        durability: Durability,
        fsync_interval: Duration,
        state: Weak<State>,
    ) -> Result<Arc<Self>, Error> {
        let path = segment_path(dir, next_seq);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        let epoch = 1;
        let (progress, _) = watch::channel(Progress {
            seq: next_seq - 1,
            epoch,
            failing: false,
        });
        let wal = Arc::new(Self {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(1 << 20),
                undo: Vec::with_capacity(1 << 12),
                next_seq,
                epoch,
                failing: false,
                rotate_to: None,
                stop: false,
            }),
            wake: Condvar::new(),
            progress,
            state,
            ended: Mutex::new(VecDeque::new()),
            failure: Mutex::new(None),
            refused: AtomicU64::new(0),
            segment_bytes: AtomicU64::new(0),
            rotation: Mutex::new(Rotation::Idle),
            rotation_cv: Condvar::new(),
            stats: Default::default(),
        });
        let seg = Segment { file, good_len: 0 };
        Flusher::spawn(
            wal.clone(),
            dir,
            seg,
            (durability, fsync_interval),
            next_seq - 1,
        )?;
        Ok(wal)
    }

    /// Why changes are being refused, while they are (an I/O error's text: no paths,
    /// no secrets).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Changes refused or taken back since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes.load(Ordering::Relaxed)
    }

    /// The log's figures for `/metrics` (the store adds its own to them).
    pub fn stats(&self) -> &Arc<crate::telemetry::StorageStats> {
        &self.stats
    }

    /// The last sequence number handed out and the current epoch.
    pub fn head(&self) -> Ticket {
        let p = self.pending.lock();
        Ticket {
            seq: p.next_seq - 1,
            epoch: p.epoch,
        }
    }

    fn refused_error(&self) -> Error {
        Error::Refused {
            cause: self.failure().unwrap_or_else(|| "the log is closed".into()),
        }
    }

    /// Wait until the record behind `ticket` may be acknowledged; `Err` if it was
    /// refused (taken back after a failed write).
    pub async fn wait(&self, ticket: Ticket) -> Result<(), Error> {
        if ticket == Ticket::UNLOGGED {
            return Ok(());
        }
        let mut rx = self.progress.subscribe();
        let p = *rx
            .wait_for(|p| p.epoch != ticket.epoch || p.seq >= ticket.seq)
            .await
            .map_err(|_| Error::Stopped)?;
        if p.epoch == ticket.epoch {
            return Ok(());
        }
        // The record's epoch ended in a failure: it survived only if it was durable.
        let durable = self
            .ended
            .lock()
            .iter()
            .find(|(e, _)| *e == ticket.epoch)
            .map(|(_, d)| *d);
        match durable {
            Some(d) if ticket.seq <= d => Ok(()),
            _ => Err(self.refused_error()),
        }
    }

    /// [`Wal::wait`] for blocking callers (snapshots, shutdown).
    pub fn wait_blocking(&self, ticket: Ticket) -> Result<(), Error> {
        futures::executor::block_on(self.wait(ticket))
    }

    /// Mark the current position as a snapshot point: the next record starts a new
    /// segment. Returns the ticket of the last record before it once every record up to
    /// it is durable and in memory and the new segment is open.
    pub fn rotate(&self) -> Result<Ticket, Error> {
        *self.rotation.lock() = Rotation::Requested;
        let last = {
            let mut p = self.pending.lock();
            if p.failing || p.stop {
                *self.rotation.lock() = Rotation::Idle;
                drop(p);
                return Err(self.refused_error());
            }
            p.rotate_to = Some(Split {
                first: p.next_seq,
                at_byte: p.buf.len(),
                at_record: p.undo.len(),
            });
            Ticket {
                seq: p.next_seq - 1,
                epoch: p.epoch,
            }
        };
        self.wake.notify_one();
        let mut rotation = self.rotation.lock();
        loop {
            match std::mem::replace(&mut *rotation, Rotation::Requested) {
                Rotation::Done(result) => {
                    *rotation = Rotation::Idle;
                    return result
                        .map(|()| last)
                        .map_err(|cause| Error::Refused { cause });
                }
                _ => self.rotation_cv.wait(&mut rotation),
            }
        }
    }

    fn finish_rotation(&self, result: Result<(), String>) {
        let mut rotation = self.rotation.lock();
        if matches!(*rotation, Rotation::Requested) {
            *rotation = Rotation::Done(result);
            self.rotation_cv.notify_all();
        }
    }

    /// Write what is pending, fsync, and stop the flusher.
    pub fn close(&self) {
        let target = {
            let mut p = self.pending.lock();
            p.stop = true;
            Ticket {
                seq: p.next_seq - 1,
                epoch: p.epoch,
            }
        };
        self.wake.notify_one();
        // The flusher publishes `target` (or takes it back) before it exits.
        let _ = self.wait_blocking(target);
    }

    /// Take back every record after `durable` (not acknowledged, never will be), fail
    /// their waiters, and refuse changes from now on (see the module doc).
    fn take_back(&self, inflight: &mut Vec<Undo>, durable: u64, cause: String) -> u64 {
        let state = self.state.upgrade();
        let mut p = self.pending.lock();
        if let Some(state) = &state {
            for undo in p.undo.drain(..).rev().chain(inflight.drain(..).rev()) {
                state.revert(undo);
            }
        }
        p.undo.clear();
        inflight.clear();
        p.buf.clear();
        p.rotate_to = None;
        let taken = (p.next_seq - 1).saturating_sub(durable);
        p.next_seq = durable + 1;
        let ended = p.epoch;
        p.epoch += 1;
        p.failing = true;
        {
            let mut e = self.ended.lock();
            if e.len() == ENDED_EPOCHS {
                e.pop_front();
            }
            e.push_back((ended, durable));
        }
        *self.failure.lock() = Some(cause.clone());
        self.refused.fetch_add(taken, Ordering::Relaxed);
        let epoch = p.epoch;
        self.progress.send_modify(|pr| {
            pr.seq = durable;
            pr.epoch = epoch;
            pr.failing = true;
        });
        drop(p);
        self.finish_rotation(Err(cause));
        taken
    }
}

impl Journal for Wal {
    fn record(&self, m: &Mutation, apply: &mut dyn FnMut() -> Undo) -> Result<Ticket, Refused> {
        let ticket = {
            let mut p = self.pending.lock();
            if p.failing || p.stop {
                drop(p);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refused);
            }
            let seq = p.next_seq;
            p.next_seq += 1;
            codec::encode(seq, m, &mut p.buf);
            let undo = apply();
            p.undo.push(undo);
            Ticket {
                seq,
                epoch: p.epoch,
            }
        };
        self.wake.notify_one();
        Ok(ticket)
    }

    fn exclusive(&self, f: &mut dyn FnMut(bool)) {
        let p = self.pending.lock();
        let settled = self.progress.borrow().seq + 1 >= p.next_seq;
        f(settled);
    }
}

#[cfg(test)]
mod tests;
