//! `POST /v1/admin/reload`'s answer ([`crate::reload`]).

use serde::{Deserialize, Serialize};

/// `POST /v1/admin/reload`: `{"reloaded": true, "needs_restart": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// Sections that changed in the file but keep their running value until a restart
    /// (`api`, `storage`, `presence`, `messages`, `cluster`, `log`); also logged.
    pub needs_restart: Vec<String>,
    /// Always `true`: the file was read and applied.
    pub reloaded: bool,
}
