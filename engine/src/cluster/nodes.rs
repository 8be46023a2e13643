//! Heartbeats: each engine puts its node id in the `fanfare_nodes` bucket every
//! [`names::HEARTBEAT`]; the bucket forgets a key after [`names::NODE_TTL`], so the
//! keys present are the live engines. Their count divides every lane's `max_rps`
//! (each engine takes its share of the vendor's quota), and the lowest live id is the
//! engine that stores snapshots in the object store. A heartbeat's value is the state
//! stream sequence the engine had applied (for trimming the stream below what every
//! live engine has applied, once trimming is back; see `join`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;

use super::{names, Node};
use crate::shutdown::Shutdown;

/// Most keys read from the bucket in one count (bounds the walk).
const MAX_NODES: usize = 1_024;

pub(super) async fn run(node: Arc<Node>, engine: Arc<crate::Engine>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(names::HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shutdown.or(tick.tick()).await.is_none() {
            break;
        }
        let applied = bytes::Bytes::from(node.applied().to_string());
        if let Err(e) = node.nodes.put(&node.id, applied).await {
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

/// The node ids with a live heartbeat, sorted; `None` when NATS cannot say.
async fn live_ids(node: &Node) -> Option<Vec<String>> {
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
}

impl Node {
    /// Is this the engine that stores snapshots in the object store (the lowest live
    /// node id)? When NATS cannot say, no.
    pub(super) async fn is_uploader(&self) -> bool {
        live_ids(self)
            .await
            .and_then(|ids| ids.first().map(|first| *first == self.id))
            .unwrap_or(false)
    }
}
