//! The string fields of the wire types that take one of a fixed set of values
//! (provider, environment, conversation type, do-not-disturb status, outcomes),
//! documented as an `enum` rather than a plain string. The wire fields stay `String`
//! (parsing them gives a clear error naming the values); their schema is one of these
//! functions (`#[schema(schema_with = ...)]`), whose values are read from the engine's
//! own types wherever they exist, so a vendor added to the table shows up here by
//! itself, and an exhaustive `match` makes a new variant elsewhere a compile error
//! here until it is listed.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::fanout::ledger::Final;
use crate::providers::{Outcome, ProviderKind};
use crate::state::notify::Kind;
use crate::state::Environment;

/// A string schema with exactly `values`.
fn string_enum(values: impl IntoIterator<Item = &'static str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
        .into()
}

/// `provider`: every vendor channel of the provider table.
pub fn provider() -> Schema {
    string_enum(ProviderKind::ALL.map(ProviderKind::as_str))
}

/// `environment` of a binding (the iOS `isProduct` flag).
pub fn environment() -> Schema {
    let all = [Environment::Production, Environment::Sandbox];
    let _listed = |e: Environment| match e {
        Environment::Production | Environment::Sandbox => (),
    };
    string_enum(all.map(Environment::as_str))
}

/// `conversation_type`: `peer` or `group`.
pub fn conversation_type() -> Schema {
    let _listed = |k: Kind| match k {
        Kind::Peer | Kind::Group => (),
    };
    string_enum([Kind::Peer, Kind::Group].map(Kind::as_str))
}

/// A conversation's do-not-disturb `status`.
pub fn notification_status() -> Schema {
    use crate::api::wire::{DO_NOT_DISTURB, NOTIFY};
    string_enum([DO_NOT_DISTURB, NOTIFY])
}

/// `outcome` of `POST /v1/debug/push`: the vendor's verdict by kind.
pub fn verdict_outcome() -> Schema {
    let _listed = |o: Outcome| match o {
        Outcome::Delivered
        | Outcome::Retry { .. }
        | Outcome::TokenDead(_)
        | Outcome::Rejected(_) => (),
    };
    string_enum(["delivered", "retry", "token_dead", "rejected"])
}

/// `outcome` of a ledger failure: how a target ended other than `delivered`.
pub fn failure_outcome() -> Schema {
    let failed = [
        Final::TokenDead,
        Final::Rejected,
        Final::Expired,
        Final::Withdrawn,
        Final::Unconfigured,
    ];
    let _listed = |f: Final| match f {
        Final::Delivered => (),
        Final::TokenDead
        | Final::Rejected
        | Final::Expired
        | Final::Withdrawn
        | Final::Unconfigured => (),
    };
    string_enum(failed.map(Final::as_str))
}
