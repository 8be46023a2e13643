//! Mock Web Push service (RFC 8030 / 8291 / 8292, `VENDORS.md` §4), answering like
//! Mozilla's autopush.
//!
//! [`Mock::subscribe`] creates a subscription the way a browser does: a P-256 key
//! pair and a 16-byte auth secret held by the mock, and an endpoint
//! `https://127.0.0.1:PORT/wpush/<id>`. `POST` to it must carry `TTL` (400 errno
//! 111), `Content-Encoding: aes128gcm`, and `Authorization: vapid t=<JWT>, k=<key>`
//! whose ES256 signature verifies with `k`, `aud` = this origin, `exp` in the future
//! and at most 24 h away, `sub` a `mailto:`/`https:` contact (401 errno 109). The body
//! (≤ 4096 bytes, else 413 errno 104) is decrypted with the subscription's private key
//! (400 errno 110 if that fails) and recorded as its plaintext JSON. Dead → 410 errno
//! 103, rate limit/quota → 429 with `Retry-After: 1`. Success: 201 with `Location`
//! and the `TTL` used. Each distinct VAPID JWT counts in `tokens_issued`, so JWT
//! reuse per origin is visible.
//!
//! Serves HTTP/2 and HTTP/1.1 (ALPN).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, LOCATION, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::{PublicKey, SecretKey};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use serde_json::{json, Value};
use sha2::Sha256;

use super::server::{self, Reply, Request};
use super::tls::TestCa;
use super::vendor::{
    self, Common, Core, Dialect, Mock, MockOem, Oem, Refused, Scripted, VendorPush,
};

/// Largest body accepted (push services must take at least 4096 bytes).
pub const MAX_BODY: usize = 4096;

/// A browser-side subscription the mock can decrypt for.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub endpoint: String,
    /// base64url of the 65-byte public key.
    pub p256dh: String,
    /// base64url of the 16-byte auth secret.
    pub auth: String,
}

impl Subscription {
    /// The PushSubscription JSON a browser hands the app (the binding's token).
    pub fn to_json(&self) -> String {
        json!({"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}})
            .to_string()
    }
}

/// A subscription's keys (`SecretKey`'s `Debug` shows no key material).
#[derive(Debug)]
struct Keys {
    private: SecretKey,
    public: Vec<u8>,
    auth: [u8; 16],
    endpoint: String,
}

/// The push service's origin and the subscriptions it holds.
#[derive(Debug)]
pub struct Webpush {
    origin: String,
    subs: RwLock<HashMap<String, Arc<Keys>>>,
    seen_jwts: Mutex<HashSet<String>>,
}

pub fn start(ca: &TestCa, common: Common) -> anyhow::Result<MockOem<Webpush>> {
    let listener = server::bind()?;
    let webpush = Webpush {
        origin: format!("https://{}", listener.local_addr()?),
        subs: RwLock::new(HashMap::new()),
        seen_jwts: Mutex::new(HashSet::new()),
    };
    vendor::spawn_oem(ca, listener, webpush, &common)
}

impl Mock<Oem<Webpush>> {
    /// A new subscription whose endpoint is on this mock.
    pub fn subscribe(&self) -> Subscription {
        let w = self.dialect();
        let mut rng = rand::thread_rng();
        let private = SecretKey::random(&mut rng);
        let public = private.public_key().to_sec1_bytes().to_vec();
        let auth: [u8; 16] = rng.gen();
        let id = URL_SAFE_NO_PAD.encode(rng.gen::<[u8; 18]>());
        let endpoint = format!("{}/wpush/{id}", w.origin);
        let sub = Subscription {
            endpoint: endpoint.clone(),
            p256dh: URL_SAFE_NO_PAD.encode(&public),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        w.subs.write().insert(
            id,
            Arc::new(Keys {
                private,
                public,
                auth,
                endpoint,
            }),
        );
        sub
    }
}

fn autopush(status: StatusCode, errno: i64, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"code": status.as_u16(), "errno": errno, "error": status.canonical_reason().unwrap_or(""),
               "message": message, "more_info": "http://autopush.readthedocs.io/en/latest/http.html#error-codes"})
        .to_string(),
    )
}

