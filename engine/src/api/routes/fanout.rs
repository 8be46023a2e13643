//! The handlers of the fan-out endpoints: messages, calls and call cancel. They parse
//! and validate the request, call the use case ([`crate::fanout::usecase`]) and answer
//! with its outcome; the use case does everything in between.

use std::sync::Arc;

use http::StatusCode;

use super::{answer, ok, Resp};
use crate::api::error::ApiError;
use crate::api::wire::{self, parse};
use crate::cluster::work::Handoff;
use crate::fanout::usecase::{self, Conversation, Outcome};
use crate::Engine;

pub(super) fn message(engine: &Engine, body: &[u8]) -> Result<Resp, ApiError> {
    message_into(engine, body, None)
}

/// [`message`], leaving an accepted message's targets in `handoff` (cluster mode).
pub(super) fn message_into(
    engine: &Engine,
    body: &[u8],
    handoff: Option<&mut Option<Handoff>>,
) -> Result<Resp, ApiError> {
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
    let m = usecase::Message {
        message_id,
        sender_id,
        conversation,
        content,
    };
    let message_id = m.message_id.to_string();
    match usecase::accept_message_into(engine, m, handoff).map_err(refused)? {
        Outcome::Duplicate => ok(wire::MessageAnswer::Duplicate(wire::MessageDuplicate {
            duplicate: true,
            message_id,
        })),
        Outcome::Accepted(a) => accepted(wire::MessageAnswer::Accepted(wire::MessageAccepted {
            message_id,
            muted: a.summary.muted,
            offline_recipients: a.summary.offline,
            recipients: a.summary.recipients,
            targets: a.targets,
            unconfigured: a.unconfigured,
        })),
    }
}

pub(super) fn call(engine: &Engine, body: &[u8]) -> Result<Resp, ApiError> {
    call_into(engine, body, None)
}

/// [`call`], leaving an accepted call's targets in `handoff` (cluster mode).
pub(super) fn call_into(
    engine: &Engine,
    body: &[u8],
    handoff: Option<&mut Option<Handoff>>,
) -> Result<Resp, ApiError> {
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
    let c = usecase::Call {
        call_id,
        inviter_id,
        invitees,
        timeout_s: req.timeout_s,
        content,
    };
    let call_id = c.call_id.to_string();
    match usecase::accept_call_into(engine, c, handoff).map_err(refused)? {
        Outcome::Duplicate => ok(wire::CallAnswer::Duplicate(wire::CallDuplicate {
            call_id,
            duplicate: true,
        })),
        Outcome::Accepted(a) => accepted(wire::CallAnswer::Accepted(wire::CallAccepted {
            call_id,
            muted: a.summary.muted,
            offline_invitees: a.summary.offline,
            targets: a.targets,
            unconfigured: a.unconfigured,
        })),
    }
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
