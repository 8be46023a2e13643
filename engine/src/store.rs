//! Durable state: write-ahead log + rkyv snapshots, and recovery.
//!
//! - [`codec`]: the WAL record format (framed, CRC32C, versioned).
//! - [`wal`]: group-committed appends on a flusher thread, segments, replay.
//! - [`snapshot`]: columnar rkyv image of the whole durable state, memory-mapped and
//!   validated on recovery.
//!
//! Every durable mutation goes through `State::apply`, whose [`crate::state::Journal`]
//! is the [`wal::Wal`]: it assigns the sequence number, buffers the record and changes
//! memory under one short lock, so memory changes in log order. The API acknowledges a
//! mutation only after [`Store::commit`] has seen it made durable per
//! `storage.durability` (for `none`: written). A write the log cannot make durable is
//! taken back from memory and answered with an error: a refused write changes nothing
//! (see [`wal`]'s doc for how).
//!
//! Snapshots do not stop writers. [`Store::snapshot`] rotates the log at sequence `S`
//! (every mutation ≤ S is durable and in memory by then), walks the live maps into an
//! image — which may already contain some mutations > S — and writes it as covering
//! `S`. Recovery loads it and replays every record > S in order. That is exact because
//! each mutation sets its keys to a value that depends only on the mutation and the
//! keys' state, and the replay re-applies every mutation after S in log order: for each
//! key the last replayed mutation is its last logged one, whatever the image held for
//! it. The mutations > S in the image must not be taken back later, so the image is
//! written only once every mutation it may contain is durable, and not at all if a
//! failure took changes back while it was captured.
//!
//! Recovery starts from the newest snapshot that validates (header and payload
//! checksums, covered sequence = the file name's, rkyv validation) and that the log can
//! bring forward; failing that, from an empty state when the log reaches back to
//! sequence 1. It fails only when no exact path exists. Log segments a snapshot covers
//! whole are not read. Snapshots and the log from the previous snapshot on are kept, so
//! a damaged newest snapshot falls back to the one before it.
//!
//! Do-not-disturb settings are durable state like bindings. Badge counters are written
//! in every snapshot and their sets are logged, but increments are not (one record per
//! pushed recipient would put every fan-out on the log): a kill -9 loses the
//! increments since the last snapshot, never a set (see `state::badges`).
//!
//! One engine at a time: [`Store::open`] takes an exclusive `flock` on `<dir>/LOCK`
//! (which holds the owner's pid) and keeps it until [`Store::close`] or exit.

