//! Accept loop: HTTP/1.1 and h2c with prior knowledge on one listener, and the limits
//! that keep broken or hostile clients from taking the API (or the engine) down.
//!
//! - **Accept failures back off** ([`AcceptBackoff`]): when `accept` fails for want of
//!   file descriptors or memory the pending connection stays queued, so an immediate
//!   retry fails again at once; the old loop spun a full core and logged ~300k lines a
//!   second. It now waits 10 ms doubling to 1 s and logs once per 5 s with a count of
//!   the failures it did not log. (It does not close idle connections to make room:
//!   Linux's `accept` fails with EMFILE before looking at the queue, so the loop cannot
//!   tell whether anyone is waiting, and would close connections for nobody. Keeping
//!   `api.max_connections` below the open-file limit is what prevents EMFILE; the
//!   engine warns at start-up when it is not.)
//! - **A connection cap that sheds the idle** ([`super::connections`]), so the cap
//!   never locks everyone out.
//! - **Timeouts**: a request head must arrive within `api.header_read_timeout_ms`
//!   (hyper's HTTP/1.1 timer, which also ends idle keep-alive connections); a body
//!   within `api.body_read_timeout_ms` (`routes`); a connection with no request in
//!   flight for `api.idle_timeout_ms` is closed here (HTTP/2 with a GOAWAY). HTTP/2
//!   connections are PINGed and closed when the PING goes unanswered.
//! - **HTTP/2 limits**: `api.h2_max_concurrent_streams`, and a header list cap.
//! - **hyper's own error answers become the JSON error** ([`super::http_errors`]).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::connections::{Conn, Registry};
use super::http_errors::JsonErrors;
use crate::config;
use crate::shutdown::Shutdown;
use crate::Engine;

/// Largest HTTP/1.1 request head (request line and headers); larger → 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in an HTTP/1.1 request (hyper's default; raising it makes hyper
/// allocate per request); more → 431.
pub const MAX_HEADERS: usize = 100;
/// Longest request target (path and query); longer → 414. Ids are at most 128 bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// h2's own cap on a request's header list. Over it h2 itself refuses the stream (431
/// with an empty body, the one answer we cannot shape); between [`MAX_HEAD_BYTES`] and
/// this the service answers 431 with the JSON error.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection asked to close (evicted, idle, or at shutdown) that still has no
/// request in flight this long after is dropped: a half-sent request head does not
/// keep it open, and an answer still being written gets this long to go out.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Open files kept free beyond `api.max_connections` for the log, snapshots and vendor
/// connections, for the start-up check of the open-file limit.
const FD_RESERVE: u64 = 256;
/// Shortest `api.token` that does not draw a warning.
const MIN_TOKEN_CHARS: usize = 16;

/// Serve until `shutdown` fires, then stop accepting, close idle connections and let
/// the others finish their in-flight requests.
pub async fn run(listener: TcpListener, engine: Arc<Engine>, mut shutdown: Shutdown) {
    warn_about_settings(&engine.config.api);
    let conns = Registry::new(&engine.config.api);
    let builder = Arc::new(builder(&engine.config.api));
    // Every connection task holds a sender; `recv` returns `None` once all have ended.
    let (alive, mut all_ended) = mpsc::channel::<()>(1);
    let mut backoff = AcceptBackoff::default();
    let mut refusals = LogEvery::new(LOG_INTERVAL);
    loop {
        let (stream, peer) = tokio::select! {
            c = next_connection(|cx| listener.poll_accept(cx), &mut backoff) => c,
            _ = shutdown.wait() => break,
        };
        let Some(conn) = conns.admit() else {
            if let Some(suppressed) = refusals.tick(Instant::now()) {
                tracing::warn!(
                    max_connections = engine.config.api.max_connections,
                    suppressed,
                    "api.max_connections reached and every connection has a request in flight: refusing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(
            stream,
            peer,
            conn,
            conns.clone(),
            engine.clone(),
            builder.clone(),
            alive.clone(),
        ));
    }
    drop(listener);
    conns.close_all();
    drop(alive);
    let _ = all_ended.recv().await;
}

fn builder(api: &config::Api) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(api.header_read_timeout_ms)
        // The read buffer bounds the request head: over it hyper answers 431.
        .max_buf_size(MAX_HEAD_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(api.h2_max_concurrent_streams)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    b
}

/// Start-up warnings about `[api]` settings that are valid but risky.
fn warn_about_settings(api: &config::Api) {
    if let Some(token) = &api.token {
        let chars = token.chars().count();
        if chars < MIN_TOKEN_CHARS {
            tracing::warn!(
                chars,
                "api.token is shorter than {MIN_TOKEN_CHARS} characters: a short bearer token can be guessed; use a long random one"
            );
        }
    }
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    if let Some(limit) = nofile {
        if api.max_connections as u64 + FD_RESERVE > limit {
            tracing::warn!(
                max_connections = api.max_connections,
                open_file_limit = limit,
                "api.max_connections is close to the open-file limit: accept will run out of descriptors before the cap sheds idle connections; raise the limit (ulimit -n) or lower api.max_connections"
            );
        }
    }
}

/// Serve one connection until it ends, closing it when it has been idle for
/// `api.idle_timeout_ms` or when the registry asks (eviction, shutdown).
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    conns: Arc<Registry>,
    engine: Arc<Engine>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    _alive: mpsc::Sender<()>,
) {
    struct Deregister<'a>(&'a Registry, u64);
    impl Drop for Deregister<'_> {
        fn drop(&mut self) {
            self.0.remove(self.1);
        }
    }
    let _registered = Deregister(&conns, conn.id());
    let idle = engine.config.api.idle_timeout_ms;
    let service = {
        let conn = conn.clone();
        service_fn(move |req| {
            let engine = engine.clone();
            let conn = conn.clone();
            async move {
                let _active = conn.begin();
                Ok::<_, Infallible>(super::routes::handle(&engine, &conn, req).await)
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(JsonErrors::new(stream)), service);
    tokio::pin!(connection);
    let mut closing = false;
    let mut check = Instant::now() + idle;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "api connection ended with an error");
                }
                return;
            }
            () = conn.close_requested(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
                check = Instant::now() + CLOSE_GRACE;
            }
            () = tokio::time::sleep_until(check) => {
                let now = Instant::now();
                match conn.idle_for(now) {
                    None => check = now + if closing { CLOSE_GRACE } else { idle },
                    Some(_) if closing => return,
                    Some(d) if d >= idle => {
                        tracing::debug!(%peer, "closing an idle api connection");
                        conns.close(&conn);
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        check = now + CLOSE_GRACE;
                    }
                    Some(d) => check = now + (idle - d),
                }
            }
        }
    }
}

