//! Vendor channels: request building, auth tokens and response mapping per vendor.
//!
//! Providers are a closed set, registered in one table ([`table`]): [`Providers`]
//! holds one optional client per vendor, each implementing [`Vendor`];
//! the test seam is each vendor's configurable endpoint and CA, not a trait. A
//! vendor's answer is data: [`Verdict`] carries an [`Outcome`] with a small `Copy`
//! [`Cause`], so the hot path allocates nothing to classify a response.
//!
//! The message content is rendered once per message ([`Push::render`]): one APNs body
//! shared by every iOS device, one FCM template whose token slot is filled per device,
//! and likewise one template per Chinese OEM vendor ([`splice::Spliced`]) and one Web
//! Push plaintext (encrypted per subscription, as each has its own keys).
//!
//! Vendors: [`apns`], [`fcm`], [`huawei`], [`honor`], [`xiaomi`], [`oppo`], [`vivo`],
//! [`webpush`]; shared pieces: [`token`] (cached access tokens with single-flight
//! refresh) and [`splice`] (pre-rendered bodies with per-device slots).

#[cfg(test)]
mod alloc_tests;
pub mod answer;
pub mod apns;
pub mod connect;
pub mod delivery;
pub mod fcm;
pub mod honor;
pub mod huawei;
pub mod key_file;
pub mod oem;
pub mod oppo;
mod retry_after;
pub mod splice;
pub mod table;
pub mod token;
pub mod vivo;
pub mod webpush;
pub mod xiaomi;

use std::sync::Arc;
use std::time::Duration;

pub use delivery::Delivery;
pub use retry_after::retry_after;
pub(crate) use table::impl_vendor;
pub use table::{
    parse_token, push_kit_token, text_token, AppSettings, Apps, Configure, Error, Lane,
    ProviderKind, Providers, Push, Settings, Vendor,
};

/// The ZIMPushConfig of a message or call.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub title: Option<String>,
    pub content: Option<String>,
    /// Passed through to the device (APNs top-level `payload`, FCM `data.payload`).
    pub payload: Option<String>,
    /// Selects custom push rules (sound, channel, ...); carried for vendor rules.
    pub resources_id: Option<String>,
    /// Sets the app badge to this number.
    pub badge: Option<u32>,
    /// Adds this to each recipient's unread counter and sends their own total
    /// (API 1.1); exclusive with `badge`.
    pub badge_increment: Option<u32>,
    /// The sound name; `None` = the vendor default for alerts, none for silent pushes.
    pub sound: Option<String>,
    /// A background / data-only push that shows nothing (API 1.1).
    pub silent: bool,
    /// Later pushes with the same id replace earlier ones on the device (1..=64 bytes).
    pub collapse_id: Option<String>,
    /// How long the vendor keeps the push, and Fanfare retries it; `None` = the
    /// default (`messages.ttl_s` for messages, `timeout_s` for calls).
    pub ttl_s: Option<u64>,
    /// `None` = the default: high for calls and alerts.
    pub priority: Option<Priority>,
}

impl Content {
    /// The sound of a visible push: the request's, else the rule's, else the
    /// vendor's `default`; `None` for a silent push (it shows and plays nothing).
    pub fn alert_sound<'a>(&'a self, rule: Option<&'a str>) -> Option<&'a str> {
        if self.silent {
            return None;
        }
        Some(self.sound.as_deref().or(rule).unwrap_or("default"))
    }

    /// The push goes out at high priority: the request's `priority`, else high for
    /// alerts and calls and normal for silent pushes (APNs requires 5 for those).
    pub fn is_high_priority(&self) -> bool {
        let default = if self.silent {
            Priority::Normal
        } else {
            Priority::High
        };
        self.priority.unwrap_or(default) == Priority::High
    }

    /// Each device shows its recipient's own badge total (`badge_increment` on a
    /// visible push): the body is rendered with a badge slot filled per device.
    pub fn per_recipient_badge(&self) -> bool {
        self.badge_increment.is_some() && !self.silent
    }
}

/// A number in 0..2^31 derived from a `collapse_id`, for vendors whose "replace the
/// earlier notification" id is an integer (Xiaomi `notify_id`). FNV-1a: stable
/// across builds and restarts, so a later push with the same id replaces.
pub fn collapse_number(id: &str) -> u32 {
    let h = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h & 0x7fff_ffff
}

/// Vendors with a silent (data / pass-through) message type. OPPO and vivo have none:
/// a silent push is not sent to their devices rather than shown as an alert.
pub fn has_silent(lane: Lane) -> bool {
    !matches!(lane, Lane::Oppo | Lane::Vivo)
}

/// The per-recipient badge value written into a body slot (digits, on the stack).
pub fn badge_digits(buf: &mut itoa::Buffer, n: u32) -> &[u8] {
    buf.format(n).as_bytes()
}

