//! Answers of the admin endpoints: `POST /v1/admin/reload` ([`crate::reload`]) and
//! `GET /v1/admin/config`.

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

/// `GET /v1/admin/config`: the configuration the engine started with, every key at
/// its value (defaults included), every secret replaced by `"<redacted>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunningConfig {
    /// The configuration as TOML's tables and keys (durations in the unit their key
    /// names), secrets redacted.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Names of the `FANFARE_*` environment variables that override the file (their
    /// values are in `config`, redacted where secret).
    pub env_overrides: Vec<String>,
    /// The file read at start-up; `null` when the engine runs on defaults.
    pub file: Option<String>,
}
