//! The message and call use cases: from a validated request to queued device pushes.
//!
//! The API layer parses and validates a request into a [`Message`], a [`Call`] or a
//! [`Cancel`] and answers with what [`accept_message`], [`accept_call`] or
//! [`cancel_call`] return; everything between (planning, rendering for the vendors
//! the targets use, the idempotency claim and its release when the request is
//! refused, admission to the lanes) happens here, so a second front end (a queue
//! consumer, a cluster peer) gets the same semantics by calling the same functions.
//!
//! An accepted message or call opens its delivery-ledger entry ([`super::ledger`]),
//! made findable once admission took it; a duplicate or refused one opens none.
//!
//! The order is plan → render → claim → submit, so a refused request changes nothing:
//! only vendors that a target of this request uses limit its size (API.md 1.1), a
//! push over such a limit is refused before its id is claimed, and a claim is
//! released when admission refuses the request.
//!
//! Expiry: `push.ttl_s` replaces `messages.ttl_s` as a message's vendor TTL and retry
//! horizon; a call's pushes live min(`push.ttl_s`, `timeout_s`). `ttl_s = 0` is "now or
//! never": the push is dropped if it has not left within a second or two and is not
//! retried after an attempt.

use std::sync::Arc;

use crate::clock::unix_now_s;
use crate::cluster::work::{Handoff, WorkKind};
use crate::config::Resource;
use crate::fanout::dispatch::calls::{self, Live};
use crate::fanout::dispatch::Overloaded;
use crate::fanout::plan::{self, Lane, Summary, Targets};
use crate::providers::{Content, Kind, Push, TooLarge};
use crate::state::ids::Pin;
use crate::state::notify;
use crate::state::{ProviderKind, UserIdx};
use crate::telemetry::inc;
use crate::Engine;

use super::dedup::Space;
use super::ledger::Entry;

/// How long a `ttl_s = 0` push may wait in its lane for its one attempt: at least one
/// full second (expiry is checked in whole UNIX seconds).
const NOW_OR_NEVER_S: u64 = 2;
/// The longest `collapse_id` every vendor takes (APNs `apns-collapse-id`).
const MAX_COLLAPSE_ID: usize = 64;

/// Why a message, call or cancel was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A group message to a group that does not exist.
    #[error("group {0:?} does not exist")]
    NoGroup(Arc<str>),
    /// A cancel of a call that is unknown, already cancelled or timed out.
    #[error("call {0:?} is unknown, already cancelled or timed out")]
    NoCall(Arc<str>),
    /// A rendered body is over the limit of a vendor a target uses.
    #[error("push.payload: {0}")]
    TooLarge(TooLarge),
    /// `push.resources_id` names no `[resources.<id>]` rule set.
    #[error("push.resources_id {0:?} is not configured (no [resources.{0}] rule set)")]
    UnknownResource(String),
    /// A lane the message needs is full (all-or-nothing admission), or the table of
    /// live calls is.
    #[error("the {lane} queue is full; retry later")]
    Overloaded {
        lane: &'static str,
        retry_after_s: u64,
    },
}

/// Who a message goes to.
#[derive(Debug, Clone)]
pub enum Conversation {
    /// The receiving user.
    Peer(Arc<str>),
    /// The group; the sender is left out of the fan-out.
    Group(Arc<str>),
}

/// A validated `POST /v1/messages`.
#[derive(Debug)]
pub struct Message {
    pub message_id: Arc<str>,
    pub sender_id: Arc<str>,
    pub conversation: Conversation,
    /// Without content nothing is pushed (recipients are still counted).
    pub content: Option<Content>,
}

/// A validated `POST /v1/calls`.
#[derive(Debug)]
pub struct Call {
    pub call_id: Arc<str>,
    pub inviter_id: Arc<str>,
    /// Checked ids, the inviter left out (duplicates are removed here).
    pub invitees: Vec<Arc<str>>,
    pub timeout_s: u64,
    pub content: Content,
}

/// A validated `POST /v1/calls/{call_id}/cancel`.
#[derive(Debug)]
pub struct Cancel {
    pub call_id: Arc<str>,
    /// The request's optional `push`: the base of the cancellation push.
    pub content: Option<Content>,
}

