//! The serving machinery every mock vendor shares.
//!
//! - [`bind`] + [`Server::spawn`]: a TCP listener on `127.0.0.1:0` whose accept loop
//!   sets `TCP_NODELAY` and hands each socket to its own task; that task runs the TLS
//!   handshake (ALPN `h2` required) and drives one `h2` server connection.
//! - Every HTTP/2 stream gets its own task, so one slow stream (latency, a big body)
//!   never holds up the others. The stream task collects the request body, releasing
//!   flow-control capacity as DATA arrives, calls the vendor's [`Service::handle`], and
//!   writes the [`Reply`]: HEADERS with END_STREAM when there is no body (APNs
//!   success), else HEADERS then exactly one DATA frame with END_STREAM.
//! - [`Recorder`] keeps accepted pushes and rejections and wakes `wait_for` callers
//!   through a `Notify`; [`Verdicts`] holds per-token scripted answers.
//! - [`Faults`] (module [`super::faults`]) is behaviour injected around the vendor's
//!   answer: injected 429/503/500 answers, RST_STREAM and latency per push stream in
//!   [`serve_stream`]; GOAWAY after N streams, connection drops mid-flight, idle
//!   timeouts and outages per connection in [`serve_connection`] and [`accept_loop`].
//!
//! Shutdown: [`Server::shutdown`] flips a `watch` flag; the accept loop drops the
//! listener, every connection sends GOAWAY (graceful) and finishes its open streams.
//! [`Server::closed`] waits until every task is gone.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::{Mutex, RwLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

pub(crate) use super::faults::Faults;
use super::faults::{Close, DropMode, Injected, StreamFault};

/// Bodies larger than this are counted but not kept: push payloads are at most a few
/// KiB, so anything past this only needs to be known as "too large".
pub(crate) const MAX_KEPT_BODY: usize = 64 * 1024;

/// Connection-level receive window. h2's default (65,535 bytes) would cap a
/// connection at ~64 KiB of request bodies in flight, making the mock the bottleneck
/// of load runs; real vendors grow their connection window with WINDOW_UPDATE.
/// Stream windows keep the protocol default, as APNs advertises (pushy #878).
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// A client that has not finished the TLS handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 settings a mock advertises in its SETTINGS frame.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_concurrent_streams: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, when the vendor is known to send one.
    pub max_header_list_size: Option<u32>,
    /// Also serve keep-alive HTTP/1.1 (ALPN `http/1.1`, or no ALPN), for vendors not
    /// known to speak HTTP/2. The TLS config decides which protocols are offered.
    pub http1: bool,
}

/// One fully received request.
#[derive(Debug)]
pub(crate) struct Request {
    pub head: http::request::Parts,
    /// The body, cut at [`MAX_KEPT_BODY`] bytes.
    pub body: Bytes,
    /// Bytes actually received; above `body.len()` only when the body was cut.
    pub body_len: usize,
}

/// What a vendor answers to one request.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `None`: HEADERS carries END_STREAM and no DATA frame follows.
    pub body: Option<Bytes>,
}

impl Reply {
    /// A reply without body: HEADERS with END_STREAM, no DATA frame.
    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A reply with a JSON body (`content-type: application/json`) in one DATA frame.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        let body = body.into();
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        Reply {
            status,
            headers,
            body: Some(body),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.insert(name, value);
        self
    }
}

/// A mock vendor's request handling. `Conn` is per-connection state (created when the
/// HTTP/2 connection is up, shared by that connection's concurrent streams).
pub(crate) trait Service: Send + Sync + 'static {
    type Conn: Default + Send + Sync + 'static;

    /// Validates one request the way the vendor does and produces its answer.
    fn handle(&self, conn: &Self::Conn, request: Request) -> Reply;

    /// True for push requests, the ones faults apply to (not a token endpoint).
    fn is_push(&self, _head: &http::request::Parts) -> bool {
        true
    }

    /// The vendor's answer for an injected fault. The default is the bare status,
    /// `Retry-After` when given, and an empty JSON object.
    fn injected(&self, fault: Injected) -> Reply {
        injected_reply(fault, "{}".into())
    }
}

