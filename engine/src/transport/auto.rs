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
//!
//! Bounds: the client's own [`Connector`] gives TCP connect and TLS handshake one
//! `connect_timeout` budget and names the phase that ran out
//! ([`Error::ConnectTimeout`]). hyper-util does not say when a request got its
//! connection, so the whole exchange gets `connect_timeout + request_timeout`; a
//! connect that hangs fails on its own budget first. After a failed connect the
//! origin backs off (50 ms doubling to `connect_backoff_max`, jittered): requests
//! fail at once with [`Error::Backoff`] naming the failure, instead of each waiting
//! for a permit and then a connect of its own while the vendor is unreachable. The
//! first failure of an outage is logged at warn level, the recovery at info.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::pool::{Backoff, Options};
use super::{Phase, Response};

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
    #[error("connect to {origin} failed")]
    Connect {
        origin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("tls handshake with {origin} failed")]
    Tls {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{phase} with {origin} timed out after {after:?}")]
    ConnectTimeout {
        origin: String,
        phase: Phase,
        after: Duration,
    },
    #[error("not reconnecting to {origin} for another {retry_in:?} after failed connects")]
    Backoff {
        origin: String,
        retry_in: Duration,
        /// The failed connect that started the backoff.
        #[source]
        cause: Arc<Error>,
    },
    /// A failed connect, shared with the origin's backoff.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// True when the server provably did not get the request: the connection could
    /// not be established, or the origin is backing off after failed connects
    /// (hyper-util retries requests canceled before any byte was written on a reused
    /// connection by itself).
    pub fn not_processed(&self) -> bool {
        match self {
            Error::Request { source, .. } => source.is_connect(),
            Error::Connect { .. }
            | Error::Tls { .. }
            | Error::ConnectTimeout { .. }
            | Error::Backoff { .. } => true,
            Error::Shared(e) => e.not_processed(),
            Error::Body { .. } | Error::Timeout { .. } => false,
        }
    }
}

/// TCP connect then, for `https`, the TLS handshake (ALPN `h2`, `http/1.1`), within
/// one `connect_timeout` budget.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    tls: TlsConnector,
    budget: Duration,
    origin: Arc<str>,
}

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // `HttpConnector` (with the default resolver) is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(dst).await })
    }
}

impl Connector {
    async fn connect(mut self, dst: Uri) -> Result<Stream, Error> {
        let deadline = Instant::now() + self.budget;
        let origin = || self.origin.to_string();
        let timed_out = |phase| Error::ConnectTimeout {
            origin: origin(),
            phase,
            after: self.budget,
        };
        let name = match dst.scheme_str() {
            Some("https") => {
                let host = dst.host().unwrap_or_default();
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                Some(
                    ServerName::try_from(host.to_string()).map_err(|e| Error::Connect {
                        origin: origin(),
                        source: Box::new(e),
                    })?,
                )
            }
            _ => None,
        };
        let tcp =
            tokio::time::timeout_at(deadline, tower_service::Service::call(&mut self.tcp, dst))
                .await
                .map_err(|_| timed_out(Phase::Connect))?
                .map_err(|e| Error::Connect {
                    origin: origin(),
                    source: Box::new(e),
                })?;
        let Some(name) = name else {
            return Ok(MaybeHttpsStream::Http(tcp));
        };
        let tls = tokio::time::timeout_at(deadline, self.tls.connect(name, TokioIo::new(tcp)))
            .await
            .map_err(|_| timed_out(Phase::Tls))?
            .map_err(|source| Error::Tls {
                origin: origin(),
                source,
            })?;
        Ok(MaybeHttpsStream::Https(TokioIo::new(tls)))
    }
}

/// Cheaply cloneable handle to one pooled client.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: Pooled<Connector, Full<Bytes>>,
    limit: Semaphore,
    connections: usize,
    h2_seen: AtomicBool,
    /// `connect_timeout + request_timeout`: see the module docs.
    timeout: Duration,
    backoff_max: Duration,
    origin: String,
    /// Set while connects fail: requests then look at `backoff` (the fast path is
    /// this one load).
    failing: AtomicBool,
    backoff: parking_lot::Mutex<Backoff<Error>>,
}

