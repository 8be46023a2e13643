//! The message and call use cases: from a validated request to queued device pushes.
//!
//! The API layer parses and validates a request into a [`Message`] or a [`Call`] and
//! answers with what [`accept_message`] or [`accept_call`] return; everything between
//! (the `message_id` claim and its release when the request is refused, rendering for
//! the configured vendors, planning, admission to the lanes) happens here, so a second
//! front end (a queue consumer, a cluster peer) gets the same semantics by calling the
//! same two functions.
//!
//! A refused request changes nothing: rendering happens before the id is claimed, and
//! a claim is released when planning or admission refuses the message.

use std::sync::Arc;

use crate::clock::unix_now_s;
use crate::fanout::plan::{self, Summary};
use crate::providers::{Content, Kind, Push, TooLarge};
use crate::state::ids::Pin;
use crate::state::notify;
use crate::state::UserIdx;
use crate::telemetry::inc;
use crate::Engine;

/// Why a message or call was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A group message to a group that does not exist.
    #[error("group {0:?} does not exist")]
    NoGroup(Arc<str>),
    /// A rendered body is over a configured vendor's limit.
    #[error("push.payload: {0}")]
    TooLarge(TooLarge),
    /// A lane the message needs is full (all-or-nothing admission).
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

/// What an accepted message or call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Recipients (the sender left out) and how many of them were offline.
    pub summary: Summary,
    /// Device pushes queued.
    pub targets: usize,
}

/// The answer to a message: accepted, or a repeat of an id within the dedup window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    Accepted(Accepted),
    Duplicate,
}

/// Accept one message: claim its id, then push it to the offline recipients.
pub fn accept_message(engine: &Engine, m: Message) -> Result<MessageOutcome, Error> {
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
    // Render before claiming the id so a too-large push leaves no trace.
    let push = match &m.content {
        Some(c) => Some(render(
            engine,
            Kind::Message {
                message_id: m.message_id.clone(),
            },
            c,
            engine.config.messages.ttl_s,
        )?),
        None => None,
    };
    if !engine.dedup.claim(&m.message_id) {
        inc(&engine.stats.messages_duplicate);
        return Ok(MessageOutcome::Duplicate);
    }
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
    let accepted = match push {
        Some(push) => fan_out(engine, &users, push, recipients, Some(seen_as)),
        None => Ok(Accepted {
            summary: count(engine, recipients),
            targets: 0,
        }),
    };
    let accepted = accepted.inspect_err(|_| engine.dedup.release(&m.message_id))?;
    inc(&engine.stats.messages_accepted);
    Ok(MessageOutcome::Accepted(accepted))
}

/// Accept one call invitation: ring the offline invitees until `timeout_s`.
pub fn accept_call(engine: &Engine, c: Call) -> Result<Accepted, Error> {
    let mut invitees = c.invitees;
    invitees.retain(|u| *u != c.inviter_id);
    invitees.sort_unstable();
    invitees.dedup();
    let pin = engine.state.users.pin();
    let users: Vec<Option<UserIdx>> = invitees.iter().map(|u| pin.get(u)).collect();
    let kind = Kind::Call {
        call_id: c.call_id,
        inviter_id: c.inviter_id,
        timeout_s: c.timeout_s,
    };
    let push = render(engine, kind, &c.content, c.timeout_s)?;
    let accepted = fan_out(engine, &pin, push, users, None)?;
    inc(&engine.stats.calls_accepted);
    Ok(accepted)
}

/// Render `content` for every configured vendor (a body over a vendor's limit is
/// refused). Vendors the engine has no credentials for are skipped: nothing is ever
/// sent to them, and rendering all eight for every peer message was a fifth of the
/// engine's CPU at 10k messages/s.
fn render(engine: &Engine, kind: Kind, content: &Content, ttl_s: u64) -> Result<Push, Error> {
    Push::render_for(kind, content, ttl_s, unix_now_s(), |p| {
        engine.providers.is_configured(p)
    })
    .map_err(Error::TooLarge)
}

/// Plan and queue a rendered push for `recipients`.
fn fan_out(
    engine: &Engine,
    users: &Pin<'_>,
    push: Push,
    recipients: impl IntoIterator<Item = Option<UserIdx>>,
    conversation: Option<notify::Conversation<'_>>,
) -> Result<Accepted, Error> {
    let is_call = push.is_call();
    let configured = |p| engine.providers.is_configured(p);
    let (summary, targets) = plan::plan(
        &engine.state,
        users,
        recipients,
        conversation,
        is_call,
        configured,
    );
    let targets = engine
        .dispatcher
        .submit(Arc::new(push), targets)
        .map_err(|o| {
            inc(&engine.stats.requests_shed);
            Error::Overloaded {
                lane: o.lane.name(),
                retry_after_s: o.retry_after_s,
            }
        })?;
    Ok(Accepted { summary, targets })
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
