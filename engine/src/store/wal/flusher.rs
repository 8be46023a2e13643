//! The flusher thread: takes the records writers queued, appends them to the current
//! segment, syncs as the durability mode asks, publishes what is durable, and on a
//! failure takes the round back and refuses writes until a probe write succeeds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// What ended a flusher round early.
enum Stop {
    /// The round's records were taken back; go on (refusing until a probe succeeds).
    TakenBack,
    /// The log has stopped for good.
    Fatal,
}

/// The flusher thread's state: the segment, what is synced, what is durable, and the
/// current failure incident.
pub(super) struct Flusher {
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
    /// Start the flusher thread over the fresh segment `seg` of `dir`, syncing as
    /// `(mode, interval)` ask; every record up to `durable` is already durable.
    pub(super) fn spawn(
        wal: Arc<Wal>,
        dir: &Path,
        seg: Segment,
        (mode, interval): (Durability, Duration),
        durable: u64,
    ) -> Result<(), Error> {
        let flusher = Self {
            wal,
            dir: dir.to_path_buf(),
            seg,
            mode,
            interval,
            dirty: false,
            last_sync: Instant::now(),
            durable,
            incident: None,
        };
        std::thread::Builder::new()
            .name("fanfare-wal".into())
            .spawn(move || flusher.run())
            .map_err(|e| Error::io(Path::new("fanfare-wal thread"), e))?;
        Ok(())
    }

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
            self.wal
                .stats
                .wal_written_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            self.dirty = true;
        }
        let must_sync = match self.mode {
            Durability::Fsync => self.dirty,
            Durability::Batch => self.dirty && (force || self.last_sync.elapsed() >= self.interval),
            Durability::None => false,
        };
        if must_sync {
            let started = Instant::now();
            if let Err(e) = self.seg.file.sync_data() {
                // Unpublished records of this batch are taken back and cut; the log stops
                // for good (module doc).
                let _ = self.seg.cut_to(start);
                self.failed(inflight, format!("fsync failed: {e}"), true);
                return Err(Stop::Fatal);
            }
            self.last_sync = Instant::now();
            self.wal
                .stats
                .fsync_seconds
                .observe(self.last_sync - started);
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
