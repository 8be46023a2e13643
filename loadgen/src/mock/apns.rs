//! Mock of the APNs provider API (`VENDORS.md` §1), token-based auth only.
//!
//! `POST /3/device/<hex token>` with `apns-*` headers, a `bearer` ES256 JWT and a
//! JSON body. Requests are validated in the order of pushy's `MockApnsServer`
//! (§1.5): method, duplicated headers, `apns-id`, topic, collapse id, priority, push
//! type, topic/push-type match, expiration, path, token shape, scripted token
//! verdict, provider token, body. Success is `200` with an `apns-id` header and
//! HEADERS carrying END_STREAM — no DATA frame, exactly like Apple. Errors are HEADERS
//! plus one DATA frame `{"reason":"..."}` (and `timestamp` in ms for `410
//! Unregistered`).
//!
//! Verified JWTs are cached per connection (they are re-sent on every request and an
//! ES256 verification costs far more than the rest of a request), and the first team
//! seen on a connection is pinned to it, as APNs allows one team per connection.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use parking_lot::Mutex;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::faults::Injected;
use super::server::{self, Recorder, Reply, Request, Settings, Verdicts};
use super::tls::TestCa;
use super::vendor::{self, Mock, Throttles, Vendor};

#[cfg(test)]
mod tests;

/// A provider token is refused as expired once its `iat` is older than this.
const PROVIDER_TOKEN_MAX_AGE_S: i64 = 3600;
/// Allowed clock skew for an `iat` in the future.
const PROVIDER_TOKEN_MAX_SKEW_S: i64 = 60;
/// Payload limit for every push type but `voip`.
const MAX_PAYLOAD: usize = 4096;
/// Payload limit for `voip`.
const MAX_PAYLOAD_VOIP: usize = 5120;
/// Longest accepted `apns-collapse-id`, in bytes.
const MAX_COLLAPSE_ID: usize = 64;
/// Verified-JWT cache entries per connection before the cache is cleared; a client
/// re-signs every ~50 min, so only a misbehaving client gets here.
const JWT_CACHE_PER_CONNECTION: usize = 64;
/// `SETTINGS_MAX_HEADER_LIST_SIZE` seen from production APNs (pushy #878).
const MAX_HEADER_LIST_SIZE: u32 = 8000;

const APNS_ID: HeaderName = HeaderName::from_static("apns-id");
const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
const APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");

/// A `.p8` token-auth signing key with its key id and team id.
#[derive(Clone)]
pub struct Credentials {
    /// PKCS#8 PEM P-256 private key, what a `.p8` file holds.
    pub key_pem: String,
    /// 10-character key id (the JWT header's `kid`).
    pub key_id: String,
    /// 10-character team id (the JWT claim `iss`).
    pub team_id: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("key_pem", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .finish()
    }
}

impl Credentials {
    /// A fresh P-256 key with random 10-character key and team ids.
    pub fn generate() -> anyhow::Result<Credentials> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generate APNs signing key")?;
        Ok(Credentials {
            key_pem: key.serialize_pem(),
            key_id: apple_id(),
            team_id: apple_id(),
        })
    }

    /// Writes the key to `dir/AuthKey_<key_id>.p8` (Apple's download name).
    pub fn write_key_file(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("AuthKey_{}.p8", self.key_id));
        std::fs::write(&path, &self.key_pem)
            .with_context(|| format!("write APNs key to {}", path.display()))?;
        Ok(path)
    }

    /// Signs a provider token (`{"alg":"ES256","kid":..}` / `{"iss":..,"iat":..}`)
    /// with this key, as a provider would; `iat` in Unix seconds.
    pub fn provider_token(&self, iat: i64) -> anyhow::Result<String> {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        header.typ = None;
        let key = EncodingKey::from_ec_pem(self.key_pem.as_bytes())
            .context("APNs key is not a PKCS#8 P-256 PEM")?;
        let claims = ProviderClaims {
            iss: self.team_id.clone(),
            iat,
        };
        jsonwebtoken::encode(&header, &claims, &key).context("sign APNs provider token")
    }
}

