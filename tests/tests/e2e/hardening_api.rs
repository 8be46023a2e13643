//! Hardening of the HTTP API (issue 10): hostile and broken clients, over real sockets.
//!
//! Most tests talk raw HTTP/1.1 or HTTP/2 bytes on a `TcpStream`, because what they
//! check is what a client library hides: whether the answer arrives at all (instead of
//! a reset), what the HTTP layer itself answers, and when the server closes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{self, apns_token, Options, WAIT};

const TOKEN: &str = "a-long-enough-api-token";

/// An engine without vendors, with `api` appended to its `[api]` section.
struct Api {
    _dir: tempfile::TempDir,
    running: Option<fanfare::Running>,
    addr: SocketAddr,
}

impl Api {
    async fn start(api: &str) -> Api {
        let dir = tempfile::tempdir().expect("a temp dir");
        let toml = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n{api}\n\n[storage]\ndir = \"{}\"\ndurability = \"none\"\n",
            dir.path().join("data").display()
        );
        let path = dir.path().join("fanfare.toml");
        std::fs::write(&path, toml).expect("config written");
        let config =
            fanfare::config::Config::load(Some(&path), Vec::new()).expect("a valid config");
        let running = fanfare::start(config).await.expect("the engine starts");
        let addr = running.local_addr();
        Api {
            _dir: dir,
            running: Some(running),
            addr,
        }
    }

    async fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).await.expect("connects");
        s.set_nodelay(true).expect("nodelay");
        s
    }

    /// A new connection that has written `bytes` (and read nothing yet).
    async fn sent(&self, bytes: &[u8]) -> TcpStream {
        let mut s = self.connect().await;
        s.write_all(bytes)
            .await
            .expect("the client's bytes written");
        s
    }

    /// [`Api::start`], and a connection that has written `bytes`.
    async fn start_sent(api: &str, bytes: &[u8]) -> (Api, TcpStream) {
        let api = Api::start(api).await;
        let s = api.sent(bytes).await;
        (api, s)
    }

    async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// One HTTP/1.1 answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    /// An answer from its head (status line and headers, without the blank line),
    /// with an empty body; and the body's `content-length` (0 without one).
    fn from_head(head: &[u8]) -> (Answer, usize) {
        let head = String::from_utf8_lossy(head).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        let len = answer
            .header("content-length")
            .map_or(0, |v| v.parse().expect("a number"));
        (answer, len)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "answer {} has no JSON body: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Assert this is an error answer with `status` and `error.code`.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error_code().as_str()),
            (status, code),
            "{self:?}"
        );
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {:?}", self.json()))
            .to_string()
    }
}

/// Read one answer (head, then `content-length` bytes of body) within [`WAIT`].
async fn read_answer(s: &mut TcpStream) -> Answer {
    tokio::time::timeout(WAIT, async {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("the answer can be read");
            assert!(
                n > 0,
                "connection closed before an answer: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let (mut answer, len) = Answer::from_head(&buf[..end]);
        let mut body = buf[end + 4..].to_vec();
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("the body can be read");
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
        answer.body = body;
        answer
    })
    .await
    .expect("an answer within the deadline")
}

/// Split pipelined answers (a body is `content-length` bytes, none without one).
fn split_answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let (mut answer, len) = Answer::from_head(&bytes[..end]);
        answer.body = bytes[end + 4..end + 4 + len].to_vec();
        bytes = &bytes[end + 4 + len..];
        answers.push(answer);
    }
    answers
}

/// Send `request` on a new connection and read the answer.
async fn exchange(api: &Api, request: &[u8]) -> Answer {
    let mut s = api.sent(request).await;
    read_answer(&mut s).await
}