/// How often a repeated failure is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(5);
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Pacing of `accept` after failures: wait 10 ms, doubling to 1 s; reset by a success.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
    failures: u64,
    log: LogEvery,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: ACCEPT_BACKOFF_FIRST,
            failures: 0,
            log: LogEvery::new(LOG_INTERVAL),
        }
    }
}

impl AcceptBackoff {
    /// An accept failed at `now`: how long to wait, and whether to log (with the count
    /// of failures not logged since the last line).
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let wait = self.next;
        self.next = (self.next * 2).min(ACCEPT_BACKOFF_MAX);
        self.failures += 1;
        (wait, self.log.tick(now))
    }

    /// An accept succeeded: the failures of the streak that just ended, if any.
    pub fn succeeded(&mut self) -> Option<u64> {
        self.next = ACCEPT_BACKOFF_FIRST;
        self.log = LogEvery::new(LOG_INTERVAL);
        match std::mem::take(&mut self.failures) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Lets one event a period through and counts the others.
#[derive(Debug)]
struct LogEvery {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogEvery {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last time)` when this event is to be logged.
    fn tick(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The failure concerns one incoming connection (it was reset or aborted before we
/// took it): the next accept may succeed at once.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || rustix::io::Errno::from_io_error(e) == Some(rustix::io::Errno::PROTO)
}

/// The process or the system is out of descriptors or memory.
fn exhausted(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

/// Accept the next connection, waiting out failures with `backoff`.
async fn next_connection<T>(
    mut poll_accept: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
    backoff: &mut AcceptBackoff,
) -> T {
    loop {
        match std::future::poll_fn(&mut poll_accept).await {
            Ok(accepted) => {
                if let Some(failures) = backoff.succeeded() {
                    tracing::info!(failures, "accept works again");
                }
                return accepted;
            }
            Err(e) if per_connection(&e) => {
                tracing::debug!(error = %e, "a connection failed before it was accepted");
            }
            Err(e) => {
                let exhausted = exhausted(&e);
                let (wait, log) = backoff.failed(Instant::now());
                if let Some(suppressed) = log {
                    tracing::warn!(
                        error = %e,
                        exhausted,
                        suppressed,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "accept failed; retrying with backoff (suppressed: failures since the last line)"
                    );
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error())
    }

    #[tokio::test(start_paused = true)]
    async fn accept_out_of_descriptors_backs_off_instead_of_spinning() {
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        // Fails with EMFILE for 10 s of (paused) time, then accepts.
        let poll = |_: &mut Context<'_>| {
            calls.fetch_add(1, Ordering::Relaxed);
            if started.elapsed() < Duration::from_secs(10) {
                Poll::Ready(Err(emfile()))
            } else {
                Poll::Ready(Ok(7))
            }
        };
        let mut backoff = AcceptBackoff::default();
        let got = next_connection(poll, &mut backoff).await;
        assert_eq!(got, 7);
        // 10+20+...+640 ms, then one try a second: about 16 tries in 10 s, not millions.
        let n = calls.load(Ordering::Relaxed);
        assert!((10..=20).contains(&n), "{n} accept calls in 10 s");
        assert_eq!(
            backoff.next, ACCEPT_BACKOFF_FIRST,
            "a success resets the backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_is_logged_once_per_interval_with_the_suppressed_count() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let (w, log) = b.failed(t0);
        assert_eq!((w, log), (Duration::from_millis(10), Some(0)));
        let mut waits = vec![w];
        let mut t = t0;
        let mut logs = Vec::new();
        for _ in 0..20 {
            t += *waits.last().expect("one wait");
            let (w, log) = b.failed(t);
            waits.push(w);
            logs.extend(log);
        }
        assert_eq!(waits[7], ACCEPT_BACKOFF_MAX);
        assert!(waits.iter().all(|w| *w <= ACCEPT_BACKOFF_MAX));
        // 20 more failures over ~15 s: a line every 5 s, each counting the others.
        assert!((2..=3).contains(&logs.len()), "{logs:?}");
        let reported = logs.iter().sum::<u64>() + logs.len() as u64;
        assert!((10..=20).contains(&reported), "{logs:?}");
        assert_eq!(b.succeeded(), Some(21));
        assert_eq!(b.succeeded(), None);
    }

    #[test]
    fn accept_errors_are_classified() {
        assert!(exhausted(&emfile()));
        assert!(exhausted(&io::Error::from_raw_os_error(
            rustix::io::Errno::NOBUFS.raw_os_error()
        )));
        assert!(!exhausted(&io::ErrorKind::ConnectionAborted.into()));
        assert!(per_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(!per_connection(&emfile()));
    }
}