/// A push's delivery priority (API 1.1 `priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Normal,
}

#[cfg(test)]
impl Content {
    /// A message's content in tests: title, text and payload.
    pub(crate) fn sample(
        title: impl Into<String>,
        content: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        Self {
            title: Some(title.into()),
            content: Some(content.into()),
            payload: Some(payload.into()),
            ..Self::default()
        }
    }

    /// A silent (data-only) [`Content::sample`] that collapses under `collapse_id`.
    pub(crate) fn silent_sample(collapse_id: Option<&str>) -> Self {
        Self {
            silent: true,
            collapse_id: collapse_id.map(Into::into),
            ..Self::sample("t", "c", "p")
        }
    }
}

/// One push to one device: what every vendor's `send` takes.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub device: &'a crate::state::Device,
    pub push: &'a Push,
    /// The recipient's own badge total, for a push with `badge_increment`.
    pub badge: Option<u32>,
    /// Keep the vendor's message id in the verdict (the debug endpoint asks for it).
    pub detail: bool,
}

/// What kind of push this is.
#[derive(Debug, Clone)]
pub enum Kind {
    Message {
        message_id: Arc<str>,
    },
    Call {
        call_id: Arc<str>,
        inviter_id: Arc<str>,
        timeout_s: u64,
    },
}

/// A rendered body over a vendor's size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the push is {size} bytes for {vendor}, over its limit of {limit} bytes")]
pub struct TooLarge {
    pub vendor: &'static str,
    pub size: usize,
    pub limit: usize,
}

impl Kind {
    /// The message id or call id (for log lines about one push).
    pub fn id(&self) -> &str {
        match self {
            Kind::Message { message_id } => message_id,
            Kind::Call { call_id, .. } => call_id,
        }
    }

    #[cfg(test)]
    /// A message in tests.
    pub(crate) fn message() -> Self {
        Kind::Message {
            message_id: "m".into(),
        }
    }
}

impl TooLarge {
    /// `Ok` when `size` is within `vendor`'s `limit`.
    pub fn check(vendor: &'static str, size: usize, limit: usize) -> Result<(), Self> {
        if size > limit {
            Err(Self {
                vendor,
                size,
                limit,
            })
        } else {
            Ok(())
        }
    }
}

impl Push {
    /// Render `content` for every vendor; fails when any body exceeds a vendor limit.
    pub fn render(
        kind: Kind,
        content: &Content,
        ttl_s: u64,
        now_unix: u64,
    ) -> Result<Self, TooLarge> {
        let rule = crate::config::Resource::default();
        Self::render_for(kind, content, &rule, ttl_s, now_unix, |_| true)
    }

    pub fn is_call(&self) -> bool {
        matches!(self.kind, Kind::Call { .. })
    }
}

/// Why a push was not simply delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    BadDeviceToken,
    Unregistered,
    DeviceTokenNotForTopic,
    SenderIdMismatch,
    PayloadTooLarge,
    /// The body is not what the vendor accepts (APNs `PayloadEmpty`, FCM
    /// `INVALID_ARGUMENT` about a field).
    BadPayload,
    /// The topic / app is wrong or not allowed (APNs `BadTopic`, `TopicDisallowed`,
    /// `MissingTopic`).
    BadTopic,
    BadRequest,
    /// Credentials or their configuration (APNs 403, FCM `THIRD_PARTY_AUTH_ERROR`,
    /// an OAuth token refused).
    ProviderAuth,
    /// The vendor throttles the whole app (FCM 429 `QUOTA_EXCEEDED` is
    /// [`Cause::QuotaExceeded`]; Huawei/OPPO flow control, Web Push 429 are this).
    TooManyRequests,
    /// The vendor throttles this one device (APNs 429 `TooManyRequests`): back off for
    /// this push only, do not slow the lane.
    DeviceThrottled,
    QuotaExceeded,
    ServerError,
    Unavailable,
    /// No answer after the request was (maybe) sent: reset, connection lost. The
    /// vendor may have processed it.
    Transport,
    /// No answer within the request timeout; the vendor may have processed it.
    Timeout,
    /// The vendor provably did not process the request (connect/TLS failure or
    /// timeout, GOAWAY above the last stream id, REFUSED_STREAM, reconnect backoff, a
    /// token endpoint that did not answer): resent without counting an attempt.
    Unsent,
    Unconfigured,
    Expired,
    /// A silent push to a vendor without a silent message type (OPPO, vivo): not
    /// sent, rather than shown as an alert.
    NoSilent,
}