/// Wait until the server closes `s` (EOF or reset), within [`WAIT`]; any bytes it sends
/// first are returned.
async fn closed_by_server(s: &mut TcpStream) -> Vec<u8> {
    tokio::time::timeout(WAIT, async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection within the deadline")
}

/// On a new connection, write `head`, then `body` with [`write_body`], and only then
/// read the answer; the connection stays open for more.
async fn send_whole(api: &Api, head: &str, body: &[u8]) -> (TcpStream, Answer) {
    let mut s = api.sent(head.as_bytes()).await;
    write_body(&mut s, body).await;
    let a = read_answer(&mut s).await;
    (s, a)
}

/// Write `body` as a client that sends its whole request before reading an answer
/// (Python's http.client, often Node's) over a real network: 16 KiB every 2 ms
/// (8 MB/s). Every write must succeed: a server that answers and closes before the
/// body is in makes them fail (EPIPE or reset), and the answer is lost.
async fn write_body(s: &mut TcpStream, body: &[u8]) {
    for piece in body.chunks(16 * 1024) {
        s.write_all(piece)
            .await
            .expect("the whole body is accepted (not reset)");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn an_oversized_body_written_in_full_before_reading_gets_the_413_json_error() {
    let api = Api::start("").await;
    let body = vec![b'x'; 512 * 1024];
    // Declared too large by its Content-Length.
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (_, a) = send_whole(&api, &head, &body).await;
    a.assert_error(413, "payload_too_large");
    // Found too large while reading a chunked body.
    let head = "POST /v1/messages HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut chunked = Vec::new();
    for piece in body.chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (_, a) = send_whole(&api, head, &chunked).await;
    a.assert_error(413, "payload_too_large");
    api.shutdown().await;
}

#[tokio::test]
async fn a_request_refused_before_its_body_is_read_still_gets_its_answer() {
    let api = Api::start(&format!("token = \"{TOKEN}\"")).await;
    let body = vec![b' '; 256 * 1024];
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (mut s, a) = send_whole(&api, &head, &body).await;
    a.assert_error(401, "unauthenticated");
    // The body was drained, so the connection is still good for the next request.
    let req = format!("GET /v1/stats HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("second request");
    assert_eq!(read_answer(&mut s).await.status, 200);
    api.shutdown().await;
}

#[tokio::test]
async fn errors_of_the_http_layer_carry_the_json_error() {
    let api = Api::start("").await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a malformed request line",
            b"GET /a b c HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            400,
            "invalid_argument",
        ),
        (
            "a header line without a colon",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n".to_vec(),
            400,
            "invalid_argument",
        ),
        (
            "a 20 KiB header",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(20 * 1024)
            )
            .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "150 headers",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n",
                (0..150)
                    .map(|i| format!("x-h{i}: v\r\n"))
                    .collect::<String>()
            )
            .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a 10 KiB target",
            format!(
                "GET /v1/presence/{} HTTP/1.1\r\nhost: x\r\n\r\n",
                "u".repeat(10 * 1024)
            )
            .into_bytes(),
            414,
            "uri_too_long",
        ),
    ];
    for (what, request, status, code) in cases {
        let a = exchange(&api, &request).await;
        assert_eq!(a.status, status, "{what}: {a:?}");
        assert_eq!(a.error_code(), code, "{what}");
        assert_eq!(a.header("content-type"), Some("application/json"), "{what}");
    }
    // After answers of every kind on one connection (HEAD's has no body), hyper's own
    // error is still found and rewritten.
    let pipelined = b"HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /nope HTTP/1.1\r\nhost: x\r\n\r\nGET /a b c HTTP/1.1\r\n\r\n";
    let mut s = api.sent(pipelined).await;
    let answers = split_answers(&closed_by_server(&mut s).await);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [405, 200, 404, 400], "{answers:?}");
    assert!(
        answers[0].body.is_empty(),
        "no body after HEAD: {answers:?}"
    );
    assert_eq!(answers[2].error_code(), "not_found");
    assert_eq!(answers[3].error_code(), "invalid_argument");
    // The same limits over HTTP/2 (h2c), answered by the service.
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{}/healthz", api.addr))
        .header("x-big", "a".repeat(20 * 1024))
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let resp = client.request(req).await.expect("an h2 answer");
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(v["error"]["code"], "headers_too_large");
    api.shutdown().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_whatever_its_case() {
    let api = Api::start(&format!("token = \"{TOKEN}\"")).await;
    for (value, status) in [
        (format!("Bearer {TOKEN}"), 200),
        (format!("bearer {TOKEN}"), 200),
        (format!("BEARER {TOKEN}"), 200),
        (format!("bEaReR   {TOKEN}"), 200),
        (format!("Basic {TOKEN}"), 401),
        ("Bearer not-the-token-at-all".to_string(), 401),
        ("Bearer".to_string(), 401),
    ] {
        let req = format!("GET /v1/stats HTTP/1.1\r\nhost: x\r\nauthorization: {value}\r\n\r\n");
        let a = exchange(&api, req.as_bytes()).await;
        assert_eq!(a.status, status, "{value}");
    }
    api.shutdown().await;
}