/// Apple-style 10-character id (upper-case letters and digits).
fn apple_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

/// Mock APNs settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The app's bundle id, e.g. `com.example.chat`; push types derive their topic
    /// from it (`voip` → `<bundle>.voip`, ...).
    pub topic: String,
    /// Further bundle ids of the same team this mock accepts, like `topic` (one key
    /// signs for every app of a team: an engine with several apps).
    pub other_topics: Vec<String>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised per connection.
    pub max_concurrent_streams: u32,
    /// Delay added before every answer.
    pub latency: Duration,
    /// Accepted device-token lengths in hex characters (even lengths only).
    pub token_hex_len: RangeInclusive<usize>,
    /// Accepted pushes (and rejections) kept for [`MockApns::received`]; counting
    /// goes on past it. Lower it for long load runs to bound memory.
    pub record_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            topic: "com.example.chat".to_owned(),
            other_topics: Vec::new(),
            max_concurrent_streams: 1000,
            latency: Duration::ZERO,
            token_hex_len: 64..=200,
            record_limit: usize::MAX,
        }
    }
}

/// A scripted answer for one device token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApnsVerdict {
    /// 410 `Unregistered` with `timestamp` (ms) = when the verdict was set.
    Unregistered,
    /// 400 `BadDeviceToken`.
    BadDeviceToken,
    /// 410 `ExpiredToken`.
    ExpiredToken,
}

/// One push APNs accepted.
#[derive(Clone, Debug)]
pub struct ApnsPush {
    /// Device token, hex as it appeared in the path.
    pub token: String,
    pub topic: String,
    pub push_type: String,
    /// `apns-priority`, or 10 when absent.
    pub priority: u8,
    /// `apns-expiration` (Unix seconds).
    pub expiration: Option<u64>,
    /// The request's `apns-id`, or the one the mock generated.
    pub apns_id: String,
    pub collapse_id: Option<String>,
    pub body: serde_json::Value,
    pub received_at: quanta::Instant,
}

/// A running mock APNs server. Dropping it stops the server.
pub type MockApns = Mock<Apns>;

impl Mock<Apns> {
    /// Starts the mock on `127.0.0.1:0`, trusting provider tokens signed with `creds`.
    /// Must be called inside a Tokio runtime.
    pub fn start(ca: &TestCa, creds: &Credentials, config: Config) -> anyhow::Result<MockApns> {
        let key_pair = rcgen::KeyPair::from_pem(&creds.key_pem)
            .context("APNs credentials key is not a PEM private key")?;
        let key = DecodingKey::from_ec_pem(key_pair.public_key_pem().as_bytes())
            .context("APNs credentials key is not a P-256 key")?;
        let mut validation = Validation::new(Algorithm::ES256);
        // Apple requires only `iss` and `iat`; expiry is judged from `iat` below.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;

        let apns = Arc::new(Apns {
            bundle: config.topic,
            other_bundles: config.other_topics,
            token_hex_len: config.token_hex_len,
            key,
            validation,
            key_id: creds.key_id.clone(),
            team_id: creds.team_id.clone(),
            verdicts: Verdicts::new(),
            recorder: Recorder::new(config.record_limit),
            jwts_seen: Mutex::new(HashSet::new()),
            throttles: Throttles::new(true),
        });
        let settings = Settings {
            max_concurrent_streams: config.max_concurrent_streams,
            max_header_list_size: Some(MAX_HEADER_LIST_SIZE),
            http1: false,
        };
        vendor::spawn(ca, server::bind()?, apns, true, settings, config.latency)
    }

    /// The next `n` pushes to `token_hex` get 429 `TooManyRequests` (too many pushes
    /// to one device) with `Retry-After: retry_after_s`.
    pub fn set_token_throttle(&self, token_hex: &str, n: u32, retry_after_s: u32) {
        self.vendor().throttles.set(token_hex, n, retry_after_s);
    }

    /// Distinct bearer JWTs seen on accepted requests (= [`Mock::tokens_issued`]).
    pub fn distinct_jwts(&self) -> usize {
        self.tokens_issued()
    }
}

