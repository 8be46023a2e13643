//! Shared fan-out work (cluster mode): the engine that accepts a message or call plans
//! and renders it as a single engine would, then hands its device targets to the
//! work-queue stream `FANFARE_WORK` in chunks ([`Handoff`]) instead of its own lanes,
//! and answers `202` only once JetStream holds every chunk. Every engine pulls chunks
//! from one durable consumer while its lanes have room ([`pull`](super::work_pull))
//! and acknowledges a chunk once every push of it has a final outcome, so when an
//! engine dies mid-fan-out its unacknowledged chunks go to the others: no accepted push
//! is lost. A chunk delivered again is counted (`cluster.duplicates`, its targets) and
//! its pushes carry the message id as collapse id (when the request gave none) so a
//! device that got the first copy shows one notification. Only repeats carry it: FCM
//! keeps at most four collapse keys per offline device, so a collapse id on every push
//! would drop messages.
//!
//! The chunk format is [`super::work_codec`]'s.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::{Error, Node};
use crate::fanout::dedup::Space;
use crate::fanout::ledger::Entry;
use crate::fanout::plan::{Lane, Targets};
use crate::providers::Content;
use crate::state::ids::Pin;
use crate::state::{Applied, Mutation};

/// The work-queue stream.
pub const WORK_STREAM: &str = "FANFARE_WORK";
/// Its one subject.
pub const WORK_SUBJECT: &str = "fanfare.work";
/// The durable pull consumer every engine pulls from.
pub const WORKERS: &str = "fanfare_workers";
/// Targets per chunk at most.
pub const CHUNK_TARGETS: usize = 1_000;
/// A chunk is cut once its encoding passes this (NATS' default payload limit is 1 MiB).
pub const CHUNK_BYTES: usize = 512 << 10;
/// A chunk not acknowledged for this long goes to another engine; an engine still
/// working on one says so every [`PROGRESS_EVERY`].
pub const ACK_WAIT: Duration = Duration::from_secs(30);
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Chunks handed out and not yet acknowledged, across all engines.
const MAX_ACK_PENDING: i64 = 4_096;

/// A message's or call's kind as a chunk carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkKind {
    Message,
    Call {
        inviter_id: Arc<str>,
        timeout_s: u64,
        /// UNIX seconds when the call times out (its tracking for a cancel ends).
        ends_at: u64,
    },
}

/// An accepted message or call whose targets go to the work stream: built by the use
/// case under its pin (owner names are resolved there), published by
/// [`Node::hand_off`].
pub struct Handoff {
    pub(super) space: Space,
    pub(super) id: Arc<str>,
    pub(super) kind: WorkKind,
    pub(super) content: Content,
    pub(super) ttl_s: u64,
    pub(super) expires_at: u64,
    pub(super) targets: Targets,
    /// Per lane, beside each device, its owner's user id.
    pub(super) owners: [Vec<Arc<str>>; Lane::COUNT],
    /// With `badge_increment`: the pushed recipients' user ids, in planning order.
    pub(super) pushed: Vec<Arc<str>>,
    /// The accepting engine's ledger entry, made findable once every chunk is stored.
    pub(super) entry: Option<Arc<Entry>>,
}

impl Handoff {
    /// `targets` of the message or call `id`; with `badge_increment` their badge totals
    /// are counted by [`Node::add_badges`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        space: Space,
        id: Arc<str>,
        kind: WorkKind,
        content: &Content,
        (ttl_s, expires_at): (u64, u64),
        targets: Targets,
        entry: Option<Arc<Entry>>,
        users: &Pin<'_>,
    ) -> Self {
        let owners = std::array::from_fn(|lane| {
            let mut names: Vec<Arc<str>> = Vec::with_capacity(targets.lanes[lane].len());
            let mut last: Option<(crate::state::UserIdx, Arc<str>)> = None;
            for d in &targets.lanes[lane] {
                let name = match &last {
                    // Planning keeps a user's devices together in each lane.
                    Some((u, n)) if *u == d.owner() => n.clone(),
                    _ => users.name(d.owner()),
                };
                last = Some((d.owner(), name.clone()));
                names.push(name);
            }
            names
        });
        let pushed = targets.pushed.iter().map(|u| users.name(*u)).collect();
        Self {
            space,
            id,
            kind,
            pushed,
            content: content.clone(),
            ttl_s,
            expires_at,
            targets,
            owners,
            entry,
        }
    }

    /// The accepting engine's ledger entry, to make findable once handed off.
    pub fn take_entry(&mut self) -> Option<Arc<Entry>> {
        self.entry.take()
    }

    /// The message's or call's dedup space and id.
    pub fn id(&self) -> (Space, &str) {
        (self.space, &self.id)
    }

    /// Device pushes it hands off.
    pub fn queued(&self) -> usize {
        self.targets.queued()
    }
}