/// What an accepted message or call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Recipients (the sender left out), how many were offline, how many muted.
    pub summary: Summary,
    /// Device pushes queued.
    pub targets: usize,
    /// Device targets whose vendor has no credentials (not queued).
    pub unconfigured: usize,
}

/// The answer to a message or call: accepted, or a repeat of an id within the dedup
/// window (nothing pushed again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    Duplicate,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    /// Invitations dropped before they were sent.
    pub withdrawn: usize,
    /// Cancellation pushes queued, one per device that was sent the invitation.
    pub cancel_pushes: usize,
}

/// Accept one message: plan and render it, claim its id, then queue the pushes. With
/// `handoff` (cluster mode) the targets are not queued here but left in it for the
/// caller to publish as work chunks ([`crate::cluster::Node::hand_off`]), which also
/// makes the ledger entry findable.
pub fn accept_message(
    engine: &Engine,
    m: Message,
    handoff: Option<&mut Option<Handoff>>,
) -> Result<Outcome, Error> {
    // Held until planning is done: member and recipient indexes keep their owners.
    let users = engine.state.users.pin();
    let (members, peer) = match &m.conversation {
        Conversation::Group(g) => {
            let members = engine
                .state
                .groups
                .members(g)
                .ok_or_else(|| Error::NoGroup(g.clone()))?;
            (Some(members), None)
        }
        Conversation::Peer(u) => (None, Some(users.get(u))),
    };
    let sender = users.get(&m.sender_id);
    let recipients = members
        .iter()
        .flat_map(|m| m.iter().copied())
        .filter(|u| Some(*u) != sender)
        .map(Some)
        .chain(peer);
    // The conversation as the recipients see it, for do-not-disturb.
    let (kind, id) = match &m.conversation {
        Conversation::Group(g) => (notify::Kind::Group, g),
        Conversation::Peer(_) => (notify::Kind::Peer, &m.sender_id),
    };
    let seen_as = notify::Conversation { kind, id };
    let Some(content) = &m.content else {
        let Some(claim) = Claim::take(engine, Space::Message, &m.message_id) else {
            return Ok(Outcome::Duplicate);
        };
        let opened = engine
            .ledger
            .open(Space::Message, &m.message_id, &Targets::default());
        let queued = Ok(0);
        keep(engine, &queued, opened);
        return claim.settle(queued, count(engine, recipients), 0, true);
    };
    let rule = resource(engine, content)?;
    let options = plan::Options {
        is_call: false,
        badges: content.badge_increment.is_some(),
        silent: content.silent,
    };
    // The pin stays held until the badge increments are done: they are made under it.
    let (summary, targets) = plan_for(engine, &users, recipients, Some(seen_as), options);
    let kind = Kind::Message {
        message_id: m.message_id.clone(),
    };
    let ttl_s = content.ttl_s.unwrap_or(engine.config.messages.ttl_s);
    let push = render(kind, content, &rule, ttl_s, &targets)?;
    let Some(claim) = Claim::take(engine, Space::Message, &m.message_id) else {
        return Ok(Outcome::Duplicate);
    };
    let rendered = Rendered {
        push,
        targets,
        summary,
        content,
        ttl_s,
        users,
    };
    // The badge totals of a handed-off message are counted through the cluster
    // (`Node::add_badges`).
    let handoff = handoff.map(|slot| (slot, WorkKind::Message));
    claim.queue(rendered, handoff, |push, targets, entry| {
        engine.dispatcher.submit_then(push, targets, entry, |t| {
            count_badges(engine, t, content.badge_increment)
        })
    })
}

