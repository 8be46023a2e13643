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
use std::io::{Read, Seek, SeekFrom, Write};
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

/// Result of reading the log back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub records: u64,
    pub bytes: u64,
    /// Sequence number of the last record applied (or the snapshot's).
    pub last_seq: u64,
    pub torn_tail_bytes: u64,
    /// Where the cut torn tail was kept.
    pub torn_tail_copy: Option<PathBuf>,
    /// Segments not read because the snapshot covers every record in them.
    pub skipped_segments: u64,
}

/// True when the log in `dir` can bring a state at `after_seq` forward: it holds a
/// segment that starts at or before `after_seq + 1` (or, when `after_seq` > 0 comes
/// from a snapshot, there is no log at all). Decided from file names alone, before
/// recovery commits to a starting point.
pub fn reaches_back_to(dir: &Path, after_seq: u64) -> Result<bool, Error> {
    let segs = segments(dir)?;
    Ok(match segs.first() {
        None => after_seq > 0,
        Some((first, _)) => *first <= after_seq + 1,
    })
}

/// Replay every record after `after_seq` through `apply`, in order.
///
/// Segments whose records the state already holds (the next segment starts at or
/// before `after_seq + 1`; a segment's name is its first record) are not read: damage
/// in them cannot matter. In the others,
/// bytes that are not an intact frame are either a torn tail or corruption:
/// - a torn tail — what a crash mid-write leaves — is damage at the end of the newest
///   segment with no intact frame anywhere after it; it is copied aside
///   (`<segment>.tail-<offset>.damaged-<unix ms>`), cut away and reported;
/// - anything else (damage followed by an intact frame, damage in a sealed segment, a
///   record that does not decode, a sequence gap) is an error naming the file and the
///   offset, and nothing is cut.
pub fn replay(
    dir: &Path,
    after_seq: u64,
    mut apply: impl FnMut(&Mutation),
) -> Result<Replayed, Error> {
    let segs = segments(dir)?;
    let mut r = Replayed {
        last_seq: after_seq,
        ..Replayed::default()
    };
    for (i, (_, path)) in segs.iter().enumerate() {
        if segs
            .get(i + 1)
            .is_some_and(|(next, _)| *next <= after_seq + 1)
            && !is_format_1(path)
        {
            r.skipped_segments += 1;
            continue;
        }
        let last_segment = i + 1 == segs.len();
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let corrupt = |offset: usize, what: String| Error::Corrupt {
            file: path.clone(),
            offset: offset as u64,
            what,
        };
        let mut off = 0usize;
        while off < data.len() {
            let (payload, len) = match codec::frame(&data[off..]) {
                Ok(f) => f,
                Err(damage) => {
                    if let Some(next) = next_intact_frame(&data, off + 1) {
                        return Err(corrupt(
                            off,
                            format!("{damage}, and an intact record follows at byte {next}"),
                        ));
                    }
                    if !last_segment {
                        return Err(corrupt(
                            off,
                            format!("{damage} at the end of a sealed segment"),
                        ));
                    }
                    break;
                }
            };
            let (seq, m) = codec::decode(payload).map_err(|e| corrupt(off, e.to_string()))?;
            let applying = r.last_seq > after_seq;
            if seq > after_seq || applying {
                if seq != r.last_seq + 1 {
                    return Err(corrupt(
                        off,
                        format!("sequence gap: expected {} found {seq}", r.last_seq + 1),
                    ));
                }
                apply(&m);
                r.records += 1;
                r.bytes += len as u64;
                r.last_seq = seq;
            }
            off += len;
        }
        if off < data.len() {
            let tail = &data[off..];
            let copy = keep_torn_tail(path, off, tail)?;
            tracing::warn!(
                file = %path.display(),
                offset = off,
                bytes = tail.len(),
                copy = %copy.display(),
                "damaged bytes at the end of the log and no intact record after them (a crash during a write): cut, and kept aside"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            f.set_len(off as u64).map_err(|e| Error::io(path, e))?;
            f.sync_all().map_err(|e| Error::io(path, e))?;
            r.torn_tail_bytes = tail.len() as u64;
            r.torn_tail_copy = Some(copy);
        }
    }
    Ok(r)
}

/// True when the segment's first record is format 1: written before a segment's name
/// was exactly its first record, so it may hold records past the next segment's name
/// and must be read even when a snapshot seems to cover it.
fn is_format_1(path: &Path) -> bool {
    let mut head = [0u8; codec::FRAME_HEADER + 1];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head[codec::FRAME_HEADER] == codec::VERSION_1)
}

