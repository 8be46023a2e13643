//! The `[log]` section and the process's log output.
//!
//! `format = "text"` (the default) writes tracing's human-readable lines;
//! `format = "json"` writes one JSON object a line (`timestamp`, `level`, `target`,
//! `message` and the event's fields at top level), for log shippers. `access = true`
//! adds one line per API request at target `fanfare::access` (see
//! [`super::api::Timer`]). The level filter stays `FANFARE_LOG` (`info` by default,
//! any `tracing_subscriber::EnvFilter` directive); `FANFARE_LOG_FORMAT` and
//! `FANFARE_LOG_ACCESS` override the keys like every other `FANFARE_<SECTION>_<KEY>`.

use serde::Deserialize;

/// `[log]`: how the engine writes its log.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (human-readable lines) or `json` (one JSON object a line).
    pub format: Format,
    /// Log every API request at target `fanfare::access`: method, route template,
    /// status, duration and request id (never the token, a body or the ids in the
    /// path).
    pub access: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Install the process's subscriber per `cfg`, writing to stdout. Does nothing when
/// one is already installed (a test that runs several engines).
pub fn init(cfg: &Log) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FANFARE_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match cfg.format {
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
