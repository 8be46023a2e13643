//! Cluster mode: several engines as one service over NATS JetStream (`[cluster]`).
//!
//! Durable state is the JetStream stream `FANFARE_STATE` instead of a local log. A
//! write ([`Node::commit`]) encodes its [`Mutation`] with the log's own record format
//! ([`crate::store::codec`]), publishes it with a unique `Nats-Msg-Id`
//! (`<node>.<boot nonce>.<counter>`) and is acknowledged to the API caller only once
//! JetStream has stored it (replicated `stream_replicas` times) *and* this engine's
//! follower has applied it: a read on the same engine sees the write at once. Every
//! engine, the writer too, changes its memory only from the stream, in stream order
//! ([`follower`]), so all engines converge on the same bindings, groups, mutes and
//! badge resets. A write JetStream does not acknowledge in `cluster.write_timeout_ms`
//! fails with [`Error::Unavailable`], answered `503 overloaded` with `Retry-After`. A
//! write whose acknowledgement was lost may still be applied: every mutation is a
//! set-style change, so the caller's retry converges.
//!
//! Best-effort writers (the dispatcher removing a dead token) publish without waiting
//! ([`Node::publish_best_effort`]); presence is broadcast on the core subject
//! `fanfare.presence` ([`presence`]); `message_id` and `call_id` are claimed
//! cluster-wide in the `fanfare_dedup` bucket ([`claims`]); every engine puts a
//! heartbeat in `fanfare_nodes` ([`nodes`]), whose live count divides each lane's
//! `max_rps`.
//!
//! Start ([`start`]): lock the data directory, connect (bounded), ensure the stream and
//! buckets ([`setup`]), load the newest usable snapshot — the local one when the
//! stream still holds what follows it, else the one in the object store, else none
//! ([`join`]) — then follow the stream and become ready once the stream's last
//! sequence at start is applied. Local snapshots record the stream sequence they
//! cover; the live engine with the lowest node id also puts its snapshots in the
//! object store, from which an engine with an empty disk joins.
//!
//! Fan-out work is shared ([`work`], [`work_pull`]): the accepting engine hands a
//! message's targets to the work-queue stream `FANFARE_WORK` in chunks and every engine
//! pulls and pushes them; badge increments go through the state stream
//! ([`Node::add_badges`]); a call cancel reaches the engine holding the call
//! ([`work_cancel`]), even before any engine pulled it; the delivery ledger is
//! answered across engines ([`work_ledger`]).

mod claims;
mod follower;
mod join;
mod nodes;
pub mod presence;
mod scatter;
mod setup;
mod trim;
pub mod work;
pub mod work_cancel;
pub mod work_codec;
pub mod work_ledger;
mod work_pull;

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Cluster;
use crate::state::{Applied, Mutation, State};

pub use claims::Space;
pub use join::Joined;

/// Names shared by every engine of a cluster.
pub mod names {
    use std::time::Duration;

    /// The stream of durable mutations.
    pub const STATE_STREAM: &str = "FANFARE_STATE";
    /// Its one subject.
    pub const STATE_SUBJECT: &str = "fanfare.state";
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a repeated publish.
    pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
    /// Cluster-wide idempotency keys (`m.<hash>`, `c.<hash>`).
    pub const DEDUP_BUCKET: &str = "fanfare_dedup";
    /// Heartbeats: one key per live engine.
    pub const NODES_BUCKET: &str = "fanfare_nodes";
    /// A heartbeat older than this no longer counts the engine as live.
    pub const NODE_TTL: Duration = Duration::from_secs(10);
    /// How often an engine puts its heartbeat.
    pub const HEARTBEAT: Duration = Duration::from_secs(2);
    /// Snapshots for joining engines.
    pub const SNAPSHOT_BUCKET: &str = "fanfare_snapshots";
    /// The one object in it: the newest snapshot.
    pub const SNAPSHOT_OBJECT: &str = "state";
    /// Presence events, broadcast (not durable).
    pub const PRESENCE_SUBJECT: &str = "fanfare.presence";
}

/// Why cluster mode could not start, or a write could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach nats at {urls} within {secs} s")]
    Connect {
        urls: String,
        secs: u64,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot set up {what}: {message}")]
    Setup { what: &'static str, message: String },
    #[error("cannot join the cluster: {0}")]
    Join(String),
    #[error("local snapshot")]
    Snapshot(#[source] crate::store::Error),
    /// NATS did not take the write (disconnected, no acknowledgement in time).
    #[error("nats did not acknowledge the write: {0}")]
    Unavailable(String),
    /// JetStream holds the write but this engine has not applied it in time.
    #[error("the write is stored but this engine has not applied it yet")]
    Lagging,
    #[error("cluster mode is stopping")]
    Stopped,
}

impl Error {
    /// A refusal the caller should retry later (`503 overloaded` with `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Lagging | Error::Stopped
        )
    }
}