impl Cause {
    pub const COUNT: usize = 20;
    pub const ALL: [Cause; Cause::COUNT] = [
        Cause::BadDeviceToken,
        Cause::Unregistered,
        Cause::DeviceTokenNotForTopic,
        Cause::SenderIdMismatch,
        Cause::PayloadTooLarge,
        Cause::BadPayload,
        Cause::BadTopic,
        Cause::BadRequest,
        Cause::ProviderAuth,
        Cause::TooManyRequests,
        Cause::DeviceThrottled,
        Cause::QuotaExceeded,
        Cause::ServerError,
        Cause::Unavailable,
        Cause::Transport,
        Cause::Timeout,
        Cause::Unsent,
        Cause::Unconfigured,
        Cause::Expired,
        Cause::NoSilent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadDeviceToken => "bad_device_token",
            Self::Unregistered => "unregistered",
            Self::DeviceTokenNotForTopic => "device_token_not_for_topic",
            Self::SenderIdMismatch => "sender_id_mismatch",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BadPayload => "bad_payload",
            Self::BadTopic => "bad_topic",
            Self::BadRequest => "bad_request",
            Self::ProviderAuth => "provider_auth",
            Self::TooManyRequests => "too_many_requests",
            Self::DeviceThrottled => "device_throttled",
            Self::QuotaExceeded => "quota_exceeded",
            Self::ServerError => "server_error",
            Self::Unavailable => "unavailable",
            Self::Transport => "transport",
            Self::Timeout => "timeout",
            Self::Unsent => "unsent",
            Self::Unconfigured => "unconfigured",
            Self::Expired => "expired",
            Self::NoSilent => "no_silent_type",
        }
    }

    /// Dense index for per-cause counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The vendor throttles the whole app: the lane slows down (AIMD) instead of
    /// retrying at full speed.
    pub fn slows_lane(self) -> bool {
        matches!(self, Cause::TooManyRequests | Cause::QuotaExceeded)
    }

    /// A failure of the vendor or the path to it, counted by the circuit breaker.
    pub fn trips_breaker(self) -> bool {
        matches!(
            self,
            Cause::ServerError
                | Cause::Unavailable
                | Cause::Transport
                | Cause::Timeout
                | Cause::Unsent
        )
    }

    /// The request may or may not have been processed: resending it risks a
    /// duplicate, not resending risks a loss. Fanfare resends (at least once) and
    /// counts it as an attempt and in `unknown_fate`.
    pub fn fate_unknown(self) -> bool {
        matches!(self, Cause::Transport | Cause::Timeout)
    }
}

/// The vendor's verdict as the engine acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retry {
        after: Option<Duration>,
        cause: Cause,
    },
    TokenDead(Cause),
    Rejected(Cause),
}

impl Outcome {
    pub fn retry(cause: Cause, after: Option<Duration>) -> Self {
        Outcome::Retry { after, cause }
    }

    /// The vendor throttles the whole app; without a `Retry-After`, wait a second.
    pub fn throttled(after: Option<Duration>) -> Self {
        Self::retry(
            Cause::TooManyRequests,
            Some(after.unwrap_or(Duration::from_secs(1))),
        )
    }

    /// The app's daily quota is spent: retry after the next midnight in China, when
    /// the Chinese vendors reset it.
    pub fn quota_spent() -> Self {
        Self::retry(Cause::QuotaExceeded, Some(until_next_day_cst()))
    }

    /// The vendor refused the access token: drop it so the next push fetches one.
    pub fn refuses_auth(self) -> bool {
        matches!(
            self,
            Outcome::Retry {
                cause: Cause::ProviderAuth,
                ..
            }
        )
    }
}

/// One push's result: the outcome plus what the vendor said, for the debug endpoint
/// and logs. `reason` is only filled for failures, `vendor_id` only on request.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub vendor_id: Option<String>,
    pub outcome: Outcome,
}

impl Verdict {
    /// No HTTP answer from a vendor reached through a [`crate::transport::Pool`].
    pub fn transport(e: &crate::transport::pool::Error) -> Self {
        let timeout = matches!(e, crate::transport::pool::Error::Timeout { .. });
        Self::unanswered(e, e.not_processed(), timeout)
    }

    /// No HTTP answer from a vendor reached through [`crate::transport::auto`].
    pub fn transport_auto(e: &crate::transport::auto::Error) -> Self {
        let timeout = matches!(e, crate::transport::auto::Error::Timeout { .. });
        Self::unanswered(e, e.not_processed(), timeout)
    }

    fn unanswered(e: &dyn std::error::Error, not_processed: bool, timeout: bool) -> Self {
        let cause = match (not_processed, timeout) {
            (true, _) => Cause::Unsent,
            (false, true) => Cause::Timeout,
            (false, false) => Cause::Transport,
        };
        Self::failed(error_chain(e), Outcome::Retry { after: None, cause })
    }

    /// A push that got no HTTP answer, or none was sent: `reason` says why.
    pub fn failed(reason: String, outcome: Outcome) -> Self {
        Self {
            status: None,
            reason: Some(reason),
            vendor_id: None,
            outcome,
        }
    }

