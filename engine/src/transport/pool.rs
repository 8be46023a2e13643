//! A pool of long-lived HTTP/2 connections to one vendor endpoint.
//!
//! Each slot holds at most one live connection. A request takes the first slot whose
//! connection has a free stream (the peer's `SETTINGS_MAX_CONCURRENT_STREAMS`), so
//! the next connection carries only what the ones before it cannot ([`Pool::pick`]);
//! when all are full, slots take turns in runs of [`RUN`] requests, and the request
//! waits in h2's `ready()` for a free stream, never provoking `REFUSED_STREAM` by
//! over-opening. A slot whose connection died (GOAWAY, I/O error)
//! reconnects on next use — after a failed connect only once its backoff (50 ms doubling
//! to `connect_backoff_max`, jittered) has passed; until then requests on that slot fail
//! at once with [`Error::Backoff`] (carrying the failure that caused it) instead of
//! hammering a vendor that is down. Errors say whether the request is safe to resend:
//! only when the server provably did not process it (connect/TLS failure, reconnect
//! backoff, GOAWAY above the last stream id, `REFUSED_STREAM`), and then the pool
//! resends it once on another connection itself.
//!
//! Bounds: establishing a connection — TCP connect, TLS handshake, HTTP/2 preface and
//! the server's SETTINGS (proven by a PING answered after them) — shares one
//! `connect_timeout` budget; a connection is used only once the server has shown it
//! speaks HTTP/2, so a peer that accepts and then stays silent fails the connect
//! ([`Error::ConnectTimeout`], not processed) instead of swallowing requests. The
//! request itself (waiting for a stream included) has `request_timeout`. One request
//! waits for at most one connect: requests queued behind a slot's connect attempt
//! are released when it fails, with the backoff error naming its cause. The first
//! failed connect after a healthy period is logged at warn level (once per outage,
//! not per request); the first success after it at info.
//!
//! Keep-alive: a connection that carried no request for `ping_interval` is sent an
//! HTTP/2 PING, and so is one on which a request just timed out (a peer that went
//! silent would otherwise keep every later request busy until its timeout); no PONG
//! within `ping_timeout` closes it (in-flight streams on it fail with an unknown fate),
//! and the slot reconnects on next use.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;

use super::Phase;

mod backoff;
mod endpoint;
mod keepalive;

pub use backoff::connect_backoff;
pub(crate) use backoff::Backoff;
pub use endpoint::{Endpoint, Error};
use keepalive::{drive, KeepAlive};

/// How a pool connects, times out and keeps connections alive.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections (slots) to the endpoint.
    pub connections: usize,
    /// Establishing a connection (TCP, TLS, HTTP/2 SETTINGS) fails after this long
    /// with [`Error::ConnectTimeout`].
    pub connect_timeout: Duration,
    /// A request without its complete answer after this long fails with
    /// [`Error::Timeout`].
    pub request_timeout: Duration,
    /// PING a connection idle this long; `None` = never.
    pub ping_interval: Option<Duration>,
    /// A PING unanswered this long closes the connection.
    pub ping_timeout: Duration,
    /// Longest wait before reconnecting after failed connects.
    pub connect_backoff_max: Duration,
}

impl Options {
    /// `connections` and `request_timeout` with the `[transport]` defaults.
    pub fn new(connections: usize, request_timeout: Duration) -> Self {
        Self::from_config(connections, &crate::config::Transport::default())
            .request_timeout(request_timeout)
    }

    /// From the `[transport]` section.
    pub fn from_config(connections: usize, t: &crate::config::Transport) -> Self {
        Self {
            connections,
            connect_timeout: Duration::from_millis(t.connect_timeout_ms),
            request_timeout: Duration::from_millis(t.request_timeout_ms),
            ping_interval: (t.ping_interval_s > 0).then(|| Duration::from_secs(t.ping_interval_s)),
            ping_timeout: Duration::from_secs(t.ping_timeout_s.max(1)),
            connect_backoff_max: Duration::from_millis(t.connect_backoff_max_ms),
        }
    }

    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
}

/// When every connection is full: consecutive requests queued on one slot before the
/// next slot's turn. Alternating per request woke the other connection's task on
/// every push, and with two connections the runtime's workers then woke each other:
/// 10× the context switches and about 40% more CPU per push than one connection
/// (BENCHMARKS.md, issue 16).
pub const RUN: usize = 64;

/// A complete vendor response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct Conn {
    send: h2::client::SendRequest<Bytes>,
    /// Requests on this connection now (waiting for a stream included).
    in_flight: AtomicUsize,
    /// The peer's `SETTINGS_MAX_CONCURRENT_STREAMS` as last read ([`Pool::pick`]).
    max_streams: AtomicUsize,
    closed: Arc<AtomicBool>,
    /// Set by every request; the keep-alive clears it and PINGs when it was clear.
    used: Arc<AtomicBool>,
    /// Woken when a request on this connection timed out: the keep-alive PINGs it at
    /// once, busy or not.
    suspect: Arc<Notify>,
}