/// The APNs request validation behind a [`MockApns`].
#[derive(Debug)]
pub struct Apns {
    bundle: String,
    other_bundles: Vec<String>,
    token_hex_len: RangeInclusive<usize>,
    key: DecodingKey,
    validation: Validation,
    key_id: String,
    team_id: String,
    verdicts: Verdicts<String, (ApnsVerdict, u64)>,
    recorder: Recorder<ApnsPush>,
    /// Bearer JWTs seen on accepted requests, for [`MockApns::distinct_jwts`].
    jwts_seen: Mutex<HashSet<String>>,
    throttles: Throttles,
}

impl Vendor for Apns {
    type Push = ApnsPush;
    type Verdict = ApnsVerdict;

    #[allow(private_interfaces)]
    fn recorder(&self) -> &Recorder<ApnsPush> {
        &self.recorder
    }

    /// Scripts the answer for `token_hex` (compared case-insensitively).
    fn set_verdict(&self, token_hex: &str, verdict: ApnsVerdict) {
        self.verdicts.set(
            token_hex.to_ascii_lowercase(),
            (verdict, server::unix_millis()),
        );
    }

    fn tokens_issued(&self) -> usize {
        self.jwts_seen.lock().len()
    }
}

/// Per-connection provider-token state.
#[derive(Debug, Default)]
pub(crate) struct Conn {
    auth: Mutex<ConnAuth>,
}

#[derive(Debug, Default)]
struct ConnAuth {
    /// The first team that authenticated on this connection.
    team: Option<String>,
    /// JWT string → outcome of verifying its header and signature.
    jwts: HashMap<String, Result<Verified, Reason>>,
}

#[derive(Clone, Debug)]
struct Verified {
    iss: String,
    iat: i64,
    /// Already counted in `distinct_jwts`.
    counted: bool,
}

#[derive(Debug, Deserialize, Serialize)]
struct ProviderClaims {
    iss: String,
    iat: i64,
}

/// APNs rejection reasons the mock produces (names are the wire strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    MethodNotAllowed,
    DuplicateHeaders,
    BadMessageId,
    MissingTopic,
    BadCollapseId,
    BadPriority,
    InvalidPushType,
    BadTopic,
    DeviceTokenNotForTopic,
    BadExpirationDate,
    BadPath,
    MissingDeviceToken,
    BadDeviceToken,
    Unregistered,
    ExpiredToken,
    MissingProviderToken,
    InvalidProviderToken,
    ExpiredProviderToken,
    PayloadEmpty,
    PayloadTooLarge,
    TooManyRequests,
    ServiceUnavailable,
    InternalServerError,
    /// Apple's table has no reason for a body that is not a JSON object with an `aps`
    /// dictionary (real APNs answers 400 with a reason of its own choosing); this
    /// mock answers 400 `BadPayload` so such bodies are caught in tests.
    BadPayload,
}

impl Reason {
    fn status(self) -> StatusCode {
        match self {
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reason::BadPath => StatusCode::NOT_FOUND,
            Reason::Unregistered | Reason::ExpiredToken => StatusCode::GONE,
            Reason::MissingProviderToken
            | Reason::InvalidProviderToken
            | Reason::ExpiredProviderToken => StatusCode::FORBIDDEN,
            Reason::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Reason::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Reason::DuplicateHeaders
            | Reason::BadMessageId
            | Reason::MissingTopic
            | Reason::BadCollapseId
            | Reason::BadPriority
            | Reason::InvalidPushType
            | Reason::BadTopic
            | Reason::DeviceTokenNotForTopic
            | Reason::BadExpirationDate
            | Reason::MissingDeviceToken
            | Reason::BadDeviceToken
            | Reason::PayloadEmpty
            | Reason::BadPayload => StatusCode::BAD_REQUEST,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::DuplicateHeaders => "DuplicateHeaders",
            Reason::BadMessageId => "BadMessageId",
            Reason::MissingTopic => "MissingTopic",
            Reason::BadCollapseId => "BadCollapseId",
            Reason::BadPriority => "BadPriority",
            Reason::InvalidPushType => "InvalidPushType",
            Reason::BadTopic => "BadTopic",
            Reason::DeviceTokenNotForTopic => "DeviceTokenNotForTopic",
            Reason::BadExpirationDate => "BadExpirationDate",
            Reason::BadPath => "BadPath",
            Reason::MissingDeviceToken => "MissingDeviceToken",
            Reason::BadDeviceToken => "BadDeviceToken",
            Reason::Unregistered => "Unregistered",
            Reason::ExpiredToken => "ExpiredToken",
            Reason::MissingProviderToken => "MissingProviderToken",
            Reason::InvalidProviderToken => "InvalidProviderToken",
            Reason::ExpiredProviderToken => "ExpiredProviderToken",
            Reason::PayloadEmpty => "PayloadEmpty",
            Reason::PayloadTooLarge => "PayloadTooLarge",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::InternalServerError => "InternalServerError",
            Reason::BadPayload => "BadPayload",
        }
    }
}

