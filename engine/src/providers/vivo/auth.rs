//! vivo auth: `sign = lowercase hex MD5(appId + appKey + timestamp + appSecret)`
//! (timestamp in ms, within ten minutes of vivo's clock), exchanged at
//! `/message/auth` for an `authToken` valid one day.

use md5::{Digest, Md5};
use serde::Deserialize;

use crate::config::Secret;
use crate::providers::token::{self, Error, Fresh, Signed};
use crate::transport::auto;

pub const LIFETIME_S: u64 = 24 * 3600;

pub fn sign(app_id: u64, app_key: &str, timestamp_ms: u64, app_secret: &Secret) -> String {
    let text = format!("{app_id}{app_key}{timestamp_ms}{}", app_secret.expose());
    hex::encode(Md5::digest(text.trim().as_bytes()))
}

pub async fn fetch(
    http: &auto::Client,
    uri: &str,
    app_id: u64,
    app_key: &str,
    app_secret: &Secret,
) -> Result<Fresh, Error> {
    let ts = crate::providers::unix_now_ms();
    let body = serde_json::json!({
        "appId": app_id,
        "appKey": app_key,
        "timestamp": ts,
        "sign": sign(app_id, app_key, ts, app_secret),
    });
    #[derive(Deserialize)]
    struct Answer {
        result: i64,
        #[serde(default)]
        desc: String,
        #[serde(default, rename = "authToken")]
        auth_token: Option<String>,
    }
    let content_type = "application/json;charset=UTF-8";
    let (_, a): (_, Answer) = token::exchange(http, uri, content_type, body.to_string()).await?;
    let signed = Signed {
        code: a.result,
        message: a.desc,
        token: a.auth_token,
    };
    signed.fresh(uri, "result", LIFETIME_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_is_md5_hex_of_the_concatenation() {
        let s = sign(10004, "key", 1_501_484_120_000, &Secret::new("secret"));
        assert_eq!(s, hex::encode(Md5::digest(b"10004key1501484120000secret")));
        assert_eq!(s.len(), 32);
    }
}
