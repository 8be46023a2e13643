//! Call cancel through any engine (cluster mode). A call's invitations are one work
//! chunk, so the engine that pulled it holds the call ([`crate::fanout::dispatch::calls`]).
//! A cancel the asked engine cannot apply locally is first recorded cluster-wide (the
//! key `x.<sha256>` in `fanfare_dedup`, kept as long as the call's claim), then
//! broadcast on the core subject `fanfare.cancel` ([`super::scatter`]): the engine
//! holding the call cancels it and replies with its counts. When no engine holds it,
//! the call may be accepted but not pulled yet (its chunk waits in `FANFARE_WORK`):
//! the engine that pulls it finds the record right after ringing it and cancels it
//! there, before a lane sends the invitations ([`Node::cancel_if_recorded`]), and the
//! asked engine answers with the call's pending invitations, from the cluster-wide
//! ledger ([`Node::report`]), as `withdrawn`. The record is made before the broadcast
//! and checked after the call is in the holder's table, so one of the two always finds
//! the call; cancelling a call twice applies once (the table gives the call up once).
//!
//! A call no engine holds, whose ledger entry shows nothing pending (unknown, already
//! ended or expired) or whose cancel was recorded before, is `404`, and a record made
//! for an unknown call is deleted again. With the ledger off
//! (`messages.ledger_retention_s = 0`) a call not pulled yet cannot be counted and is
//! answered `404` as well.

use std::sync::Arc;
use std::time::Duration;

use super::scatter;
use super::work_codec::{put_content, put_str, take_content, Reader};
use super::{Error, Node};
use crate::fanout::dedup::Space;
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
    /// The engine holding the call cancelled it (or it was not pulled yet and will be
    /// cancelled by the engine that pulls it).
    Cancelled(Cancelled),
    /// The engine holding the call refused the cancel (its reason).
    Refused(String),
    /// No engine holds the call (or none replied in time).
    NotFound,
}

impl Node {
    /// Cancel `call_id` through the other engines (see the module doc).
    pub async fn cancel_elsewhere(
        &self,
        engine: &Engine,
        call_id: &str,
        content: Option<&Content>,
    ) -> Result<Remote, Error> {
        let mut body = Vec::with_capacity(128);
        put_str(&mut body, call_id);
        match content {
            Some(c) => {
                body.push(1);
                put_content(&mut body, c);
            }
            None => body.push(0),
        }
        // Recorded first: an engine that pulls the call after the broadcast finds it.
        let first = self
            .claims
            .record_cancel(call_id, body.clone().into())
            .await?;
        let mut out = Remote::NotFound;
        self.ask(CANCEL_SUBJECT, &body, REPLY_WAIT, |reply| {
            let mut r = Reader { b: reply };
            out = match r.u8() {
                Ok(CANCELLED) => match (r.u64(), r.u64()) {
                    (Ok(withdrawn), Ok(cancel_pushes)) => Remote::Cancelled(Cancelled {
                        withdrawn: withdrawn as usize,
                        cancel_pushes: cancel_pushes as usize,
                    }),
                    _ => Remote::NotFound,
                },
                Ok(REFUSED) => Remote::Refused(r.str().unwrap_or("").into()),
                _ => Remote::NotFound,
            };
            !matches!(out, Remote::NotFound)
        })
        .await?;
        if !matches!(out, Remote::NotFound) || !first {
            return Ok(out);
        }
        // No engine holds it: accepted and waiting in the work stream?
        match self.report(engine, Space::Call, call_id).await? {
            Some(r) if r.pending > 0 => Ok(Remote::Cancelled(Cancelled {
                withdrawn: r.pending as usize,
                cancel_pushes: 0,
            })),
            _ => {
                self.claims.drop_cancel(call_id).await;
                Ok(Remote::NotFound)
            }
        }
    }

    /// A call chunk this engine just queued: cancel the call here if a cancel was
    /// recorded before the chunk was pulled (see the module doc).
    pub(super) async fn cancel_if_recorded(&self, engine: &Engine, call_id: &str) {
        let Some(body) = self.claims.recorded_cancel(call_id).await else {
            return;
        };
        let Some(cancel) = decode(&mut Reader { b: &body }) else {
            tracing::debug!("dropping a malformed recorded cancel");
            return;
        };
        match usecase::cancel_call(engine, cancel) {
            Ok(done) => tracing::info!(
                call_id,
                withdrawn = done.withdrawn,
                cancel_pushes = done.cancel_pushes,
                "a call cancelled before its invitations were pulled is withdrawn"
            ),
            Err(e) => tracing::debug!(call_id, error = %e, "a recorded cancel did not apply"),
        }
    }
}

/// Answer other engines' cancels until shutdown.
pub(super) async fn serve(node: Arc<Node>, engine: Arc<Engine>, shutdown: Shutdown) {
    scatter::serve(node, CANCEL_SUBJECT, shutdown, |r| {
        let cancel = decode(r)?;
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
        Some(out)
    })
    .await
}

fn decode(r: &mut Reader<'_>) -> Option<Cancel> {
    let call_id: Arc<str> = r.str().ok()?.into();
    let content = match r.u8().ok()? {
        0 => None,
        _ => Some(take_content(r).ok()?),
    };
    r.b.is_empty().then_some(Cancel { call_id, content })
}
