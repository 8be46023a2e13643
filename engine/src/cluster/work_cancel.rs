//! Call cancel through any engine (cluster mode). A call's invitations are one work
//! chunk, so the engine that pulled it holds the call ([`crate::fanout::dispatch::calls`]).
//! A cancel the asked engine cannot find locally is broadcast on the core subject
//! `fanfare.cancel`; every other engine tries it on its own table and replies, and the
//! asked engine answers with the counts of the engine that held the call, or `404`
//! once every live engine said "not here" or [`REPLY_WAIT`] passed. Not durable: a
//! cancel sent before any engine pulled the call's chunk (a few milliseconds after
//! its `202`) finds nothing and is answered `404`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::work::{put_content, put_str, take_content, Reader};
use super::{Error, Node};
use crate::fanout::usecase::{self, Cancel, Cancelled};
use crate::providers::Content;
use crate::shutdown::Shutdown;
use crate::Engine;

/// The cancel broadcast's subject.
pub const CANCEL_SUBJECT: &str = "fanfare.cancel";
/// How long the asked engine waits for its peers' replies at most.
pub const REPLY_WAIT: Duration = Duration::from_secs(2);

/// What a peer replied.
const NOT_HERE: u8 = 0;
const CANCELLED: u8 = 1;
const REFUSED: u8 = 2;

/// What the engines that were asked did with a broadcast cancel.
#[derive(Debug)]
pub enum Remote {
    /// The engine holding the call cancelled it.
    Cancelled(Cancelled),
    /// The engine holding the call refused the cancel (its reason).
    Refused(String),
    /// No engine holds the call (or none replied in time).
    NotFound,
}

impl Node {
    /// Broadcast a cancel of `call_id` to the other engines and wait (bounded) for the
    /// one holding it.
    pub async fn cancel_elsewhere(
        &self,
        call_id: &str,
        content: Option<&Content>,
    ) -> Result<Remote, Error> {
        let peers = self.live_engines().saturating_sub(1);
        if peers == 0 {
            return Ok(Remote::NotFound);
        }
        let mut body = Vec::with_capacity(128);
        put_str(&mut body, &self.id);
        put_str(&mut body, call_id);
        match content {
            Some(c) => {
                body.push(1);
                put_content(&mut body, c);
            }
            None => body.push(0),
        }
        let unavailable = |e: String| Error::Unavailable(e);
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        self.client
            .publish_with_reply(CANCEL_SUBJECT, inbox, body.into())
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + REPLY_WAIT;
        for _ in 0..peers {
            let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await else {
                break;
            };
            let mut r = Reader { b: &reply.payload };
            match r.u8() {
                Ok(CANCELLED) => {
                    let (Ok(withdrawn), Ok(cancel_pushes)) = (r.u64(), r.u64()) else {
                        continue;
                    };
                    return Ok(Remote::Cancelled(Cancelled {
                        withdrawn: withdrawn as usize,
                        cancel_pushes: cancel_pushes as usize,
                    }));
                }
                Ok(REFUSED) => return Ok(Remote::Refused(r.str().unwrap_or("").into())),
                _ => {}
            }
        }
        Ok(Remote::NotFound)
    }
}

/// Answer other engines' cancels until shutdown.
pub(super) async fn serve(node: Arc<Node>, engine: Arc<Engine>, mut shutdown: Shutdown) {
    let mut requests = match node.client.subscribe(CANCEL_SUBJECT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe to call cancels; calls held here can only be cancelled through this engine");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            m = requests.next() => m,
            _ = shutdown.wait() => return,
        };
        let Some(msg) = msg else {
            return;
        };
        let Some(reply) = msg.reply else {
            continue;
        };
        let Some((origin, cancel)) = decode(&msg.payload) else {
            tracing::debug!("dropping a malformed cancel broadcast");
            continue;
        };
        if origin == node.id {
            continue;
        }
        let mut out = Vec::with_capacity(17);
        match usecase::cancel_call(&engine, cancel) {
            Ok(done) => {
                out.push(CANCELLED);
                out.extend_from_slice(&(done.withdrawn as u64).to_le_bytes());
                out.extend_from_slice(&(done.cancel_pushes as u64).to_le_bytes());
            }
            Err(usecase::Error::NoCall(_)) => out.push(NOT_HERE),
            Err(e) => {
                out.push(REFUSED);
                put_str(&mut out, &e.to_string());
            }
        }
        if let Err(e) = node.client.publish(reply, out.into()).await {
            tracing::debug!(error = %e, "cannot reply to a cancel broadcast");
        }
    }
}

fn decode(b: &[u8]) -> Option<(String, Cancel)> {
    let mut r = Reader { b };
    let origin = r.str().ok()?.to_owned();
    let call_id: Arc<str> = r.str().ok()?.into();
    let content = match r.u8().ok()? {
        0 => None,
        _ => Some(take_content(&mut r).ok()?),
    };
    r.b.is_empty()
        .then_some((origin, Cancel { call_id, content }))
}
