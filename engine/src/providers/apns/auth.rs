//! APNs provider tokens: ES256 JWTs signed with the team's `.p8` key.
//!
//! One token is minted and reused for 50 minutes (Apple rejects tokens older than an
//! hour and answers 429 `TooManyProviderTokenUpdates` to re-minting more often than
//! every 20 minutes). Reads are a lock-free `ArcSwap` load of a ready header value.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde::Serialize;

use crate::clock::unix_now_s;
use crate::providers::key_file::{self, KeyFile};

/// Re-mint after this many seconds.
pub const REFRESH_AFTER_S: u64 = 50 * 60;
/// Never re-mint sooner than this (Apple's floor).
pub const MIN_REMINT_S: u64 = 20 * 60;

/// Load and check a `.p8` key. The error never contains key material.
pub fn load_key(path: &Path) -> Result<EncodingKey, key_file::Error> {
    let file = KeyFile::new(path, "key file");
    let not_p8 = || file.invalid("a PKCS#8 PEM P-256 private key (an APNs .p8 key)");
    let key = EncodingKey::from_ec_pem(&file.read()?).map_err(|_| not_p8())?;
    // Sign once so a key of the wrong curve or kind is caught at start-up.
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &Claims {
            iss: "check",
            iat: 0,
        },
        &key,
    )
    .map_err(|_| not_p8())?;
    Ok(key)
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

struct Minted {
    header: HeaderValue,
    iat: u64,
}

pub struct TokenCache {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    current: ArcSwap<Minted>,
    mint_lock: Mutex<()>,
    minted: AtomicU64,
}

impl TokenCache {
    pub fn new(key: EncodingKey, key_id: String, team_id: String) -> Self {
        let first = Self::mint(&key, &key_id, &team_id, unix_now_s());
        Self {
            key,
            key_id,
            team_id,
            current: ArcSwap::from_pointee(first),
            mint_lock: Mutex::new(()),
            minted: AtomicU64::new(1),
        }
    }

    fn mint(key: &EncodingKey, key_id: &str, team_id: &str, iat: u64) -> Minted {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        header.kid = Some(key_id.to_string());
        let jwt = jsonwebtoken::encode(&header, &Claims { iss: team_id, iat }, key)
            .expect("key was checked by load_key");
        Minted {
            header: HeaderValue::from_str(&format!("bearer {jwt}")).expect("jwt is ascii"),
            iat,
        }
    }

    /// How many tokens were minted (1 + refreshes).
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// The `authorization` header value to send now.
    pub fn header(&self) -> HeaderValue {
        let cur = self.current.load();
        let now = unix_now_s();
        if now.saturating_sub(cur.iat) < REFRESH_AFTER_S {
            return cur.header.clone();
        }
        drop(cur);
        self.remint(now, REFRESH_AFTER_S)
    }

    /// APNs said `ExpiredProviderToken` for `seen`: mint a new one if `seen` is still
    /// current and older than Apple's 20-minute floor.
    pub fn expired(&self, seen: &HeaderValue) {
        if self.current.load().header == *seen {
            self.remint(unix_now_s(), MIN_REMINT_S);
        }
    }

    fn remint(&self, now: u64, min_age: u64) -> HeaderValue {
        let _g = self.mint_lock.lock();
        let cur = self.current.load_full();
        if now.saturating_sub(cur.iat) < min_age {
            return cur.header.clone();
        }
        let next = Arc::new(Self::mint(&self.key, &self.key_id, &self.team_id, now));
        let header = next.header.clone();
        self.current.store(next);
        self.minted.fetch_add(1, Ordering::Relaxed);
        tracing::info!(key_id = %self.key_id, "minted a new APNs provider token");
        header
    }
}
