//! Pulling shared fan-out work ([`super::work`]): every engine pulls chunks from the
//! one durable consumer `fanfare_workers`, only while each of its lanes has room for a
//! whole chunk, queues each chunk's targets through [`crate::fanout::dispatch`] like
//! any accepted message (ledger entry, badge totals, calls tracked for a cancel), and
//! acknowledges the chunk once every push of it has a final outcome, telling JetStream
//! it is still at work every [`PROGRESS_EVERY`] until then. A chunk this engine cannot
//! finish (it stops, it dies) is not acknowledged: after `ack_wait` another engine gets
//! it, counted there as a duplicate.
//!
//! A call's chunk whose cancel was recorded before it was pulled
//! ([`super::work_cancel`]) is not rung: its invitations end `withdrawn` and the chunk
//! is acknowledged; a cancel recorded while the chunk was being queued is applied
//! right after. Each chunk's entry is kept by its number for the cluster-wide ledger
//! ([`super::work_ledger`]).
//!
//! A chunk is never handed back with a NAK (that would count as a second delivery):
//! when a lane fills between the room check and the queueing, the chunk waits here
//! (bounded by shutdown) and is queued once there is room.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::sync::Notify;

use super::work::{chunk_targets, WorkKind, PROGRESS_EVERY};
use super::work_codec::Chunk;
use super::Node;
use crate::fanout::ledger::Entry;
use crate::fanout::plan::Lane;
use crate::providers::{Kind, Push};
use crate::shutdown::Shutdown;
use crate::Engine;

/// How long a pull request waits for chunks before asking again.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// Chunks asked for at once at most.
const PULL_BATCH: usize = 8;
/// Chunks' worth of targets an engine's fullest lane may hold before it pulls more.
const PREFETCH: usize = 2;
/// Pause while the lanes are full, or after NATS refused a pull.
const WAIT: Duration = Duration::from_millis(25);

pub(super) async fn run(
    node: Arc<Node>,
    engine: Arc<Engine>,
    consumer: jetstream::consumer::PullConsumer,
    mut shutdown: Shutdown,
) {
    let capacity = engine.config.messages.queue_capacity;
    loop {
        let room = room(&engine, capacity);
        if room == 0 {
            match shutdown.or(tokio::time::sleep(WAIT)).await {
                Some(()) => continue,
                None => return,
            }
        }
        let batch = consumer
            .batch()
            .max_messages(room.min(PULL_BATCH))
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "cannot pull work chunks");
                match shutdown.or(tokio::time::sleep(WAIT * 8)).await {
                    Some(()) => continue,
                    None => return,
                }
            }
        };
        loop {
            let Some(next) = shutdown.or(batch.next()).await else {
                return;
            };
            match next {
                Some(Ok(msg)) => take(&node, &engine, msg, &mut shutdown).await,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "work pull ended");
                    break;
                }
                None => break,
            }
        }
    }
}

/// Whole chunks to pull now: as many as keep every lane under [`PREFETCH`] chunks
/// (and under its capacity). Work then spreads over the engines when the vendors are
/// the bottleneck, and an engine still never idles waiting for a pull.
fn room(engine: &Engine, capacity: usize) -> usize {
    let chunk = chunk_targets(capacity);
    let limit = capacity.min(PREFETCH * chunk);
    let fullest = engine
        .dispatcher
        .depths()
        .into_iter()
        .map(|(_, d)| d)
        .max()
        .unwrap_or(0);
    limit.saturating_sub(fullest) / chunk
}

/// Queue one chunk and leave a task that acknowledges it once it is done.
async fn take(node: &Node, engine: &Arc<Engine>, msg: jetstream::Message, shutdown: &mut Shutdown) {
    let redelivered = msg.info().is_ok_and(|i| i.delivered > 1);
    let number = chunk_number(&msg);
    let (msg, acker) = msg.split();
    let mut chunk = match Chunk::decode(&msg.payload) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = e, "dropping a malformed work chunk");
            let _ = acker.ack_with(AckKind::Term).await;
            return;
        }
    };
    let stats = &engine.stats.cluster;
    if redelivered {
        stats.duplicates.fetch_add(
            chunk.targets.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        // A repeat replaces the first copy on a device that got it.
        chunk
            .content
            .collapse_id
            .get_or_insert_with(|| crate::fanout::usecase::collapse_key(&chunk.id));
    }
    if let WorkKind::Call { .. } = chunk.kind {
        if node.claims.recorded_cancel(&chunk.id).await.is_some() {
            // Cancelled before it was pulled: its invitations end `withdrawn` unsent.
            let entry = withdrawn(engine, &chunk);
            node.chunks.insert(chunk.space, &chunk.id, number, entry);
            if let Err(e) = acker.ack().await {
                tracing::debug!(error = %e, "cannot acknowledge a cancelled call's chunk");
            }
            return;
        }
    }
    let push = match render(engine, &chunk) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::warn!(id = %chunk.id, error = %e, "cannot render a work chunk here; leaving it to another engine");
            return;
        }
    };
    let done = Arc::new(Notify::new());
    let mut last_progress = tokio::time::Instant::now();
    let entry = loop {
        if let Some(entry) = queue(engine, &chunk, &push, &done) {
            break entry;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            let _ = acker.ack_with(AckKind::Progress).await;
            last_progress = tokio::time::Instant::now();
        }
        if shutdown.or(tokio::time::sleep(WAIT)).await.is_none() {
            return;
        }
    };
    stats
        .chunks
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    node.chunks
        .insert(chunk.space, &chunk.id, number, entry.clone());
    tokio::spawn(finish(entry, done, acker, shutdown.clone()));
    if let WorkKind::Call { .. } = chunk.kind {
        node.cancel_if_recorded(engine, &chunk.id).await;
    }
}