/// The first offset ≥ `from` where an intact, decodable frame starts.
fn next_intact_frame(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find(|&at| {
        codec::frame(&data[at..]).is_ok_and(|(payload, _)| codec::decode(payload).is_ok())
    })
}

/// Write `tail` (the bytes about to be cut from `segment` at `offset`) to a file of its
/// own beside it, durably. The segment's prefix stays where it is, so the two together
/// are the original file.
fn keep_torn_tail(segment: &Path, offset: usize, tail: &[u8]) -> Result<PathBuf, Error> {
    let ms = crate::clock::unix_now_ms();
    let name = segment
        .file_name()
        .map_or_else(|| "wal".into(), |n| n.to_string_lossy().into_owned());
    let copy = segment.with_file_name(format!("{name}.tail-{offset}.damaged-{ms}"));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&copy)?;
        f.write_all(tail)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(&copy, e))?;
    if let Some(dir) = segment.parent() {
        sync_dir(dir)?;
    }
    Ok(copy)
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
        });
        let flusher = Flusher {
            wal: wal.clone(),
            dir: dir.to_path_buf(),
            seg: Segment { file, good_len: 0 },
            mode: durability,
            interval: fsync_interval,
            dirty: false,
            last_sync: Instant::now(),
            durable: next_seq - 1,
            incident: None,
        };
        std::thread::Builder::new()
            .name("fanfare-wal".into())
            .spawn(move || flusher.run())
            .map_err(|e| Error::io(Path::new("fanfare-wal thread"), e))?;
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

/// What ended a flusher round early.
enum Stop {
    /// The round's records were taken back; go on (refusing until a probe succeeds).
    TakenBack,
    /// The log has stopped for good.
    Fatal,
}

/// The flusher thread's state: the segment, what is synced, what is durable, and the
/// current failure incident.
struct Flusher {
    wal: Arc<Wal>,
    dir: PathBuf,
    seg: Segment,
    mode: Durability,
    interval: Duration,
    dirty: bool,
    last_sync: Instant,
    /// Every record ≤ this is acknowledged (published) and never taken back.
    durable: u64,
    incident: Option<Incident>,
}

impl Flusher {
    fn run(mut self) {
        let mut spare = Vec::with_capacity(1 << 20);
        let mut spare_undo = Vec::with_capacity(1 << 12);
        let wal = self.wal.clone();
        loop {
            let (buf, mut inflight, last_seq, split, stop) = {
                let mut p = wal.pending.lock();
                while p.buf.is_empty() && p.rotate_to.is_none() && !p.stop {
                    if p.failing {
                        self.while_failing(&mut p);
                        continue;
                    }
                    match sync_due(self.mode, self.dirty, self.last_sync, self.interval) {
                        None => self.wal.wake.wait(&mut p),
                        Some(left) => {
                            if left.is_zero() || self.wal.wake.wait_for(&mut p, left).timed_out() {
                                break;
                            }
                        }
                    }
                }
                let buf = std::mem::replace(&mut p.buf, std::mem::take(&mut spare));
                let undo = std::mem::replace(&mut p.undo, std::mem::take(&mut spare_undo));
                (buf, undo, p.next_seq - 1, p.rotate_to.take(), p.stop)
            };
            match self.round(&buf, &mut inflight, last_seq, split, stop) {
                Ok(()) => {}
                Err(Stop::TakenBack) => {}
                Err(Stop::Fatal) => return self.refuse_until_stopped(),
            }
            spare = buf;
            spare.clear();
            inflight.clear();
            spare_undo = inflight;
            if stop && self.wal.pending.lock().buf.is_empty() {
                if self.mode != Durability::None {
                    if let Err(e) = self.seg.file.sync_data() {
                        self.failed(&mut Vec::new(), format!("fsync failed: {e}"), true);
                        return self.refuse_until_stopped();
                    }
                }
                self.wal
                    .progress
                    .send_modify(|p| p.seq = p.seq.max(last_seq));
                return;
            }
        }
    }

