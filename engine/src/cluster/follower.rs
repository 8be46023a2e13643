//! The follower: every engine applies the state stream in order, from the sequence
//! after what it has, and hands the results of its own writes to their waiters.
//!
//! It reads through an ordered consumer (in-memory, recreated by the client on a gap
//! or a missed heartbeat). When the consumer fails (NATS gone), or is quiet for
//! [`IDLE_CHECK`] while the stream holds more than was applied (its server died: the
//! client's own heartbeat check takes far longer), it is created again from
//! `applied + 1`, so no message is skipped or applied twice (a sequence at or below
//! `applied` is ignored).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, DeliverPolicy};
use futures::StreamExt;

use super::{names, Node};
use crate::shutdown::Shutdown;
use crate::state::Mutation;
use crate::store::codec;

/// Pause before recreating a consumer that failed.
const RETRY: Duration = Duration::from_millis(200);
/// A consumer quiet this long is checked against the stream's last sequence.
const IDLE_CHECK: Duration = Duration::from_secs(1);

pub(super) async fn run(node: Arc<Node>, mut shutdown: Shutdown) {
    loop {
        let from = node.applied() + 1;
        let created = node
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: names::STATE_SUBJECT.into(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await;
        let messages = match created {
            Ok(c) => c.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match messages {
            Ok(mut messages) => loop {
                let timed = tokio::time::timeout(IDLE_CHECK, messages.next());
                let Some(next) = shutdown.or(timed).await else {
                    return;
                };
                match next {
                    Ok(Some(Ok(msg))) => {
                        if !apply(&node, &msg) {
                            return;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, applied = node.applied(), "state stream consumer failed; following again");
                        break;
                    }
                    Ok(None) => break,
                    // Quiet: fine when nothing was written, a stalled consumer (its
                    // server died) when the stream holds more than was applied.
                    Err(_) => match node.stream_last_seq().await {
                        Ok(last) if last > node.applied() => {
                            tracing::warn!(
                                last,
                                applied = node.applied(),
                                "state stream consumer stalled; following again"
                            );
                            break;
                        }
                        _ => {}
                    },
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, from, "cannot follow the state stream yet");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Apply one stream message (if it is the next one) and wake its writer. False when
/// the engine must stop following: the stream lost records it had not applied.
fn apply(node: &Node, msg: &async_nats::jetstream::Message) -> bool {
    let Ok(info) = msg.info() else {
        tracing::error!("a state stream message without its stream sequence; skipped");
        return true;
    };
    let seq = info.stream_sequence;
    let applied = {
        let mut at = node.applied.lock();
        if seq <= *at {
            return true;
        }
        if seq > *at + 1 {
            // A gap: records this engine had not applied were removed from the stream
            // (trimming keeps every live engine's tail, so it was cut off from NATS
            // for longer than a heartbeat's lifetime, or an operator purged the
            // stream). Applying past it would serve a state no other engine has:
            // stop, and let the restart rejoin from the stored snapshot.
            let reason = format!(
                "the state stream lost records this engine had not applied (applied {}, next {seq}); restart to rejoin from the stored snapshot",
                *at
            );
            tracing::error!(applied = *at, seq, "{reason}");
            node.fatal.send_replace(Some(reason));
            return false;
        }
        let applied = match decode(&msg.payload) {
            Ok(m) => Some(node.state.apply_replicated(&m)),
            Err(what) => {
                // Every engine skips it the same way, so they stay equal.
                tracing::error!(seq, what, "undecodable state stream message skipped");
                None
            }
        };
        *at = seq;
        applied
    };
    node.progress.send_replace(seq);
    let Some(applied) = applied else {
        return true;
    };
    let mine = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .and_then(|id| id.as_str().strip_prefix(node.prefix.as_str()))
        .and_then(|n| n.parse::<u64>().ok());
    if let Some(n) = mine {
        if let Some(tx) = node.waiters.lock().remove(&n) {
            let _ = tx.send(applied);
        }
    }
    true
}

fn decode(body: &[u8]) -> Result<Mutation, &'static str> {
    let (payload, _) = codec::frame(body).map_err(|_| "damaged record")?;
    codec::decode(payload).map(|(_, m)| m).map_err(|e| e.0)
}