/// A rejection: the reason, plus the `timestamp` (ms) that goes with `Unregistered`.
#[derive(Debug)]
struct Rejection {
    reason: Reason,
    timestamp: Option<u64>,
    /// `Retry-After` seconds (429).
    retry_after: Option<u32>,
}

impl From<Reason> for Rejection {
    fn from(reason: Reason) -> Self {
        Rejection {
            reason,
            timestamp: None,
            retry_after: None,
        }
    }
}

/// `apns-push-type` values (§1.2) and the topic each requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PushType {
    Alert,
    Background,
    Location,
    Voip,
    Complication,
    FileProvider,
    Mdm,
    LiveActivity,
    PushToTalk,
    Widgets,
    Controls,
}

impl PushType {
    fn parse(value: &str) -> Option<PushType> {
        Some(match value {
            "alert" => PushType::Alert,
            "background" => PushType::Background,
            "location" => PushType::Location,
            "voip" => PushType::Voip,
            "complication" => PushType::Complication,
            "fileprovider" => PushType::FileProvider,
            "mdm" => PushType::Mdm,
            "liveactivity" => PushType::LiveActivity,
            "pushtotalk" => PushType::PushToTalk,
            "widgets" => PushType::Widgets,
            "controls" => PushType::Controls,
            _ => return None,
        })
    }

    /// What follows the bundle id in the topic; `None` when the topic is not derived
    /// from the bundle id (`mdm`: it comes from the MDM certificate).
    fn topic_suffix(self) -> Option<&'static str> {
        match self {
            PushType::Alert | PushType::Background => Some(""),
            PushType::Location => Some(".location-query"),
            PushType::Voip => Some(".voip"),
            PushType::Complication => Some(".complication"),
            PushType::FileProvider => Some(".pushkit.fileprovider"),
            PushType::LiveActivity => Some(".push-type.liveactivity"),
            PushType::PushToTalk => Some(".voip-ptt"),
            // Suffixes of the two newest types are not verified (VENDORS.md §1.2).
            PushType::Widgets => Some(".push-type.widgets"),
            PushType::Controls => Some(".push-type.controls"),
            PushType::Mdm => None,
        }
    }
}

/// Everything of an accepted request but the body.
struct Accepted<'a> {
    token: &'a str,
    topic: &'a str,
    push_type: &'a str,
    priority: u8,
    expiration: Option<u64>,
    collapse_id: Option<&'a str>,
    jwt: &'a str,
    body: serde_json::Value,
}

impl server::Service for Apns {
    type Conn = Conn;

