//! Presence across engines: the engine that receives `POST /v1/presence` applies it
//! and broadcasts the events on the core subject `fanfare.presence`
//! ([`Node::broadcast_presence`]); every other engine applies them ([`run`]), so any
//! engine's planning sees who is online. Not durable, as on a single engine: an engine
//! that joins knows the presence reported after it joined (IM servers refresh it).

use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{names, Node, Outbound};
use crate::api::wire::PresenceEvent;
use crate::shutdown::Shutdown;
use crate::state::State;

/// One broadcast: the events of one request, every TTL filled in.
#[derive(Serialize, Deserialize)]
struct Batch {
    /// The sending process (node id and boot nonce): its own batches come back to it.
    origin: String,
    events: Vec<PresenceEvent>,
}

impl Node {
    /// Broadcast the events of a presence request this engine applied; best effort.
    pub fn broadcast_presence(&self, events: &[PresenceEvent], default_ttl_s: u64) {
        let batch = Batch {
            origin: self.prefix.clone(),
            events: events
                .iter()
                .map(|e| PresenceEvent {
                    ttl_s: Some(e.ttl_s.unwrap_or(default_ttl_s)),
                    ..e.clone()
                })
                .collect(),
        };
        let body = serde_json::to_vec(&batch).expect("presence events serialize");
        self.queue(Outbound::Presence(body.into()));
    }
}

/// Apply presence events in `state` (as the API does for a request; a pin per chunk).
pub fn apply(state: &State, events: &[PresenceEvent], default_ttl_s: u64) {
    // A pin per chunk, not per request: a sweep waits for at most one chunk.
    for chunk in events.chunks(1024) {
        let users = state.users.pin();
        for e in chunk {
            let user = if e.online {
                users.intern(&e.user_id)
            } else {
                match users.get(&e.user_id) {
                    Some(u) => u,
                    None => continue,
                }
            };
            state.presence.apply(
                user,
                &e.session_id,
                e.online,
                e.ttl_s.unwrap_or(default_ttl_s),
            );
        }
    }
}

/// Apply the presence other engines broadcast, until `shutdown`.
pub(super) async fn run(node: Arc<Node>, engine: Arc<crate::Engine>, mut shutdown: Shutdown) {
    let mut sub = match node.client.subscribe(names::PRESENCE_SUBJECT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to presence: other engines' presence is not seen");
            return;
        }
    };
    let default_ttl = engine.config.presence.default_ttl_s;
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = shutdown.wait() => return,
        };
        let Some(msg) = msg else {
            return;
        };
        match serde_json::from_slice::<Batch>(&msg.payload) {
            Ok(b) if b.origin == node.prefix => {}
            Ok(b) if b.events.len() <= crate::api::wire::MAX_PRESENCE_EVENTS => {
                apply(&engine.state, &b.events, default_ttl)
            }
            Ok(_) => tracing::warn!("oversized presence broadcast ignored"),
            Err(e) => tracing::warn!(error = %e, "malformed presence broadcast ignored"),
        }
    }
}