/// Targets per chunk with lanes of `queue_capacity`: [`CHUNK_TARGETS`], or fewer so
/// that a chunk always fits in an empty lane.
pub fn chunk_targets(queue_capacity: usize) -> usize {
    CHUNK_TARGETS.min(queue_capacity).max(1)
}

/// Get or create the work stream (at `max_bytes`, `cluster.work_max_bytes`; an
/// existing stream is updated to it) and the workers' consumer (nats-server 2.9
/// features only). JetStream refusing the size (not enough storage) is an error that
/// names the key.
pub(super) async fn ensure(
    js: &jetstream::Context,
    replicas: usize,
    max_bytes: u64,
) -> Result<consumer::PullConsumer, Error> {
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let cfg = stream::Config {
        name: WORK_STREAM.into(),
        subjects: vec![WORK_SUBJECT.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_bytes,
        discard: stream::DiscardPolicy::New,
        duplicate_window: super::names::DUPLICATE_WINDOW,
        max_message_size: (CHUNK_BYTES * 2).min(max_bytes as usize) as i32,
        ..Default::default()
    };
    let setup = |e: String| Error::Setup {
        what: "the work stream",
        message: e,
    };
    let sized = |e: String| {
        let hint = if e.contains("insufficient") || e.contains("resources") {
            " (lower cluster.work_max_bytes or give NATS more JetStream storage)"
        } else {
            ""
        };
        Error::Setup {
            what: "the work stream",
            message: format!("cluster.work_max_bytes = {max_bytes} was refused: {e}{hint}"),
        }
    };
    let stream = match js.get_stream(WORK_STREAM).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(|e| setup(e.to_string()))?;
            if info.config.max_bytes != max_bytes {
                js.update_stream(stream::Config {
                    num_replicas: info.config.num_replicas,
                    ..cfg
                })
                .await
                .map_err(|e| sized(e.to_string()))?;
            }
            s
        }
        Err(_) => match js.create_stream(cfg).await {
            Ok(s) => s,
            Err(create) => js
                .get_stream(WORK_STREAM)
                .await
                .map_err(|_| sized(create.to_string()))?,
        },
    };
    let consumer = consumer::pull::Config {
        durable_name: Some(WORKERS.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        max_deliver: -1,
        num_replicas: replicas,
        ..Default::default()
    };
    stream
        .get_or_create_consumer(WORKERS, consumer)
        .await
        .map_err(|e| setup(e.to_string()))
}

impl Node {
    /// The badge increments of `h` (`badge_increment`): through the state stream, as
    /// [`Mutation::AddBadges`] records of at most [`CHUNK_TARGETS`] users, so every
    /// engine counts them in the same order; the totals this engine's follower computed
    /// go to the targets. Read-your-writes: this engine shows them once this returns.
    pub async fn add_badges(&self, h: &mut Handoff) -> Result<(), Error> {
        let Some(n) = h.content.badge_increment else {
            return Ok(());
        };
        let adds = h.pushed.chunks(CHUNK_TARGETS).map(|users| async move {
            let m = Mutation::AddBadges {
                users: users.to_vec(),
                n,
            };
            match self.commit(&m).await? {
                Applied::BadgesAdded(totals) if totals.len() == users.len() => Ok(totals),
                other => Err(Error::Unavailable(format!(
                    "badges were not added: {other:?}"
                ))),
            }
        });
        let totals = futures::future::try_join_all(adds).await?;
        let mut totals = totals.into_iter().flatten();
        h.targets
            .count_badges(|_, _| totals.next().expect("a total per pushed user"), n);
        Ok(())
    }

    /// Publish `h`'s chunks and wait (bounded by `cluster.write_timeout_ms`) until
    /// JetStream holds every one. An error means some may be stored (they will be
    /// pushed); the caller refuses the request and the client's retry is then a
    /// duplicate only if its claim was kept (it is released).
    ///
    /// A chunk holds at most [`chunk_targets`] of `queue_capacity`, so that it fits in
    /// any engine's lanes.
    pub async fn hand_off(&self, h: &Handoff, queue_capacity: usize) -> Result<(), Error> {
        let nonce = rand::random::<u64>();
        let tag = match h.space {
            Space::Message => "m",
            Space::Call => "c",
        };
        let id = hex::encode(h.id.as_bytes());
        let publish = async {
            let mut acks = Vec::new();
            for (i, body) in h
                .chunks(chunk_targets(queue_capacity))
                .into_iter()
                .enumerate()
            {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("{tag}.{id}.{nonce:016x}.{i}").as_str(),
                );
                let ack = self
                    .js
                    .publish_with_headers(WORK_SUBJECT, headers, body)
                    .await
                    .map_err(|e| Error::Unavailable(e.to_string()))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| Error::Unavailable(e.to_string()))?;
            }
            Ok(())
        };
        match tokio::time::timeout(self.write_timeout, publish).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unavailable("timed out".into())),
        }
    }
}