    fn injected(&self, fault: Injected) -> Reply {
        let reason = match fault {
            Injected::Throttle { .. } => Reason::TooManyRequests,
            Injected::Unavailable { .. } => Reason::ServiceUnavailable,
            Injected::Internal => Reason::InternalServerError,
        };
        server::injected_reply(fault, format!(r#"{{"reason":"{}"}}"#, reason.as_str()))
    }

    fn handle(&self, conn: &Conn, request: Request) -> Reply {
        let headers = &request.head.headers;
        // Echo a well-formed `apns-id`, otherwise make one up (as APNs does).
        let apns_id = headers
            .get(APNS_ID)
            .filter(|id| id.to_str().is_ok_and(is_canonical_uuid))
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                    .expect("a hyphenated UUID is a valid header value")
            });
        match self.check(conn, &request) {
            Ok(push) => {
                self.count_jwt(conn, push.jwt);
                self.recorder.accept(ApnsPush {
                    token: push.token.to_owned(),
                    topic: push.topic.to_owned(),
                    push_type: push.push_type.to_owned(),
                    priority: push.priority,
                    expiration: push.expiration,
                    apns_id: apns_id
                        .to_str()
                        .expect("apns-id was checked to be ASCII")
                        .to_owned(),
                    collapse_id: push.collapse_id.map(str::to_owned),
                    body: push.body,
                    received_at: quanta::Instant::now(),
                });
                Reply::empty(StatusCode::OK).with_header(APNS_ID, apns_id)
            }
            Err(rejection) => {
                let reason = rejection.reason;
                self.recorder
                    .reject(reason.status().as_u16(), reason.as_str());
                let body = match rejection.timestamp {
                    Some(ms) => format!(r#"{{"reason":"{}","timestamp":{ms}}}"#, reason.as_str()),
                    None => format!(r#"{{"reason":"{}"}}"#, reason.as_str()),
                };
                let reply = Reply::json(reason.status(), body).with_header(APNS_ID, apns_id);
                match rejection.retry_after {
                    Some(s) => reply.with_header(http::header::RETRY_AFTER, HeaderValue::from(s)),
                    None => reply,
                }
            }
        }
    }
}

impl Apns {
    fn check<'r>(&self, conn: &Conn, request: &'r Request) -> Result<Accepted<'r>, Rejection> {
        let head = &request.head;
        let headers = &head.headers;
        if head.method != Method::POST {
            return Err(Reason::MethodNotAllowed.into());
        }
        let repeated = [
            &AUTHORIZATION,
            &APNS_ID,
            &APNS_TOPIC,
            &APNS_PUSH_TYPE,
            &APNS_PRIORITY,
            &APNS_EXPIRATION,
            &APNS_COLLAPSE_ID,
        ]
        .into_iter()
        .any(|name| headers.get_all(name).iter().nth(1).is_some());
        if repeated {
            return Err(Reason::DuplicateHeaders.into());
        }

        if let Some(id) = header(headers, &APNS_ID, Reason::BadMessageId)? {
            if !is_canonical_uuid(id) {
                return Err(Reason::BadMessageId.into());
            }
        }
        let topic = header(headers, &APNS_TOPIC, Reason::BadTopic)?
            .filter(|topic| !topic.is_empty())
            .ok_or(Reason::MissingTopic)?;
        let collapse_id = header(headers, &APNS_COLLAPSE_ID, Reason::BadCollapseId)?;
        if collapse_id.is_some_and(|id| id.len() > MAX_COLLAPSE_ID) {
            return Err(Reason::BadCollapseId.into());
        }
        let priority = match header(headers, &APNS_PRIORITY, Reason::BadPriority)? {
            None => 10,
            Some("10") => 10,
            Some("5") => 5,
            Some("1") => 1,
            Some(_) => return Err(Reason::BadPriority.into()),
        };
        // Optional for Apple on most platforms; the engine always sends it, so a
        // missing one is a bug worth failing on.
        let push_type_value = header(headers, &APNS_PUSH_TYPE, Reason::InvalidPushType)?
            .ok_or(Reason::InvalidPushType)?;
        let push_type = PushType::parse(push_type_value).ok_or(Reason::InvalidPushType)?;
        self.check_topic(topic, push_type)?;
        if push_type == PushType::Background && priority != 5 {
            return Err(Reason::BadPriority.into());
        }
        let expiration = header(headers, &APNS_EXPIRATION, Reason::BadExpirationDate)?
            .map(|value| value.parse::<u64>())
            .transpose()
            .map_err(|_| Reason::BadExpirationDate)?;

        let token = head
            .uri
            .path()
            .strip_prefix("/3/device/")
            .ok_or(Reason::BadPath)?;
        if token.is_empty() {
            return Err(Reason::MissingDeviceToken.into());
        }
        if token.contains('/') {
            return Err(Reason::BadPath.into());
        }
        if token.len() % 2 != 0
            || !self.token_hex_len.contains(&token.len())
            || !token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Reason::BadDeviceToken.into());
        }
        if let Some(rejection) = self.verdict(token) {
            return Err(rejection);
        }
        if let Some(rejection) = self.throttle(token) {
            return Err(rejection);
        }

        let jwt = self.authenticate(conn, headers)?;

        if request.body_len == 0 {
            return Err(Reason::PayloadEmpty.into());
        }
        let limit = if push_type == PushType::Voip {
            MAX_PAYLOAD_VOIP
        } else {
            MAX_PAYLOAD
        };
        if request.body_len > limit {
            return Err(Reason::PayloadTooLarge.into());
        }
        let body: serde_json::Value =
            serde_json::from_slice(&request.body).map_err(|_| Reason::BadPayload)?;
        if !body.get("aps").is_some_and(serde_json::Value::is_object) {
            return Err(Reason::BadPayload.into());
        }
        check_aps(&body["aps"], push_type)?;

        Ok(Accepted {
            token,
            topic,
            push_type: push_type_value,
            priority,
            expiration,
            collapse_id,
            jwt,
            body,
        })
    }

    /// The topic must be the bundle id plus the push type's suffix. A topic of the
    /// app's family with the wrong suffix (an alert to `<bundle>.voip`) is
    /// `DeviceTokenNotForTopic`; anything outside the family is `BadTopic`.
    fn check_topic(&self, topic: &str, push_type: PushType) -> Result<(), Reason> {
        let Some(suffix) = push_type.topic_suffix() else {
            return Ok(());
        };
        let bundle = std::iter::once(&self.bundle)
            .chain(&self.other_bundles)
            .filter(|b| topic.starts_with(b.as_str()))
            .max_by_key(|b| b.len())
            .unwrap_or(&self.bundle);
        match topic.strip_prefix(bundle.as_str()) {
            Some(rest) if rest == suffix => Ok(()),
            Some(rest) if rest.is_empty() || rest.starts_with('.') => {
                Err(Reason::DeviceTokenNotForTopic)
            }
            _ => Err(Reason::BadTopic),
        }
    }

    fn verdict(&self, token: &str) -> Option<Rejection> {
        let found = if token.bytes().any(|b| b.is_ascii_uppercase()) {
            self.verdicts.get(token.to_ascii_lowercase().as_str())
        } else {
            self.verdicts.get(token)
        };
        let (verdict, set_at_ms) = found?;
        Some(match verdict {
            ApnsVerdict::Unregistered => Rejection {
                reason: Reason::Unregistered,
                timestamp: Some(set_at_ms),
                retry_after: None,
            },
            ApnsVerdict::BadDeviceToken => Reason::BadDeviceToken.into(),
            ApnsVerdict::ExpiredToken => Reason::ExpiredToken.into(),
        })
    }

    /// A scripted per-device 429, consuming one.
    fn throttle(&self, token: &str) -> Option<Rejection> {
        self.throttles.take(token).map(|retry_after| Rejection {
            reason: Reason::TooManyRequests,
            timestamp: None,
            retry_after: Some(retry_after),
        })
    }

    /// Checks the `authorization: bearer <JWT>` provider token; returns the JWT.
    fn authenticate<'h>(&self, conn: &Conn, headers: &'h HeaderMap) -> Result<&'h str, Reason> {
        let value = headers
            .get(AUTHORIZATION)
            .ok_or(Reason::MissingProviderToken)?
            .to_str()
            .map_err(|_| Reason::InvalidProviderToken)?
            .trim();
        if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
            return Err(Reason::MissingProviderToken);
        }
        let jwt = server::bearer_token(value).ok_or(Reason::InvalidProviderToken)?;

        let mut guard = conn.auth.lock();
        let auth = &mut *guard;
        if !auth.jwts.contains_key(jwt) {
            if auth.jwts.len() >= JWT_CACHE_PER_CONNECTION {
                auth.jwts.clear();
            }
            let verified = self.verify(jwt);
            auth.jwts.insert(jwt.to_owned(), verified);
        }
        let verified = match &auth.jwts[jwt] {
            Ok(verified) => verified,
            Err(reason) => return Err(*reason),
        };
        // One team per connection: the first team seen is pinned.
        match &auth.team {
            Some(team) if *team != verified.iss => return Err(Reason::InvalidProviderToken),
            Some(_) => {}
            None => auth.team = Some(verified.iss.clone()),
        }
        let now = server::unix_secs();
        if verified.iat.saturating_add(PROVIDER_TOKEN_MAX_AGE_S) < now {
            return Err(Reason::ExpiredProviderToken);
        }
        if verified.iat > now.saturating_add(PROVIDER_TOKEN_MAX_SKEW_S) {
            return Err(Reason::InvalidProviderToken);
        }
        Ok(jwt)
    }

    /// Header (`alg` ES256, `kid`), signature and `iss`: everything about a JWT that
    /// does not depend on the time of the request.
    fn verify(&self, jwt: &str) -> Result<Verified, Reason> {
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| Reason::InvalidProviderToken)?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(self.key_id.as_str()) {
            return Err(Reason::InvalidProviderToken);
        }
        let claims = jsonwebtoken::decode::<ProviderClaims>(jwt, &self.key, &self.validation)
            .map_err(|_| Reason::InvalidProviderToken)?
            .claims;
        if claims.iss != self.team_id {
            return Err(Reason::InvalidProviderToken);
        }
        Ok(Verified {
            iss: claims.iss,
            iat: claims.iat,
            counted: false,
        })
    }

    /// Records `jwt` as seen on an accepted request. The per-connection `counted`
    /// flag keeps the shared set off the hot path after a JWT's first push.
    fn count_jwt(&self, conn: &Conn, jwt: &str) {
        let mut auth = conn.auth.lock();
        if let Some(Ok(verified)) = auth.jwts.get_mut(jwt) {
            if !verified.counted {
                verified.counted = true;
                drop(auth);
                let mut seen = self.jwts_seen.lock();
                if !seen.contains(jwt) {
                    seen.insert(jwt.to_owned());
                }
            }
        }
    }
}

