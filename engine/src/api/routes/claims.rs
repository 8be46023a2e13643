//! Cluster mode's cluster-wide claim of a message or call id, before the use case
//! runs ([`crate::cluster::Node::claim`]): the first engine to claim an id pushes it,
//! every other engine answers "duplicate" as for a repeat within the local window. A
//! repeat this engine saw itself is answered locally (no round trip). The claim is
//! given back when the request is refused after all, and a claim NATS cannot make is
//! `503 overloaded` with `Retry-After`.

use serde::Deserialize;

use super::fanout::{call, message};
use super::{ok, Resp};
use crate::api::error::ApiError;
use crate::api::wire;
use crate::cluster::{Node, Space};
use crate::fanout::dedup;
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

/// `POST /v1/messages` in cluster mode.
pub(super) async fn message_once(
    engine: &Engine,
    node: &Node,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let Some(id) = claimable(engine, dedup::Space::Message, body) else {
        return message(engine, body);
    };
    match claim(node, Space::Message, &id).await? {
        true => refused_releases(node, Space::Message, &id, message(engine, body)).await,
        false => {
            inc(&engine.stats.messages_duplicate);
            ok(wire::MessageAnswer::Duplicate(wire::MessageDuplicate {
                duplicate: true,
                message_id: id,
            }))
        }
    }
}

/// `POST /v1/calls` in cluster mode.
pub(super) async fn call_once(engine: &Engine, node: &Node, body: &[u8]) -> Result<Resp, ApiError> {
    let Some(id) = claimable(engine, dedup::Space::Call, body) else {
        return call(engine, body);
    };
    match claim(node, Space::Call, &id).await? {
        true => refused_releases(node, Space::Call, &id, call(engine, body)).await,
        false => ok(wire::CallAnswer::Duplicate(wire::CallDuplicate {
            call_id: id,
            duplicate: true,
        })),
    }
}

/// The id to claim cluster-wide; `None` when the handler answers alone: the body or
/// the id is invalid (it says so), or this engine's own window already holds the id.
fn claimable(engine: &Engine, space: dedup::Space, body: &[u8]) -> Option<String> {
    let id = serde_json::from_slice::<Id>(body).ok()?.message_id;
    let field = match space {
        dedup::Space::Message => "message_id",
        dedup::Space::Call => "call_id",
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