#[tokio::test]
async fn trailing_data_and_arrays_are_refused_and_change_nothing() {
    let h = harness::start_with(Options::default()).await;
    for body in [
        &br#"{"add":["x"]}]]]] garbage"#[..],
        br#"{"add":["x"]}{"add":["y"]}"#,
        br#"[["x"],[]]"#,
    ] {
        harness::assert_error(
            h.raw(Method::POST, "/v1/groups/g1/members", body.to_vec(), None)
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        );
    }
    let (s, _) = h.get("/v1/groups/g1").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no group was created");
    let bind = json!(["u1", "apns", apns_token(1)]).to_string();
    let (s, v) = h
        .raw(Method::PUT, "/v1/push-ids/d1", bind.into_bytes(), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("JSON object")),
        "{v}"
    );
    let (_, v) = h.get("/v1/users/u1/push-ids").await;
    assert_eq!(v["push_ids"], json!([]), "nothing was bound");
    h.shutdown().await;
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_read_timeout() {
    let slow_head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ";
    let (api, mut s) = Api::start_sent("header_read_timeout_ms = 300", slow_head).await;
    closed_by_server(&mut s).await;
    api.shutdown().await;
}

#[tokio::test]
async fn at_the_connection_cap_the_longest_idle_connection_makes_room_and_healthz_answers() {
    let api = Api::start("max_connections = 4").await;
    let slowloris = || api.sent(b"GET /healthz HTTP/1.1\r\nhost: x\r\n");
    let mut slow = std::collections::VecDeque::new();
    for _ in 0..4 {
        slow.push_back(slowloris().await);
    }
    for round in 0..3 {
        let a = exchange(
            &api,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(a.status, 200, "round {round}");
        // The oldest slow connection was the one closed to make room.
        let mut oldest = slow.pop_front().expect("four slow connections");
        closed_by_server(&mut oldest).await;
        // Back at the cap for the next round.
        slow.push_back(slowloris().await);
    }
    api.shutdown().await;
}

#[tokio::test]
async fn with_every_connection_busy_a_new_connection_is_refused_at_once() {
    let api = Api::start("max_connections = 2\nbody_read_timeout_ms = 60000").await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(
            api.sent(b"POST /v1/presence HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
                .await,
        );
    }
    // The busy connections are accepted and in their handlers before the third is
    // accepted (the accept queue is FIFO), so the third finds no idle connection.
    let mut s = api.connect().await;
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let got = closed_by_server(&mut s).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // Finishing a busy request frees its connection for the next one.
    busy[0]
        .write_all(&[b' '; 98])
        .await
        .expect("rest of the body");
    busy[0].write_all(b"}").await.expect("rest of the body");
    let a = read_answer(&mut busy[0]).await;
    assert_eq!(a.status, 400, "{a:?}");
    let a = exchange(&api, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(a.status, 200);
    drop(busy);
    api.shutdown().await;
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_after_the_body_read_timeout() {
    let part = b"POST /v1/presence HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"ev";
    let (api, mut s) = Api::start_sent("body_read_timeout_ms = 300", part).await;
    let a = read_answer(&mut s).await;
    a.assert_error(408, "request_timeout");
    assert_eq!(a.header("connection"), Some("close"));
    api.shutdown().await;
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let api = Api::start("idle_timeout_ms = 300").await;
    // HTTP/2 without a stream: SETTINGS, then GOAWAY, then close.
    let mut s = api.sent(H2_HELLO).await;
    let frames = closed_by_server(&mut s).await;
    assert!(
        frames.windows(2).any(|w| w == [0x07, 0x00]),
        "a GOAWAY frame before the close: {frames:?}"
    );
    // A connection stuck before the protocol is known.
    let mut s = api.sent(b"P").await;
    closed_by_server(&mut s).await;
    api.shutdown().await;
}

/// The server's first SETTINGS frame, as (identifier, value) pairs.
async fn server_settings(api: &Api) -> Vec<(u16, u32)> {
    let mut s = api.sent(H2_HELLO).await;
    let mut header = [0u8; 9];
    tokio::time::timeout(WAIT, s.read_exact(&mut header))
        .await
        .expect("SETTINGS within the deadline")
        .expect("a frame header");
    assert_eq!(header[3], 0x04, "the first frame is SETTINGS");
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)
        .await
        .expect("the SETTINGS payload");
    payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

#[tokio::test]
async fn http2_concurrent_streams_are_capped_as_configured() {
    let api = Api::start("h2_max_concurrent_streams = 16").await;
    let settings = server_settings(&api).await;
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(0x3, 16)), "{settings:?}");
    api.shutdown().await;
    let api = Api::start("").await;
    let settings = server_settings(&api).await;
    assert!(settings.contains(&(0x3, 256)), "the default: {settings:?}");
    api.shutdown().await;
}

/// A request body fed from a channel: it sends what it is given and stays open.
struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Open a POST stream on `client` whose body is `sent` bytes and then nothing; returns
/// the body's sender (keep it to keep the stream open) and the pending answer.
fn stalled_post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Trickle>,
    addr: SocketAddr,
    sent: usize,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<(StatusCode, Value)>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = Request::post(format!("http://{addr}/v1/presence"))
        .body(Trickle(rx))
        .expect("a request");
    let client = client.clone();
    let answer = tokio::spawn(async move {
        let resp = client.request(req).await.expect("an answer");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    });
    let data = Bytes::from(vec![b' '; sent]);
    let sender = tx.clone();
    tokio::spawn(async move {
        let _ = sender.send(data).await;
    });
    (tx, answer)
}

