//! `GET /v1/messages/{message_id}` and `GET /v1/calls/{call_id}`: a message's or
//! call's delivery ledger entry ([`crate::fanout::ledger`]), `404` when unknown or
//! past `messages.ledger_retention_s`.

use super::{ok, Resp};
use crate::api::error::ApiError;
use crate::api::wire::{self, DeliveryReport, FailedTarget, Outcomes};
use crate::fanout::dedup::Space;
use crate::fanout::ledger::{Final, Report};
use crate::Engine;

/// The entry on this engine, or in cluster mode merged from every engine's part
/// ([`crate::cluster::Node::report`]).
pub(super) async fn report(engine: &Engine, space: Space, id: &str) -> Result<Resp, ApiError> {
    let (field, what) = match space {
        Space::Message => ("message_id", "message"),
        Space::Call => ("call_id", "call"),
    };
    let id = wire::id(field, id)?;
    let report = match engine.cluster() {
        None => engine.ledger.get(space, &id).map(|e| e.report()),
        Some(node) => node.report(engine, space, &id).await.map_err(|e| {
            tracing::debug!(error = %e, "cannot ask the other engines for a ledger entry");
            ApiError::unavailable("the cluster cannot be asked now; retry later", 1)
        })?,
    };
    let report = report.ok_or_else(|| {
        ApiError::not_found(format!(
            "{what} {id:?} is unknown or older than the ledger's retention"
        ))
    })?;
    ok(answer(space, report))
}

fn answer(space: Space, r: Report) -> DeliveryReport {
    let id = Some(r.id.to_string());
    let (message_id, call_id) = match space {
        Space::Message => (id, None),
        Space::Call => (None, id),
    };
    DeliveryReport {
        message_id,
        call_id,
        accepted_at_ms: r.accepted_at_ms,
        targets: r.targets,
        outcomes: Outcomes {
            delivered: r.count(Final::Delivered),
            pending: r.pending,
            token_dead: r.count(Final::TokenDead),
            rejected: r.count(Final::Rejected),
            expired: r.count(Final::Expired),
            withdrawn: r.count(Final::Withdrawn),
            unconfigured: r.count(Final::Unconfigured),
        },
        failures: r
            .failures
            .into_iter()
            .map(|f| FailedTarget {
                push_id: f.push_id.into(),
                provider: f.provider.as_str().into(),
                outcome: f.outcome.as_str().into(),
                status: f.status,
                reason: f.reason.map(Into::into),
            })
            .collect(),
    }
}
