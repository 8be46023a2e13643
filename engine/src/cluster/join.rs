//! Joining and snapshots in cluster mode.
//!
//! A local snapshot is the single engine's rkyv image ([`crate::store::snapshot`]),
//! named by the stream sequence it covers. It is captured while the follower is held
//! (the follower's lock), so the image is the state at exactly that sequence; replay
//! from the next one is then exact even for the do-not-disturb cap, which the
//! follower checks against the state. Holding the follower costs the writes of that
//! moment the capture's time (a walk of memory, no I/O).
//!
//! Start ([`load`]): the newest local snapshot `S` whose successor the stream still
//! holds (`first_seq <= S + 1 <= last_seq + 1`); else the object store's snapshot
//! under the same condition (downloaded into the data directory first); else an empty
//! state when the stream holds everything from sequence 1. Anything else cannot be
//! joined exactly and is an error.
//!
//! Before reading anything this engine announces itself with floor 0
//! ([`super::nodes::register`]): no engine trims the stream while it joins, so the
//! snapshot it reads still meets the stream when it follows on. The sequence of a
//! downloaded snapshot is read from the object it downloaded (a newer one may have
//! been stored since the first look).
//!
//! The live engine with the lowest node id puts each of its new snapshots in the
//! object store, with the sequence in the object's metadata (never over a newer one),
//! and then trims the stream below it ([`super::trim`]).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::object_store::{ObjectInfo, ObjectMetadata};
use tokio::io::AsyncWriteExt;

use super::{names, Error, Node};
use crate::shutdown::Shutdown;
use crate::store::{snapshot, SnapshotInfo};

/// Local snapshots kept: the newest and the one before.
const KEEP: usize = 2;

/// Where this engine started from, for the start-up log line and tests.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    /// `local`, `object store` or `empty`.
    pub source: &'static str,
    /// The stream sequence the loaded snapshot covers (0: none).
    pub base: u64,
    /// The stream's last sequence when the engine started: ready once applied.
    pub stream_last: u64,
    /// Bindings the snapshot held.
    pub bindings_from_snapshot: u64,
    /// From the start of cluster start-up to caught up.
    pub elapsed: Duration,
}

/// Choose and install the starting snapshot (module doc). The state must be fresh.
pub(super) async fn load(node: &Arc<Node>) -> Result<Joined, Error> {
    super::nodes::register(node).await;
    let info = node
        .stream
        .get_info()
        .await
        .map_err(|e| Error::Join(format!("cannot read the state stream's info: {e}")))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    // The stream holds every sequence from `first` to `last` (none when last < first):
    // a snapshot covering `s` can be brought forward when it holds `s + 1` onwards.
    let reaches = |s: u64| s <= last && first <= s + 1;
    let dir = node.dir.clone();
    let local = tokio::task::spawn_blocking(move || snapshot::list(&dir))
        .await
        .map_err(|_| Error::Join("listing local snapshots panicked".into()))?
        .map_err(Error::Snapshot)?;
    for (seq, path) in local {
        if !reaches(seq) {
            tracing::warn!(
                seq,
                first,
                last,
                "local snapshot does not meet the state stream; passed over"
            );
            continue;
        }
        match install(node, &path).await {
            Ok(bindings) => return Ok(joined("local", seq, last, bindings)),
            Err(e) => {
                tracing::error!(error = %crate::providers::error_chain(&e), "local snapshot unusable; trying an older one")
            }
        }
    }
    if let Ok(info) = node.snapshots.info(names::SNAPSHOT_OBJECT).await {
        let seq = covered_seq(&info)
            .ok_or_else(|| Error::Join("the stored snapshot has no sequence".into()))?;
        if reaches(seq) {
            let (seq, path) = download(node).await?;
            // A newer one stored since still meets the stream (nothing is trimmed
            // while this engine joins); an older one must be checked again.
            if seq + 1 < first {
                return Err(Error::Join(format!(
                    "the state stream starts at sequence {first} and the downloaded snapshot covers {seq}"
                )));
            }
            let bindings = install(node, &path).await?;
            node.uploaded.fetch_max(seq, Ordering::Relaxed);
            return Ok(joined("object store", seq, last.max(seq), bindings));
        }
        tracing::warn!(
            seq,
            first,
            "the stored snapshot does not meet the state stream"
        );
    }
    if first <= 1 {
        return Ok(joined("empty", 0, last, 0));
    }
    Err(Error::Join(format!(
        "the state stream starts at sequence {first} and no snapshot reaches it"
    )))
}

fn joined(source: &'static str, base: u64, stream_last: u64, bindings: u64) -> Joined {
    Joined {
        source,
        base,
        stream_last,
        bindings_from_snapshot: bindings,
        elapsed: Duration::ZERO,
    }
}

/// Open, validate and install one snapshot file into the (fresh) state.
async fn install(node: &Arc<Node>, path: &Path) -> Result<u64, Error> {
    let node = node.clone();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let loaded = snapshot::open(&path).map_err(Error::Snapshot)?;
        snapshot::install(loaded.image(), &node.state).map_err(|what| {
            Error::Snapshot(crate::store::Error::Snapshot {
                file: path.clone(),
                what: what.into(),
            })
        })
    })
    .await
    .map_err(|_| Error::Join("installing a snapshot panicked".into()))?
}

