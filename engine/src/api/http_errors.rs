//! The HTTP/1.1 layer's own error answers, turned into the API's JSON error.
//!
//! hyper answers a request head it cannot parse by itself, before our service ever
//! sees the request, and with an empty body: a malformed request line or header gets
//! 400, a head over [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`] headers 431, a
//! target over 64 KiB 414. hyper has no hook for those answers, so [`JsonErrors`] sits
//! between hyper and the socket and rewrites them on their way out into
//! `{"error": {"code", "message"}}` like every other error of API.md.
//!
//! It can tell them apart because every answer of our own service carries a
//! `content-type` (errors a JSON body): a response head with an error status,
//! `content-length: 0` and no `content-type` can only be hyper's. To find each response
//! head it follows the framing of what hyper writes: a head, then `content-length`
//! bytes of body. Every answer of ours has a known length, so hyper always writes
//! `content-length`, except on an answer to HEAD, which has no body (`routes::handle`
//! empties it) and which hyper sends with no length at all: a head without
//! `content-length` or `transfer-encoding` is taken as bodiless. Anything it does not
//! expect (a chunked body, a head split across writes, bytes that are not a response
//! head where one should start) switches it to passing bytes through untouched for the
//! rest of the connection: it fails open, never corrupting an answer.
//!
//! HTTP/2 connections, recognised by the client preface on the read side, are passed
//! through from the start (and keep vectored writes): h2 refuses bad requests with
//! stream resets, and the service answers the rest.
//!
//! [`MAX_HEAD_BYTES`]: super::server::MAX_HEAD_BYTES
//! [`MAX_HEADERS`]: super::server::MAX_HEADERS

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::ApiError;
use super::server::{MAX_HEADERS, MAX_HEAD_BYTES};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest response head looked at; ours are about 150 bytes.
const MAX_RESPONSE_HEAD: usize = 4096;

/// A connection's socket as hyper sees it; see the module docs.
pub struct JsonErrors<I> {
    io: I,
    mode: Mode,
    /// Bytes of the current response (head and body) already judged, still to pass.
    pass: usize,
    /// A replacement answer owed to the socket before any further byte.
    owed: Vec<u8>,
    owed_from: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The protocol is not known yet: this many bytes of the client's first bytes
    /// matched the HTTP/2 preface.
    Sniff(u8),
    /// HTTP/1.x: response heads are judged.
    Http1,
    /// HTTP/2, or framing this module does not follow: bytes pass untouched.
    Passthrough,
}

/// What to do with the response that starts at the next byte written.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    /// Our own response (or an interim 1xx): this many bytes pass untouched.
    Pass(usize),
    /// hyper's bodiless error: its `head` bytes are replaced by `answer`.
    Replace { head: usize, answer: Vec<u8> },
    /// Not framing this module follows.
    Unknown,
}

impl<I> JsonErrors<I> {
    pub fn new(io: I) -> Self {
        Self {
            io,
            mode: Mode::Sniff(0),
            pass: 0,
            owed: Vec::new(),
            owed_from: 0,
        }
    }
}

impl<I: AsyncWrite + Unpin> JsonErrors<I> {
    /// Write what is owed (a replacement answer) before anything else.
    fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.owed_from < self.owed.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.owed[self.owed_from..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed_from += n;
        }
        if !self.owed.is_empty() {
            self.owed = Vec::new();
            self.owed_from = 0;
        }
        Poll::Ready(Ok(()))
    }
}

/// The mode after the client sent `new` bytes, `matched` of the preface seen before.
fn sniff(matched: u8, new: &[u8]) -> Mode {
    let want = &H2_PREFACE[usize::from(matched)..];
    let n = new.len().min(want.len());
    if new[..n] != want[..n] {
        Mode::Http1
    } else if usize::from(matched) + n == H2_PREFACE.len() {
        Mode::Passthrough
    } else {
        // n < 24, so the sum fits
        Mode::Sniff(matched + n as u8)
    }
}

/// Judge the response whose head starts at `out[0]`.
fn judge(out: &[u8]) -> Judged {
    let window = &out[..out.len().min(MAX_RESPONSE_HEAD)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Judged::Unknown;
    };
    let head = &out[..end];
    if !head.starts_with(b"HTTP/1.") || head.len() < 12 || head[8] != b' ' {
        return Judged::Unknown;
    }
    let Some(status) = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
    else {
        return Judged::Unknown;
    };
    let mut content_length = None;
    let mut content_type = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            match std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                Some(n) => content_length = Some(n),
                None => return Judged::Unknown,
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_type = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Judged::Unknown;
        }
    }
    let head_len = end + 4;
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Judged::Pass(head_len);
    }
    match content_length {
        Some(0) if status >= 400 && !content_type => Judged::Replace {
            head: head_len,
            answer: answer(status),
        },
        Some(n) => Judged::Pass(head_len + n),
        // An answer to HEAD (see the module docs).
        None => Judged::Pass(head_len),
    }
}

