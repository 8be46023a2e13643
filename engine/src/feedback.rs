//! Feedback to the IM server (API.md, "Feedback to the IM server"): dead tokens and
//! permanent rejections, POSTed in signed batches to `[feedback] url`.
//!
//! The dispatcher reports an [`Event`] with one non-blocking [`Queue::try_push`] into a
//! bounded channel (`[feedback] queue_capacity` events). **Overflow policy: drop the
//! new event**, counted in `feedback.overflow` (`/v1/stats`) and
//! `fanfare_feedback_overflow_total` (`/metrics`) and logged at most once every
//! [`OVERFLOW_LOG_EVERY`]. So a slow, failing or dead receiver never slows delivery:
//! the worst it costs a lane is a failed `try_send`.
//!
//! One task ([`run`]) takes events into a batch of at most `max_batch` events, sent
//! once it is full or its first event is `max_delay_ms` old, as
//! `{"events": [...]}` with `X-Fanfare-Signature: sha256=<hex HMAC-SHA256(body,
//! secret)>`. A batch is retried with full-jitter backoff ([`RETRY_BASE`] doubling to
//! [`RETRY_MAX`]) until the receiver answers 2xx; meanwhile new events wait in the
//! channel (and overflow it when the receiver stays away long enough). Every network
//! phase is bounded by `[transport]`: TCP connect and TLS handshake by
//! `connect_timeout_ms`, the request by `request_timeout_ms`. `http://` and `https://`
//! URLs both work; `ca_file` adds a trusted root for an internal CA.
//!
//! The secret is a [`Secret`]: never in `Debug`, logs or errors; errors and logs name
//! only the URL's origin (scheme, host and port), never its path or query.

mod section;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::shutdown::Shutdown;
use crate::state::ProviderKind;
use crate::telemetry::{inc, Stats};
use crate::transport::auto;

pub use section::{Section, Settings};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-fanfare-signature";
/// First retry delay ceiling of a batch the receiver did not take.
pub const RETRY_BASE: Duration = Duration::from_millis(500);
/// Largest retry delay ceiling.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// At most one overflow (and one delivery failure) log line this often.
pub const OVERFLOW_LOG_EVERY: Duration = Duration::from_secs(10);

/// What happened to a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The vendor said the token is dead; the binding was removed.
    TokenDead,
    /// The vendor refused a push for good, for another reason than a dead token.
    PushRejected,
}

/// One event of a batch, as the receiver reads it (field order as in API.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: Kind,
    pub push_id: Box<str>,
    pub user_id: Box<str>,
    #[serde(with = "provider_name")]
    pub provider: ProviderKind,
    /// The vendor's reason (`Unregistered`, `BadDeviceToken`, ...).
    pub reason: Option<Box<str>>,
    /// UNIX milliseconds of the vendor's answer.
    pub at_ms: u64,
}

/// The body of one POST: `{"events": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub events: Vec<Event>,
}

/// `X-Fanfare-Signature` of `body`: `sha256=<hex HMAC-SHA256(body, secret)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// True when `header` is the signature of `body` under `secret` (constant time): what
/// a receiver checks before trusting a batch.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_mac) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The dispatcher's end of the feedback channel.
pub struct Queue {
    tx: mpsc::Sender<Event>,
    stats: Arc<Stats>,
    clock: Clock,
    /// [`Clock::now_ms`] of the last overflow log line, plus one (0 = never).
    logged_ms: AtomicU64,
}

impl Queue {
    /// Queue `event` without waiting; a full queue drops it (counted, logged at most
    /// every [`OVERFLOW_LOG_EVERY`]).
    pub fn try_push(&self, event: Event) {
        if self.tx.try_send(event).is_ok() {
            return;
        }
        inc(&self.stats.feedback.overflow);
        if due(&self.logged_ms, self.clock.now_ms()) {
            tracing::warn!(
                overflow = self.stats.feedback.overflow.load(Ordering::Relaxed),
                "feedback queue full: events dropped (the receiver is slow or down; counted in feedback.overflow)"
            );
        }
    }
}

