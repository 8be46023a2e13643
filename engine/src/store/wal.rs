//! The write-ahead log: segments of framed records, group commit, replay.
//!
//! Writers ([`Wal::record`], via the [`Journal`] seam of `State::apply`) take one short
//! lock to assign the next sequence number, append the encoded record to a shared
//! buffer and apply the change to memory, so memory changes in log order. A dedicated
//! flusher thread swaps the buffer out, writes it, and — per `durability` — fsyncs
//! (`fsync`: every write, so concurrent writers share one `fdatasync`: group commit;
//! `batch`: at most every `fsync_interval_ms`; `none`: never), then publishes the
//! sequence number the acks may rely on. A write error stops the log: every later
//! wait fails and the store refuses new mutations.
//!
//! Segments are files `wal-<first seq>.log`; a snapshot rotates to a new segment so the
//! segments it covers can be deleted whole.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::codec;
use super::Error;
use crate::config::Durability;
use crate::state::{Journal, Mutation};

/// What the flusher has made safe to acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Every record with a sequence number ≤ this is written (and fsynced per mode).
    pub seq: u64,
    /// The log hit an I/O error and stopped.
    pub failed: bool,
}

struct Pending {
    buf: Vec<u8>,
    next_seq: u64,
    /// Start a new segment whose first record is this seq, once `buf` is written.
    rotate_to: Option<u64>,
    stop: bool,
}

pub struct Wal {
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    failed: AtomicBool,
    /// Bytes written since the last rotation (drives size-triggered snapshots).
    segment_bytes: AtomicU64,
    rotated: Mutex<u64>,
    rotated_cv: Condvar,
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
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub records: u64,
    pub bytes: u64,
    /// Sequence number of the last record applied (or the snapshot's).
    pub last_seq: u64,
    pub torn_tail_bytes: u64,
}

/// Replay every record after `after_seq` through `apply`, in order. A torn final record
/// of the last segment (a crash mid-write) is truncated away and reported; any other
/// damage is an error naming the file and offset.
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
        let last_segment = i + 1 == segs.len();
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut off = 0usize;
        while off < data.len() {
            match read_frame(&data[off..]) {
                Frame::Ok { payload, len } => {
                    let (seq, m) = codec::decode(payload).map_err(|e| Error::Corrupt {
                        file: path.clone(),
                        offset: off as u64,
                        what: e.to_string(),
                    })?;
                    if seq > after_seq {
                        if seq != r.last_seq + 1 {
                            return Err(Error::Corrupt {
                                file: path.clone(),
                                offset: off as u64,
                                what: format!(
                                    "sequence gap: expected {} found {seq}",
                                    r.last_seq + 1
                                ),
                            });
                        }
                        apply(&m);
                        r.records += 1;
                        r.bytes += len as u64;
                        r.last_seq = seq;
                    }
                    off += len;
                }
                // Only the end of the newest segment can hold a half-written record.
                Frame::Torn if last_segment => break,
                Frame::Torn => {
                    return Err(Error::Corrupt {
                        file: path.clone(),
                        offset: off as u64,
                        what: "truncated record in a sealed segment".into(),
                    })
                }
                Frame::Bad(what) => {
                    return Err(Error::Corrupt {
                        file: path.clone(),
                        offset: off as u64,
                        what: what.into(),
                    })
                }
            }
        }
        if off < data.len() {
            r.torn_tail_bytes = (data.len() - off) as u64;
            tracing::warn!(file = %path.display(), offset = off, bytes = r.torn_tail_bytes, "torn record at the end of the log truncated (crash during a write)");
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            f.set_len(off as u64).map_err(|e| Error::io(path, e))?;
            f.sync_all().map_err(|e| Error::io(path, e))?;
        }
    }
    Ok(r)
}

enum Frame<'a> {
    Ok {
        payload: &'a [u8],
        len: usize,
    },
    /// What a crash mid-write leaves: a frame cut short, a last frame whose checksum
    /// fails, or zero-filled blocks.
    Torn,
    Bad(&'static str),
}

