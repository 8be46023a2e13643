//! The delivery ledger across engines (cluster mode). The accepting engine holds a
//! message's or call's ledger entry ([`crate::fanout::ledger`]): its `targets`, the
//! targets settled at acceptance (`unconfigured`, `rejected` without a silent type)
//! and the rest `pending` — it pushes nothing of it itself, it hands it off. Each
//! engine that pulls one of its work chunks keeps that chunk's own entry here
//! ([`Chunks`]), by id and chunk number, for `messages.ledger_retention_s`.
//!
//! `GET /v1/messages/{id}` (or `/v1/calls/{id}`) on any engine asks every other live
//! engine on the core subject `fanfare.ledger` ([`super::scatter`], at most
//! [`REPLY_WAIT`]); each answers its accepting entry for the id, if it has it, and its
//! chunk entries. The asker [`merge`]s: per chunk number the copy that settled most
//! (a chunk delivered again after a crash counts once), the chunks' outcomes added to
//! the accepting entry's, `pending` what remains, so the outcomes always add up to
//! `targets`. Failures are listed up to [`MAX_FAILURES`]: the accepting engine's
//! first. An engine that does not answer in time (or is dead) leaves its chunks'
//! settled targets `pending` in the answer; no engine with the accepting entry is
//! `404`, as for an unknown id.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::scatter;
use super::work_codec::{put_str, Reader};
use super::{Error, Node};
use crate::fanout::dedup::Space;
use crate::fanout::ledger::{Entry, Failure, Final, Report, MAX_FAILURES};
use crate::shutdown::Shutdown;
use crate::state::ProviderKind;
use crate::Engine;

/// The ledger question's subject.
pub const LEDGER_SUBJECT: &str = "fanfare.ledger";
/// How long the asked engine waits for its peers' answers at most.
pub const REPLY_WAIT: Duration = Duration::from_secs(1);
/// Chunk entries held at once; the oldest ids leave first to make room.
pub const MAX_CHUNK_ENTRIES: usize = 100_000;

/// The chunk entries this engine runs, by id, for the retention window.
pub(super) struct Chunks {
    retention: Duration,
    inner: Mutex<Held>,
}

/// An id's chunk entries, by chunk number.
type ChunkEntries = Vec<(u32, Arc<Entry>)>;

#[derive(Default)]
struct Held {
    ids: [HashMap<Arc<str>, ChunkEntries>; 2],
    /// Ids in the order their first chunk came, with when.
    fifo: VecDeque<(Instant, Space, Arc<str>)>,
    entries: usize,
}

impl Chunks {
    /// Chunk entries kept `retention_s` seconds (the ledger's), and at least as long
    /// as a call can ring: a cancel withdraws invitations in its chunk's entry, whose
    /// end acknowledges the chunk.
    pub(super) fn new(retention_s: u64) -> Self {
        let keep = retention_s.max(crate::api::wire::MAX_CALL_TIMEOUT_S);
        Self {
            retention: Duration::from_secs(keep),
            inner: Mutex::default(),
        }
    }

    /// Keep chunk `n` of `id`'s entry.
    pub(super) fn insert(&self, space: Space, id: &Arc<str>, n: u32, entry: Arc<Entry>) {
        let now = Instant::now();
        let mut held = self.inner.lock();
        while let Some((born, s, old)) = held.fifo.front() {
            let over = held.entries >= MAX_CHUNK_ENTRIES;
            if !over && now.duration_since(*born) < self.retention {
                break;
            }
            let (s, old) = (*s, old.clone());
            held.fifo.pop_front();
            let gone = held.ids[s as usize].remove(&old).map_or(0, |v| v.len());
            held.entries -= gone;
        }
        let chunks = held.ids[space as usize].entry(id.clone()).or_default();
        let first = chunks.is_empty();
        chunks.push((n, entry));
        held.entries += 1;
        if first {
            held.fifo.push_back((now, space, id.clone()));
        }
    }

    /// The reports of `id`'s chunk entries, with their chunk numbers.
    pub(super) fn reports(&self, space: Space, id: &str) -> Vec<(u32, Report)> {
        let held = self.inner.lock();
        held.ids[space as usize]
            .get(id)
            .map(|v| v.iter().map(|(n, e)| (*n, e.report())).collect())
            .unwrap_or_default()
    }

    /// The entry of `id`'s chunk pulled last (a call's invitations: its one chunk).
    pub(super) fn latest(&self, space: Space, id: &str) -> Option<Arc<Entry>> {
        let held = self.inner.lock();
        held.ids[space as usize]
            .get(id)
            .and_then(|v| v.last().map(|(_, e)| e.clone()))
    }
}

