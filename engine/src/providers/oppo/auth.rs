//! OPPO auth: `sign = lowercase hex SHA-256(app_key + timestamp + master_secret)`,
//! exchanged at `/server/v1/auth` for an `auth_token` valid 24 hours.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::providers::token::{self, Error, Fresh, Signed};
use crate::transport::auto;

/// Lifetime OPPO gives an auth token.
pub const LIFETIME_S: u64 = 24 * 3600;

pub fn sign(app_key: &str, timestamp_ms: u64, master_secret: &Secret) -> String {
    let mut h = Sha256::new();
    h.update(app_key.as_bytes());
    h.update(timestamp_ms.to_string().as_bytes());
    h.update(master_secret.expose().as_bytes());
    hex::encode(h.finalize())
}

pub async fn fetch(
    http: &auto::Client,
    uri: &str,
    app_key: &str,
    master_secret: &Secret,
) -> Result<Fresh, Error> {
    let ts = crate::providers::unix_now_ms();
    let form = format!(
        "app_key={}&timestamp={ts}&sign={}",
        urlencoding::encode(app_key),
        sign(app_key, ts, master_secret)
    );
    #[derive(Deserialize)]
    struct Answer {
        code: i64,
        #[serde(default)]
        message: String,
        #[serde(default)]
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        auth_token: String,
    }
    let content_type = "application/x-www-form-urlencoded;charset=UTF-8";
    let (_, a): (_, Answer) = token::exchange(http, uri, content_type, form).await?;
    let signed = Signed {
        code: a.code,
        message: a.message,
        token: a.data.map(|d| d.auth_token),
    };
    signed.fresh(uri, "code", LIFETIME_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_is_sha256_hex_of_the_concatenation() {
        let s = sign("key", 1_501_484_120_000, &Secret::new("secret"));
        let mut h = Sha256::new();
        h.update(b"key1501484120000secret");
        assert_eq!(s, hex::encode(h.finalize()));
        assert_eq!(s.len(), 64);
    }
}
