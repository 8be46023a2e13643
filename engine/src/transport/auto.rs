//! A pooled HTTPS client that speaks HTTP/2 where the server offers it (ALPN `h2`)
//! and keep-alive HTTP/1.1 otherwise, for vendors that do not promise HTTP/2.
//!
//! Built on hyper-util's pooled client: with HTTP/2 it shares one multiplexed
//! connection per origin; with HTTP/1.1 it keeps up to `connections` idle keep-alive
//! connections per origin and reuses them. Requests in flight are bounded by a
//! semaphore: `connections` while the protocol is unknown or HTTP/1.1 (one request
//! per connection), raised to `connections × STREAMS_PER_CONNECTION` once a response
//! arrives over HTTP/2. Every socket has `TCP_NODELAY`; trust is the system roots plus
//! the vendor's `ca_file`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use super::Response;

/// Concurrent requests allowed per configured connection once HTTP/2 is negotiated.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// Why a request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("request to {origin} failed")]
    Request {
        origin: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the answer of {origin} failed")]
    Body {
        origin: String,
        #[source]
        source: hyper::Error,
    },
    #[error("request to {origin} timed out")]
    Timeout { origin: String },
}

impl Error {
    /// True when the server provably did not get the request: the connection could
    /// not be established (hyper-util retries requests canceled before any byte was
    /// written on a reused connection by itself).
    pub fn not_processed(&self) -> bool {
        matches!(self, Error::Request { source, .. } if source.is_connect())
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Cheaply cloneable handle to one pooled client.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: Pooled<Https, Full<Bytes>>,
    limit: Semaphore,
    connections: usize,
    h2_seen: AtomicBool,
    timeout: Duration,
    origin: String,
}

impl Client {
    /// A client for requests to `origin` (used in errors), trusting `ca_file` too.
    pub fn new(
        origin: &str,
        ca_file: Option<&Path>,
        connections: usize,
        timeout: Duration,
    ) -> Result<Self, super::tls::Error> {
        // hyper-rustls sets ALPN (`h2`, `http/1.1`) itself.
        let tls = super::tls::client_config(ca_file, &[])?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let connections = connections.max(1);
        let http = Pooled::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .build(https);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                limit: Semaphore::new(connections),
                connections,
                h2_seen: AtomicBool::new(false),
                timeout,
                origin: origin.to_string(),
            }),
        })
    }

    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// True once a response came over HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.inner.h2_seen.load(Ordering::Relaxed)
    }

    /// Send one request and read the whole answer.
    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Response, Error> {
        let inner = &*self.inner;
        let _permit = inner.limit.acquire().await.expect("semaphore never closed");
        let exchange = async {
            let resp = inner
                .http
                .request(req)
                .await
                .map_err(|source| Error::Request {
                    origin: inner.origin.clone(),
                    source,
                })?;
            if resp.version() == http::Version::HTTP_2
                && !inner.h2_seen.swap(true, Ordering::Relaxed)
            {
                inner
                    .limit
                    .add_permits(inner.connections * (STREAMS_PER_CONNECTION - 1));
            }
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|source| Error::Body {
                    origin: inner.origin.clone(),
                    source,
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(inner.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    origin: inner.origin.clone(),
                })
            })
    }
}
