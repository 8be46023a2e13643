//! The feedback webhook through real sockets: a receiver on 127.0.0.1 that verifies
//! every batch's `X-Fanfare-Signature` with its own HMAC (a batch whose signature does
//! not match is refused and fails the test), dead tokens and rejections as events, a
//! receiver that stalls without slowing delivery, a retry after a 500, and https with
//! the receiver's CA in `ca_file`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare::client::request;
use fanfare::feedback::{Batch, Kind};
use fanfare_loadgen::mock::apns::ApnsVerdict;
use fanfare_loadgen::mock::tls::TestCa;
use hmac::{Hmac, Mac as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

use crate::harness::{self, apns_token, fcm_token, Elsewhere, Harness, Options, WAIT};
use crate::ledger::settled;

const SECRET: &str = "feedback-s3cret";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Post {
    body: Bytes,
    /// The signature matched the body under [`SECRET`].
    verified: bool,
    /// What the receiver answered.
    status: u16,
}

/// An IM server's feedback endpoint: verifies each signature with its own HMAC,
/// answers 401 when it does not match, else the next scripted status (then 200).
struct Receiver {
    url: String,
    posts: Arc<std::sync::Mutex<Vec<Post>>>,
    task: tokio::task::JoinHandle<()>,
}

/// True when `header` is `sha256=<hex HMAC-SHA256(body, SECRET)>`, computed here
/// independently of the engine's code.
fn signed(header: Option<&http::HeaderValue>, body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    header.and_then(|h| h.to_str().ok()) == Some(want.as_str())
}

impl Receiver {
    async fn start(first_answers: &[u16], tls: Option<&TestCa>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let url = format!("{scheme}://{host}:{}/fanfare/feedback", addr.port());
        let posts: Arc<std::sync::Mutex<Vec<Post>>> = Arc::default();
        let answers = Arc::new(std::sync::Mutex::new(
            first_answers.iter().copied().collect::<VecDeque<_>>(),
        ));
        let acceptor = tls.map(|ca| tokio_rustls::TlsAcceptor::from(ca.server_config()));
        let (p, a) = (posts.clone(), answers.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (p, a, acceptor) = (p.clone(), a.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (p, a) = (p.clone(), a.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(req, &p, &a).await) }
                    });
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = server.serve_connection(TokioIo::new(tls), service).await;
                        }
                        None => {
                            let _ = server.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Self { url, posts, task }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().expect("not poisoned").clone()
    }

    /// The events of every batch the receiver took, once `n` arrived.
    async fn events(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events: Vec<Value> = self
                .posts()
                .iter()
                .filter(|p| p.status == 200)
                .flat_map(|p| {
                    let b: Value = serde_json::from_slice(&p.body).expect("JSON body");
                    b["events"].as_array().expect("events").clone()
                })
                .collect();
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {events:?} arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The engine's config section for this receiver.
    fn config(&self, more: &str) -> String {
        format!(
            "[feedback]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nmax_delay_ms = 20\n{more}\n",
            self.url
        )
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: http::Request<Incoming>,
    posts: &std::sync::Mutex<Vec<Post>>,
    answers: &std::sync::Mutex<VecDeque<u16>>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let verified = parts.method == http::Method::POST
        && parts.uri.path() == "/fanfare/feedback"
        && parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            == Some(b"application/json")
        && signed(parts.headers.get("x-fanfare-signature"), &body);
    let status = if verified {
        answers
            .lock()
            .expect("not poisoned")
            .pop_front()
            .unwrap_or(200)
    } else {
        401
    };
    posts.lock().expect("not poisoned").push(Post {
        body,
        verified,
        status,
    });
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = http::StatusCode::from_u16(status).expect("a status");
    resp
}

/// Every post the receiver got carried a valid signature.
#[track_caller]
fn all_verified(r: &Receiver) {
    let posts = r.posts();
    assert!(!posts.is_empty(), "the receiver got nothing");
    for p in &posts {
        assert!(
            p.verified,
            "a batch without a valid signature: {:?}",
            String::from_utf8_lossy(&p.body)
        );
    }
}

async fn start(extra: String) -> Harness {
    harness::start_with(Options {
        extra,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn dead_tokens_and_rejections_reach_the_receiver_signed_and_verified() {
    let r = Receiver::start(&[], None).await;
    let h = start(r.config("")).await;
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    // An app id outside the configured app's family: APNs answers BadTopic.
    let other_app = fanfare::client::BindRequest {
        app_id: Some("com.other.app".into()),
        ..request::bind("u2", "apns", &apns_token(2))
    };
    h.api.bind("d2", &other_app).await.expect("bound");
    h.bind("d3", "u3", "fcm", &fcm_token(3)).await;
    h.apns
        .set_token_verdict(&apns_token(1), ApnsVerdict::Unregistered);
    h.add_members("g1", &["u0", "u1", "u2", "u3"]).await;
    let before = fanfare::clock::unix_now_ms();
    h.group_message("m-1", "u0", "g1", json!({"title": "hi"}))
        .await;

    let mut events = r.events(2).await;
    let after = fanfare::clock::unix_now_ms();
    all_verified(&r);
    events.sort_by_key(|e| e["push_id"].as_str().map(str::to_owned));
    for e in &mut events {
        let at = e["at_ms"].as_u64().expect("at_ms");
        assert!((before..=after).contains(&at), "{e}");
        e["at_ms"] = json!(0);
    }
    assert_eq!(
        events,
        vec![
            json!({"type": "token_dead", "push_id": "d1", "user_id": "u1", "provider": "apns",
                   "reason": "Unregistered", "at_ms": 0}),
            json!({"type": "push_rejected", "push_id": "d2", "user_id": "u2", "provider": "apns",
                   "reason": "BadTopic", "at_ms": 0}),
        ]
    );
    // The engine's own wire type reads the body too.
    let batch: Batch = serde_json::from_slice(&r.posts()[0].body).expect("a Batch");
    assert!(batch.events.iter().any(|e| e.kind == Kind::TokenDead));
    let s = h
        .wait_stats("the batches counted", |s| {
            s["feedback"]["batches_sent"] != 0
        })
        .await;
    assert_eq!(s["feedback"]["overflow"], 0, "{s}");

    // The receiver really checks: a batch signed with another secret is refused.
    let forged = br#"{"events":[]}"#;
    let resp = h
        .api
        .send(
            http::Request::post(&r.url)
                .header("content-type", "application/json")
                .header(
                    "x-fanfare-signature",
                    fanfare::feedback::signature(b"wrong", forged),
                )
                .body(Full::new(Bytes::from_static(forged)))
                .expect("request"),
        )
        .await
        .expect("the receiver answers");
    assert_eq!(resp.status, http::StatusCode::UNAUTHORIZED);
    assert!(!r.posts().last().expect("recorded").verified);
    h.shutdown().await;
}

#[tokio::test]
async fn a_stalled_receiver_does_not_slow_delivery_and_overflow_is_counted() {
    // Accepts TCP connections and never reads or answers.
    let stalled = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = stalled.local_addr().expect("bound").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = stalled.accept().await {
            conns.push(c);
        }
    });
    let extra = format!(
        "[feedback]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{SECRET}\"\n\
         queue_capacity = 2\nmax_batch = 1\nmax_delay_ms = 0\n"
    );
    let h = start(extra).await;
    let dead = 20u32;
    let mut members = vec!["u0".to_string()];
    for i in 1..=dead {
        h.bind(&format!("d{i}"), &format!("u{i}"), "apns", &apns_token(i))
            .await;
        h.apns
            .set_token_verdict(&apns_token(i), ApnsVerdict::Unregistered);
        members.push(format!("u{i}"));
    }
    for i in 100..105 {
        h.bind(&format!("d{i}"), &format!("u{i}"), "fcm", &fcm_token(i))
            .await;
        members.push(format!("u{i}"));
    }
    h.add_members("g1", &members).await;
    h.group_message("m-1", "u0", "g1", json!({"title": "hi"}))
        .await;

    // Every push ends while the receiver still holds the first POST.
    let r = settled(&h, "m-1", false).await;
    assert_eq!(
        (r.outcomes.delivered, r.outcomes.token_dead),
        (5, 20),
        "{r:?}"
    );
    let s = h
        .wait_stats("overflow counted", |s| {
            s["feedback"]["overflow"].as_u64() >= Some(17)
        })
        .await;
    assert_eq!(
        s["feedback"]["batches_sent"], 0,
        "the receiver never answered"
    );
    assert_eq!(s["invalid_tokens_removed"], 20, "{s}");
    let text = h.get_text("/metrics").await;
    let overflow = s["feedback"]["overflow"].as_u64().expect("a count");
    assert!(
        text.contains(&format!("fanfare_feedback_overflow_total {overflow}")),
        "{text}"
    );
    h.shutdown().await;
    held.abort();
}

#[tokio::test]
async fn a_batch_is_retried_after_a_500_until_the_receiver_takes_it() {
    let r = Receiver::start(&[500], None).await;
    let h = start(r.config("")).await;
    let events = one_dead_token(&h, &r).await;
    assert_eq!(events[0]["push_id"], "d1");
    let posts = r.posts();
    let statuses: Vec<u16> = posts.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [500, 200]);
    assert_eq!(posts[0].body, posts[1].body, "the same batch again");
    let s = h
        .wait_stats("the retry counted", |s| s["feedback"]["batches_sent"] == 1)
        .await;
    assert_eq!(s["feedback"]["posts_failed"], 1, "{s}");
    h.shutdown().await;
}

#[tokio::test]
async fn an_https_receiver_is_reached_with_its_ca_file() {
    let tls = Elsewhere::new();
    let r = Receiver::start(&[], Some(&tls.ca)).await;
    let h = start(r.config(&format!("ca_file = \"{}\"", tls.ca_file.display()))).await;
    let events = one_dead_token(&h, &r).await;
    assert_eq!(events[0]["type"], "token_dead");
    h.shutdown().await;
}

/// Bind `d1` of u1 to an APNs token the mock calls unregistered and message u1: the
/// receiver gets one event for it, signed and verified (returned).
async fn one_dead_token(h: &Harness, r: &Receiver) -> Vec<Value> {
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    h.apns
        .set_token_verdict(&apns_token(1), ApnsVerdict::Unregistered);
    h.message_to("m-1", "u1", json!({"title": "hi"})).await;
    let events = r.events(1).await;
    all_verified(r);
    events
}