/// True at most once per [`OVERFLOW_LOG_EVERY`] of `now_ms` (the first time at once).
fn due(last: &AtomicU64, now_ms: u64) -> bool {
    let every = OVERFLOW_LOG_EVERY.as_millis() as u64;
    let prev = last.load(Ordering::Relaxed);
    (prev == 0 || now_ms + 1 >= prev + every)
        && last
            .compare_exchange(prev, now_ms + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Start the feedback task for `settings`; it stops when `shutdown` fires. Returns
/// the queue the dispatcher reports to and the task.
pub fn spawn(
    settings: &Settings,
    stats: Arc<Stats>,
    clock: Clock,
    shutdown: Shutdown,
) -> Result<(Arc<Queue>, impl std::future::Future<Output = ()>), crate::transport::tls::Error> {
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let client = auto::Client::new(
        &settings.origin,
        settings.ca_file.as_deref(),
        &settings.pool,
    )?;
    let queue = Arc::new(Queue {
        tx,
        stats: stats.clone(),
        clock: clock.clone(),
        logged_ms: AtomicU64::new(0),
    });
    let sender = Sender {
        settings: settings.clone(),
        client,
        stats,
        clock,
        logged_ms: AtomicU64::new(0),
    };
    Ok((queue, run(sender, rx, shutdown)))
}

/// The receiving end: batches, signs and posts.
struct Sender {
    settings: Settings,
    client: auto::Client,
    stats: Arc<Stats>,
    clock: Clock,
    logged_ms: AtomicU64,
}

/// Batch, sign and post events until `shutdown` (see the module docs).
async fn run(sender: Sender, mut rx: mpsc::Receiver<Event>, mut shutdown: Shutdown) {
    let max_batch = sender.settings.max_batch;
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        if shutdown
            .or(rx.recv_many(&mut batch, max_batch))
            .await
            .unwrap_or(0)
            == 0
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + sender.settings.max_delay;
        while batch.len() < max_batch {
            let room = max_batch - batch.len();
            tokio::select! {
                got = rx.recv_many(&mut batch, room) => if got == 0 { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.wait() => return,
            }
        }
        let body = serde_json::to_vec(&Batch {
            events: std::mem::take(&mut batch),
        })
        .expect("events are plain structs with string keys");
        let signature = signature(sender.settings.secret.expose().as_bytes(), &body);
        if !sender
            .deliver(Bytes::from(body), &signature, &mut shutdown)
            .await
        {
            return;
        }
    }
}

impl Sender {
    /// Post one batch until the receiver answers 2xx; false when shutdown came first.
    async fn deliver(&self, body: Bytes, signature: &str, shutdown: &mut Shutdown) -> bool {
        let s = &self.stats.feedback;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let req = http::Request::post(&self.settings.url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature)
                .header(http::header::USER_AGENT, "fanfare-feedback")
                .body(Full::new(body.clone()))
                .expect("the URL was validated and the headers are ASCII");
            let Some(answer) = shutdown.or(self.client.send(req)).await else {
                return false;
            };
            let failure = match answer {
                Ok(resp) if resp.status.is_success() => {
                    inc(&s.batches_sent);
                    return true;
                }
                Ok(resp) => format!("answered {}", resp.status),
                Err(e) => crate::providers::error_chain(&e),
            };
            inc(&s.posts_failed);
            let delay =
                crate::fanout::dispatch::backoff::full_jitter(attempt, RETRY_BASE, RETRY_MAX);
            if due(&self.logged_ms, self.clock.now_ms()) {
                tracing::warn!(origin = %self.settings.origin, attempt, error = %failure, retry_in_ms = delay.as_millis() as u64, "feedback receiver did not take a batch; retrying with backoff (logged at most every 10 s)");
            } else {
                tracing::debug!(origin = %self.settings.origin, attempt, error = %failure, "feedback receiver did not take a batch");
            }
            if shutdown.or(tokio::time::sleep(delay)).await.is_none() {
                return false;
            }
        }
    }
}

/// A provider as its API name (`"apns"`), both ways.
mod provider_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::state::ProviderKind;

    pub fn serialize<S: Serializer>(p: &ProviderKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProviderKind, D::Error> {
        let name = <&str>::deserialize(d)?;
        ProviderKind::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown provider {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_body_and_secret() {
        let sig = signature(b"k", b"{\"events\":[]}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify(b"k", b"{\"events\":[]}", &sig));
        assert!(!verify(b"other", b"{\"events\":[]}", &sig));
        assert!(!verify(b"k", b"{\"events\":[1]}", &sig));
        assert!(!verify(b"k", b"{\"events\":[]}", &sig[7..]));
    }

    #[test]
    fn overflow_is_logged_at_most_once_per_period() {
        let last = AtomicU64::new(0);
        assert!(due(&last, 0), "the first time at once");
        assert!(!due(&last, 5_000));
        assert!(due(&last, 10_000));
        assert!(!due(&last, 19_999));
    }

    #[test]
    fn an_event_is_written_as_api_md_shows_it() {
        let e = Event {
            kind: Kind::TokenDead,
            push_id: "d9".into(),
            user_id: "u1".into(),
            provider: ProviderKind::Apns,
            reason: Some("Unregistered".into()),
            at_ms: 1_795_750_000_000,
        };
        let body = serde_json::to_string(&Batch { events: vec![e] }).expect("json");
        assert_eq!(
            body,
            r#"{"events":[{"type":"token_dead","push_id":"d9","user_id":"u1","provider":"apns","reason":"Unregistered","at_ms":1795750000000}]}"#
        );
    }
}
