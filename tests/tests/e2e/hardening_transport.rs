//! Hardening (issue 10, item 1): a vendor endpoint that accepts connections but never
//! answers must not wedge its lane.
//!
//! Every phase of reaching a vendor is bounded — TCP connect, TLS handshake and the
//! HTTP/2 SETTINGS exchange by `[transport] connect_timeout_ms`, the request by
//! `request_timeout_ms` — and a failure there is a vendor failure: the push is resent
//! (the vendor provably did not process it), the breaker counts it, the debug endpoint
//! answers with a verdict naming the cause, and the push leaves its lane at expiry, so
//! the lane keeps admitting messages.
//!
//! The black holes are real sockets on 127.0.0.1:0 that accept and then stay silent,
//! holding every connection open. Each scenario fills its lane to
//! `messages.queue_capacity` (2): a lane whose pushes never leave sheds every later
//! message with 429, which is how the wedge showed in production.

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::harness::{
    self, apns_token, device_token, Elsewhere, Harness, Options, FAST_RETRIES, WAIT,
};

/// Short bounds (and `FAST_RETRIES`), so a scenario takes about the two seconds its
/// pushes live.
const SHORT_BOUNDS: &str = "[transport]\nconnect_timeout_ms = 300\nrequest_timeout_ms = 300\n";

/// Pushes expire after 2 s; a lane holds two pushes at most.
const MESSAGES: &str = "ttl_s = 2\nqueue_capacity = 2";

/// Connections a black hole holds at most (the engine reconnects with backoff, so a
/// scenario opens a handful); later ones are closed at once.
const HELD_MAX: usize = 256;

/// A listener that accepts every connection and never writes a byte; with `tls` it
/// completes the TLS handshake (ALPN `h2`) first. Connections stay open until it is
/// dropped.
struct BlackHole {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start(tls: Option<TlsAcceptor>) -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let task = tokio::spawn(async move {
            let mut held = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                while held.try_join_next().is_some() {}
                if held.len() >= HELD_MAX {
                    continue;
                }
                let tls = tls.clone();
                held.spawn(async move {
                    match tls {
                        None => swallow(tcp).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                swallow(stream).await;
                            }
                        }
                    }
                });
            }
        });
        BlackHole { addr, task }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read and discard everything until the peer closes; never answer.
async fn swallow(mut io: impl AsyncRead + Unpin) {
    let mut buf = [0u8; 4096];
    while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn start(vendors: bool, env: Vec<(&str, String)>) -> Harness {
    harness::start_with(Options {
        extra: format!("{SHORT_BOUNDS}{FAST_RETRIES}"),
        messages: MESSAGES.to_string(),
        vendors,
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        ..Options::default()
    })
    .await
}

/// What every black-holed lane must do, for the device `dev` of user `u1` bound to
/// `provider` (whose lane has the same name); `cause` is the phase the debug verdict
/// must name.
async fn lane_survives(h: &Harness, provider: &str, cause: &str) -> Value {
    let p = |s: &Value, k: &str| s["providers"][provider][k].as_u64().unwrap_or(0);
    let l = |s: &Value, k: &str| s["lanes"][provider][k].as_u64().unwrap_or(0);
    h.message_to("m1", "u1", json!({"title": "t"})).await;
    h.message_to("m2", "u1", json!({"title": "t"})).await;

    // The failed connects are vendor failures: resent as unprocessed, and they open
    // the breaker.
    h.wait_stats("resends and an open breaker", |s| {
        p(s, "retried") >= 1 && p(s, "resent_unprocessed") >= 1 && l(s, "breaker_opened") >= 1
    })
    .await;

    // The debug endpoint answers with a verdict instead of hanging.
    let (status, v) = tokio::time::timeout(
        WAIT,
        h.post(
            "/v1/debug/push",
            json!({"push_id": "dev", "push": {"title": "debug"}}),
        ),
    )
    .await
    .expect("the debug push answers within its bound");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "retry", "{v}");
    assert!(v["status"].is_null(), "no HTTP answer: {v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(cause) && reason.contains("timed out"),
        "the verdict names the phase that timed out ({cause}): {v}"
    );

    // The pushes leave the lane at their expiry, nothing stays in flight, and the lane
    // admits new messages again.
    let s = h
        .wait_stats("both pushes expired and the lane empty", |s| {
            p(s, "expired") == 2
                && l(s, "in_flight") == 0
                && l(s, "queue_depth") == 0
                && s["queue_depth"][provider] == 0
        })
        .await;
    assert_eq!(p(&s, "delivered"), 0, "{s}");
    h.message_to("m3", "u1", json!({"title": "t"})).await;
    h.message_to("m4", "u1", json!({"title": "t"})).await;
    s
}

#[tokio::test]
async fn a_black_holed_apns_endpoint_does_not_wedge_its_lane() {
    let hole = BlackHole::start(None).await;
    let h = start(
        false,
        vec![("FANFARE_APNS_ENDPOINT_PRODUCTION", hole.url())],
    )
    .await;
    h.bind("dev", "u1", "apns", &apns_token(1)).await;
    lane_survives(&h, "apns", "tls handshake").await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_black_holed_oem_endpoint_does_not_wedge_its_lane_over_the_auto_client() {
    let hole = BlackHole::start(None).await;
    let h = start(
        true,
        vec![
            ("FANFARE_OPPO_ENDPOINT", hole.url()),
            ("FANFARE_OPPO_ENDPOINT_INTL", hole.url()),
        ],
    )
    .await;
    h.bind("dev", "u1", "oppo", &device_token("oppo", 1)).await;
    lane_survives(&h, "oppo", "tls handshake").await;
    assert_eq!(h.v().oppo.received().len(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn an_http2_peer_that_never_sends_settings_is_a_failed_connect() {
    let tls = Elsewhere::new();
    let hole = BlackHole::start(Some(TlsAcceptor::from(tls.ca.server_config()))).await;
    let h = start(
        false,
        vec![
            ("FANFARE_APNS_ENDPOINT_PRODUCTION", hole.url()),
            ("FANFARE_APNS_CA_FILE", tls.ca_file.display().to_string()),
        ],
    )
    .await;
    h.bind("dev", "u1", "apns", &apns_token(1)).await;
    let s = lane_survives(&h, "apns", "http/2 handshake").await;
    // No request ever went to a peer that never showed it speaks HTTP/2, so no push
    // had an unknown fate.
    assert_eq!(s["providers"]["apns"]["unknown_fate"], 0, "{s}");
    h.shutdown().await;
}
