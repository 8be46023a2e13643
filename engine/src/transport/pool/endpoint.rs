//! A vendor's address ([`Endpoint`]) and why a request got no response ([`Error`]),
//! with the accessors the dispatcher decides on (`not_processed`, `is_connect`).

use std::sync::Arc;
use std::time::Duration;

use super::super::Phase;

/// Where a vendor lives: scheme, host and port of its base URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `scheme://host:port` with no trailing slash; request URIs are built on it.
    pub base: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, Error> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| Error::BadEndpoint(url.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Error::BadEndpoint(url.to_string())),
        };
        let host = uri
            .host()
            .ok_or_else(|| Error::BadEndpoint(url.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri.authority().expect("a URI with a host has an authority");
        let base = format!("{}://{}", if tls { "https" } else { "http" }, authority);
        Ok(Self {
            tls,
            host,
            port,
            base,
        })
    }
}

/// Why a request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad endpoint url {0:?}")]
    BadEndpoint(String),
    #[error("connect to {endpoint} failed")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tls handshake with {endpoint} failed")]
    Tls {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("http/2 handshake with {endpoint} failed")]
    Handshake {
        endpoint: String,
        #[source]
        source: h2::Error,
    },
    #[error("request to {endpoint} failed before it was processed")]
    NotProcessed {
        endpoint: String,
        #[source]
        source: h2::Error,
    },
    #[error("request to {endpoint} failed")]
    Stream {
        endpoint: String,
        #[source]
        source: h2::Error,
    },
    #[error("{phase} with {endpoint} timed out after {after:?}")]
    ConnectTimeout {
        endpoint: String,
        phase: Phase,
        after: Duration,
    },
    #[error("request to {endpoint} timed out")]
    Timeout { endpoint: String },
    #[error("not reconnecting to {endpoint} for another {retry_in:?} after failed connects")]
    Backoff {
        endpoint: String,
        retry_in: Duration,
        /// The failed connect that started the backoff.
        #[source]
        cause: Arc<Error>,
    },
    #[error("request to {endpoint} not sent: its deadline passed while it waited")]
    Expired { endpoint: String },
    /// A failed connect, shared with the slot's backoff (which hands it to the
    /// requests that queued behind it).
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// True when the server provably did not process the request: nothing was sent
    /// (no connection, or the request never left its queue) or the server said so.
    pub fn not_processed(&self) -> bool {
        self.is_connect()
            || matches!(
                self.root(),
                Error::NotProcessed { .. } | Error::Expired { .. }
            )
    }

    /// True when no connection could be had (a failed or timed-out connect, or the
    /// backoff after one): the vendor, or the path to it, is down.
    pub fn is_connect(&self) -> bool {
        matches!(
            self.root(),
            Error::Connect { .. }
                | Error::Tls { .. }
                | Error::Handshake { .. }
                | Error::ConnectTimeout { .. }
                | Error::Backoff { .. }
        )
    }

    /// The error itself, or the one a [`Error::Shared`] stands for.
    fn root(&self) -> &Error {
        match self {
            Error::Shared(e) => e.root(),
            e => e,
        }
    }
}
