//! Keep-alive: drives one HTTP/2 connection and PINGs it when it was idle for a whole
//! interval or a request on it timed out; a PING left unanswered ends the connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(super) struct KeepAlive {
    /// PING after a whole interval without requests; `None` = only when suspect.
    pub(super) every: Option<Duration>,
    pub(super) timeout: Duration,
    pub(super) ping: h2::PingPong,
    pub(super) used: Arc<AtomicBool>,
    pub(super) suspect: Arc<Notify>,
    /// The pool's PING counter. Not the pool itself: its connections' send handles
    /// would keep every connection (and this task) alive after the pool is dropped.
    pub(super) pings: Arc<AtomicU64>,
}

/// Poll the connection until it ends; PING it whenever it was idle for a whole
/// interval or a request on it timed out, and end it when a PING goes unanswered.
pub(super) async fn drive<T>(
    mut connection: std::pin::Pin<Box<h2::client::Connection<T, Bytes>>>,
    mut k: KeepAlive,
) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut tick = k.every.map(|every| {
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    loop {
        tokio::select! {
            r = connection.as_mut() => return r.map_err(|e| e.to_string()),
            _ = next_tick(&mut tick) => {
                if k.used.swap(false, Ordering::Relaxed) {
                    continue;
                }
            }
            _ = k.suspect.notified() => {}
        }
        k.pings.fetch_add(1, Ordering::Relaxed);
        let probe = tokio::time::timeout(k.timeout, k.ping.ping(h2::Ping::opaque()));
        tokio::select! {
            r = connection.as_mut() => return r.map_err(|e| e.to_string()),
            pong = probe => match pong {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("keep-alive ping failed: {e}")),
                Err(_) => return Err(format!("keep-alive ping unanswered for {:?}", k.timeout)),
            }
        }
    }
}

/// The interval's next tick; never without one.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
