//! Heartbeats: each engine puts its node id in the `fanfare_nodes` bucket every
//! [`names::HEARTBEAT`]; the bucket forgets a key after [`names::NODE_TTL`], so the
//! keys present are the live engines. Their count divides every lane's `max_rps`
//! (each engine takes its share of the vendor's quota), and the lowest live id is the
//! engine that stores snapshots in the object store.
//!
//! A heartbeat's value is the engine's *floor*: the state stream sequence below which
//! it needs nothing more from the stream — what it has applied, or less while it
//! captures and stores a snapshot ([`Hold`]), or 0 while it is still joining
//! ([`register`]). Trimming ([`super::trim`]) never purges at or above the lowest
//! live floor, so no live engine loses a record it has yet to apply or a snapshot it
//! is storing loses its successor. Heartbeats only ever lag (an older, lower value),
//! which keeps more, never less.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures::StreamExt;

use super::{names, Node};
use crate::shutdown::Shutdown;

/// Most keys read from the bucket in one count (bounds the walk).
const MAX_NODES: usize = 1_024;

/// A sequence this engine still needs the stream to hold from (`u64::MAX`: none):
/// set to the applied sequence *before* a snapshot is captured and cleared once it
/// is stored, so every heartbeat written meanwhile is at or below the snapshot's
/// sequence (the ones written before are too: applied only grows).
#[derive(Debug)]
pub struct Hold(AtomicU64);

impl Default for Hold {
    fn default() -> Self {
        Hold(AtomicU64::new(u64::MAX))
    }
}

impl Hold {
    pub(super) fn set(&self, seq: u64) {
        self.0.store(seq, Ordering::SeqCst);
    }

    pub(super) fn clear(&self) {
        self.0.store(u64::MAX, Ordering::SeqCst);
    }
}

pub(super) async fn run(node: Arc<Node>, engine: Arc<crate::Engine>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(names::HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shutdown.or(tick.tick()).await.is_none() {
            break;
        }
        let floor = bytes::Bytes::from(node.floor().to_string());
        if let Err(e) = node.nodes.put(&node.id, floor).await {
            tracing::debug!(error = %e, "heartbeat not stored");
            continue;
        }
        if let Some(ids) = live_ids(&node).await {
            let live = ids.len().max(1);
            if node.live.swap(live, Ordering::Relaxed) != live {
                tracing::info!(
                    live,
                    "live engines changed; each takes its share of max_rps"
                );
                engine.dispatcher.set_share(live);
            }
        }
    }
    // Leaving: the others stop counting this engine at once.
    let _ = node.nodes.delete(&node.id).await;
}

/// Put a heartbeat with floor 0 before joining: from here on until this engine's
/// own heartbeats take over no engine trims the stream, so whatever snapshot it
/// then reads still meets the stream. Best effort: without NATS there is no join.
pub(super) async fn register(node: &Node) {
    if let Err(e) = node
        .nodes
        .put(&node.id, bytes::Bytes::from_static(b"0"))
        .await
    {
        tracing::warn!(error = %e, "cannot announce this engine before joining");
    }
}

/// The node ids with a live heartbeat, sorted; `None` when NATS cannot say within
/// [`names::HEARTBEAT`] (the bucket's key listing can stall while keys are being
/// written; an unbounded wait would stall the snapshot loop with it).
async fn live_ids(node: &Node) -> Option<Vec<String>> {
    let list = async {
        let mut keys = node.nodes.keys().await.ok()?;
        let mut ids = Vec::new();
        while let Some(k) = keys.next().await {
            ids.push(k.ok()?);
            if ids.len() >= MAX_NODES {
                break;
            }
        }
        ids.sort();
        Some(ids)
    };
    let listed = tokio::time::timeout(names::HEARTBEAT, list).await;
    if listed.is_err() {
        tracing::debug!("listing the live engines timed out");
    }
    listed.ok().flatten()
}

impl Node {
    /// This engine's floor (module doc).
    pub(super) fn floor(&self) -> u64 {
        self.applied().min(self.hold.0.load(Ordering::SeqCst))
    }

    /// Is this the engine that stores snapshots in the object store (the lowest live
    /// node id)? When NATS cannot say, no.
    pub(super) async fn is_uploader(&self) -> bool {
        live_ids(self)
            .await
            .and_then(|ids| ids.first().map(|first| *first == self.id))
            .unwrap_or(false)
    }

    /// The lowest floor of every live engine, this one included; `None` when NATS
    /// cannot say or a heartbeat is not a number (then nothing is trimmed). Read from
    /// the bucket's stream leader, not a direct get a lagging replica may answer.
    pub(super) async fn lowest_floor(&self) -> Option<u64> {
        let mut lowest = self.floor();
        for id in live_ids(self).await? {
            let subject = format!("{}{id}", self.nodes.prefix);
            let msg = match self
                .nodes
                .stream
                .get_last_raw_message_by_subject(&subject)
                .await
            {
                Ok(msg) => msg,
                // Gone since it was listed: no longer live.
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => continue,
                Err(_) => return None,
            };
            if msg.payload.is_empty() {
                // A delete marker: the engine left since it was listed.
                continue;
            }
            let floor = std::str::from_utf8(&msg.payload)
                .ok()?
                .parse::<u64>()
                .ok()?;
            lowest = lowest.min(floor);
        }
        Some(lowest)
    }
}
