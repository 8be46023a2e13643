//! Scatter-gather over core NATS, for questions only the other engines can answer
//! (who holds a call, what a message's chunks did there): the asking engine publishes
//! one request with a reply inbox on a subject every engine serves, and reads the
//! replies until every other live engine answered (the count of heartbeats in
//! `fanfare_nodes`), the caller has what it needs, or a bounded wait passed. Nothing
//! is durable: an engine that is down does not answer, and the asker decides what that
//! means. Every request starts with the asking engine's node id, so an engine skips
//! its own.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::work_codec::{put_str, Reader};
use super::{Error, Node};
use crate::shutdown::Shutdown;

impl Node {
    /// Publish `body` (after this engine's id) on `subject` and give each reply to
    /// `each` until it returns true, every other live engine replied, or `within`
    /// passed. Alone in the cluster, nothing is sent.
    pub(super) async fn ask(
        &self,
        subject: &'static str,
        body: &[u8],
        within: Duration,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), Error> {
        let peers = self.live_engines().saturating_sub(1);
        if peers == 0 {
            return Ok(());
        }
        let mut request = Vec::with_capacity(self.id.len() + 4 + body.len());
        put_str(&mut request, &self.id);
        request.extend_from_slice(body);
        let unavailable = |e: String| Error::Unavailable(e);
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        self.client
            .publish_with_reply(subject, inbox, request.into())
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + within;
        for _ in 0..peers {
            let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await else {
                break;
            };
            if each(&reply.payload) {
                break;
            }
        }
        Ok(())
    }
}

/// Answer other engines' requests on `subject` until shutdown: `answer` gets a
/// request's body (after the asker's id) and returns the reply, `None` for a
/// malformed request (not answered).
pub(super) async fn serve(
    node: Arc<Node>,
    subject: &'static str,
    mut shutdown: Shutdown,
    mut answer: impl FnMut(&mut Reader<'_>) -> Option<Vec<u8>>,
) {
    let mut requests = match node.client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, subject, "cannot serve the other engines' requests");
            return;
        }
    };
    loop {
        let Some(Some(msg)) = shutdown.or(requests.next()).await else {
            return;
        };
        let Some(reply) = msg.reply else {
            continue;
        };
        let mut r = Reader { b: &msg.payload };
        if r.str().map_or(true, |origin| origin == node.id) {
            continue;
        }
        let Some(out) = answer(&mut r) else {
            tracing::debug!(subject, "dropping a malformed request");
            continue;
        };
        if let Err(e) = node.client.publish(reply, out.into()).await {
            tracing::debug!(error = %e, subject, "cannot reply to a request");
        }
    }
}