/// Accept one call invitation: ring the offline invitees until `timeout_s`, and track
/// the call until then for [`cancel_call`]. With `handoff`, as [`accept_message`] (the
/// engine that pulls the call's one chunk tracks it for a cancel).
pub fn accept_call(
    engine: &Engine,
    c: Call,
    handoff: Option<&mut Option<Handoff>>,
) -> Result<Outcome, Error> {
    let mut invitees = c.invitees;
    invitees.retain(|u| *u != c.inviter_id);
    invitees.sort_unstable();
    invitees.dedup();
    let rule = resource(engine, &c.content)?;
    let pin = engine.state.users.pin();
    let users = invitees.iter().map(|u| pin.get(u));
    let options = plan::Options {
        is_call: true,
        badges: false,
        silent: c.content.silent,
    };
    let (summary, targets) = plan_for(engine, &pin, users, None, options);
    let mut content = c.content;
    // The cancellation replaces the ringing notification where the vendor allows.
    content
        .collapse_id
        .get_or_insert_with(|| collapse_key(&c.call_id));
    let ttl_s = content.ttl_s.map_or(c.timeout_s, |t| t.min(c.timeout_s));
    let kind = Kind::Call {
        call_id: c.call_id.clone(),
        inviter_id: c.inviter_id.clone(),
        timeout_s: c.timeout_s,
    };
    let push = render(kind, &content, &rule, ttl_s, &targets)?;
    let Some(claim) = Claim::take(engine, Space::Call, &c.call_id) else {
        return Ok(Outcome::Duplicate);
    };
    let expires_at = unix_now_s() + c.timeout_s;
    let rendered = Rendered {
        push,
        targets,
        summary,
        content: &content,
        ttl_s,
        users: pin,
    };
    let handoff = handoff.map(|slot| {
        let kind = WorkKind::Call {
            inviter_id: c.inviter_id.clone(),
            timeout_s: c.timeout_s,
            ends_at: expires_at,
        };
        (slot, kind)
    });
    claim.queue(rendered, handoff, |push, targets, entry| {
        let (call_id, inviter_id) = (c.call_id.clone(), c.inviter_id.clone());
        engine
            .dispatcher
            .ring(push, targets, call_id, inviter_id, expires_at, entry)
    })
}

/// Make an admitted request's ledger entry findable (a shed one leaves none).
fn keep(engine: &Engine, queued: &Result<usize, Overloaded>, entry: Option<Arc<Entry>>) {
    if let (Ok(_), Some(entry)) = (queued, entry) {
        engine.ledger.insert(entry);
    }
}

/// A planned and rendered message or call: what [`Claim::queue`] queues.
struct Rendered<'a, 'p> {
    push: Push,
    targets: Targets,
    /// Recipients, offline and muted ones.
    summary: Summary,
    content: &'a Content,
    /// The push's vendor TTL.
    ttl_s: u64,
    /// The pin planning ran under, held until the targets are queued.
    users: Pin<'p>,
}

/// A message or call id claimed in the dedup window. It is given back when the
/// request's pushes cannot be queued, so the caller's retry is not a duplicate.
struct Claim<'e> {
    engine: &'e Engine,
    space: Space,
    id: &'e Arc<str>,
}

impl<'e> Claim<'e> {
    /// The claim on `id`; `None` when it was seen within the window (a repeated
    /// message is counted as a duplicate).
    fn take(engine: &'e Engine, space: Space, id: &'e Arc<str>) -> Option<Self> {
        let claimed = engine.dedup.claim(space, id);
        if !claimed && space == Space::Message {
            inc(&engine.stats.messages_duplicate);
        }
        claimed.then_some(Self { engine, space, id })
    }

    /// Open the request's ledger entry and queue its targets: here through `submit`,
    /// or, with a `handoff` slot (cluster mode), left there as a work chunk of the
    /// given kind for the caller to publish. Then settle.
    fn queue(
        self,
        r: Rendered<'_, '_>,
        handoff: Option<(&mut Option<Handoff>, WorkKind)>,
        submit: impl FnOnce(Arc<Push>, Targets, Option<Arc<Entry>>) -> Result<usize, Overloaded>,
    ) -> Result<Outcome, Error> {
        let unconfigured = r.targets.unconfigured.len();
        let mut entry = self.engine.ledger.open(self.space, self.id, &r.targets);
        // A hand-off is counted by its caller once JetStream holds it.
        let counted = handoff.is_none();
        let queued = match handoff {
            None => submit(Arc::new(r.push), r.targets, entry.clone()),
            Some((slot, kind)) => {
                let expiry = (r.ttl_s, r.push.expires_at);
                let (id, content) = (self.id.clone(), r.content);
                let h = Handoff::new(
                    self.space,
                    id,
                    kind,
                    content,
                    expiry,
                    r.targets,
                    entry.take(),
                    &r.users,
                );
                Ok(slot.insert(h).queued())
            }
        };
        drop(r.users);
        keep(self.engine, &queued, entry);
        self.settle(queued, r.summary, unconfigured, counted)
    }

