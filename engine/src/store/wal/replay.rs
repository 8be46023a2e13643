//! Reading the log back at start-up: replay every segment after a snapshot, stop at
//! the first damaged record of the last segment and keep the torn tail beside it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{codec, segments, sync_dir, Error};
use crate::state::Mutation;

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