impl Node {
    /// `id`'s delivery report across the engines (see the module doc); `None` when no
    /// engine answering has its accepting entry.
    pub async fn report(
        &self,
        engine: &Engine,
        space: Space,
        id: &str,
    ) -> Result<Option<Report>, Error> {
        let mut origin = engine.ledger.get(space, id).map(|e| e.report());
        let mut chunks: HashMap<u32, Report> = HashMap::new();
        for (n, r) in self.chunks.reports(space, id) {
            keep_most_settled(&mut chunks, n, r);
        }
        let mut body = Vec::with_capacity(id.len() + 8);
        body.push(space as u8);
        put_str(&mut body, id);
        self.ask(LEDGER_SUBJECT, &body, REPLY_WAIT, |reply| {
            let mut r = Reader { b: reply };
            match decode_answer(&mut r, id) {
                Some((o, cs)) => {
                    origin = origin.take().or(o);
                    for (n, c) in cs {
                        keep_most_settled(&mut chunks, n, c);
                    }
                }
                None => tracing::debug!("dropping a malformed ledger answer"),
            }
            false
        })
        .await?;
        Ok(origin.map(|o| merge(o, chunks.into_values())))
    }

    /// The entry a cancel of the call `call_id` withdraws invitations in: the one of
    /// the call's chunk this engine pulled.
    pub fn call_entry(&self, call_id: &str) -> Option<Arc<Entry>> {
        self.chunks.latest(Space::Call, call_id)
    }
}

/// Keep, for chunk `n`, the report that settled most.
fn keep_most_settled(chunks: &mut HashMap<u32, Report>, n: u32, r: Report) {
    match chunks.get(&n) {
        Some(old) if old.targets - old.pending >= r.targets - r.pending => {}
        _ => {
            chunks.insert(n, r);
        }
    }
}

/// The accepting entry `origin` with the outcomes of its chunks added: its own
/// `pending` is what it handed off, each chunk's settled targets leave it.
pub fn merge(mut origin: Report, chunks: impl IntoIterator<Item = Report>) -> Report {
    // The accepting entry settles nothing after acceptance: its `delivered` is 0.
    origin.counts[Final::Delivered as usize] = 0;
    for c in chunks {
        for (total, n) in origin.counts.iter_mut().zip(c.counts) {
            *total += n;
        }
        for f in c.failures {
            if origin.failures.len() >= MAX_FAILURES {
                break;
            }
            origin.failures.push(f);
        }
    }
    let others: u64 = origin
        .counts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != Final::Delivered as usize)
        .map(|(_, n)| n)
        .sum();
    let delivered = &mut origin.counts[Final::Delivered as usize];
    *delivered = (*delivered).min(origin.targets.saturating_sub(others));
    origin.pending = origin.targets.saturating_sub(others + *delivered);
    origin
}

/// Answer other engines' ledger questions until shutdown.
pub(super) async fn serve(node: Arc<Node>, engine: Arc<Engine>, shutdown: Shutdown) {
    let chunks = node.clone();
    scatter::serve(node, LEDGER_SUBJECT, shutdown, move |r| {
        let space = match r.u8().ok()? {
            0 => Space::Message,
            1 => Space::Call,
            _ => return None,
        };
        let id = r.str().ok()?;
        let mut out = Vec::with_capacity(256);
        let origin = engine.ledger.get(space, id).map(|e| e.report());
        let mut budget = MAX_FAILURES;
        match &origin {
            Some(o) => {
                out.push(1);
                put_report(&mut out, o, &mut budget);
            }
            None => out.push(0),
        }
        let reports = chunks.chunks.reports(space, id);
        out.extend_from_slice(&(reports.len() as u32).to_le_bytes());
        for (n, r) in &reports {
            out.extend_from_slice(&n.to_le_bytes());
            put_report(&mut out, r, &mut budget);
        }
        Some(out)
    })
    .await
}