/// `fault`'s status and `Retry-After` with `body` (JSON).
pub(crate) fn injected_reply(fault: Injected, body: String) -> Reply {
    let (status, retry_after) = match fault {
        Injected::Throttle { retry_after_s } => (StatusCode::TOO_MANY_REQUESTS, retry_after_s),
        Injected::Unavailable { retry_after_s } => (StatusCode::SERVICE_UNAVAILABLE, retry_after_s),
        Injected::Internal => (StatusCode::INTERNAL_SERVER_ERROR, 0),
    };
    let reply = Reply::json(status, body);
    if retry_after > 0 {
        reply.with_header(http::header::RETRY_AFTER, HeaderValue::from(retry_after))
    } else {
        reply
    }
}

/// Counters every mock exposes.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    streams: AtomicU64,
    connections: AtomicU64,
}

impl Stats {
    pub fn streams_seen(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    pub fn connections_accepted(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Binds the mock's listener on `127.0.0.1:0`.
pub(crate) fn bind() -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("bind mock vendor on 127.0.0.1:0")?;
    listener
        .set_nonblocking(true)
        .context("set mock listener non-blocking")?;
    Ok(listener)
}

/// Handle to a running mock server; dropping it shuts the server down.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    live: watch::Receiver<usize>,
    stats: Arc<Stats>,
    faults: Faults,
}

/// What every connection and stream task of one server needs.
struct Shared<S> {
    service: Arc<S>,
    /// The server's TLS, for each accepted connection's handshake.
    acceptor: TlsAcceptor,
    faults: Faults,
    stats: Arc<Stats>,
    h2: h2::server::Builder,
    http1: bool,
}

/// Counts live server tasks; `Server::closed` waits for zero.
#[derive(Clone)]
struct Live(Arc<watch::Sender<usize>>);

impl Live {
    fn enter(&self) -> LiveGuard {
        self.0.send_modify(|n| *n += 1);
        LiveGuard(self.clone())
    }
}

struct LiveGuard(Live);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0 .0.send_modify(|n| *n -= 1);
    }
}

impl Server {
    /// Starts serving `listener` (from [`bind`]). Must run inside a Tokio runtime.
    pub fn spawn<S: Service>(
        listener: std::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        settings: Settings,
        faults: Faults,
        service: Arc<S>,
    ) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("mock vendors must be started inside a Tokio runtime")?;
        let addr = listener.local_addr().context("mock listener address")?;
        let listener = {
            let _enter = runtime.enter();
            TcpListener::from_std(listener).context("register mock listener with Tokio")?
        };

        let mut h2 = h2::server::Builder::new();
        h2.max_concurrent_streams(settings.max_concurrent_streams)
            .initial_connection_window_size(CONNECTION_WINDOW);
        if let Some(max) = settings.max_header_list_size {
            h2.max_header_list_size(max);
        }
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            service,
            acceptor: TlsAcceptor::from(tls),
            faults: faults.clone(),
            stats: stats.clone(),
            h2,
            http1: settings.http1,
        });

        let (stop, stop_rx) = watch::channel(false);
        let (live_tx, live) = watch::channel(0);
        let live_tx = Live(Arc::new(live_tx));
        let guard = live_tx.enter();
        runtime.spawn(accept_loop(listener, shared, stop_rx, live_tx, guard));
        Ok(Server {
            addr,
            stop,
            live,
            stats,
            faults,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stops accepting connections and sends GOAWAY on every open connection; open
    /// streams still get their answers. Returns at once; see [`Server::closed`].
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once the listener is closed and every connection has ended.
    pub async fn closed(&self) {
        self.closed_owned().await;
    }

    /// Like [`Server::closed`], but not tied to the handle (so it can outlive it).
    pub fn closed_owned(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut live = self.live.clone();
        async move {
            // An error means every task (and so every guard) is gone: closed as well.
            let _ = live.wait_for(|n| *n == 0).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop<S: Service>(
    listener: TcpListener,
    shared: Arc<Shared<S>>,
    mut stop: watch::Receiver<bool>,
    live: Live,
    _guard: LiveGuard,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "mock vendor accept failed");
                    continue;
                }
            },
            // Also resolves (with an error) when the handle is gone.
            _ = stop.wait_for(|stop| *stop) => break,
        };
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, %peer, "mock vendor could not set TCP_NODELAY");
        }
        if shared.faults.is_down() {
            // Down: reset the connection (RST, not FIN) before any byte is exchanged.
            let _ = tcp.set_zero_linger();
            shared.faults.count(|c| &c.refused_connections);
            drop(tcp);
            continue;
        }
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve_connection(
            tcp,
            shared.clone(),
            stop.clone(),
            live.enter(),
        ));
    }
    debug!("mock vendor stopped accepting");
}

