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
//! `storage.durability`.
//!
//! Snapshots do not stop writers. [`Store::snapshot`] rotates the log at sequence `S`
//! (every mutation ≤ S is in memory by then), walks the live maps into an image — which
//! may already contain some mutations > S — and writes it as covering `S`. Recovery
//! loads it and replays every record > S in order. That is exact because each mutation
//! sets its keys to a value that depends only on the mutation and the keys' state,
//! and the replay re-applies every mutation after S in log order: for each key the last
//! replayed mutation is its last logged one, whatever the image held for it.
//! Snapshots and the log segments of the previous snapshot are kept, so a damaged
//! newest snapshot falls back to the one before it.

pub mod codec;
pub mod snapshot;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{Durability, Storage};
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
    #[error("the write-ahead log has stopped after an i/o error; changes are refused")]
    Stopped,
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

/// What recovery found, for the start-up log line and tests.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub snapshot_seq: Option<u64>,
    pub snapshot_bytes: u64,
    pub bindings_from_snapshot: u64,
    pub wal_records: u64,
    pub wal_bytes: u64,
    pub torn_tail_bytes: u64,
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
    durability: Durability,
    /// One snapshot at a time; holds the sequence of the newest one.
    snapshotting: Mutex<u64>,
}

impl Store {
    /// Recover `state` (which must be fresh) from `cfg.dir` and attach the log to it.
    /// Blocking: run it off the async runtime.
    pub fn open(cfg: &Storage, state: &Arc<State>) -> Result<(Self, Recovery), Error> {
        let started = Instant::now();
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut rec = Recovery::default();
        let mut base = 0u64;
        for (seq, path) in snapshot::list(&dir)? {
            match snapshot::open(&path) {
                Ok(loaded) => {
                    let n = snapshot::install(loaded.image(), state).map_err(|what| {
                        Error::Snapshot {
                            file: path.clone(),
                            what: what.into(),
                        }
                    })?;
                    rec.snapshot_seq = Some(seq);
                    rec.snapshot_bytes = loaded.bytes();
                    rec.bindings_from_snapshot = n;
                    base = loaded.seq;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %crate::providers::error_chain(&e), "snapshot unusable; trying an older one");
                }
            }
        }
        if rec.snapshot_seq.is_none() && !snapshot::list(&dir)?.is_empty() {
            return Err(Error::Snapshot {
                file: dir.clone(),
                what: "no snapshot in the directory is valid".into(),
            });
        }
        let replayed = wal::replay(&dir, base, |m| {
            state.apply_in_memory(m);
        })?;
        rec.wal_records = replayed.records;
        rec.wal_bytes = replayed.bytes;
        rec.torn_tail_bytes = replayed.torn_tail_bytes;
        rec.last_seq = replayed.last_seq;
        let wal = wal::Wal::start(
            &dir,
            replayed.last_seq + 1,
            cfg.durability,
            Duration::from_millis(cfg.fsync_interval_ms.max(1)),
        )?;
        state.attach_journal(wal.clone());
        rec.elapsed = started.elapsed();
        Ok((
            Self {
                dir,
                wal,
                state: state.clone(),
                durability: cfg.durability,
                snapshotting: Mutex::new(base),
            },
            rec,
        ))
    }

    /// Apply `m` and return once it is durable per `storage.durability`.
    pub async fn commit(&self, m: &Mutation) -> Result<Applied, Error> {
        if self.wal.is_failed() {
            return Err(Error::Stopped);
        }
        let (applied, seq) = self.state.apply_logged(m);
        if self.durability != Durability::None || seq == 0 {
            self.wal.wait(seq).await?;
        }
        Ok(applied)
    }

    /// Bytes in the current log segment.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.segment_bytes()
    }

    /// Write a snapshot and drop what it makes obsolete. Blocking.
    pub fn snapshot(&self) -> Result<SnapshotInfo, Error> {
        let mut newest = self.snapshotting.lock();
        let started = Instant::now();
        let seq = self.wal.rotate()?;
        let img = snapshot::Image::capture(&self.state);
        let bindings = img.owners.len();
        let (path, bytes) = snapshot::write(&self.dir, seq, &img)?;
        drop(img);
        let previous = std::mem::replace(&mut *newest, seq);
        self.prune(previous)?;
        Ok(SnapshotInfo {
            seq,
            path,
            bytes,
            bindings,
            elapsed: started.elapsed(),
        })
    }

    /// Keep the newest two snapshots and the log from the older one on.
    fn prune(&self, keep_from: u64) -> Result<(), Error> {
        for (seq, path) in snapshot::list(&self.dir)?.into_iter().skip(2) {
            tracing::debug!(seq, "removing old snapshot");
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
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

    /// Flush and fsync what is pending and stop the log thread.
    pub fn close(&self) {
        self.wal.close();
    }
}
