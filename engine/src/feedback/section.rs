//! The `[feedback]` section and its checked settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Check, Secret};
use crate::transport::pool::Options;

/// `[feedback]`: where dead tokens and rejections are reported (absent `url` = off).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Section {
    /// The IM server's endpoint that receives `POST {"events": [...]}` (http or https).
    pub url: Option<String>,
    /// HMAC-SHA256 key of the `X-Fanfare-Signature` header; required with `url`.
    pub secret: Option<Secret>,
    /// Extra trusted root certificates (PEM) for an https `url`, e.g. an internal CA.
    pub ca_file: Option<PathBuf>,
    /// Events that may wait for the receiver; more are dropped and counted
    /// (`feedback.overflow`). 1 to 1,000,000.
    pub queue_capacity: usize,
    /// Events per POST, 1 to 10,000.
    pub max_batch: usize,
    /// How long the first event of a batch waits for others, in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for Section {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            ca_file: None,
            queue_capacity: 10_000,
            max_batch: 500,
            max_delay_ms: 1_000,
        }
    }
}

/// A checked `[feedback]` section with a `url`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: http::Uri,
    /// `scheme://host:port` of `url`: what errors and logs name.
    pub origin: String,
    pub secret: Secret,
    pub ca_file: Option<PathBuf>,
    pub queue_capacity: usize,
    pub max_batch: usize,
    pub max_delay: Duration,
    /// Connect, TLS and request bounds from `[transport]`; one connection.
    pub pool: Options,
}

impl Settings {
    /// The settings of `section`, `None` when it has no `url` or a problem (each one
    /// goes to `problems`, naming its key).
    pub fn check(
        section: &Section,
        transport: &crate::config::Transport,
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        let mut check = Check::new("feedback", problems);
        if !(1..=1_000_000).contains(&section.queue_capacity) {
            check.key(
                "queue_capacity",
                format_args!(
                    " must be between 1 and 1000000, not {}",
                    section.queue_capacity
                ),
            );
        }
        if !(1..=10_000).contains(&section.max_batch) {
            check.key(
                "max_batch",
                format_args!(" must be between 1 and 10000, not {}", section.max_batch),
            );
        }
        let Some(url) = section.url.as_deref().filter(|u| !u.is_empty()) else {
            check.stray(
                "url",
                &[
                    ("secret", section.secret.is_some()),
                    ("ca_file", section.ca_file.is_some()),
                ],
            );
            return None;
        };
        check.url("url", url);
        let secret = check.required("url", "secret", &section.secret);
        if let Some(path) = &section.ca_file {
            if let Err(e) = crate::transport::tls::read_ca_file(path) {
                check.key("ca_file", format_args!(": {e}"));
            }
        }
        let uri: Option<http::Uri> = url.parse().ok();
        let settings = match (uri, secret) {
            (Some(uri), Some(secret)) => {
                // Host and port only: user info in the URL would be a credential.
                let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
                let origin = format!(
                    "{}://{}{port}",
                    uri.scheme_str().unwrap_or("http"),
                    uri.host().unwrap_or_default()
                );
                Some(Self {
                    url: uri,
                    origin,
                    secret,
                    ca_file: section.ca_file.clone(),
                    queue_capacity: section.queue_capacity,
                    max_batch: section.max_batch,
                    max_delay: Duration::from_millis(section.max_delay_ms),
                    pool: Options::from_config(1, transport),
                })
            }
            _ => None,
        };
        check.settled(settings)
    }
}