    /// The vendor's answer: HTTP `status`, the vendor's result `code` (the reason of a
    /// failure; `http <status>` without one) and its message id (asked for by the
    /// debug endpoint only, so it is taken only when `detail`).
    pub fn answered(
        status: u16,
        outcome: Outcome,
        code: Option<&dyn std::fmt::Display>,
        detail: bool,
        vendor_id: impl FnOnce() -> Option<String>,
    ) -> Self {
        Self {
            status: Some(status),
            reason: match (outcome, code) {
                (Outcome::Delivered, _) => None,
                (_, Some(code)) => Some(code.to_string()),
                (_, None) => Some(format!("http {status}")),
            },
            vendor_id: if detail { vendor_id() } else { None },
            outcome,
        }
    }

    /// A transport failure described by `reason`.
    pub fn transport_detail(reason: String) -> Self {
        Self::failed(reason, Outcome::retry(Cause::Transport, None))
    }

    /// The vendor's access token could not be had: retry later. Not logged above debug
    /// here, once per push: the failure log (`telemetry::health`) reports it with its
    /// cause, rate-limited per provider, like any other vendor failure.
    pub fn auth_unavailable(vendor: &'static str, e: &token::Error) -> Self {
        let reason = error_chain(e);
        tracing::debug!(provider = vendor, error = %reason, "vendor access token unavailable");
        Self::failed(reason, Outcome::retry(Cause::ProviderAuth, None))
    }

    pub fn unconfigured() -> Self {
        Self::failed(
            "unconfigured".into(),
            Outcome::Rejected(Cause::Unconfigured),
        )
    }
}

/// The data fields every Android vendor and Web Push carry: `payload`, and for calls
/// `type`, `call_id`, `inviter_id`, `timeout_s` (all strings, as FCM requires).
pub fn data_fields(kind: &Kind, c: &Content) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let mut data = serde_json::Map::new();
    if let Some(p) = &c.payload {
        data.insert("payload".into(), json!(p));
    }
    if let Kind::Call {
        call_id,
        inviter_id,
        timeout_s,
    } = kind
    {
        data.insert("type".into(), json!("call_invite"));
        data.insert("call_id".into(), json!(&**call_id));
        data.insert("inviter_id".into(), json!(&**inviter_id));
        data.insert("timeout_s".into(), json!(timeout_s.to_string()));
    }
    data
}

/// A device token as the vendor expects it, borrowed: every token but APNs' (stored as
/// bytes, sent hex-encoded) is stored as the text the vendor issued.
pub fn token_text(t: crate::state::TokenRef<'_>) -> std::borrow::Cow<'_, str> {
    match t {
        crate::state::TokenRef::Text(s) => std::borrow::Cow::Borrowed(s),
        crate::state::TokenRef::Bytes(_) => std::borrow::Cow::Owned(t.to_wire()),
    }
}

/// A fixed request URI, parsed once when the client is built so a push clones it.
pub fn parse_uri(uri: String) -> Result<http::Uri, crate::transport::pool::Error> {
    let parsed = http::Uri::try_from(uri.as_str())
        .map_err(|_| crate::transport::pool::Error::BadEndpoint(uri.clone()))?;
    // Promote its buffers to shared ones now, so each push's clone only counts a
    // reference instead of the first one allocating.
    drop(parsed.clone());
    Ok(parsed)
}

/// The current UNIX time in milliseconds as a header value (Honor's `timestamp`),
/// formatted at most once per millisecond and shared by the pushes sent within it.
#[derive(Default)]
pub struct MsHeader(arc_swap::ArcSwapOption<(u64, http::HeaderValue)>);

impl MsHeader {
    pub fn now(&self) -> http::HeaderValue {
        let ms = unix_now_ms();
        if let Some(c) = &*self.0.load() {
            if c.0 == ms {
                return c.1.clone();
            }
        }
        let mut digits = itoa::Buffer::new();
        let v = http::HeaderValue::from_str(digits.format(ms)).expect("digits are a header value");
        self.0.store(Some(Arc::new((ms, v.clone()))));
        v
    }
}

/// Milliseconds since the UNIX epoch (vendor signatures and `timestamp` headers).
pub fn unix_now_ms() -> u64 {
    crate::clock::unix_now_ms()
}

/// Time until the next midnight in China (UTC+8), when the Chinese vendors' daily
/// quotas reset.
pub fn until_next_day_cst() -> Duration {
    const DAY: u64 = 86_400;
    let local = crate::clock::unix_now_s() + 8 * 3600;
    Duration::from_secs(DAY - local % DAY)
}

/// `e: source: source...` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_index_matches_all() {
        for (i, c) in Cause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{}", c.as_str());
        }
    }
}