/// A header as text; `Err(bad)` when it is not visible ASCII.
/// What Apple refuses in `aps`: a background push must be `content-available: 1`
/// with no `alert`, `sound` or `badge`; `badge` is a number, `interruption-level` one
/// of Apple's four, `content-available`/`mutable-content` are 1.
fn check_aps(aps: &serde_json::Value, push_type: PushType) -> Result<(), Reason> {
    if push_type == PushType::Background {
        let shows = ["alert", "sound", "badge"]
            .iter()
            .any(|k| aps.get(*k).is_some());
        if shows || aps.get("content-available") != Some(&serde_json::json!(1)) {
            return Err(Reason::BadPayload);
        }
    }
    if aps.get("badge").is_some_and(|b| !b.is_u64()) {
        return Err(Reason::BadPayload);
    }
    if let Some(level) = aps.get("interruption-level") {
        let known = ["passive", "active", "time-sensitive", "critical"];
        if !level.as_str().is_some_and(|l| known.contains(&l)) {
            return Err(Reason::BadPayload);
        }
    }
    for key in ["content-available", "mutable-content"] {
        if aps.get(key).is_some_and(|v| v != &serde_json::json!(1)) {
            return Err(Reason::BadPayload);
        }
    }
    Ok(())
}

fn header<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    bad: Reason,
) -> Result<Option<&'h str>, Reason> {
    headers
        .get(name)
        .map(|value| value.to_str().map_err(|_| bad))
        .transpose()
}

/// Lower-case canonical `8-4-4-4-12` UUID, the only `apns-id` form APNs accepts.
fn is_canonical_uuid(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}