pub mod codec;
pub mod snapshot;
pub mod wal;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Storage;
use crate::state::{Applied, Mutation, State};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write-ahead log {file} is corrupt at byte {offset}: {what}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("snapshot {file}: {what}")]
    Snapshot { file: PathBuf, what: String },
    #[error("data directory {dir} is in use by another fanfare process (pid {holder})")]
    Locked { dir: PathBuf, holder: String },
    #[error("the write-ahead log is failing ({cause}); the change was not made")]
    Refused { cause: String },
    #[error("the write-ahead log is closed")]
    Stopped,
    /// Cluster mode: the state stream did not take the write, or start-up failed.
    #[error("cluster")]
    Cluster(#[source] Box<crate::cluster::Error>),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Files `<prefix><number><suffix>` in `dir` with their numbers, sorted ascending.
fn numbered_files(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<(u64, PathBuf)>, Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = number {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// How long [`lock_dir`] waits for a lock the file says this process holds.
const SELF_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Take the data directory's lock: `<dir>/LOCK`, `flock(LOCK_EX | LOCK_NB)`, then our
/// pid written into it for the next one who tries. The kernel drops the lock when the
/// file is closed or the process dies, so a stale file never blocks a restart.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("LOCK");
    let io = |e| Error::io(&path, e);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    // A lock our own process released can still be held for a moment by a child this
    // process is forking (the child holds a copy of every descriptor until its exec
    // closes the close-on-exec ones): wait for that, bounded, but only when the file
    // names this process. Another process's lock is refused at once.
    let give_up = std::time::Instant::now() + SELF_LOCK_WAIT;
    loop {
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                let _ = f.seek(std::io::SeekFrom::Start(0));
                let _ = f.read_to_string(&mut text);
                let pid = text.trim().parse::<u32>().ok();
                if pid == Some(std::process::id()) && std::time::Instant::now() < give_up {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder: pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    f.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io)?;
    Ok(f)
}

/// When `path` was last written, in UNIX ms (0 when unknown): the age of a snapshot
/// recovered from.
fn modified_unix_ms(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// What recovery found, for the start-up log line and tests.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub snapshot_seq: Option<u64>,
    pub snapshot_bytes: u64,
    pub bindings_from_snapshot: u64,
    /// Snapshots passed over because they are damaged or the log cannot reach them.
    pub snapshots_passed_over: u64,
    pub wal_records: u64,
    pub wal_bytes: u64,
    /// Log segments not read because the snapshot covers them whole.
    pub wal_segments_skipped: u64,
    pub torn_tail_bytes: u64,
    /// Where the cut torn tail was kept.
    pub torn_tail_copy: Option<PathBuf>,
    pub last_seq: u64,
    pub elapsed: Duration,
}

/// What one snapshot wrote.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub seq: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub bindings: usize,
    pub elapsed: Duration,
}

pub struct Store {
    dir: PathBuf,
    wal: Arc<wal::Wal>,
    state: Arc<State>,
    /// One snapshot at a time; holds the sequence of the newest one.
    snapshotting: Mutex<u64>,
    /// The data directory's lock, held until [`Store::close`].
    lock: Mutex<Option<File>>,
}

impl Store {
    /// Lock `cfg.dir`, recover `state` (which must be fresh) from it and attach the log
    /// to it. Blocking: run it off the async runtime.
    pub fn open(cfg: &Storage, state: &Arc<State>) -> Result<(Self, Recovery), Error> {
        let started = Instant::now();
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock = lock_dir(&dir)?;
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut rec = Recovery::default();
        let snapshots = snapshot::list(&dir)?;
        let mut start = None;
        for (_, path) in &snapshots {
            match snapshot::open(path) {
                Ok(loaded) if wal::reaches_back_to(&dir, loaded.seq)? => {
                    start = Some(loaded);
                    break;
                }
                Ok(loaded) => tracing::error!(
                    file = %path.display(),
                    seq = loaded.seq,
                    "snapshot is valid but the log does not reach back to it; trying an older one"
                ),
                Err(e) => tracing::error!(
                    error = %crate::providers::error_chain(&e),
                    "snapshot unusable; trying an older one, then the log alone"
                ),
            }
            rec.snapshots_passed_over += 1;
        }
        let mut snapshot_ms = 0;
        let base = match start {
            Some(loaded) => {
                let n = snapshot::install(loaded.image(), state).map_err(|what| {
                    Error::Snapshot {
                        file: loaded.path.clone(),
                        what: what.into(),
                    }
                })?;
                rec.snapshot_seq = Some(loaded.seq);
                snapshot_ms = modified_unix_ms(&loaded.path);
                rec.snapshot_bytes = loaded.bytes();
                rec.bindings_from_snapshot = n;
                loaded.seq
            }
            None if snapshots.is_empty() => 0,
            None if wal::reaches_back_to(&dir, 0)? => {
                tracing::warn!(
                    snapshots = snapshots.len(),
                    "no usable snapshot; rebuilding the state from the whole log (it starts at sequence 1)"
                );
                0
            }
            None => {
                return Err(Error::Snapshot {
                    file: dir.clone(),
                    what: "no snapshot in the directory is usable and the log does not reach back to sequence 1".into(),
                })
            }
        };
        let replayed = wal::replay(&dir, base, |m| {
            state.apply_in_memory(m);
        })?;
        rec.wal_records = replayed.records;
        rec.wal_bytes = replayed.bytes;
        rec.wal_segments_skipped = replayed.skipped_segments;
        rec.torn_tail_bytes = replayed.torn_tail_bytes;
        rec.torn_tail_copy = replayed.torn_tail_copy;
        rec.last_seq = replayed.last_seq;
        let wal = wal::Wal::start(
            &dir,
            replayed.last_seq + 1,
            cfg.durability,
            cfg.fsync_interval_ms.max(Duration::from_millis(1)),
            Arc::downgrade(state),
        )?;
        state.attach_journal(wal.clone());
        rec.elapsed = started.elapsed();
        let stats = wal.stats();
        stats
            .recovery_us
            .store(rec.elapsed.as_micros() as u64, Ordering::Relaxed);
        stats
            .opened_unix_ms
            .store(crate::clock::unix_now_ms(), Ordering::Relaxed);
        stats
            .last_snapshot_unix_ms
            .store(snapshot_ms, Ordering::Relaxed);
        Ok((
            Self {
                dir,
                wal,
                state: state.clone(),
                snapshotting: Mutex::new(base),
                lock: Mutex::new(Some(lock)),
            },
            rec,
        ))
    }

    /// Apply `m` and return once it is durable per `storage.durability`. An error means
    /// the change was not made (the log refused it, or took it back after a failed
    /// write).
    pub async fn commit(&self, m: &Mutation) -> Result<Applied, Error> {
        let (applied, ticket) = self.state.apply_logged(m).map_err(|_| self.refused())?;
        self.wal.wait(ticket).await?;
        Ok(applied)
    }

    fn refused(&self) -> Error {
        Error::Refused {
            cause: self
                .wal
                .failure()
                .unwrap_or_else(|| "the log is closed".into()),
        }
    }

    /// Why writes are being refused, while they are (no paths or secrets: an I/O error's
    /// text). `None` when writes succeed.
    pub fn write_failure(&self) -> Option<String> {
        self.wal.failure()
    }

    /// Changes refused or taken back since start (for metrics).
    pub fn refused_writes(&self) -> u64 {
        self.wal.refused()
    }

    /// Bytes in the current log segment.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.segment_bytes()
    }

    /// Fsync and snapshot times, bytes written, recovery time (for `/metrics`).
    pub fn stats(&self) -> &Arc<crate::telemetry::StorageStats> {
        self.wal.stats()
    }

    /// Write a snapshot and drop what it makes obsolete. Blocking.
    pub fn snapshot(&self) -> Result<SnapshotInfo, Error> {
        let mut newest = self.snapshotting.lock();
        let started = Instant::now();
        let at = self.wal.rotate()?;
        let img = snapshot::Image::capture(&self.state);
        // The image may hold changes after `at`; they must never be taken back (module
        // doc). A failure during the capture may have reverted some mid-walk: give up.
        let head = self.wal.head();
        if head.epoch != at.epoch {
            return Err(self.refused());
        }
        self.wal.wait_blocking(head)?;
        let bindings = img.owners.len();
        let (path, bytes) = snapshot::write(&self.dir, at.seq, &img)?;
        drop(img);
        let previous = std::mem::replace(&mut *newest, at.seq);
        let stats = self.wal.stats();
        stats.snapshot_seconds.observe(started.elapsed());
        stats
            .last_snapshot_unix_ms
            .store(crate::clock::unix_now_ms(), Ordering::Relaxed);
        self.prune(at.seq, previous)?;
        Ok(SnapshotInfo {
            seq: at.seq,
            path,
            bytes,
            bindings,
            elapsed: started.elapsed(),
        })
    }

    /// Keep the newest snapshot, the previous one and the log from the previous one on.
    fn prune(&self, newest: u64, keep_from: u64) -> Result<(), Error> {
        for (seq, path) in snapshot::list(&self.dir)? {
            if seq < newest && seq != keep_from {
                tracing::debug!(seq, "removing old snapshot");
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let segs = wal::segments(&self.dir)?;
        for pair in segs.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            // Every record of this segment is ≤ next_first - 1 ≤ keep_from.
            if *next_first <= keep_from + 1 {
                std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
        }
        Ok(())
    }

    /// Flush and fsync what is pending, stop the log thread and release the data
    /// directory's lock.
    pub fn close(&self) {
        self.wal.close();
        self.lock.lock().take();
    }
}