#[allow(private_interfaces)]
impl Dialect for Webpush {
    const H2: bool = true;

    fn serve(&self, core: &Core, r: &Request) -> Result<Reply, Refused> {
        self.push(core, r).map_err(|(status, errno, message)| {
            let reply = autopush(status, errno, message);
            let reply = if status == StatusCode::TOO_MANY_REQUESTS {
                reply.with_header(RETRY_AFTER, HeaderValue::from_static("1"))
            } else {
                reply
            };
            Refused::new(status.as_u16(), message, reply)
        })
    }
}

type Failure = (StatusCode, i64, &'static str);

impl Webpush {
    fn push(&self, core: &Core, r: &Request) -> Result<Reply, Failure> {
        let id = r.head.uri.path().strip_prefix("/wpush/").ok_or((
            StatusCode::NOT_FOUND,
            102,
            "Invalid URL endpoint",
        ))?;
        if r.head.method != Method::POST {
            return Err((StatusCode::METHOD_NOT_ALLOWED, 999, "Method not allowed"));
        }
        let keys = self.subs.read().get(id).cloned().ok_or((
            StatusCode::NOT_FOUND,
            102,
            "Invalid URL endpoint",
        ))?;
        let h = &r.head.headers;
        let ttl = h
            .get("ttl")
            .and_then(|v| v.to_str().ok())
            .ok_or((StatusCode::BAD_REQUEST, 111, "Missing TTL header"))?
            .parse::<u64>()
            .map_err(|_| (StatusCode::BAD_REQUEST, 112, "Invalid TTL header"))?
            .min(2_592_000);
        if let Some(topic) = h.get("topic").and_then(|v| v.to_str().ok()) {
            let ok = topic.len() <= 32
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err((StatusCode::BAD_REQUEST, 113, "Invalid Topic header"));
            }
        }
        if let Some(u) = h.get("urgency") {
            if !matches!(u.to_str(), Ok("very-low" | "low" | "normal" | "high")) {
                return Err((StatusCode::BAD_REQUEST, 999, "Invalid Urgency header"));
            }
        }
        let jwt = self.check_vapid(h.get(AUTHORIZATION).and_then(|v| v.to_str().ok()))?;
        if self.seen_jwts.lock().insert(jwt) {
            core.count_token();
        }
        if h.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()) != Some("aes128gcm") {
            return Err((StatusCode::BAD_REQUEST, 110, "Unknown Content-Encoding"));
        }
        if r.body_len > MAX_BODY {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, 104, "Payload too large"));
        }
        let plaintext = decrypt(&r.body, &keys).ok_or((
            StatusCode::BAD_REQUEST,
            110,
            "Could not decrypt the payload",
        ))?;
        match core.script(&keys.endpoint) {
            Some(Scripted::Dead) => {
                return Err((
                    StatusCode::GONE,
                    103,
                    "Request did not validate: expired endpoint",
                ))
            }
            Some(_) => return Err((StatusCode::TOO_MANY_REQUESTS, 999, "Too many requests")),
            None => {}
        }
        let v: Value = serde_json::from_slice(&plaintext).unwrap_or(Value::Null);
        core.recorder.accept(VendorPush {
            token: keys.endpoint.clone(),
            title: v["title"].as_str().unwrap_or("").to_owned(),
            content: v["body"].as_str().unwrap_or("").to_owned(),
            payload: v["payload"].as_str().map(str::to_owned),
            body: v,
            headers: h.clone(),
            received_at: quanta::Instant::now(),
        });
        let n = core.next_id();
        let location = format!("{}/m/{n:016x}", self.origin);
        Ok(Reply {
            status: StatusCode::CREATED,
            headers: http::HeaderMap::new(),
            body: None,
        }
        .with_header(LOCATION, HeaderValue::from_str(&location).expect("ascii"))
        .with_header(http::HeaderName::from_static("ttl"), HeaderValue::from(ttl)))
    }

    /// Verify `vapid t=<JWT>, k=<key>`; returns the JWT.
    fn check_vapid(&self, auth: Option<&str>) -> Result<String, Failure> {
        const BAD: Failure = (
            StatusCode::UNAUTHORIZED,
            109,
            "Invalid Authorization header",
        );
        let rest = auth.and_then(|a| a.strip_prefix("vapid ")).ok_or(BAD)?;
        let mut t = None;
        let mut k = None;
        for part in rest.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.trim()),
                Some(("k", v)) => k = Some(v.trim()),
                _ => {}
            }
        }
        let (t, k) = (t.ok_or(BAD)?, k.ok_or(BAD)?);
        let key = URL_SAFE_NO_PAD
            .decode(k.trim_end_matches('='))
            .ok()
            .and_then(|b| VerifyingKey::from_sec1_bytes(&b).ok())
            .ok_or(BAD)?;
        let (input, sig) = t.rsplit_once('.').ok_or(BAD)?;
        let (header, claims) = input.split_once('.').ok_or(BAD)?;
        let header: Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(BAD)?;
        if header["alg"] != "ES256" {
            return Err(BAD);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(BAD)?;
        key.verify(input.as_bytes(), &sig).map_err(|_| BAD)?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(BAD)?;
        if claims["aud"].as_str() != Some(self.origin.as_str()) {
            return Err((StatusCode::UNAUTHORIZED, 109, "invalid_audience"));
        }
        let now = server::unix_secs();
        let exp =
            claims["exp"]
                .as_i64()
                .ok_or((StatusCode::UNAUTHORIZED, 109, "invalid_expiry"))?;
        if exp <= now {
            return Err((StatusCode::UNAUTHORIZED, 109, "invalid_expiry"));
        }
        if exp > now + 86_400 + 60 {
            return Err((StatusCode::UNAUTHORIZED, 109, "future_expiration_token"));
        }
        let sub = claims["sub"]
            .as_str()
            .ok_or((StatusCode::UNAUTHORIZED, 109, "invalid_sub"))?;
        if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
            return Err((StatusCode::UNAUTHORIZED, 109, "bad_format_sub"));
        }
        Ok(t.to_owned())
    }
}

