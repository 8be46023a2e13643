//! The API's accept loop when the process runs out of file descriptors (EMFILE).
//!
//! A test binary of its own: it lowers `RLIMIT_NOFILE`, which is process-wide and would
//! break any other test running beside it.
//!
//! The limit is lowered to the lowest descriptor number not in use, so that the next
//! descriptor anyone opens fails with EMFILE. The client socket is created before
//! (its `connect` needs no new descriptor); the kernel completes the handshake and the
//! engine's `accept` is what fails.

mod common;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

const WAIT: Duration = Duration::from_secs(10);

/// Counts WARN events of the API server (the accept loop's failure lines).
struct CountWarnings(Arc<AtomicUsize>);

impl<S: Subscriber> Layer<S> for CountWarnings {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let m = event.metadata();
        if *m.level() == Level::WARN && m.target() == "fanfare::api::server" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lower the soft open-file limit so that no new descriptor can be opened.
fn exhaust_descriptors() -> Rlimit {
    let original = getrlimit(Resource::Nofile);
    let probe = std::fs::File::open("/dev/null").expect("a descriptor is free");
    let lowest_free = probe.as_raw_fd() as u64;
    drop(probe);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(lowest_free),
            maximum: original.maximum,
        },
    )
    .expect("lowering the soft limit is allowed");
    original
}

async fn healthz(s: &mut TcpStream) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request written");
    tokio::time::timeout(WAIT, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(b"}") {
            let n = s.read(&mut chunk).await.expect("answer read");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .expect("an answer within the deadline")
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_out_of_descriptors_backs_off_and_serves_the_queued_connection_once_it_can() {
    let warnings = Arc::new(AtomicUsize::new(0));
    tracing_subscriber::registry()
        .with(CountWarnings(warnings.clone()))
        .init();
    let dir = tempfile::tempdir().expect("a temp dir");
    let engine = common::start(dir.path(), "none").await;
    let addr = engine.local_addr();

    // Accept fails, and keeps failing, without spinning.
    let socket = TcpSocket::new_v4().expect("a socket");
    let original = exhaust_descriptors();
    let mut waiting = socket.connect(addr).await.expect("the kernel accepts it");
    wait_until("the first accept failure is logged", || {
        warnings.load(Ordering::Relaxed) >= 1
    })
    .await;
    // A window to observe the loop in: the old loop failed and logged ~300k times a
    // second here; now it retries a handful of times and logs once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let logged = warnings.load(Ordering::Relaxed);
    setrlimit(Resource::Nofile, original).expect("restoring the limit");
    // Within the backoff's 1 s ceiling the connection is accepted and served.
    let answer = healthz(&mut waiting).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(logged <= 2, "{logged} warnings in 1.5 s of EMFILE");

    engine.shutdown().await;
}