impl Client {
    /// A client for requests to `origin` (used in errors and logs), trusting
    /// `ca_file` too, with `opts.connections` connections and `opts`' timeouts,
    /// HTTP/2 PINGs and reconnect backoff.
    pub fn new(
        origin: &str,
        ca_file: Option<&Path>,
        opts: &Options,
    ) -> Result<Self, super::tls::Error> {
        let tls = super::tls::client_config(ca_file, &[b"h2", b"http/1.1"])?;
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        tcp.set_keepalive(Some(Duration::from_secs(60)));
        let connector = Connector {
            tcp,
            tls: TlsConnector::from(tls),
            budget: opts.connect_timeout,
            origin: origin.into(),
        };
        let connections = opts.connections.max(1);
        let mut builder = Pooled::builder(TokioExecutor::new());
        builder
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_keep_alive_timeout(opts.ping_timeout);
        if let Some(every) = opts.ping_interval {
            builder.http2_keep_alive_interval(every);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http: builder.build(connector),
                limit: Semaphore::new(connections),
                connections,
                h2_seen: AtomicBool::new(false),
                timeout: opts.connect_timeout + opts.request_timeout,
                backoff_max: opts.connect_backoff_max,
                origin: origin.to_string(),
                failing: AtomicBool::new(false),
                backoff: parking_lot::Mutex::default(),
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
        inner.check_backoff()?;
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
        let result = tokio::time::timeout(inner.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    origin: inner.origin.clone(),
                })
            });
        match result {
            Ok(r) => {
                inner.reachable();
                Ok(r)
            }
            Err(e @ Error::Request { .. }) if e.not_processed() => Err(inner.connect_failed(e)),
            Err(e) => Err(e),
        }
    }
}

impl Inner {
    fn check_backoff(&self) -> Result<(), Error> {
        if !self.failing.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.backoff.lock().active() {
            Some((retry_in, cause)) => Err(Error::Backoff {
                origin: self.origin.clone(),
                retry_in,
                cause,
            }),
            None => Ok(()),
        }
    }

    /// A connect failed: back off, log the outage once, hand the error back shared.
    fn connect_failed(&self, e: Error) -> Error {
        let e = Arc::new(e);
        let (failures, wait) = self.backoff.lock().failed(e.clone(), self.backoff_max);
        let chain = crate::providers::error_chain(&*e);
        if self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(origin = %self.origin, failures, ?wait, error = %chain, "vendor connect failed");
        } else {
            tracing::warn!(origin = %self.origin, error = %chain, "vendor connect failed; its pushes are resent after a backoff (logged once until a connect succeeds)");
        }
        Error::Shared(e)
    }

    /// An answer came: the origin is reachable (again).
    fn reachable(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            *self.backoff.lock() = Backoff::default();
            tracing::info!(origin = %self.origin, "vendor reachable again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generous bound on anything a test waits for; the clients under test use 100 ms.
    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn an_origin_whose_tls_handshake_hangs_fails_within_the_bound_then_backs_off() {
        // The kernel completes TCP handshakes for a listener that never accepts.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let origin = format!("https://{}", listener.local_addr().expect("bound"));
        let mut opts = Options::new(1, Duration::from_millis(100));
        opts.connect_timeout = Duration::from_millis(100);
        let client = Client::new(&origin, None, &opts).expect("client");
        let send = || {
            let req = http::Request::post(format!("{origin}/x"))
                .body(Full::new(Bytes::from_static(b"{}")))
                .expect("request head");
            tokio::time::timeout(WAIT, client.send(req))
        };

        let first = send().await.expect("bounded").expect_err("nothing answers");
        assert!(first.not_processed(), "{first:?}");
        let chain = crate::providers::error_chain(&first);
        let cause = format!("tls handshake with {origin} timed out after 100ms");
        assert!(chain.ends_with(&cause), "{chain}");

        // Backing off: a request soon after fails at once, naming the same cause. (The
        // first backoff is 25-50 ms and doubles per failure; a request that came only
        // after it connects again and fails the same way.)
        let deadline = Instant::now() + WAIT;
        loop {
            let e = send().await.expect("bounded").expect_err("nothing answers");
            assert!(e.not_processed(), "{e:?}");
            assert!(crate::providers::error_chain(&e).ends_with(&cause), "{e:?}");
            if matches!(e, Error::Backoff { .. }) {
                break;
            }
            assert!(Instant::now() < deadline, "never backed off");
        }
    }
}
