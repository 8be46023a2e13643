//! How every vendor client connects: its section's `connections` and `ca_file` under
//! the `[transport]` bounds, validated once into a [`Connect`], and the one setup
//! [`Error`] all vendors share (their keys and credentials are checked before, by
//! config validation, so only connecting can still fail here).

use std::path::PathBuf;

use crate::transport::{self, auto, pool, Endpoint, Pool};

/// Why a vendor client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tls setup")]
    Tls(#[from] transport::tls::Error),
    #[error("bad endpoint")]
    Endpoint(#[from] pool::Error),
}

/// A vendor's validated connection settings: its extra trusted roots, and its pool
/// options (the section's `connections`, the `[transport]` timeouts, PINGs and
/// reconnect backoff as durations).
#[derive(Debug, Clone)]
pub struct Connect {
    pub ca_file: Option<PathBuf>,
    pub pool: pool::Options,
}

impl Default for Connect {
    fn default() -> Self {
        Self {
            ca_file: None,
            pool: pool::Options::from_config(1, &crate::config::Transport::default()),
        }
    }
}

impl Connect {
    /// A client (HTTP/2 where offered, else keep-alive HTTP/1.1) for the origin of
    /// `url`, with the section's connections; also that origin, as a base URL.
    pub fn client(&self, url: &str) -> Result<(auto::Client, String), Error> {
        let base = Endpoint::parse(url)?.base;
        let http = auto::Client::new(&base, self.ca_file.as_deref(), &self.pool)?;
        Ok((http, base))
    }

    /// A client with one connection to a token endpoint (`url` names it in errors).
    pub fn token_client(&self, url: &str) -> Result<auto::Client, Error> {
        let mut one = self.pool.clone();
        one.connections = 1;
        Ok(auto::Client::new(url, self.ca_file.as_deref(), &one)?)
    }

    /// An HTTP/2-only pool to `url` (APNs, FCM).
    pub fn pool(&self, url: &str) -> Result<Pool, Error> {
        let tls = transport::tls::client_config(self.ca_file.as_deref(), &[b"h2"])?;
        Ok(Pool::with_options(
            Endpoint::parse(url)?,
            tls,
            self.pool.clone(),
        )?)
    }
}