/// RFC 8291/8188 decryption of a single-record `aes128gcm` body.
fn decrypt(body: &[u8], keys: &Keys) -> Option<Vec<u8>> {
    if body.len() < 86 + 17 {
        return None;
    }
    let salt = &body[..16];
    let rs = u32::from_be_bytes(body[16..20].try_into().ok()?) as usize;
    let idlen = body[20] as usize;
    if idlen != 65 || rs < 18 || body.len() - 86 > rs {
        return None;
    }
    let as_public = &body[21..86];
    let sender = PublicKey::from_sec1_bytes(as_public).ok()?;
    let shared = p256::ecdh::diffie_hellman(keys.private.to_nonzero_scalar(), sender.as_affine());
    let mut info = Vec::with_capacity(144);
    info.extend_from_slice(b"WebPush: info\0");
    info.extend_from_slice(&keys.public);
    info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&keys.auth), shared.raw_secret_bytes())
        .expand(&info, &mut ikm)
        .ok()?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .ok()?;
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).ok()?;
    let mut record = Aes128Gcm::new_from_slice(&cek)
        .ok()?
        .decrypt(&Nonce::from(nonce), &body[86..])
        .ok()?;
    // Strip zero padding, then the last-record delimiter 0x02.
    while record.last() == Some(&0) {
        record.pop();
    }
    (record.pop() == Some(2)).then_some(record)
}

/// A fresh VAPID key as a PKCS#8 PEM (what `webpush.vapid_private_key_file` holds).
pub fn generate_vapid_key_pem() -> anyhow::Result<String> {
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    let key = SecretKey::random(&mut rand::thread_rng());
    Ok(key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encode VAPID key: {e}"))?
        .to_string())
}