/// Outbound messages that nobody waits for.
enum Outbound {
    /// An encoded mutation for the state stream.
    Mutation(bytes::Bytes),
    /// An encoded presence batch for the presence subject.
    Presence(bytes::Bytes),
}

/// Best-effort messages queued for NATS at most; past that they are dropped and
/// counted (a dead token is found dead again, presence is refreshed by the IM server).
const OUTBOUND_CAPACITY: usize = 4_096;

/// This engine's membership in the cluster.
pub struct Node {
    id: String,
    /// `<id>.<boot nonce>.`: the prefix of every message id this process publishes.
    prefix: String,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    claims: claims::Claims,
    nodes: jetstream::kv::Store,
    snapshots: jetstream::object_store::ObjectStore,
    state: Arc<State>,
    dir: PathBuf,
    write_timeout: Duration,
    counter: AtomicU64,
    /// Writers of this process waiting for the follower, by message counter.
    waiters: Mutex<HashMap<u64, oneshot::Sender<Applied>>>,
    /// Held by the follower while it applies one mutation and by a snapshot capture:
    /// holds the sequence applied last.
    applied: Mutex<u64>,
    /// The same sequence, for waiting on progress.
    progress: watch::Sender<u64>,
    /// Engines with a live heartbeat (at least 1: this one).
    live: AtomicUsize,
    outbound: mpsc::Sender<Outbound>,
    outbound_rx: Mutex<Option<mpsc::Receiver<Outbound>>>,
    /// Best-effort messages dropped because the outbound queue was full.
    dropped: AtomicU64,
    /// Newest snapshot sequence in the object store, as far as this engine knows.
    uploaded: AtomicU64,
    /// Keeps this engine's heartbeat floor down while it stores a snapshot (`trim`).
    hold: nodes::Hold,
    /// The work chunks this engine ran, for the cluster-wide ledger.
    chunks: work_ledger::Chunks,
    /// The engine's stop-with-failure signal ([`crate::Running::failure`]).
    fatal: watch::Sender<Option<String>>,
    /// The data directory's lock, held for the life of the node.
    _lock: File,
}

impl Node {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream sequence applied last.
    pub fn applied(&self) -> u64 {
        *self.progress.borrow()
    }

    /// Engines with a live heartbeat, this one included.
    pub fn live_engines(&self) -> usize {
        self.live.load(Ordering::Relaxed).max(1)
    }

    /// Why writes are failing, while they are: NATS is not connected.
    pub fn write_failure(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            other => Some(format!("nats is {other}")),
        }
    }

    /// Make `m` durable through the stream and return what this engine's follower did
    /// with it (see the module doc). An error means it may or may not have been
    /// stored; it is not visible here yet.
    pub async fn commit(&self, m: &Mutation) -> Result<Applied, Error> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(n, tx);
        let forget = Forget(self, n);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}{n}", self.prefix).as_str(),
        );
        let publish = async {
            self.js
                .publish_with_headers(names::STATE_SUBJECT, headers, encode(m))
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))
        };
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(Ok(_ack)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::Unavailable("timed out".into())),
        }
        let applied = tokio::time::timeout_at(deadline + self.write_timeout, rx).await;
        drop(forget);
        match applied {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Lagging),
        }
    }

    /// Publish `m` to the stream without waiting: the dispatcher removing a dead token.
    /// Every engine applies it when it arrives. False when it was dropped.
    pub fn publish_best_effort(&self, m: &Mutation) -> bool {
        self.queue(Outbound::Mutation(encode(m)))
    }

    fn queue(&self, o: Outbound) -> bool {
        let queued = self.outbound.try_send(o).is_ok();
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Claim a message or call id cluster-wide: `Ok(true)` when this request is the
    /// first within the dedup window.
    pub async fn claim(&self, space: Space, id: &str) -> Result<bool, Error> {
        self.claims.claim(space, id).await
    }

    /// Give back a claim whose request was refused after all.
    pub async fn release(&self, space: Space, id: &str) {
        self.claims.release(space, id).await
    }

    /// Wait (bounded) until the follower has applied `seq`.
    pub async fn wait_applied(&self, seq: u64, within: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        tokio::time::timeout(within, rx.wait_for(|a| *a >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The stream's last sequence now.
    pub async fn stream_last_seq(&self) -> Result<u64, Error> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(info.state.last_sequence)
    }
}

/// Removes a writer's waiter however its wait ends.
struct Forget<'a>(&'a Node, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.waiters.lock().remove(&self.1);
    }
}

/// The stream's message body of `m`: one log record (sequence 0; the stream's own
/// sequence is the one that counts).
fn encode(m: &Mutation) -> bytes::Bytes {
    let mut out = Vec::with_capacity(128);
    crate::store::codec::encode(0, m, &mut out);
    out.into()
}