    /// Write one swapped-out buffer. With a snapshot point in it, the records before
    /// the point go to the current segment, which is synced, and the rest to a new
    /// segment named after the point: a segment's name is exactly its first record, so
    /// recovery and pruning may trust the names.
    fn round(
        &mut self,
        buf: &[u8],
        inflight: &mut Vec<Undo>,
        last_seq: u64,
        split: Option<Split>,
        stop: bool,
    ) -> Result<(), Stop> {
        let Some(split) = split else {
            return self.write_batch(buf, inflight, last_seq, stop);
        };
        let (before, after) = buf.split_at(split.at_byte);
        // On failure every record of the round is taken back, newest first.
        self.write_batch(before, inflight, split.first - 1, true)?;
        inflight.drain(..split.at_record);
        let rest = inflight;
        if self.dirty || self.mode == Durability::None {
            if let Err(e) = self.seg.file.sync_data() {
                self.failed(rest, format!("fsync failed: {e}"), true);
                return Err(Stop::Fatal);
            }
            self.dirty = false;
        }
        match self.open_segment(split.first) {
            Ok(()) => self.wal.finish_rotation(Ok(())),
            Err(SegmentError::NotCreated(e)) => {
                // The records after the point stay in the current segment (the name of
                // the next one will still be its first record); only the snapshot fails.
                tracing::warn!(error = %e, "write-ahead log rotation failed; the current segment stays in use");
                self.wal
                    .finish_rotation(Err(format!("segment rotation failed: {e}")));
            }
            Err(SegmentError::DirectorySync(e)) => {
                self.failed(rest, format!("directory fsync failed: {e}"), true);
                return Err(Stop::Fatal);
            }
        }
        self.write_batch(after, rest, last_seq, stop)
    }

    /// Write `chunk` (records up to `chunk_last`), sync per mode (`force`: always), and
    /// publish `chunk_last`. On failure, take back `inflight` and everything buffered
    /// since.
    fn write_batch(
        &mut self,
        chunk: &[u8],
        inflight: &mut Vec<Undo>,
        chunk_last: u64,
        force: bool,
    ) -> Result<(), Stop> {
        let start = self.seg.good_len;
        if !chunk.is_empty() {
            if let Err(e) = self.seg.file.write_all(chunk) {
                // Cut the partial write: none of this batch may be replayed.
                return Err(match self.seg.cut_to(start) {
                    Ok(()) => {
                        self.failed(inflight, format!("write failed: {e}"), false);
                        Stop::TakenBack
                    }
                    Err(cut) => {
                        self.failed(
                            inflight,
                            format!("write failed: {e}; cutting the partial write failed: {cut}"),
                            true,
                        );
                        Stop::Fatal
                    }
                });
            }
            self.seg.good_len += chunk.len() as u64;
            self.wal
                .segment_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            self.dirty = true;
        }
        let must_sync = match self.mode {
            Durability::Fsync => self.dirty,
            Durability::Batch => self.dirty && (force || self.last_sync.elapsed() >= self.interval),
            Durability::None => false,
        };
        if must_sync {
            if let Err(e) = self.seg.file.sync_data() {
                // Unpublished records of this batch are taken back and cut; the log stops
                // for good (module doc).
                let _ = self.seg.cut_to(start);
                self.failed(inflight, format!("fsync failed: {e}"), true);
                return Err(Stop::Fatal);
            }
            self.last_sync = Instant::now();
            self.dirty = false;
        }
        // fsync mode acks after the fsync; batch and none after the write.
        if !chunk.is_empty() {
            self.durable = chunk_last;
            self.wal
                .progress
                .send_modify(|p| p.seq = p.seq.max(chunk_last));
            if let Some(inc) = self.incident.take() {
                tracing::info!(
                    refused = self.wal.refused() - inc.refused_before,
                    failed_for_ms = inc.since.elapsed().as_millis() as u64,
                    "write-ahead log writes succeed again"
                );
            }
        }
        Ok(())
    }