    /// The request accepted with its `queued` pushes (counted as accepted when
    /// `counted`), or, when a queue was full, shed with the claim given back.
    fn settle(
        self,
        queued: Result<usize, Overloaded>,
        summary: Summary,
        unconfigured: usize,
        counted: bool,
    ) -> Result<Outcome, Error> {
        let targets = queued.map_err(|o| {
            self.engine.dedup.release(self.space, self.id);
            shed(self.engine, o)
        })?;
        if counted {
            inc(match self.space {
                Space::Message => &self.engine.stats.messages_accepted,
                Space::Call => &self.engine.stats.calls_accepted,
            });
        }
        Ok(Outcome::Accepted(Accepted {
            summary,
            targets,
            unconfigured,
        }))
    }
}

/// Cancel a live call: drop its invitations not yet sent and send one silent
/// cancellation (`{"call_id": ..., "type": "call_cancel"}` as the payload,
/// `collapse_id` = the call id, TTL = the call's remaining time) to each device that
/// was sent one.
pub fn cancel_call(engine: &Engine, c: Cancel) -> Result<Cancelled, Error> {
    let calls = &engine.dispatcher.calls;
    let now = unix_now_s();
    let live = calls
        .get(&c.call_id, now)
        .ok_or_else(|| Error::NoCall(c.call_id.clone()))?;
    let content = c.content.unwrap_or_default();
    let rule = resource(engine, &content)?;
    // Rendered before anything changes, so a refusal leaves the call as it was.
    let (push, voip) = render_cancel(&live, content, &rule, now)?;
    if !calls.remove(&live) {
        // Cancelled (or swept) by someone else meanwhile.
        return Err(Error::NoCall(c.call_id));
    }
    // The call's ledger entry (an id is not reused while its call is live); in
    // cluster mode the entry of the call's work chunk, which its jobs end in.
    let entry = match engine.cluster() {
        Some(node) => node.call_entry(&c.call_id),
        None => engine.ledger.get(Space::Call, &c.call_id),
    };
    let (withdrawn, cancel_pushes) = engine
        .dispatcher
        .cancel(&live, push, voip, entry.as_deref());
    Ok(Cancelled {
        withdrawn,
        cancel_pushes,
    })
}

/// The cancellation pushes for the devices `live` tracks: one for every vendor they
/// use, and a VoIP one for PushKit devices (Apple requires every VoIP push to report
/// a call: the app reports it and ends it at once).
fn render_cancel(
    live: &Live,
    mut content: Content,
    rule: &Resource,
    now: u64,
) -> Result<(Arc<Push>, Option<Arc<Push>>), Error> {
    let remaining = live.expires_at.saturating_sub(now).max(1);
    let ttl_s = content.ttl_s.map_or(remaining, |t| t.min(remaining));
    content.payload = Some(cancel_payload(&live.call_id, content.payload.as_deref()));
    content.silent = true;
    content.collapse_id = Some(collapse_key(&live.call_id));
    content.ttl_s = Some(ttl_s);
    // A cancel adds nothing to anyone's unread count.
    content.badge_increment = None;
    let used = calls::lanes_of(live.devices());
    let kind = Kind::Message {
        message_id: live.call_id.clone(),
    };
    let push = render_lanes(kind, &content, rule, ttl_s, |l| used[l as usize])?;
    let has_voip = live
        .devices()
        .iter()
        .any(|d| d.provider() == ProviderKind::ApnsVoip);
    let voip = if has_voip {
        let kind = Kind::Call {
            call_id: live.call_id.clone(),
            inviter_id: live.inviter_id.clone(),
            timeout_s: remaining,
        };
        Some(Arc::new(render_lanes(kind, &content, rule, ttl_s, |l| {
            l == Lane::Apns
        })?))
    } else {
        None
    };
    Ok((Arc::new(push), voip))
}