fn read_frame(rest: &[u8]) -> Frame<'_> {
    if rest.iter().all(|b| *b == 0) || rest.len() < codec::FRAME_HEADER {
        return Frame::Torn;
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let end = codec::FRAME_HEADER.saturating_add(len);
    if len > codec::MAX_RECORD {
        return Frame::Bad("record length is impossible");
    }
    if end > rest.len() {
        return Frame::Torn;
    }
    let payload = &rest[codec::FRAME_HEADER..end];
    if crc32c::crc32c(payload) != crc {
        return if end == rest.len() {
            Frame::Torn
        } else {
            Frame::Bad("checksum mismatch")
        };
    }
    Frame::Ok { payload, len: end }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

impl Wal {
    /// Open a fresh segment starting at `next_seq` and start the flusher thread.
    pub fn start(
        dir: &Path,
        next_seq: u64,
        durability: Durability,
        fsync_interval: Duration,
    ) -> Result<Arc<Self>, Error> {
        let path = segment_path(dir, next_seq);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        let (progress, _) = watch::channel(Progress {
            seq: next_seq - 1,
            failed: false,
        });
        let wal = Arc::new(Self {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(1 << 20),
                next_seq,
                rotate_to: None,
                stop: false,
            }),
            wake: Condvar::new(),
            progress,
            failed: AtomicBool::new(false),
            segment_bytes: AtomicU64::new(0),
            rotated: Mutex::new(next_seq),
            rotated_cv: Condvar::new(),
        });
        let flusher = wal.clone();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("fanfare-wal".into())
            .spawn(move || flusher.run(dir, file, durability, fsync_interval))
            .map_err(|e| Error::io(Path::new("fanfare-wal thread"), e))?;
        Ok(wal)
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes.load(Ordering::Relaxed)
    }

    /// Wait until record `seq` may be acknowledged; `Err` if the log failed first.
    pub async fn wait(&self, seq: u64) -> Result<(), Error> {
        let mut rx = self.progress.subscribe();
        let p = rx
            .wait_for(|p| p.failed || p.seq >= seq)
            .await
            .map_err(|_| Error::Stopped)?;
        if p.seq >= seq {
            Ok(())
        } else {
            Err(Error::Stopped)
        }
    }

    /// Mark the current position as a snapshot point: the next record starts a new
    /// segment. Returns the last sequence number before it once every record up to it
    /// is applied in memory (true as soon as the lock is taken) and the new segment is
    /// open.
    pub fn rotate(&self) -> Result<u64, Error> {
        let first_new = {
            let mut p = self.pending.lock();
            let first_new = p.next_seq;
            p.rotate_to = Some(first_new);
            first_new
        };
        self.wake.notify_one();
        let mut rotated = self.rotated.lock();
        while *rotated < first_new && !self.is_failed() {
            self.rotated_cv.wait(&mut rotated);
        }
        if self.is_failed() {
            return Err(Error::Stopped);
        }
        Ok(first_new - 1)
    }

    /// Write what is pending, fsync, and stop the flusher.
    pub fn close(&self) {
        self.pending.lock().stop = true;
        self.wake.notify_one();
        let mut rx = self.progress.subscribe();
        let target = self.pending.lock().next_seq - 1;
        // The flusher publishes `target` (or fails) before it exits.
        while !rx.borrow().failed && rx.borrow().seq < target {
            if futures::executor::block_on(rx.changed()).is_err() {
                break;
            }
        }
    }

    fn fail(&self, what: &str, e: std::io::Error) {
        tracing::error!(error = %e, "write-ahead log {what} failed; refusing further changes");
        self.failed.store(true, Ordering::Release);
        self.progress.send_modify(|p| p.failed = true);
        let _g = self.rotated.lock();
        self.rotated_cv.notify_all();
    }

    fn run(self: Arc<Self>, dir: PathBuf, mut file: File, mode: Durability, interval: Duration) {
        let mut spare = Vec::with_capacity(1 << 20);
        let mut last_sync = Instant::now();
        let mut dirty = false;
        loop {
            let (buf, last_seq, rotate_to, stop) = {
                let mut p = self.pending.lock();
                while p.buf.is_empty() && p.rotate_to.is_none() && !p.stop {
                    match sync_due(mode, dirty, last_sync, interval) {
                        None => self.wake.wait(&mut p),
                        Some(left) => {
                            if left.is_zero() || self.wake.wait_for(&mut p, left).timed_out() {
                                break;
                            }
                        }
                    }
                }
                let buf = std::mem::replace(&mut p.buf, std::mem::take(&mut spare));
                (buf, p.next_seq - 1, p.rotate_to.take(), p.stop)
            };
            if !buf.is_empty() {
                if let Err(e) = file.write_all(&buf) {
                    return self.fail("write", e);
                }
                self.segment_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                dirty = true;
            }
            let must_sync = match mode {
                Durability::Fsync => dirty,
                Durability::Batch => {
                    dirty && (last_sync.elapsed() >= interval || stop || rotate_to.is_some())
                }
                Durability::None => false,
            };
            if must_sync {
                if let Err(e) = file.sync_data() {
                    return self.fail("fsync", e);
                }
                last_sync = Instant::now();
                dirty = false;
            }
            // fsync mode acks after the fsync; batch and none after the write.
            if !buf.is_empty() {
                self.progress.send_modify(|p| p.seq = p.seq.max(last_seq));
            }
            spare = buf;
            spare.clear();
            if let Some(first) = rotate_to {
                if let Err(e) = file.sync_data() {
                    return self.fail("fsync", e);
                }
                let path = segment_path(&dir, first);
                file = match OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) => return self.fail("segment creation", e),
                };
                if let Err(Error::Io { source, .. }) = sync_dir(&dir) {
                    return self.fail("directory fsync", source);
                }
                self.segment_bytes.store(0, Ordering::Relaxed);
                dirty = false;
                *self.rotated.lock() = first;
                self.rotated_cv.notify_all();
            }
            if stop && self.pending.lock().buf.is_empty() {
                if mode != Durability::None {
                    if let Err(e) = file.sync_data() {
                        return self.fail("fsync", e);
                    }
                }
                self.progress.send_modify(|p| p.seq = p.seq.max(last_seq));
                return;
            }
        }
    }
}

impl Journal for Wal {
    fn record(&self, m: &Mutation, apply: &mut dyn FnMut()) -> u64 {
        let seq = {
            let mut p = self.pending.lock();
            let seq = p.next_seq;
            p.next_seq += 1;
            codec::encode(seq, m, &mut p.buf);
            apply();
            seq
        };
        self.wake.notify_one();
        seq
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