/// The JSON answer that replaces hyper's bodiless `status`.
fn answer(status: u16) -> Vec<u8> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let e = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::headers_too_large(format!(
            "the request line and headers are over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers"
        )),
        StatusCode::URI_TOO_LONG => ApiError::uri_too_long("the request target is too long"),
        StatusCode::BAD_REQUEST => ApiError::invalid(
            "the request is not valid HTTP/1.1 (malformed request line or header)",
        ),
        other => ApiError {
            status: other,
            code: if other.is_server_error() {
                "internal"
            } else {
                "invalid_argument"
            },
            message: format!(
                "the request was refused by the HTTP layer: {}",
                other.canonical_reason().unwrap_or("error")
            ),
            retry_after_s: None,
        },
    };
    let body = e.body();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        e.status.as_u16(),
        e.status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes()
}

impl<I: AsyncRead + Unpin> AsyncRead for JsonErrors<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if let Mode::Sniff(matched) = this.mode {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.mode = sniff(matched, new);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for JsonErrors<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.mode == Mode::Passthrough {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        }
        ready!(this.poll_owed(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.pass == 0 {
            match judge(buf) {
                Judged::Pass(n) => this.pass = n,
                Judged::Replace { head, answer } => {
                    this.owed = answer;
                    this.owed_from = 0;
                    // The head is consumed either way; what is not written yet is
                    // written by the next write, flush or shutdown.
                    if let Poll::Ready(Err(e)) = this.poll_owed(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(head));
                }
                Judged::Unknown => {
                    this.mode = Mode::Passthrough;
                    return Pin::new(&mut this.io).poll_write(cx, buf);
                }
            }
        }
        let n = this.pass.min(buf.len());
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..n]))?;
        this.pass -= written;
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.mode == Mode::Passthrough {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => Pin::new(this).poll_write(cx, b),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.mode == Mode::Passthrough && self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_owed(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_owed(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const OURS: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 7\r\ndate: x\r\n\r\n{\"a\":1}";
    const HYPERS: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n";

    /// A socket that takes at most `chunk` bytes per write.
    struct Trickle {
        written: Vec<u8>,
        chunk: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn through(chunk: usize, writes: &[&[u8]]) -> Vec<u8> {
        let mut w = JsonErrors::new(Trickle {
            written: Vec::new(),
            chunk,
        });
        w.mode = Mode::Http1;
        for b in writes {
            w.write_all(b).await.expect("writes to a Vec succeed");
        }
        w.flush().await.expect("flush succeeds");
        w.io.written
    }

    /// The `error.code` of the JSON answer that starts `out`.
    fn error_code(out: &[u8]) -> String {
        let at = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let v: serde_json::Value = serde_json::from_slice(&out[at..]).expect("a JSON body");
        v["error"]["code"]
            .as_str()
            .expect("an error code")
            .to_string()
    }

    /// `first` and hyper's error in one write: `first` passes as it is, and the error
    /// after it is still found and rewritten.
    async fn first_passes_then_hypers_is_rewritten(chunk: usize, first: &[u8]) {
        let out = through(chunk, &[&[first, HYPERS].concat()]).await;
        assert!(out.starts_with(first), "{out:?}");
        assert_eq!(error_code(&out[first.len()..]), "invalid_argument");
    }

    #[tokio::test]
    async fn hypers_bodiless_error_becomes_the_json_error() {
        let out = through(usize::MAX, &[HYPERS]).await;
        assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{out:?}");
        assert_eq!(error_code(&out), "invalid_argument");
        let out = through(
            usize::MAX,
            &[b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"],
        )
        .await;
        assert_eq!(error_code(&out), "headers_too_large");
    }

    #[tokio::test]
    async fn our_answers_pass_byte_for_byte_however_they_are_split() {
        let continue_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        let two = [OURS, continue_100, OURS].concat();
        for chunk in [1, 5, usize::MAX] {
            assert_eq!(through(chunk, &[&two]).await, two, "chunk {chunk}");
        }
        // After ours, pipelined in the same write, hyper's error is still found.
        first_passes_then_hypers_is_rewritten(3, OURS).await;
    }

    #[tokio::test]
    async fn an_answer_to_head_has_no_body_and_what_follows_is_still_judged() {
        let head: &[u8] =
            b"HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json\r\n\r\n";
        first_passes_then_hypers_is_rewritten(usize::MAX, head).await;
    }

    #[tokio::test]
    async fn unknown_framing_passes_untouched_from_then_on() {
        let chunked: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n";
        let all = [chunked, HYPERS].concat();
        assert_eq!(through(usize::MAX, &[&all]).await, all);
    }

    #[tokio::test]
    async fn an_http2_connection_passes_untouched() {
        let (client, server) = tokio::io::duplex(1024);
        let mut w = JsonErrors::new(server);
        let (mut cr, mut cw) = tokio::io::split(client);
        cw.write_all(H2_PREFACE).await.expect("duplex write");
        let mut got = [0u8; 24];
        w.read_exact(&mut got).await.expect("duplex read");
        assert_eq!(w.mode, Mode::Passthrough);
        w.write_all(HYPERS).await.expect("duplex write");
        let mut back = vec![0u8; HYPERS.len()];
        cr.read_exact(&mut back).await.expect("duplex read");
        assert_eq!(back, HYPERS);
    }

    #[test]
    fn sniffing_decides_on_the_first_differing_byte() {
        assert_eq!(sniff(0, b"PRI"), Mode::Sniff(3));
        assert_eq!(
            sniff(3, b" * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Mode::Passthrough
        );
        assert_eq!(sniff(0, b"GET / HTTP/1.1"), Mode::Http1);
        assert_eq!(sniff(2, b"X"), Mode::Http1);
    }
}
