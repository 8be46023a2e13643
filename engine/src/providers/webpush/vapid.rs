//! RFC 8292 VAPID: an ES256 JWT per push-service origin, sent as
//! `Authorization: vapid t=<JWT>, k=<public key>`.
//!
//! Claims: `aud` = the origin, `exp` = now + 12 h (the RFC allows at most 24 h), `sub`
//! = the configured contact. One JWT is minted per origin and reused until an hour
//! before it expires; the map holds at most `max_origins` entries (it is cleared when
//! full — origins are few: the browsers' push services). The private key never
//! appears in `Debug` output or errors.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dashmap::DashMap;
use http::HeaderValue;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use p256::SecretKey;

use crate::providers::key_file::{self, KeyFile};

/// JWT lifetime.
pub const LIFETIME_S: u64 = 12 * 3600;
/// Re-mint this long before `exp`.
const REFRESH_BEFORE_S: u64 = 3600;

/// Read a PEM P-256 private key, PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1
/// (`BEGIN EC PRIVATE KEY`).
pub fn load_key(path: &Path) -> Result<SecretKey, key_file::Error> {
    let file = KeyFile::new(path, "VAPID key file");
    let not_p256 = || file.invalid("a PEM EC P-256 private key (PKCS#8 or SEC1)");
    let pem = String::from_utf8(file.read()?).map_err(|_| not_p256())?;
    SecretKey::from_pkcs8_pem(&pem)
        .or_else(|_| SecretKey::from_sec1_pem(&pem))
        .map_err(|_| not_p256())
}

struct Cached {
    header: HeaderValue,
    refresh_at: u64,
}

pub struct Signer {
    key: SigningKey,
    /// base64url of the 65-byte uncompressed public key (the `k` parameter).
    public: String,
    subject: String,
    cache: DashMap<String, Cached>,
    max_origins: usize,
    minted: AtomicU64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public)
            .field("subject", &self.subject)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Signer {
    pub fn new(key: &SecretKey, subject: String, max_origins: usize) -> Self {
        Self {
            key: SigningKey::from(key),
            public: URL_SAFE_NO_PAD.encode(key.public_key().to_sec1_bytes()),
            subject,
            cache: DashMap::new(),
            max_origins: max_origins.max(1),
            minted: AtomicU64::new(0),
        }
    }

    /// JWTs minted so far.
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// The `Authorization` value for requests to `origin` (`scheme://host[:port]`).
    pub fn header(&self, origin: &str) -> HeaderValue {
        let now = crate::clock::unix_now_s();
        if let Some(c) = self.cache.get(origin) {
            if now < c.refresh_at {
                return c.header.clone();
            }
        }
        if self.cache.len() >= self.max_origins && !self.cache.contains_key(origin) {
            self.cache.clear();
        }
        // The entry lock makes concurrent callers for one origin mint once.
        let mut entry = self
            .cache
            .entry(origin.to_string())
            .or_insert_with(|| Cached {
                header: HeaderValue::from_static(""),
                refresh_at: 0,
            });
        if now >= entry.refresh_at {
            let exp = now + LIFETIME_S;
            let jwt = self.mint(origin, exp);
            let mut header = HeaderValue::from_str(&format!("vapid t={jwt}, k={}", self.public))
                .expect("base64url is a valid header value");
            header.set_sensitive(true);
            *entry = Cached {
                header,
                refresh_at: exp - REFRESH_BEFORE_S,
            };
            self.minted.fetch_add(1, Ordering::Relaxed);
        }
        entry.header.clone()
    }

    /// Forget the JWT of `origin` (the push service refused it).
    pub fn invalidate(&self, origin: &str) {
        self.cache.remove(origin);
    }

    fn mint(&self, aud: &str, exp: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": aud, "exp": exp, "sub": self.subject});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::VerifyingKey;

    #[test]
    fn jwt_verifies_and_is_cached_per_origin() {
        let key = SecretKey::random(&mut rand::thread_rng());
        let s = Signer::new(&key, "mailto:ops@example.com".into(), 8);
        let h1 = s.header("https://push.example.net");
        let h2 = s.header("https://push.example.net");
        assert_eq!(h1, h2);
        assert_eq!(s.minted(), 1);
        s.header("https://other.example.org");
        assert_eq!(s.minted(), 2);
        let v = h1.to_str().unwrap();
        let (t, k) = v
            .strip_prefix("vapid t=")
            .unwrap()
            .split_once(", k=")
            .unwrap();
        let pk = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        pk.verify(input.as_bytes(), &sig).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        assert!(!format!("{s:?}").contains(&format!("{:?}", key.to_bytes())));
    }
}