async fn serve_connection<S: Service>(
    tcp: TcpStream,
    shared: Arc<Shared<S>>,
    mut stop: watch::Receiver<bool>,
    _guard: LiveGuard,
) {
    let handshake = shared.acceptor.accept(tcp);
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            debug!(%error, "mock vendor TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!("mock vendor TLS handshake timed out");
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        if shared.http1 {
            serve_http1(tls, shared, stop).await;
        } else {
            // APNs and FCM speak HTTP/2 only; there is no HTTP/1.1 fallback.
            debug!("mock vendor client did not negotiate ALPN h2");
        }
        return;
    }
    let mut conn = match shared.h2.handshake::<_, Bytes>(tls).await {
        Ok(conn) => conn,
        Err(error) => {
            debug!(%error, "mock vendor HTTP/2 handshake failed");
            return;
        }
    };

    let state = Arc::new(S::Conn::default());
    let faults = &shared.faults;
    let mut outage = faults.outage_watch();
    outage.mark_unchanged();
    // Stream tasks ask for the connection to be dropped through this (drop faults).
    let (drop_tx, mut drop_rx) = mpsc::channel::<()>(1);
    let mut last_stream = tokio::time::Instant::now();
    let mut draining = false;
    loop {
        // Without an idle timeout, wake now and then to notice one being set.
        let idle = faults.idle_timeout();
        let idle_at = match idle {
            Some(d) => last_stream + d,
            None => tokio::time::Instant::now() + Duration::from_millis(100),
        };
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {

                    // GOAWAY and drop faults count the server's streams, not this
                    // connection's: "every n-th stream the vendor receives".
                    let nth = shared.stats.streams.fetch_add(1, Ordering::Relaxed) + 1;
                    last_stream = tokio::time::Instant::now();
                    let drop_on = faults
                        .drop_every()
                        .filter(|(n, _)| nth % n == 0)
                        .map(|(_, mode)| (mode, drop_tx.clone()));
                    tokio::spawn(serve_stream(shared.clone(), state.clone(), request, respond, drop_on));
                    let every = faults.goaway_every();
                    if !draining && every > 0 && nth % every == 0 {
                        draining = true;
                        faults.count(|c| &c.goaways);
                        conn.graceful_shutdown();
                    }
                    let every = faults.goaway_error_every();
                    if every > 0 && nth % every == 0 {
                        faults.count(|c| &c.goaways);
                        conn.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                    }
                }
                Some(Err(error)) => {
                    debug!(%error, "mock vendor connection ended with an error");
                    break;
                }
                None => break,
            },
            _ = drop_rx.recv() => {
                faults.count(|c| &c.dropped_connections);
                debug!("mock vendor drops a connection with streams in flight (fault)");
                break;
            }
            changed = outage.changed() => {
                if changed.is_err() {
                    continue;
                }
                let close = outage.borrow_and_update().1;
                match close {
                    Close::Abrupt => {
                        faults.count(|c| &c.dropped_connections);
                        break;
                    }
                    Close::Graceful if !draining => {
                        draining = true;
                        faults.count(|c| &c.goaways);
                        conn.graceful_shutdown();
                    }
                    Close::Graceful => {}
                }
            }
            _ = tokio::time::sleep_until(idle_at), if !draining => {
                if idle.is_some() {
                    draining = true;
                    faults.count(|c| &c.idle_closes);
                    conn.graceful_shutdown();
                }
            }
            _ = stop.wait_for(|stop| *stop), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
        }
    }
}

