use super::*;
use http::HeaderValue;

#[test]
fn connect_backoff_doubles_with_jitter_up_to_the_cap() {
    let max = Duration::from_secs(5);
    for _ in 0..100 {
        let first = connect_backoff(1, max);
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50));
        let third = connect_backoff(3, max);
        assert!(third >= Duration::from_millis(100) && third <= Duration::from_millis(200));
        let many = connect_backoff(40, max);
        assert!(many >= max / 2 && many <= max);
    }
}

#[test]
fn unprocessed_errors_are_the_resendable_ones() {
    let ep = || "https://x".to_string();
    let cause = Arc::new(Error::ConnectTimeout {
        endpoint: ep(),
        phase: Phase::Tls,
        after: Duration::from_secs(5),
    });
    assert!(cause.not_processed() && cause.is_connect());
    assert!(Error::Shared(cause.clone()).not_processed());
    let backoff = Error::Backoff {
        endpoint: ep(),
        retry_in: Duration::from_millis(5),
        cause,
    };
    assert!(backoff.not_processed() && backoff.is_connect());
    assert_eq!(
        crate::providers::error_chain(&backoff),
        "not reconnecting to https://x for another 5ms after failed connects: \
         tls handshake with https://x timed out after 5s"
    );
    assert!(!Error::Timeout { endpoint: ep() }.not_processed());
}

/// Generous bound on anything a test waits for; the pools under test use 100 ms.
const WAIT: Duration = Duration::from_secs(10);

fn opts(connections: usize) -> Options {
    let mut o = Options::new(connections, Duration::from_millis(100));
    o.connect_timeout = Duration::from_millis(100);
    o.ping_timeout = Duration::from_millis(100);
    o
}

fn pool(url: &str, o: Options) -> Pool {
    let tls = crate::transport::tls::client_config(None, &[b"h2"]).expect("tls config");
    Pool::with_options(Endpoint::parse(url).expect("endpoint"), tls, o).expect("pool")
}

fn get() -> Request<()> {
    Request::get("/").body(()).expect("request head")
}

/// The kernel completes TCP handshakes for a listener that never accepts: a peer
/// that takes the connection and never answers.
async fn silent_listener() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("bound").port();
    (l, port)
}

fn is_timeout_in(e: &Error, want: Phase) -> bool {
    matches!(e, Error::ConnectTimeout { phase, .. } if *phase == want)
}