    /// One wait of the idle flusher while changes are refused after a failed write:
    /// when the back-off is over, probe the segment (write a block past its end, then
    /// cut it back); if that works, admit changes again (the incident ends with the
    /// first batch written). Says every [`SUMMARY_EVERY`] that the log is still failing.
    fn while_failing(&mut self, p: &mut MutexGuard<'_, Pending>) {
        let Some(inc) = self.incident.as_mut() else {
            // Failing with no incident cannot happen; wait for work or stop.
            self.wal.wake.wait(p);
            return;
        };
        let now = Instant::now();
        if inc.retry_at.is_some_and(|at| at <= now) {
            let seg = &mut self.seg;
            match MutexGuard::unlocked(p, || seg.probe()) {
                Ok(()) => {
                    p.failing = false;
                    *self.wal.failure.lock() = None;
                    self.wal.progress.send_modify(|pr| pr.failing = false);
                    inc.retry_at = None;
                    tracing::debug!("write-ahead log probe succeeded; changes are accepted again");
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "write-ahead log probe failed; changes stay refused");
                    inc.backoff = (inc.backoff * 2).min(RETRY_MAX);
                    inc.retry_at = Some(Instant::now() + inc.backoff);
                }
            }
        }
        if inc.next_summary <= now {
            inc.next_summary = now + SUMMARY_EVERY;
            tracing::warn!(
                refused = self.wal.refused() - inc.refused_before,
                failing_for_s = inc.since.elapsed().as_secs(),
                cause = self.wal.failure().unwrap_or_default(),
                "write-ahead log still failing; changes are refused"
            );
        }
        let until = inc
            .retry_at
            .map_or(inc.next_summary, |at| at.min(inc.next_summary));
        self.wal.wake.wait_until(p, until);
    }

    /// After a failure that stops the log for good: refuse (the pending state says so)
    /// and say so every [`SUMMARY_EVERY`] until the log is closed.
    fn refuse_until_stopped(self) {
        let Some(mut inc) = self.incident else { return };
        let mut p = self.wal.pending.lock();
        while !p.stop {
            if self
                .wal
                .wake
                .wait_until(&mut p, inc.next_summary)
                .timed_out()
            {
                inc.next_summary = Instant::now() + SUMMARY_EVERY;
                tracing::warn!(
                    refused = self.wal.refused() - inc.refused_before,
                    failing_for_s = inc.since.elapsed().as_secs(),
                    cause = self.wal.failure().unwrap_or_default(),
                    "write-ahead log stopped; changes are refused until a restart"
                );
            }
        }
    }

    /// Switch to a new segment whose first record is `first` (the current one is
    /// synced).
    fn open_segment(&mut self, first: u64) -> Result<(), SegmentError> {
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(SegmentError::NotCreated)?;
        self.seg = Segment { file, good_len: 0 };
        self.wal.segment_bytes.store(0, Ordering::Relaxed);
        self.dirty = false;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(SegmentError::DirectorySync)
    }

    /// Handle a failed write or fsync: take back, log the first failure of an incident
    /// at ERROR and count the rest, schedule the probe (none when `fatal`).
    fn failed(&mut self, inflight: &mut Vec<Undo>, cause: String, fatal: bool) {
        let refused_before = self.wal.refused();
        let taken = self.wal.take_back(inflight, self.durable, cause.clone());
        let now = Instant::now();
        match (self.incident.is_some(), fatal) {
            (false, false) => tracing::error!(cause, taken_back = taken, "write-ahead log write failed; the changes not yet durable were taken back and answered with an error; new changes are refused until the log can write again (further failures are counted)"),
            (_, true) => tracing::error!(cause, taken_back = taken, "write-ahead log failed; changes are refused until a restart"),
            (true, false) => tracing::debug!(cause, taken_back = taken, "write-ahead log write failed again"),
        }
        let inc = self.incident.get_or_insert_with(|| Incident {
            since: now,
            refused_before,
            next_summary: now + SUMMARY_EVERY,
            retry_at: None,
            backoff: RETRY_FIRST / 2,
        });
        if fatal {
            inc.retry_at = None;
        } else {
            inc.backoff = (inc.backoff * 2).min(RETRY_MAX);
            inc.retry_at = Some(now + inc.backoff);
        }
    }
}

enum SegmentError {
    NotCreated(std::io::Error),
    DirectorySync(std::io::Error),
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
mod tests {
    use super::*;

    #[test]
    fn only_batch_mode_with_unsynced_data_sets_a_timer() {
        let long_ago = Instant::now() - Duration::from_secs(5);
        let interval = Duration::from_millis(10);
        // Durability `none` writes are never synced: the idle flusher must park, even
        // long after the last write (a zero timer here spun a core at 100%).
        assert_eq!(sync_due(Durability::None, false, long_ago, interval), None);
        assert_eq!(sync_due(Durability::Fsync, false, long_ago, interval), None);
        assert_eq!(sync_due(Durability::Batch, false, long_ago, interval), None);
        assert_eq!(
            sync_due(Durability::Batch, true, long_ago, interval),
            Some(Duration::ZERO)
        );
        let fresh = sync_due(Durability::Batch, true, Instant::now(), interval).unwrap();
        assert!(fresh > Duration::ZERO && fresh <= interval);
    }
}
