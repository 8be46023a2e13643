//! Cluster mode's cluster-wide claim of a message or call id, before the use case
//! runs ([`crate::cluster::Node::claim`]): the first engine to claim an id pushes it,
//! every other engine answers "duplicate" as for a repeat within the local window. A
//! repeat this engine saw itself is answered locally (no round trip). The claim is
//! given back when the request is refused after all, and a claim NATS cannot make is
//! `503 overloaded` with `Retry-After`.

use serde::Deserialize;

use super::fanout::{accept, cancel_request, cancelled, duplicate, refused};
use super::Resp;
use crate::api::error::ApiError;
use crate::api::wire;
use crate::cluster::work::Handoff;
use crate::cluster::work_cancel::Remote;
use crate::cluster::{Node, Space};
use crate::fanout::usecase;
use crate::telemetry::inc;
use crate::Engine;

/// Seconds a client waits before retrying a claim NATS could not make.
const RETRY_AFTER_S: u64 = 1;

/// Just the id of a message or call body; the handler parses and checks the rest.
#[derive(Deserialize)]
struct Id {
    #[serde(alias = "call_id")]
    message_id: String,
}

/// `POST /v1/messages` (`space` Message) or `POST /v1/calls` (Call) in cluster mode.
pub(super) async fn accept_once(
    engine: &Engine,
    node: &Node,
    space: Space,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let run = |h: Option<&mut Option<Handoff>>| accept(engine, space, body, h);
    let Some(id) = claimable(engine, space, body) else {
        return shared(engine, node, run).await;
    };
    if claim(node, space, &id).await? {
        let answer = shared(engine, node, run).await;
        return refused_releases(node, space, &id, answer).await;
    }
    if space == Space::Message {
        inc(&engine.stats.messages_duplicate);
    }
    duplicate(space, id)
}

/// Run the handler `accept`, then count the badge increments through the cluster
/// ([`Node::add_badges`]) and hand an accepted request's targets to the work stream
/// ([`Node::hand_off`]): the answer is the handler's once JetStream holds every
/// chunk, else `503 overloaded` with `Retry-After`, the local claim given back and
/// the ledger entry dropped (chunks already stored are still pushed: at least once).
async fn shared(
    engine: &Engine,
    node: &Node,
    accept: impl FnOnce(Option<&mut Option<Handoff>>) -> Result<Resp, ApiError>,
) -> Result<Resp, ApiError> {
    let mut handoff = None;
    let answer = accept(Some(&mut handoff))?;
    let Some(mut h) = handoff else {
        return Ok(answer);
    };
    let handed = match node.add_badges(&mut h).await {
        Ok(()) => {
            node.hand_off(&h, engine.config.messages.queue_capacity)
                .await
        }
        Err(e) => Err(e),
    };
    match handed {
        Ok(()) => {
            if let Some(entry) = h.take_entry() {
                engine.ledger.insert(entry);
            }
            Ok(answer)
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot hand the fan-out to the work stream");
            let (space, id) = h.id();
            engine.dedup.release(space, id);
            inc(&engine.stats.requests_shed);
            Err(ApiError::unavailable(
                "the cluster cannot take the fan-out work now; retry later",
                RETRY_AFTER_S,
            ))
        }
    }
}

/// The id to claim cluster-wide; `None` when the handler answers alone: the body or
/// the id is invalid (it says so), or this engine's own window already holds the id.
fn claimable(engine: &Engine, space: Space, body: &[u8]) -> Option<String> {
    let id = serde_json::from_slice::<Id>(body).ok()?.message_id;
    let field = match space {
        Space::Message => "message_id",
        Space::Call => "call_id",
    };
    wire::id(field, &id).ok()?;
    (!engine.dedup.contains(space, &id)).then_some(id)
}

async fn claim(node: &Node, space: Space, id: &str) -> Result<bool, ApiError> {
    node.claim(space, id).await.map_err(|e| {
        tracing::debug!(error = %e, "cluster-wide claim failed");
        ApiError::unavailable(
            "the cluster cannot check the id for repeats now; retry later",
            RETRY_AFTER_S,
        )
    })
}

/// A refused request gives its claim back (a refused request changes nothing).
async fn refused_releases(
    node: &Node,
    space: Space,
    id: &str,
    answer: Result<Resp, ApiError>,
) -> Result<Resp, ApiError> {
    if answer.is_err() {
        node.release(space, id).await;
    }
    answer
}

/// `POST /v1/calls/{call_id}/cancel` in cluster mode: the call is cancelled here if
/// this engine holds it, else through the engine that does
/// ([`Node::cancel_elsewhere`]); `404` when no engine holds it.
pub(super) async fn cancel_anywhere(
    engine: &Engine,
    node: &Node,
    call_id: std::sync::Arc<str>,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let c = cancel_request(call_id.clone(), body)?;
    let content = c.content.clone();
    match usecase::cancel_call(engine, c) {
        Err(usecase::Error::NoCall(_)) => {}
        done => return cancelled(&call_id, done.map_err(refused)?),
    }
    if let Some(content) = &content {
        // Refused here as the holder would refuse it.
        usecase::resource(engine, content).map_err(refused)?;
    }
    match node.cancel_elsewhere(&call_id, content.as_ref()).await {
        Ok(Remote::Cancelled(done)) => cancelled(&call_id, done),
        Ok(Remote::Refused(reason)) => Err(ApiError::invalid(reason)),
        Ok(Remote::NotFound) => Err(refused(usecase::Error::NoCall(call_id))),
        Err(e) => {
            tracing::debug!(error = %e, "cannot broadcast a call cancel");
            Err(ApiError::unavailable(
                "the cluster cannot reach the engine holding the call now; retry later",
                RETRY_AFTER_S,
            ))
        }
    }
}
