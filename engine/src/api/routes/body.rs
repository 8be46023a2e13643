//! Reading request bodies under their limits, and draining the unread rest of one.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Req;
use crate::api::connections::{Conn, Held, Shortfall};
use crate::api::error::ApiError;
use crate::Engine;

/// Most bytes of an unneeded body read and thrown away before answering.
const DRAIN_MAX_BYTES: usize = 1 << 20;
/// Longest time spent draining an unneeded body before answering.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Read and discard what is left of a body, at most [`DRAIN_MAX_BYTES`] for at most
/// [`DRAIN_MAX_TIME`] (nginx's lingering close, done before answering). True when the
/// body ended.
pub(super) async fn drain(body: &mut Incoming) -> bool {
    let deadline = tokio::time::Instant::now() + DRAIN_MAX_TIME;
    let mut left = DRAIN_MAX_BYTES;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    match left.checked_sub(data.len()) {
                        Some(l) => left = l,
                        None => return false,
                    }
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// A request body read in full, its bytes held against the body budgets until the
/// request is answered.
pub(super) struct Body<'c> {
    bytes: Bytes,
    _held: Held<'c>,
}

impl std::ops::Deref for Body<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Read the body of `req` in full: at most `api.max_body_bytes` (413), within
/// `api.body_read_timeout_ms` (408), within the connection's and the engine's body
/// budgets (503). On error what is left of the body stays in `req` for [`super::handle`].
pub(super) async fn read_body<'c>(
    engine: &Engine,
    conn: &'c Conn,
    req: &mut Req,
) -> Result<Body<'c>, ApiError> {
    let limit = engine.config.api.max_body_bytes;
    let too_large = || {
        ApiError::too_large(format!(
            "request body is over api.max_body_bytes ({limit} bytes)"
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut held = conn.hold();
    let Some(body) = req.body_mut().as_mut() else {
        return Ok(Body {
            bytes: Bytes::new(),
            _held: held,
        });
    };
    let timeout = engine.config.api.body_read_timeout_ms;
    let deadline = tokio::time::Instant::now() + timeout;
    // One chunk is kept as is; more are copied into one buffer.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut len = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(_))) => return Err(ApiError::invalid("request body could not be read")),
            Err(_) => {
                return Err(ApiError::timeout(format!(
                    "request body not received within api.body_read_timeout_ms ({} ms)",
                    timeout.as_millis()
                )))
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len();
        if len > limit {
            return Err(too_large());
        }
        held.take(data.len()).map_err(|short| {
            let message = match short {
                Shortfall::Connection { limit } => format!(
                    "this connection's request bodies in memory would exceed api.max_connection_body_bytes ({limit} bytes); retry later"
                ),
                Shortfall::Total { limit } => format!(
                    "request bodies in memory would exceed api.max_total_body_bytes ({limit} bytes); retry later"
                ),
            };
            ApiError::unavailable(message, 1)
        })?;
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(f) => {
                let hint = declared.map_or(0, |d| d as usize).min(limit);
                joined.reserve(hint.max(f.len() + data.len()));
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&data);
            }
        }
    }
    *req.body_mut() = None;
    let bytes = first.unwrap_or_else(|| joined.freeze());
    Ok(Body { bytes, _held: held })
}