/// The first of `answers` to arrive, within [`WAIT`].
/// The first of `answers` to arrive: `503` naming the `limit` that refused it.
async fn first_refused(
    answers: &mut Vec<tokio::task::JoinHandle<(StatusCode, Value)>>,
    limit: &str,
) -> Value {
    let (status, v) = first_answer(answers).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(limit), "{v}");
    v
}

async fn first_answer(
    answers: &mut Vec<tokio::task::JoinHandle<(StatusCode, Value)>>,
) -> (StatusCode, Value) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(i) = answers.iter().position(|a| a.is_finished()) {
                return answers.remove(i).await.expect("the request task ends");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("an answer within the deadline")
}

#[tokio::test]
async fn an_http2_connection_cannot_hold_more_body_memory_than_its_budget() {
    let api = Api::start(
        "max_connection_body_bytes = 131072\nmax_total_body_bytes = 196608\nbody_read_timeout_ms = 60000",
    )
    .await;
    let client = || {
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Trickle>()
    };
    // One connection, three unfinished 60 KiB bodies: the third does not fit in the
    // connection's 128 KiB.
    let a = client();
    let (mut held, mut answers): (Vec<_>, Vec<_>) = (0..3)
        .map(|_| stalled_post(&a, api.addr, 60 * 1024))
        .unzip();
    let v = first_refused(&mut answers, "max_connection_body_bytes").await;
    assert_eq!(v["error"]["code"], "overloaded");
    // A second connection with two more: 240 KiB in all does not fit in the 192 KiB
    // total, though each connection is within its own 128 KiB. Whichever body crosses
    // the line (on either connection) is refused, and only that one.
    let b = client();
    for _ in 0..2 {
        let (tx, answer) = stalled_post(&b, api.addr, 60 * 1024);
        held.push(tx);
        answers.push(answer);
    }
    first_refused(&mut answers, "max_total_body_bytes").await;
    drop(held);
    api.shutdown().await;
}