/// Keep-alive HTTP/1.1: one request at a time per connection, same [`Service`].
async fn serve_http1<S: Service>(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    shared: Arc<Shared<S>>,
    mut stop: watch::Receiver<bool>,
) {
    use http_body_util::{BodyExt as _, Full};
    let state = Arc::new(S::Conn::default());
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        let state = state.clone();
        async move {
            shared.stats.streams.fetch_add(1, Ordering::Relaxed);
            let (head, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            let body_len = body.len();
            let body = body.slice(..body_len.min(MAX_KEPT_BODY));
            // HTTP/1.1 has no streams to refuse or reset: only injected answers apply.
            let fault = if shared.service.is_push(&head) {
                shared.faults.for_stream()
            } else {
                StreamFault::None
            };
            let reply = match fault {
                StreamFault::Answer(injected) => shared.service.injected(injected),
                _ => shared.service.handle(
                    &state,
                    Request {
                        head,
                        body,
                        body_len,
                    },
                ),
            };
            let latency = shared.faults.latency();
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let mut response = http::Response::new(Full::new(reply.body.unwrap_or_default()));
            *response.status_mut() = reply.status;
            *response.headers_mut() = reply.headers;
            Ok::<_, hyper::Error>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
    let mut conn = pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                debug!(%error, "mock vendor HTTP/1.1 connection ended with an error");
            }
        }
        _ = async { drop(stop.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn serve_stream<S: Service>(
    shared: Arc<Shared<S>>,
    conn: Arc<S::Conn>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    drop_on: Option<(DropMode, mpsc::Sender<()>)>,
) {
    let (head, mut body) = request.into_parts();
    let (body, body_len) = match collect_body(&mut body).await {
        Ok(body) => body,
        Err(error) => {
            debug!(%error, "mock vendor lost a request body");
            return;
        }
    };
    let fault = if shared.service.is_push(&head) {
        shared.faults.for_stream()
    } else {
        StreamFault::None
    };
    let request = Request {
        head,
        body,
        body_len,
    };
    // The connection-drop fault: this stream is never answered; the connection task
    // closes the TCP connection, taking every other in-flight stream with it.
    if let Some((mode, drop_tx)) = drop_on {
        if mode == DropMode::AfterProcessing {
            let _ = shared.service.handle(&conn, request);
        }
        let _ = drop_tx.send(()).await;
        return;
    }
    let reply = match fault {
        StreamFault::Refuse => {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            return;
        }
        StreamFault::ResetAfterProcessing => {
            let _ = shared.service.handle(&conn, request);
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return;
        }
        StreamFault::Answer(injected) => shared.service.injected(injected),
        StreamFault::None => shared.service.handle(&conn, request),
    };
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Err(error) = send_reply(&mut respond, reply) {
        debug!(%error, "mock vendor could not send a reply");
    }
}

/// Reads the whole body, releasing flow-control capacity for every DATA frame so the
/// client's window never stalls. Keeps at most [`MAX_KEPT_BODY`] bytes.
async fn collect_body(body: &mut RecvStream) -> Result<(Bytes, usize), h2::Error> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        len += chunk.len();
        // Ignoring the error is fine: it only fails once the stream is gone, and
        // then the next `data()` reports that.
        let _ = body.flow_control().release_capacity(chunk.len());
        match (&mut first, &mut joined) {
            (None, None) => first = Some(chunk),
            (Some(head), None) => {
                let mut buf = BytesMut::with_capacity(head.len() + chunk.len());
                buf.extend_from_slice(head);
                first = None;
                let room = MAX_KEPT_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                joined = Some(buf);
            }
            (_, Some(buf)) => {
                let room = MAX_KEPT_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
    }
    let body = match (first, joined) {
        (_, Some(buf)) => buf.freeze(),
        (Some(first), None) => first.slice(..first.len().min(MAX_KEPT_BODY)),
        (None, None) => Bytes::new(),
    };
    Ok((body, len))
}

fn send_reply(respond: &mut SendResponse<Bytes>, reply: Reply) -> Result<(), h2::Error> {
    let mut response = http::Response::new(());
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    match reply.body {
        None => {
            respond.send_response(response, true)?;
        }
        Some(body) => {
            let mut stream = respond.send_response(response, false)?;
            stream.send_data(body, true)?;
        }
    }
    Ok(())
}

/// Accepted pushes (in order) and rejections of one mock, with waiters.
#[derive(Debug)]
pub(crate) struct Recorder<T> {
    accepted: Mutex<Vec<T>>,
    rejected: Mutex<Vec<(u16, &'static str)>>,
    count: AtomicUsize,
    limit: usize,
    notify: Notify,
}

impl<T: Clone> Recorder<T> {
    /// Keeps at most `limit` pushes and `limit` rejections; counting never stops.
    pub fn new(limit: usize) -> Recorder<T> {
        Recorder {
            accepted: Mutex::new(Vec::new()),
            rejected: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            limit,
            notify: Notify::new(),
        }
    }

    pub fn accept(&self, push: T) {
        {
            let mut accepted = self.accepted.lock();
            if accepted.len() < self.limit {
                accepted.push(push);
            }
            self.count.fetch_add(1, Ordering::Release);
        }
        self.notify.notify_waiters();
    }

    pub fn reject(&self, status: u16, reason: &'static str) {
        let mut rejected = self.rejected.lock();
        if rejected.len() < self.limit {
            rejected.push((status, reason));
        }
    }

    pub fn accepted(&self) -> Vec<T> {
        self.accepted.lock().clone()
    }

    /// Moves the kept pushes out, leaving room for `limit` more; the count goes on.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.accepted.lock())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn rejections(&self) -> Vec<(u16, String)> {
        self.rejected
            .lock()
            .iter()
            .map(|&(status, reason)| (status, reason.to_owned()))
            .collect()
    }

    /// True once at least `n` pushes were accepted; false if `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let reached = async {
            loop {
                let mut notified = pin!(self.notify.notified());
                // Register before checking, so an accept in between is not missed.
                notified.as_mut().enable();
                if self.count() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, reached).await.is_ok()
    }
}

/// Scripted per-token answers.
#[derive(Debug)]
pub(crate) struct Verdicts<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K: Eq + Hash, V: Clone> Verdicts<K, V> {
    pub fn new() -> Verdicts<K, V> {
        Verdicts {
            map: RwLock::new(HashMap::new()),
        }
    }

    pub fn set(&self, key: K, verdict: V) {
        self.map.write().insert(key, verdict);
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map.read().get(key).cloned()
    }
}

/// Seconds since the Unix epoch (the unit of JWT `iat`/`exp`).
#[allow(clippy::disallowed_methods)] // a mock vendor keeps its own wall clock
pub(crate) fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch (the unit of APNs `timestamp`).
#[allow(clippy::disallowed_methods)] // a mock vendor keeps its own wall clock
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Splits an `authorization` value into its token when the scheme is `bearer`
/// (compared case-insensitively, as clients differ: Apple's examples say `bearer`,
/// a2 and Google say `Bearer`). `None` when the scheme is different or absent.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