/// The chunk's number within its message: the last part of its `Nats-Msg-Id`
/// (`<space>.<id>.<nonce>.<n>`, see [`super::Node::hand_off`]); 0 when absent.
fn chunk_number(msg: &jetstream::Message) -> u32 {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .and_then(|v| v.as_str().rsplit('.').next()?.parse().ok())
        .unwrap_or(0)
}

/// Queue the chunk's targets on this engine's lanes; `None` when a lane (or the call
/// table) is full.
fn queue(
    engine: &Engine,
    chunk: &Chunk,
    push: &Arc<Push>,
    done: &Arc<Notify>,
) -> Option<Arc<Entry>> {
    let users = engine.state.users.pin();
    let targets = chunk.to_targets(&users);
    let entry = engine
        .ledger
        .chunk(chunk.space, &chunk.id, &targets, done.clone());
    let queued = match &chunk.kind {
        WorkKind::Message => {
            engine
                .dispatcher
                .submit_then(push.clone(), targets, Some(entry.clone()), |_| {})
        }
        WorkKind::Call {
            inviter_id,
            ends_at,
            ..
        } => engine.dispatcher.ring(
            push.clone(),
            targets,
            chunk.id.clone(),
            inviter_id.clone(),
            *ends_at,
            Some(entry.clone()),
        ),
    };
    queued.ok().map(|_| entry)
}

/// The entry of a call chunk whose call was cancelled before it was pulled: every
/// invitation withdrawn.
fn withdrawn(engine: &Engine, chunk: &Chunk) -> Arc<Entry> {
    let targets = chunk.to_targets(&engine.state.users.pin());
    let entry = engine
        .ledger
        .chunk(chunk.space, &chunk.id, &targets, Arc::new(Notify::new()));
    for lane in &targets.lanes {
        entry.withdraw(lane);
    }
    entry
}

/// Acknowledge the chunk once its last target ended, saying "still at work" meanwhile.
async fn finish(
    entry: Arc<Entry>,
    done: Arc<Notify>,
    acker: jetstream::message::Acker,
    mut shutdown: Shutdown,
) {
    while !entry.is_done() {
        tokio::select! {
            _ = done.notified() => {}
            _ = tokio::time::sleep(PROGRESS_EVERY) => {
                let _ = acker.ack_with(AckKind::Progress).await;
            }
            // Unacknowledged: another engine finishes it.
            _ = shutdown.wait() => return,
        }
    }
    if let Err(e) = acker.ack().await {
        tracing::debug!(error = %e, "cannot acknowledge a finished work chunk");
    }
}

/// The chunk's push, rendered here as the accepting engine rendered it, with its
/// expiry.
fn render(engine: &Engine, chunk: &Chunk) -> Result<Push, crate::fanout::usecase::Error> {
    let rule = crate::fanout::usecase::resource(engine, &chunk.content)?;
    let mut used = [false; Lane::COUNT];
    for (d, _, _) in &chunk.targets {
        used[d.provider().lane() as usize] = true;
    }
    let kind = match &chunk.kind {
        WorkKind::Message => Kind::Message {
            message_id: chunk.id.clone(),
        },
        WorkKind::Call {
            inviter_id,
            timeout_s,
            ..
        } => Kind::Call {
            call_id: chunk.id.clone(),
            inviter_id: inviter_id.clone(),
            timeout_s: *timeout_s,
        },
    };
    let now = crate::clock::unix_now_s();
    let mut push = Push::render_for(kind, &chunk.content, &rule, chunk.ttl_s, now, |p| {
        used[p.lane() as usize]
    })
    .map_err(crate::fanout::usecase::Error::TooLarge)?;
    push.expires_at = chunk.expires_at;
    Ok(push)
}