/// Resident and peak resident memory of process `pid`, in MiB (VmRSS, VmHWM).
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") / 1024, kib("VmHWM:") / 1024)
}

/// A measurement, not a test: the memory of a `fanfare` binary (default settings)
/// before and during two hostile loads, for the README. Run it with
/// `FANFARE_BIN=target/debug/fanfare cargo test -p fanfare-tests --test e2e
/// measure_memory -- --ignored --nocapture`:
/// 1. 300 slowloris connections, each sending one more header byte a second;
/// 2. one HTTP/2 connection opening 1,000 streams that each declare a 1 MiB body,
///    send 1,000,000 bytes of it, and stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: set FANFARE_BIN to a fanfare binary"]
async fn measure_memory_under_slowloris_and_an_h2_body_flood() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncBufReadExt;
    let bin = std::env::var("FANFARE_BIN").expect("FANFARE_BIN names a fanfare binary");
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("fanfare.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n\n[storage]\ndir = \"{}\"\ndurability = \"none\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config written");
    let mut child = tokio::process::Command::new(&bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("FANFARE_LOG", "warn,fanfare::serve=info")
        .env_remove("FANFARE_BIN")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the engine starts");
    let pid = child.id().expect("a pid");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next_line()
            .await
            .expect("engine log")
            .expect("the engine logs that it is ready");
        if let Some(a) = line.split("addr=").nth(1) {
            break a.trim().parse().expect("an address");
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let healthz_ms = || async move {
        let t = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut b = Vec::new();
            s.read_to_end(&mut b).await.ok()?;
            b.starts_with(b"HTTP/1.1 200").then_some(())
        })
        .await;
        match r {
            Ok(Some(())) => format!("{} ms", t.elapsed().as_millis()),
            _ => "no answer".to_string(),
        }
    };
    println!("idle: memory (rss, peak) {:?} MiB", memory_mib(pid));

    let alive = Arc::new(AtomicUsize::new(0));
    for _ in 0..300 {
        let alive = alive.clone();
        tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            alive.fetch_add(1, Ordering::Relaxed);
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if s.write_all(b"a").await.is_err() {
                    break;
                }
            }
            alive.fetch_sub(1, Ordering::Relaxed);
        });
    }
    for t in [5, 10, 30] {
        tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(t)).await;
        println!(
            "slowloris +{t}s: {} of 300 alive, memory {:?} MiB, healthz {}",
            alive.load(Ordering::Relaxed),
            memory_mib(pid),
            healthz_ms().await
        );
    }

    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Trickle>();
    let answered = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut held = Vec::new();
    let chunk = Bytes::from(vec![b' '; 1_000_000]);
    for _ in 0..1000 {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let req = Request::post(format!("http://{addr}/v1/presence"))
            .header("content-length", "1048576")
            .body(Trickle(rx))
            .expect("a request");
        let client = client.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let status = match client.request(req).await {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => {
                    use std::error::Error as _;
                    let mut why = e.to_string();
                    let mut cause = e.source();
                    while let Some(c) = cause {
                        why = format!("{why}: {c}");
                        cause = c.source();
                    }
                    format!("error ({why})")
                }
            };
            *answered
                .lock()
                .expect("not poisoned")
                .entry(status)
                .or_insert(0) += 1;
        });
        let chunk = chunk.clone();
        let sender = tx.clone();
        tokio::spawn(async move {
            let _ = sender.send(chunk).await;
        });
        held.push(tx);
    }
    for t in [5, 15, 30] {
        tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(t)).await;
        let answers = answered.lock().expect("not poisoned").clone();
        println!(
            "h2 flood +{t}s: answers {answers:?}, memory {:?} MiB, healthz {}",
            memory_mib(pid),
            healthz_ms().await
        );
    }
    drop(held);
    let _ = child.kill().await;
}