/// A report's numbers and up to `budget` of its failures.
fn put_report(out: &mut Vec<u8>, r: &Report, budget: &mut usize) {
    for v in [r.accepted_at_ms, r.targets, r.pending]
        .into_iter()
        .chain(r.counts)
    {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let listed = r.failures.len().min(*budget);
    *budget -= listed;
    out.extend_from_slice(&(listed as u32).to_le_bytes());
    for f in &r.failures[..listed] {
        put_str(out, &f.push_id);
        put_str(out, f.provider.as_str());
        out.push(f.outcome as u8);
        out.extend_from_slice(&f.status.map_or(0, u32::from).to_le_bytes());
        put_str(out, f.reason.as_deref().unwrap_or(""));
    }
}

fn take_report(r: &mut Reader<'_>, id: &str) -> Option<Report> {
    let [accepted_at_ms, targets, pending] = [r.u64().ok()?, r.u64().ok()?, r.u64().ok()?];
    let mut counts = [0u64; Final::COUNT];
    for c in &mut counts {
        *c = r.u64().ok()?;
    }
    let listed = (r.u32().ok()? as usize).min(MAX_FAILURES);
    let mut failures = Vec::with_capacity(listed);
    for _ in 0..listed {
        let push_id = r.str().ok()?.into();
        let provider = ProviderKind::parse(r.str().ok()?)?;
        let outcome = *FINALS.get(r.u8().ok()? as usize)?;
        let status = u16::try_from(r.u32().ok()?).ok().filter(|s| *s != 0);
        let reason = Some(r.str().ok()?)
            .filter(|s| !s.is_empty())
            .map(Into::into);
        failures.push(Failure {
            push_id,
            provider,
            outcome,
            status,
            reason,
        });
    }
    Some(Report {
        id: id.into(),
        accepted_at_ms,
        targets,
        pending,
        counts,
        failures,
    })
}

/// The outcomes by their index.
const FINALS: [Final; Final::COUNT] = [
    Final::Delivered,
    Final::TokenDead,
    Final::Rejected,
    Final::Expired,
    Final::Withdrawn,
    Final::Unconfigured,
];

type Answer = (Option<Report>, Vec<(u32, Report)>);

fn decode_answer(r: &mut Reader<'_>, id: &str) -> Option<Answer> {
    let origin = match r.u8().ok()? {
        0 => None,
        _ => Some(take_report(r, id)?),
    };
    let n = r.u32().ok()? as usize;
    let mut chunks = Vec::with_capacity(n.min(1_024));
    for _ in 0..n {
        let k = r.u32().ok()?;
        chunks.push((k, take_report(r, id)?));
    }
    r.b.is_empty().then_some((origin, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(targets: u64, pending: u64, counts: [u64; Final::COUNT]) -> Report {
        Report {
            id: "m".into(),
            accepted_at_ms: 7,
            targets,
            pending,
            counts,
            failures: Vec::new(),
        }
    }

    #[test]
    fn chunk_outcomes_leave_the_accepting_entrys_pending_and_add_up_to_its_targets() {
        // 10 targets: 2 unconfigured at acceptance, 8 handed off in chunks of 4 and 4.
        let origin = report(10, 8, [0, 0, 0, 0, 0, 2]);
        let a = report(4, 0, [3, 1, 0, 0, 0, 0]);
        let b = report(4, 2, [2, 0, 0, 0, 0, 0]);
        let m = merge(origin, [a, b]);
        assert_eq!(m.counts, [5, 1, 0, 0, 0, 2]);
        assert_eq!(m.pending, 2);
        assert_eq!(m.counts.iter().sum::<u64>() + m.pending, m.targets);
    }

    #[test]
    fn a_chunk_run_twice_counts_once() {
        let mut chunks = HashMap::new();
        keep_most_settled(&mut chunks, 0, report(4, 4, [0; Final::COUNT]));
        keep_most_settled(&mut chunks, 0, report(4, 0, [4, 0, 0, 0, 0, 0]));
        keep_most_settled(&mut chunks, 0, report(4, 3, [1, 0, 0, 0, 0, 0]));
        let m = merge(report(4, 4, [0; Final::COUNT]), chunks.into_values());
        assert_eq!((m.counts[0], m.pending), (4, 0));
    }

    #[test]
    fn an_answer_decodes_to_what_was_put() {
        let mut r = report(3, 1, [1, 1, 0, 0, 0, 0]);
        r.failures.push(Failure {
            push_id: "p1".into(),
            provider: ProviderKind::Fcm,
            outcome: Final::TokenDead,
            status: Some(404),
            reason: Some("UNREGISTERED".into()),
        });
        let mut out = vec![1];
        let mut budget = MAX_FAILURES;
        put_report(&mut out, &r, &mut budget);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&9u32.to_le_bytes());
        put_report(&mut out, &r, &mut budget);
        let (origin, chunks) = decode_answer(&mut Reader { b: &out }, "m").expect("decodes");
        assert_eq!(origin.as_ref(), Some(&r));
        assert_eq!(chunks, vec![(9, r)]);
        for cut in [1, 10, out.len() - 1] {
            assert!(decode_answer(&mut Reader { b: &out[..cut] }, "m").is_none());
        }
    }
}
