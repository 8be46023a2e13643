//! `POST /v1/admin/reload`: re-read the config file ([`crate::reload`]).
//!
//! `200 {"reloaded": true, "needs_restart": [..]}` (the sections that changed but keep
//! their running value until a restart, also logged as a warning); a file with
//! problems is `400 invalid_argument` naming every one, and nothing changes.

use super::{ok, Resp};
use crate::api::error::ApiError;
use crate::api::wire::Reloaded;
use crate::reload::Error;
use crate::Engine;

pub(super) async fn reload(engine: &Engine) -> Result<Resp, ApiError> {
    match engine.reload.reload(engine).await {
        Ok(r) => ok(Reloaded {
            reloaded: true,
            needs_restart: r.needs_restart.into_iter().map(Into::into).collect(),
        }),
        Err(e @ (Error::NoFile | Error::Invalid(_))) => Err(ApiError::invalid(e.to_string())),
    }
}