#[tokio::test]
async fn requests_queued_behind_a_silent_tls_handshake_are_all_released_with_its_cause() {
    let (_listener, port) = silent_listener().await;
    let pool = pool(&format!("https://127.0.0.1:{port}"), opts(1));
    let sends = (0..8).map(|_| pool.send(get, Bytes::new()));
    let results = tokio::time::timeout(WAIT, futures::future::join_all(sends))
        .await
        .expect("every request is released");
    let mut connecting = 0u64;
    for r in &results {
        let e = r.as_ref().expect_err("nothing answers");
        assert!(e.not_processed() && e.is_connect(), "{e:?}");
        match e {
            Error::Shared(cause) => {
                connecting += 1;
                assert!(is_timeout_in(cause, Phase::Tls), "{cause:?}");
            }
            Error::Backoff { cause, .. } => assert!(is_timeout_in(cause, Phase::Tls)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Normally one connect for all of them; a waiter that woke only after the
    // 25-50 ms backoff would try its own, still bounded.
    assert!(
        connecting < results.len() as u64,
        "waiters fail on the backoff"
    );
    assert_eq!(pool.connect_failures(), connecting);
    let chain = crate::providers::error_chain(results[1].as_ref().unwrap_err());
    let cause = format!("tls handshake with https://127.0.0.1:{port} timed out after 100ms");
    assert!(chain.ends_with(&cause), "{chain}");
}

#[tokio::test]
async fn a_peer_that_never_sends_its_settings_fails_the_http2_handshake() {
    let (_listener, port) = silent_listener().await;
    // h2c: no TLS, so the silence is in the HTTP/2 handshake itself.
    let pool = pool(&format!("http://127.0.0.1:{port}"), opts(2));
    let e = tokio::time::timeout(WAIT, pool.send(get, Bytes::new()))
        .await
        .expect("bounded")
        .expect_err("nothing answers");
    let Error::Shared(cause) = &e else {
        panic!("the first request connects itself: {e:?}")
    };
    assert!(is_timeout_in(cause, Phase::Http2), "{cause:?}");
    assert!(e.not_processed());
    assert_eq!(pool.connects(), 1, "the TCP connect succeeded");
    assert_eq!(pool.connect_failures(), 1, "one connect per request");
}

/// An h2c server that completes the handshake (answering the client's PING) and
/// goes silent at its first request: it stops reading, answering and PONGing, but
/// holds the connection open.
async fn goes_silent_at_the_first_request(listener: tokio::net::TcpListener) {
    let mut held = Vec::new();
    while let Ok((tcp, _)) = listener.accept().await {
        let Ok(mut conn) = h2::server::handshake(tcp).await else {
            continue;
        };
        if let Some(Ok(request)) = conn.accept().await {
            held.push((conn, request));
        }
    }
}

#[tokio::test]
async fn a_request_timeout_probes_the_connection_and_a_silent_one_is_replaced() {
    let (listener, port) = silent_listener().await;
    let server = tokio::spawn(goes_silent_at_the_first_request(listener));
    let mut o = opts(1);
    o.ping_interval = None;
    let pool = pool(&format!("http://127.0.0.1:{port}"), o);
    let e = tokio::time::timeout(WAIT, pool.send(get, Bytes::new()))
        .await
        .expect("bounded")
        .expect_err("the server goes silent");
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert_eq!(pool.connects(), 1);
    // The unanswered probe closes the connection, so a later request reconnects
    // instead of queueing behind a dead peer until its own timeout.
    let deadline = Instant::now() + WAIT;
    while pool.connects() < 2 {
        assert!(Instant::now() < deadline, "the silent connection was kept");
        let _ = tokio::time::timeout(WAIT, pool.send(get, Bytes::new())).await;
    }
    assert!(
        pool.pings() >= 1,
        "probed without keep-alive pings configured"
    );
    server.abort();
}

#[tokio::test]
async fn an_unreachable_endpoint_is_logged_once_per_outage_naming_the_cause() {
    let logs = crate::telemetry::CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test runtime runs every task on this thread.
    let _log = tracing::subscriber::set_default(subscriber);
    let (_listener, port) = silent_listener().await;
    let pool = pool(&format!("https://127.0.0.1:{port}"), opts(1));
    let deadline = Instant::now() + WAIT;
    while pool.connect_failures() < 3 {
        assert!(Instant::now() < deadline, "connects were not retried");
        let r = tokio::time::timeout(WAIT, pool.send(get, Bytes::new())).await;
        assert!(r.expect("bounded").is_err());
    }
    let text = logs.text();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    let cause = format!("tls handshake with https://127.0.0.1:{port} timed out after 100ms");
    assert!(warnings[0].contains(&cause), "{text}");
}

/// An h2c server allowing `streams` streams at once per connection that answers no
/// request until `hold` are open at once over all its connections, then every
/// request; the requests each connection carried, by connection in accept order.
async fn holds_until(
    listener: tokio::net::TcpListener,
    streams: u32,
    hold: usize,
    per_conn: Arc<parking_lot::Mutex<Vec<usize>>>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let released = Arc::new(tokio::sync::watch::channel(false).0);
    while let Ok((tcp, _)) = listener.accept().await {
        let (per_conn, open, released) = (per_conn.clone(), open.clone(), released.clone());
        let i = {
            let mut v = per_conn.lock();
            v.push(0);
            v.len() - 1
        };
        tokio::spawn(async move {
            let handshake = h2::server::Builder::new()
                .max_concurrent_streams(streams)
                .handshake::<_, Bytes>(tcp);
            let Ok(mut conn) = handshake.await else {
                return;
            };
            while let Some(Ok((_, mut respond))) = conn.accept().await {
                per_conn.lock()[i] += 1;
                let (open, released) = (open.clone(), released.clone());
                let mut wait = released.subscribe();
                tokio::spawn(async move {
                    if open.fetch_add(1, Ordering::SeqCst) + 1 >= hold {
                        released.send_replace(true);
                    }
                    let _ = wait.wait_for(|r| *r).await;
                    let _ = respond.send_response(http::Response::new(()), true);
                });
            }
        });
    }
}

/// Waits (bounded) until the server saw `want` requests per connection.
async fn server_saw(per_conn: &parking_lot::Mutex<Vec<usize>>, want: &[usize]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while *per_conn.lock() != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server saw {:?}, want {want:?}",
            per_conn.lock()
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_second_connection_carries_only_what_the_first_has_no_free_stream_for() {
    let (listener, port) = silent_listener().await;
    let per_conn = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let server = tokio::spawn(holds_until(listener, 2, 3, per_conn.clone()));
    let mut o = opts(2);
    o.request_timeout = WAIT;
    let pool = pool(&format!("http://127.0.0.1:{port}"), o);
    let send = |pool: Pool| async move {
        let r = pool.send(get, Bytes::new()).await.expect("answered");
        assert_eq!(r.status, StatusCode::OK);
    };
    // Two requests fill the first connection's two streams; the third would wait for
    // one of them there, and the server answers nothing until it sees the third.
    let first = tokio::spawn(send(pool.clone()));
    server_saw(&per_conn, &[1]).await;
    let second = tokio::spawn(send(pool.clone()));
    server_saw(&per_conn, &[2]).await;
    let third = tokio::spawn(send(pool.clone()));
    for held in [first, second, third] {
        tokio::time::timeout(WAIT, held)
            .await
            .expect("bounded")
            .expect("answered");
    }
    assert_eq!(*per_conn.lock(), vec![2, 1], "the third spilled over");
    // One at a time, the first connection has room for every request.
    for _ in 0..RUN * 2 {
        send(pool.clone()).await;
    }
    assert_eq!(pool.connects(), 2);
    assert_eq!(*per_conn.lock(), vec![2 + RUN * 2, 1]);
    server.abort();
}

/// Counts the bytes read through it: what the client sent, as the server sees it.
struct Counted<T> {
    io: T,
    read: Arc<AtomicUsize>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        self.read
            .fetch_add(buf.filled().len() - before, Ordering::Relaxed);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An h2c server answering `200` to requests whose `authorization` is `want`
/// (`403` otherwise), counting the bytes the client sent.
async fn checks_authorization(
    listener: tokio::net::TcpListener,
    want: HeaderValue,
    read: Arc<AtomicUsize>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (want, read) = (want.clone(), read.clone());
        tokio::spawn(async move {
            let io = Counted { io: tcp, read };
            let Ok(mut conn) = h2::server::handshake(io).await else {
                return;
            };
            while let Some(Ok((request, mut respond))) = conn.accept().await {
                let ok = request.headers().get(http::header::AUTHORIZATION) == Some(&want);
                let mut answer = http::Response::new(());
                if !ok {
                    *answer.status_mut() = StatusCode::FORBIDDEN;
                }
                let _ = respond.send_response(answer, true);
            }
        });
    }
}

/// Bytes the client sent for each of three requests carrying `auth`.
async fn bytes_per_request(auth: HeaderValue) -> Vec<usize> {
    let (listener, port) = silent_listener().await;
    let read = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(checks_authorization(listener, auth.clone(), read.clone()));
    let pool = pool(&format!("http://127.0.0.1:{port}"), opts(1));
    let make = || {
        let mut r = Request::post("/3/device/00")
            .body(())
            .expect("request head");
        r.headers_mut()
            .insert(http::header::AUTHORIZATION, auth.clone());
        r
    };
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let before = read.load(Ordering::Relaxed);
        let r = tokio::time::timeout(WAIT, pool.send(make, Bytes::from_static(b"{}")))
            .await
            .expect("bounded")
            .expect("answered");
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the server decoded the token as sent"
        );
        sizes.push(read.load(Ordering::Relaxed) - before);
    }
    server.abort();
    sizes
}

/// A provider token like APNs' (a ~250-byte JWT).
fn jwt_like() -> HeaderValue {
    let token = format!(
        "bearer eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyMzQ1NjcifQ.{}",
        "x".repeat(200)
    );
    HeaderValue::from_str(&token).expect("ascii")
}

#[tokio::test]
async fn a_provider_token_is_hpack_indexed_so_later_requests_do_not_resend_it() {
    let sizes = bytes_per_request(jwt_like()).await;
    // First request: the whole token (Huffman-coded, > 150 bytes); later ones refer
    // to its HPACK table entry (the vendored h2 patch, vendor/h2/PATCHES.md).
    assert!(sizes[0] > 150, "{sizes:?}");
    assert!(sizes[1] < 80 && sizes[2] < 80, "{sizes:?}");
}

#[tokio::test]
async fn a_sensitive_authorization_value_is_never_indexed() {
    let mut auth = jwt_like();
    auth.set_sensitive(true);
    let sizes = bytes_per_request(auth).await;
    assert!(sizes.iter().all(|&n| n > 150), "{sizes:?}");
}

#[tokio::test]
async fn a_dropped_pool_closes_its_connections() {
    // A reload replaces a vendor's client: the old pool's connections must end with
    // it, not stay open (with their keep-alive tasks) for the life of the process.
    let (listener, port) = silent_listener().await;
    let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("the pool connects");
        let mut conn = h2::server::handshake(tcp).await.expect("http/2 handshake");
        while let Some(Ok((_, mut respond))) = conn.accept().await {
            let _ = respond.send_response(http::Response::new(()), true);
        }
        // The client went away (GOAWAY or EOF).
        let _ = ended_tx.send(());
    });
    let mut o = opts(1);
    o.request_timeout = WAIT;
    o.ping_interval = Some(Duration::from_millis(50));
    let pool = pool(&format!("http://127.0.0.1:{port}"), o);
    let r = pool.send(get, Bytes::new()).await.expect("answered");
    assert_eq!(r.status, StatusCode::OK);
    drop(pool);
    tokio::time::timeout(WAIT, ended)
        .await
        .expect("the connection ended once its pool was dropped")
        .expect("the server saw the end");
    server.abort();
}
