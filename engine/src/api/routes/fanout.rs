//! The handlers of the fan-out endpoints: messages, calls and call cancel. They parse
//! and validate the request, call the use case ([`crate::fanout::usecase`]) and answer
//! with its outcome; the use case does everything in between.

use std::sync::Arc;

use http::StatusCode;

use super::{answer, ok, Resp};
use crate::api::error::ApiError;
use crate::api::wire::{self, parse};
use crate::cluster::work::Handoff;
use crate::fanout::dedup::Space;
use crate::fanout::usecase::{self, Conversation, Outcome};
use crate::Engine;

/// `POST /v1/messages` (`space` Message) or `POST /v1/calls` (Call): parse and check
/// the request, run its use case and answer with its outcome; with `handoff` (cluster
/// mode) an accepted request's targets are left in it.
pub(super) fn accept(
    engine: &Engine,
    space: Space,
    body: &[u8],
    handoff: Option<&mut Option<Handoff>>,
) -> Result<Resp, ApiError> {
    let (id, outcome) = match space {
        Space::Message => {
            let m = message_request(body)?;
            (
                m.message_id.clone(),
                usecase::accept_message(engine, m, handoff),
            )
        }
        Space::Call => {
            let c = call_request(body)?;
            (c.call_id.clone(), usecase::accept_call(engine, c, handoff))
        }
    };
    let id = id.to_string();
    match (space, outcome.map_err(refused)?) {
        (_, Outcome::Duplicate) => duplicate(space, id),
        (Space::Message, Outcome::Accepted(a)) => {
            accepted(wire::MessageAnswer::Accepted(wire::MessageAccepted {
                message_id: id,
                muted: a.summary.muted,
                offline_recipients: a.summary.offline,
                recipients: a.summary.recipients,
                targets: a.targets,
                unconfigured: a.unconfigured,
            }))
        }
        (Space::Call, Outcome::Accepted(a)) => {
            accepted(wire::CallAnswer::Accepted(wire::CallAccepted {
                call_id: id,
                muted: a.summary.muted,
                offline_invitees: a.summary.offline,
                targets: a.targets,
                unconfigured: a.unconfigured,
            }))
        }
    }
}

/// The answer to a message or call id seen within the dedup window: nothing is
/// pushed again.
pub(super) fn duplicate(space: Space, id: String) -> Result<Resp, ApiError> {
    match space {
        Space::Message => ok(wire::MessageAnswer::Duplicate(wire::MessageDuplicate {
            duplicate: true,
            message_id: id,
        })),
        Space::Call => ok(wire::CallAnswer::Duplicate(wire::CallDuplicate {
            call_id: id,
            duplicate: true,
        })),
    }
}

/// A `POST /v1/messages` body, parsed and checked.
fn message_request(body: &[u8]) -> Result<usecase::Message, ApiError> {
    let req: wire::MessageRequest = parse(body)?;
    let message_id = wire::id("message_id", &req.message_id)?;
    let sender_id = wire::id("sender_id", &req.sender_id)?;
    let conversation_id = wire::id("conversation_id", &req.conversation_id)?;
    let conversation = match req.conversation_type.as_str() {
        "peer" => Conversation::Peer(conversation_id),
        "group" => Conversation::Group(conversation_id),
        other => {
            return Err(ApiError::invalid(format!(
                "conversation_type {other:?} is not peer or group"
            )))
        }
    };
    let content = req.push.map(|p| p.into_content()).transpose()?;
    Ok(usecase::Message {
        message_id,
        sender_id,
        conversation,
        content,
    })
}

/// A `POST /v1/calls` body, parsed and checked.
fn call_request(body: &[u8]) -> Result<usecase::Call, ApiError> {
    let req: wire::CallRequest = parse(body)?;
    let call_id = wire::id("call_id", &req.call_id)?;
    let inviter_id = wire::id("inviter_id", &req.inviter_id)?;
    if req.invitees.is_empty() || req.invitees.len() > wire::MAX_INVITEES {
        return Err(ApiError::invalid(format!(
            "invitees: 1 to {} user ids",
            wire::MAX_INVITEES
        )));
    }
    if !(1..=wire::MAX_CALL_TIMEOUT_S).contains(&req.timeout_s) {
        return Err(ApiError::invalid(format!(
            "timeout_s must be 1 to {} seconds",
            wire::MAX_CALL_TIMEOUT_S
        )));
    }
    let invitees = (req.invitees.iter().enumerate())
        .map(|(i, u)| wire::id(&format!("invitees[{i}]"), u))
        .collect::<Result<Vec<_>, _>>()?;
    let content = req
        .push
        .map(|p| p.into_content())
        .transpose()?
        .unwrap_or_default();
    Ok(usecase::Call {
        call_id,
        inviter_id,
        invitees,
        timeout_s: req.timeout_s,
        content,
    })
}

/// `202 Accepted` with `body`: the request's pushes are queued, not yet sent.
fn accepted(body: impl serde::Serialize) -> Result<Resp, ApiError> {
    answer(StatusCode::ACCEPTED, &body)
}

/// `POST /v1/calls/{call_id}/cancel`; the body (`{"push": {...}}`) is optional.
pub(super) fn cancel(engine: &Engine, call_id: Arc<str>, body: &[u8]) -> Result<Resp, ApiError> {
    let c = cancel_request(call_id.clone(), body)?;
    let done = usecase::cancel_call(engine, c).map_err(refused)?;
    cancelled(&call_id, done)
}

/// A cancel request's body, parsed and checked.
pub(super) fn cancel_request(call_id: Arc<str>, body: &[u8]) -> Result<usecase::Cancel, ApiError> {
    let req: wire::CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        wire::CancelRequest::default()
    } else {
        parse(body)?
    };
    let content = req.push.map(|p| p.into_content()).transpose()?;
    Ok(usecase::Cancel { call_id, content })
}

/// The answer to a done cancel.
pub(super) fn cancelled(call_id: &str, done: usecase::Cancelled) -> Result<Resp, ApiError> {
    ok(wire::CallCancelled {
        call_id: call_id.to_string(),
        cancel_pushes: done.cancel_pushes,
        withdrawn: done.withdrawn,
    })
}

/// The API answer to a refused message, call or debug push.
pub(super) fn refused(e: usecase::Error) -> ApiError {
    match e {
        usecase::Error::NoGroup(_) | usecase::Error::NoCall(_) => {
            ApiError::not_found(e.to_string())
        }
        usecase::Error::TooLarge(_) => ApiError::too_large(e.to_string()),
        usecase::Error::UnknownResource(_) => ApiError::invalid(e.to_string()),
        usecase::Error::Overloaded { retry_after_s, .. } => {
            ApiError::overloaded(e.to_string(), retry_after_s)
        }
    }
}