/// `{"call_id": ..., "type": "call_cancel"}`, with the caller's own payload (a string)
/// under `payload` when the cancel request gave one.
fn cancel_payload(call_id: &str, given: Option<&str>) -> String {
    let mut data = serde_json::Map::new();
    data.insert("call_id".into(), call_id.into());
    data.insert("type".into(), "call_cancel".into());
    if let Some(p) = given {
        data.insert("payload".into(), p.into());
    }
    serde_json::Value::Object(data).to_string()
}

/// The call id as a `collapse_id`: itself when it fits 64 bytes, else its first
/// bytes and a hash of the whole (call ids may be 128 bytes).
pub(crate) fn collapse_key(call_id: &str) -> String {
    if call_id.len() <= MAX_COLLAPSE_ID {
        return call_id.to_owned();
    }
    // FNV-1a: stable across builds, so an invitation and its cancel agree.
    let hash = call_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut cut = MAX_COLLAPSE_ID - 17;
    while !call_id.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash:016x}", &call_id[..cut])
}

/// Plan a message or call to `recipients` over the configured vendors.
fn plan_for(
    engine: &Engine,
    users: &Pin<'_>,
    recipients: impl IntoIterator<Item = Option<UserIdx>>,
    conversation: Option<notify::Conversation<'_>>,
    options: plan::Options,
) -> (Summary, Targets) {
    plan::plan(
        &engine.state,
        users,
        recipients,
        conversation,
        options,
        |p| engine.providers().is_configured(p),
    )
}

/// The push's `[resources.<id>]` rule set (an empty one without `resources_id`), as
/// configured now: a reload does not change it under a push being rendered.
pub fn resource(engine: &Engine, content: &Content) -> Result<Arc<Resource>, Error> {
    static NONE: std::sync::OnceLock<Arc<Resource>> = std::sync::OnceLock::new();
    match &content.resources_id {
        None => Ok(NONE.get_or_init(Arc::default).clone()),
        Some(id) => engine
            .providers()
            .resources
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownResource(id.clone())),
    }
}

/// The badge increments of an admitted message: each pushed recipient's counter goes
/// up by `n` once, and each of their devices gets the new total.
fn count_badges(engine: &Engine, targets: &mut Targets, n: Option<u32>) {
    if let Some(n) = n {
        let badges = &engine.state.badges;
        targets.count_badges(|user, n| badges.add(user, n), n);
    }
}

/// Render `content` for the vendors `targets` use: only they limit the push's size,
/// and rendering all eight for every peer message was a fifth of the engine's CPU at
/// 10k messages/s.
fn render(
    kind: Kind,
    content: &Content,
    rule: &Resource,
    ttl_s: u64,
    targets: &Targets,
) -> Result<Push, Error> {
    render_lanes(kind, content, rule, ttl_s, |l| {
        !targets.lanes[l as usize].is_empty()
    })
}

/// Render `content` for the lanes `used` picks; a `ttl_s` of 0 gets the short
/// "now or never" horizon.
fn render_lanes(
    kind: Kind,
    content: &Content,
    rule: &Resource,
    ttl_s: u64,
    used: impl Fn(Lane) -> bool,
) -> Result<Push, Error> {
    let now = unix_now_s();
    let mut push = Push::render_for(kind, content, rule, ttl_s, now, |p| used(p.lane()))
        .map_err(Error::TooLarge)?;
    if ttl_s == 0 {
        push.expires_at = now + NOW_OR_NEVER_S;
    }
    Ok(push)
}

/// A lane or the call table was full: count the shed request.
fn shed(engine: &Engine, o: Overloaded) -> Error {
    inc(&engine.stats.requests_shed);
    Error::Overloaded {
        lane: o.queue,
        retry_after_s: o.retry_after_s,
    }
}

/// The recipients and offline recipients of a message that pushes nothing: the same
/// count [`plan::plan`] makes, without collecting devices.
fn count(engine: &Engine, recipients: impl IntoIterator<Item = Option<UserIdx>>) -> Summary {
    let presence = &engine.state.presence;
    let mut summary = Summary::default();
    for user in recipients {
        summary.recipients += 1;
        if !user.is_some_and(|u| presence.is_online(u)) {
            summary.offline += 1;
        }
    }
    summary
}

#[cfg(test)]
mod tests;