/// A random number that tells this process's message ids from an earlier run's.
fn boot_nonce() -> u64 {
    rand::random::<u64>()
}

/// Join the cluster: see the module doc. Returns once this engine has caught up with
/// the stream (it may then serve); the background tasks stop when `shutdown` fires.
pub async fn start(
    engine: &Arc<crate::Engine>,
    cfg: &Cluster,
    shutdown: crate::shutdown::Shutdown,
) -> Result<(Arc<Node>, Joined), Error> {
    let started = std::time::Instant::now();
    let dir = engine.config.storage.dir.clone();
    let lock = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| crate::store::Error::io(&dir, e))?;
            crate::store::lock_dir(&dir)
        })
        .await
        .map_err(|_| Error::Join("the data directory task panicked".into()))?
        .map_err(Error::Snapshot)?
    };
    let id = cfg.node_id();
    let client = setup::connect(cfg, &id).await?;
    let js = setup::jetstream(client.clone(), cfg.write_timeout_ms);
    let window = Duration::from_secs(engine.config.messages.dedup_window_s);
    // A JetStream cluster that is still electing its leaders refuses for a moment.
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout_s;
    let h = loop {
        match setup::ensure(&js, cfg.stream_replicas, window).await {
            Ok(h) => break h,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "jetstream not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let node = Arc::new(Node {
        prefix: format!("{id}.{:016x}.", boot_nonce()),
        id,
        client,
        js,
        stream: h.stream,
        claims: claims::Claims::new(h.dedup),
        nodes: h.nodes,
        snapshots: h.snapshots,
        state: engine.state.clone(),
        dir,
        write_timeout: cfg.write_timeout_ms,
        counter: AtomicU64::new(0),
        waiters: Mutex::new(HashMap::new()),
        applied: Mutex::new(0),
        progress: watch::Sender::new(0),
        live: AtomicUsize::new(1),
        outbound,
        outbound_rx: Mutex::new(Some(outbound_rx)),
        dropped: AtomicU64::new(0),
        uploaded: AtomicU64::new(0),
        hold: nodes::Hold::default(),
        chunks: work_ledger::Chunks::new(
            (engine.config.messages.ledger_retention_s)
                .unwrap_or(engine.config.messages.dedup_window_s),
        ),
        fatal: engine.fatal.clone(),
        _lock: lock,
    });
    let mut joined = join::load(&node).await?;
    *node.applied.lock() = joined.base;
    node.progress.send_replace(joined.base);
    tokio::spawn(follower::run(node.clone(), shutdown.clone()));
    let target = joined.stream_last;
    let mut progress = node.progress.subscribe();
    let _ = progress.wait_for(|a| *a >= target).await;
    joined.elapsed = started.elapsed();
    tokio::spawn(nodes::run(node.clone(), engine.clone(), shutdown.clone()));
    tokio::spawn(presence::run(
        node.clone(),
        engine.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(run_outbound(node.clone(), shutdown.clone()));
    let workers = work::ensure(&node.js, cfg.stream_replicas, cfg.work_max_bytes).await?;
    tokio::spawn(work_cancel::serve(
        node.clone(),
        engine.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(work_ledger::serve(
        node.clone(),
        engine.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(work_pull::run(
        node.clone(),
        engine.clone(),
        workers,
        shutdown.clone(),
    ));
    tokio::spawn(join::snapshots(
        node.clone(),
        engine.config.storage.snapshot_interval_s,
        shutdown,
    ));
    Ok((node, joined))
}

/// Send best-effort messages; nothing waits for their acknowledgement.
async fn run_outbound(node: Arc<Node>, mut shutdown: crate::shutdown::Shutdown) {
    let Some(mut rx) = node.outbound_rx.lock().take() else {
        return;
    };
    loop {
        let Some(Some(o)) = shutdown.or(rx.recv()).await else {
            return;
        };
        let sent = match o {
            Outbound::Mutation(body) => {
                let mut headers = async_nats::HeaderMap::new();
                let n = node.counter.fetch_add(1, Ordering::Relaxed);
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("{}{n}", node.prefix).as_str(),
                );
                node.js
                    .publish_with_headers(names::STATE_SUBJECT, headers, body)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Outbound::Presence(body) => node
                .client
                .publish(names::PRESENCE_SUBJECT, body)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "best-effort publish to nats failed");
        }
    }
}

impl Node {
    /// Write a local snapshot now (the engine's final one at shutdown).
    pub async fn snapshot(self: &Arc<Self>) -> Result<crate::store::SnapshotInfo, Error> {
        join::snapshot_now(self).await
    }

    /// Flush what the client holds for NATS (at shutdown).
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }
}