#[derive(Default)]
struct Slot {
    conn: ArcSwapOption<Conn>,
    connecting: tokio::sync::Mutex<()>,
    backoff: parking_lot::Mutex<Backoff<Error>>,
}

struct Inner {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    opts: Options,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    pings: Arc<AtomicU64>,
    /// The last connect attempt failed: the outage was logged at warn level and is
    /// not again until a connect succeeds.
    failing: AtomicBool,
}

/// Cheaply cloneable handle to a vendor connection pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool of `connections` lazily opened connections to `endpoint`. `tls` must
    /// offer ALPN `h2` when the endpoint is https; http endpoints use h2c with prior
    /// knowledge.
    pub fn new(
        endpoint: Endpoint,
        tls: Arc<ClientConfig>,
        connections: usize,
        timeout: Duration,
    ) -> Result<Self, Error> {
        Self::with_options(endpoint, tls, Options::new(connections, timeout))
    }

    /// A pool with every [`Options`] knob.
    pub fn with_options(
        endpoint: Endpoint,
        tls: Arc<ClientConfig>,
        opts: Options,
    ) -> Result<Self, Error> {
        let tls = if endpoint.tls {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|_| Error::BadEndpoint(endpoint.base.clone()))?;
            Some((TlsConnector::from(tls), name))
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                tls,
                slots: (0..opts.connections.max(1))
                    .map(|_| Slot::default())
                    .collect(),
                next: AtomicUsize::new(0),
                opts,
                connects: AtomicU64::new(0),
                connect_failures: AtomicU64::new(0),
                pings: Arc::new(AtomicU64::new(0)),
                failing: AtomicBool::new(false),
            }),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Connections opened so far (reconnects included).
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// Connect attempts that failed (TCP, TLS or HTTP/2 handshake).
    pub fn connect_failures(&self) -> u64 {
        self.inner.connect_failures.load(Ordering::Relaxed)
    }

    /// Keep-alive PINGs sent.
    pub fn pings(&self) -> u64 {
        self.inner.pings.load(Ordering::Relaxed)
    }

    /// Send one request with `body` and read the whole response. `make` builds the
    /// request head; it is called again if the request is retried on a new connection.
    pub async fn send(
        &self,
        make: impl Fn() -> Request<()>,
        body: Bytes,
    ) -> Result<Response, Error> {
        self.send_before(make, body, u64::MAX).await
    }

    /// Like [`Pool::send`], but the request never leaves after `deadline_unix_s`
    /// (a push's expiry): waiting for a connection or a free stream can take a while,
    /// so the deadline is checked right before the request is written.
    pub async fn send_before(
        &self,
        make: impl Fn() -> Request<()>,
        body: Bytes,
        deadline_unix_s: u64,
    ) -> Result<Response, Error> {
        let n = self.inner.slots.len();
        let first = self.pick();
        let mut last_err: Option<Error> = None;
        for attempt in 0..2 {
            let slot = &self.inner.slots[(first + attempt) % n];
            // One connect per request at most: after a failed one (or a slot backing
            // off after them) the second try takes a live connection or nothing, so a
            // request costs at most `connect_timeout + request_timeout`.
            let may_connect = !last_err.as_ref().is_some_and(Error::is_connect);
            let conn = match self.connection(slot, may_connect).await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let fut = self.send_on(&conn, make(), body.clone(), deadline_unix_s);
            let result = match tokio::time::timeout(self.inner.opts.request_timeout, fut).await {
                Ok(r) => r,
                Err(_) => {
                    // Is the peer still there? The keep-alive PINGs it now.
                    conn.suspect.notify_one();
                    Err(Error::Timeout {
                        endpoint: self.inner.endpoint.base.clone(),
                    })
                }
            };
            match result {
                Ok(r) => return Ok(r),
                Err(e) if e.not_processed() => {
                    // GOAWAY / REFUSED_STREAM: this connection takes no more streams
                    // (or refused this one); resend once on another.
                    Self::invalidate(slot, &conn);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("the first try connects or fails"))
    }

    /// The slot for a request: the first whose live connection is not full (see
    /// [`spills`]), or that has no connection and may open one; when all are full,
    /// runs of [`RUN`] in turn. Two connections sharing the load cost about 20% more
    /// CPU per push than one carrying it (twice the socket wake-ups, and the
    /// runtime's workers waking each other for them; BENCHMARKS.md, issue 16), so
    /// the second carries only what the first cannot.
    fn pick(&self) -> usize {
        for (i, slot) in self.inner.slots.iter().enumerate() {
            match &*slot.conn.load() {
                Some(c) if !c.closed.load(Ordering::Relaxed) => {
                    let n = c.in_flight.load(Ordering::Relaxed);
                    if !spills(n, c.max_streams.load(Ordering::Relaxed)) {
                        return i;
                    }
                    // Full by the limit last read; the peer may have raised it since
                    // (APNs allows more streams once a connection's token is valid).
                    let max = c.send.current_max_send_streams();
                    c.max_streams.store(max, Ordering::Relaxed);
                    if !spills(n, max) {
                        return i;
                    }
                }
                // Connect here, unless a failed connect has this slot backing off.
                _ => {
                    if slot.backoff.lock().active().is_none() {
                        return i;
                    }
                }
            }
        }
        self.inner.next.fetch_add(1, Ordering::Relaxed) / RUN % self.inner.slots.len()
    }

    fn invalidate(slot: &Slot, conn: &Arc<Conn>) {
        conn.closed.store(true, Ordering::Relaxed);
        let current = slot.conn.load();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            slot.conn.store(None);
        }
    }

    /// The slot's live connection, else a new one when `may_connect` (else `None`).
    async fn connection(&self, slot: &Slot, may_connect: bool) -> Result<Option<Arc<Conn>>, Error> {
        if let Some(c) = slot.conn.load_full() {
            if !c.closed.load(Ordering::Relaxed) {
                return Ok(Some(c));
            }
        }
        if !may_connect {
            return Ok(None);
        }
        self.check_backoff(slot)?;
        // Waiting here is bounded: the holder's connect has `connect_timeout`.
        let _guard = slot.connecting.lock().await;
        if let Some(c) = slot.conn.load_full() {
            if !c.closed.load(Ordering::Relaxed) {
                return Ok(Some(c));
            }
        }
        // Waiters behind a connect that just failed fail fast too, with its cause.
        self.check_backoff(slot)?;
        // Boxed: the connect future (TCP + TLS + HTTP/2 handshakes) is kilobytes, and
        // unboxed it would be part of every request's future, connecting or not.
        match Box::pin(self.connect()).await {
            Ok(conn) => {
                *slot.backoff.lock() = Backoff::default();
                if self.inner.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.inner.endpoint.base, "vendor reachable again");
                }
                let conn = Arc::new(conn);
                slot.conn.store(Some(conn.clone()));
                Ok(Some(conn))
            }
            Err(e) => {
                self.inner.connect_failures.fetch_add(1, Ordering::Relaxed);
                let e = Arc::new(e);
                let (failures, wait) = slot
                    .backoff
                    .lock()
                    .failed(e.clone(), self.inner.opts.connect_backoff_max);
                let chain = crate::providers::error_chain(&*e);
                if self.inner.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(endpoint = %self.inner.endpoint.base, failures, ?wait, error = %chain, "vendor connect failed");
                } else {
                    tracing::warn!(endpoint = %self.inner.endpoint.base, error = %chain, "vendor connect failed; its pushes are resent after a backoff (logged once until a connect succeeds)");
                }
                Err(Error::Shared(e))
            }
        }
    }

    fn check_backoff(&self, slot: &Slot) -> Result<(), Error> {
        match slot.backoff.lock().active() {
            Some((retry_in, cause)) => Err(Error::Backoff {
                endpoint: self.inner.endpoint.base.clone(),
                retry_in,
                cause,
            }),
            None => Ok(()),
        }
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let ep = &self.inner.endpoint;
        let budget = self.inner.opts.connect_timeout;
        let deadline = Instant::now() + budget;
        let timed_out = |phase| Error::ConnectTimeout {
            endpoint: ep.base.clone(),
            phase,
            after: budget,
        };
        let connect_failed = |source| Error::Connect {
            endpoint: ep.base.clone(),
            source,
        };
        let tcp =
            tokio::time::timeout_at(deadline, TcpStream::connect((ep.host.as_str(), ep.port)))
                .await
                .map_err(|_| timed_out(Phase::Connect))?
                .map_err(connect_failed)?;
        tcp.set_nodelay(true).map_err(connect_failed)?;
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        let closed = Arc::new(AtomicBool::new(false));
        let used = Arc::new(AtomicBool::new(true));
        let suspect = Arc::new(Notify::new());
        let flags = (closed.clone(), used.clone(), suspect.clone());
        let send = match &self.inner.tls {
            Some((connector, name)) => {
                let tls = tokio::time::timeout_at(deadline, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| timed_out(Phase::Tls))?
                    .map_err(|source| Error::Tls {
                        endpoint: ep.base.clone(),
                        source,
                    })?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(Error::Tls {
                        endpoint: ep.base.clone(),
                        source: std::io::Error::other("server did not negotiate ALPN h2"),
                    });
                }
                self.handshake(tls, deadline, flags).await?
            }
            None => self.handshake(tcp, deadline, flags).await?,
        };
        tracing::debug!(endpoint = %ep.base, "vendor connection established");
        Ok(Conn {
            in_flight: AtomicUsize::new(0),
            max_streams: AtomicUsize::new(send.current_max_send_streams()),
            send,
            closed,
            used,
            suspect,
        })
    }

    /// The HTTP/2 handshake, done when the server answered a PING: it must send its
    /// SETTINGS before anything else, so the answer proves the server speaks HTTP/2
    /// and its limits (`SETTINGS_MAX_CONCURRENT_STREAMS`) apply from the first
    /// request. Costs one round trip per new connection.
    async fn handshake<T>(
        &self,
        io: T,
        deadline: Instant,
        (closed, used, suspect): (Arc<AtomicBool>, Arc<AtomicBool>, Arc<Notify>),
    ) -> Result<h2::client::SendRequest<Bytes>, Error>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let ep = self.inner.endpoint.base.clone();
        let timed_out = || Error::ConnectTimeout {
            endpoint: ep.clone(),
            phase: Phase::Http2,
            after: self.inner.opts.connect_timeout,
        };
        let handshake_err = |source| Error::Handshake {
            endpoint: ep.clone(),
            source,
        };
        let handshake = h2::client::Builder::new()
            .initial_max_send_streams(100)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .max_concurrent_streams(0)
            .enable_push(false)
            .handshake::<_, Bytes>(io);
        let (send, mut connection) = tokio::time::timeout_at(deadline, handshake)
            .await
            .map_err(|_| timed_out())?
            .map_err(handshake_err)?;
        let mut ping = connection
            .ping_pong()
            .expect("a new connection still has its ping handle");
        // Boxed to be polled here and then moved into the task that drives it.
        let mut connection = Box::pin(connection);
        let settled = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                ended = connection.as_mut() => Err(ended.err()),
                pong = ping.ping(h2::Ping::opaque()) => pong.map(drop).map_err(Some),
            }
        })
        .await;
        match settled {
            Err(_) => return Err(timed_out()),
            Ok(Err(Some(source))) => return Err(handshake_err(source)),
            Ok(Err(None)) => {
                return Err(Error::Connect {
                    endpoint: ep.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed by the server during the http/2 handshake",
                    ),
                })
            }
            Ok(Ok(())) => {}
        }
        let keepalive = KeepAlive {
            every: self.inner.opts.ping_interval,
            timeout: self.inner.opts.ping_timeout,
            ping,
            used,
            suspect,
            pings: self.inner.pings.clone(),
        };
        tokio::spawn(async move {
            let ended = drive(connection, keepalive).await;
            closed.store(true, Ordering::Relaxed);
            if let Err(e) = ended {
                tracing::debug!(endpoint = %ep, error = %e, "vendor connection ended");
            }
        });
        Ok(send)
    }

    async fn send_on(
        &self,
        conn: &Conn,
        req: Request<()>,
        body: Bytes,
        deadline_unix_s: u64,
    ) -> Result<Response, Error> {
        let ep = &self.inner.endpoint.base;
        let not_processed = |source| Error::NotProcessed {
            endpoint: ep.clone(),
            source,
        };
        let stream_err = |source: h2::Error| {
            if source.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (source.is_go_away() && source.is_remote())
            {
                Error::NotProcessed {
                    endpoint: ep.clone(),
                    source,
                }
            } else {
                Error::Stream {
                    endpoint: ep.clone(),
                    source,
                }
            }
        };
        conn.used.store(true, Ordering::Relaxed);
        let _counted = InFlight::count(&conn.in_flight);
        let mut send = conn.send.clone().ready().await.map_err(not_processed)?;
        if deadline_unix_s != u64::MAX && crate::clock::unix_now_s() >= deadline_unix_s {
            return Err(Error::Expired {
                endpoint: ep.clone(),
            });
        }
        let end = body.is_empty();
        let (response, mut stream) = send.send_request(req, end).map_err(not_processed)?;
        if !end {
            stream.send_data(body, true).map_err(stream_err)?;
        }
        let response = response.await.map_err(stream_err)?;
        let (parts, mut recv) = response.into_parts();
        let mut buf = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(stream_err)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: buf.freeze(),
        })
    }
}

/// Whether a connection with `in_flight` requests and a peer limit of `max_streams`
/// streams is full: a quarter more than the limit may wait there for a free stream
/// (h2 opens them as streams end, at no cost) rather than open up another connection
/// for a few requests.
fn spills(in_flight: usize, max_streams: usize) -> bool {
    in_flight >= max_streams.saturating_add(max_streams / 4)
}

/// One request counted in its connection's `in_flight` until it ends (or is dropped
/// at its timeout).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn count(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