/// Fetch the object store's snapshot into the data directory as the file of the
/// sequence it covers (read from the object fetched); returns that sequence.
async fn download(node: &Node) -> Result<(u64, std::path::PathBuf), Error> {
    let started = Instant::now();
    let fail = |e: String| Error::Join(format!("cannot download the stored snapshot: {e}"));
    let mut object = node
        .snapshots
        .get(names::SNAPSHOT_OBJECT)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let seq = covered_seq(object.info())
        .ok_or_else(|| Error::Join("the stored snapshot has no sequence".into()))?;
    let path = snapshot::path(&node.dir, seq);
    let tmp = path.with_extension("rkyv.tmp");
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let bytes = tokio::io::copy(&mut object, &mut file)
        .await
        .map_err(|e| fail(e.to_string()))?;
    file.flush().await.map_err(|e| fail(e.to_string()))?;
    file.sync_all().await.map_err(|e| fail(e.to_string()))?;
    drop(file);
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    tracing::info!(
        seq,
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot downloaded from the object store"
    );
    Ok((seq, path))
}

/// Capture the state at the follower's sequence and write it to the data directory;
/// drop all but the newest [`KEEP`] local snapshots.
pub(super) async fn snapshot_now(node: &Arc<Node>) -> Result<SnapshotInfo, Error> {
    let n = node.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let (seq, img) = {
            let at = n.applied.lock();
            (*at, snapshot::Image::capture(&n.state))
        };
        let bindings = img.owners.len();
        let (path, bytes) = snapshot::write(&n.dir, seq, &img).map_err(Error::Snapshot)?;
        drop(img);
        for (_, old) in snapshot::list(&n.dir)
            .map_err(Error::Snapshot)?
            .into_iter()
            .skip(KEEP)
        {
            let _ = std::fs::remove_file(old);
        }
        Ok(SnapshotInfo {
            seq,
            path,
            bytes,
            bindings,
            elapsed: started.elapsed(),
        })
    })
    .await
    .map_err(|_| Error::Join("the snapshot task panicked".into()))?
}

/// Put a local snapshot in the object store when this engine is the one that does
/// (the lowest live node id) and it is newer than the stored one.
async fn upload(node: &Arc<Node>, info: &SnapshotInfo) -> Result<(), Error> {
    if info.seq <= node.uploaded.load(Ordering::Relaxed) || !node.is_uploader().await {
        return Ok(());
    }
    // Another engine may have been the uploader since (the lowest live node id
    // changes as engines come and go) and stored a newer snapshot, and trimmed the
    // stream below it: never replace that with an older one.
    let stored = stored_seq(node).await;
    if info.seq <= stored {
        node.uploaded.fetch_max(stored, Ordering::Relaxed);
        return Ok(());
    }
    let started = Instant::now();
    let mut file = tokio::fs::File::open(&info.path)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let meta = ObjectMetadata {
        name: names::SNAPSHOT_OBJECT.into(),
        metadata: [("seq".to_string(), info.seq.to_string())].into(),
        ..Default::default()
    };
    node.snapshots
        .put(meta, &mut file)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    node.uploaded.fetch_max(info.seq, Ordering::Relaxed);
    tracing::info!(
        seq = info.seq,
        bytes = info.bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot stored in the object store"
    );
    super::trim::after_upload(node, stored, info.seq).await;
    Ok(())
}

/// The sequence of the snapshot in the object store (0: none, or unreadable).
pub(super) async fn stored_seq(node: &Node) -> u64 {
    let info = node.snapshots.info(names::SNAPSHOT_OBJECT).await.ok();
    info.as_ref().and_then(covered_seq).unwrap_or(0)
}

/// The stream sequence a stored snapshot covers, from its object's metadata.
fn covered_seq(info: &ObjectInfo) -> Option<u64> {
    info.metadata.get("seq").and_then(|s| s.parse().ok())
}

/// Every `interval` (0: never): a local snapshot when the state moved, then the
/// object store copy when this engine is the uploader.
pub(super) async fn snapshots(node: Arc<Node>, interval: Duration, mut shutdown: Shutdown) {
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = node.applied();
    loop {
        if shutdown.or(tick.tick()).await.is_none() {
            return;
        }
        if node.applied() == last && last <= node.uploaded.load(Ordering::Relaxed) {
            continue;
        }
        // Held from before the capture until the copy is stored (`nodes::Hold`).
        node.hold.set(node.applied());
        match snapshot_now(&node).await {
            Ok(info) => {
                last = info.seq;
                tracing::info!(
                    seq = info.seq,
                    bytes = info.bytes,
                    bindings = info.bindings,
                    elapsed_ms = info.elapsed.as_millis() as u64,
                    "snapshot written"
                );
                if let Err(e) = upload(&node, &info).await {
                    tracing::warn!(error = %e, "cannot store the snapshot in the object store");
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::providers::error_chain(&e), "snapshot failed")
            }
        }
        node.hold.clear();
    }
}
