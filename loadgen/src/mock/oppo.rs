//! Mock of OPPO Push (`VENDORS.md` §3.4).
//!
//! - `POST /server/v1/auth`: form `app_key`, `timestamp` (ms, ±10 min, else 19),
//!   `sign` = hex SHA-256(app_key + timestamp + master_secret) (else 16) →
//!   `{"code":0,"data":{"auth_token":..,"create_time":..}}`.
//! - `POST /server/v1/message/notification/unicast`: `auth_token` as a form field or
//!   header (11 if invalid), `message` JSON with `target_type` 2, `target_value`,
//!   `notification.title`/`content` (40 if missing); `off_line_ttl` 1 s … 10 days and a
//!   non-empty `channel_id` when given (41 otherwise). Dead token → 10000 (a business
//!   code, [U]), rate limit → -2 (flow control), quota → 33.
//!
//! Serves HTTP/1.1 only (OPPO does not promise HTTP/2), so the engine's keep-alive
//! HTTP/1.1 path is exercised.

use http::{Method, StatusCode};
use rand::Rng as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::server::{self, Reply, Request};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Dialect, MockOem, Refused, Scripted};

/// The business code the mock answers for a dead registration id. [U]
pub const INVALID_REGID: i64 = 10000;

/// OPPO's app credentials.
#[derive(Debug)]
pub struct Oppo {
    pub app_key: String,
    pub master_secret: String,
}

pub fn start(ca: &TestCa, common: Common) -> anyhow::Result<MockOem<Oppo>> {
    let mut rng = rand::thread_rng();
    let oppo = Oppo {
        app_key: hex::encode(rng.gen::<[u8; 12]>()),
        master_secret: hex::encode(rng.gen::<[u8; 16]>()),
    };
    vendor::start_oem(ca, &common, oppo)
}

fn code(code: i64, message: &str) -> Reply {
    Reply::json(
        StatusCode::OK,
        json!({"code": code, "message": message}).to_string(),
    )
}

#[allow(private_interfaces)]
impl Dialect for Oppo {
    const H2: bool = false;

    fn serve(&self, core: &Core, r: &Request) -> Result<Reply, Refused> {
        if r.head.method != Method::POST {
            return Ok(code(12, "Http Action Not Allowed"));
        }
        let result = match r.head.uri.path() {
            "/server/v1/auth" => self.auth(core, r),
            "/server/v1/message/notification/unicast" => self.unicast(core, r),
            _ => return Ok(Reply::empty(StatusCode::NOT_FOUND)),
        };
        result.map_err(|(c, message)| Refused::new(200, message, code(c, message)))
    }
}

impl Oppo {
    fn auth(&self, core: &Core, r: &Request) -> Result<Reply, (i64, &'static str)> {
        let f = vendor::parse_form(&r.body).ok_or((25, "Encoding error"))?;
        let key = f.get("app_key").ok_or((15, "Missing AppKey"))?;
        if *key != self.app_key {
            return Err((14, "Invalid AppKey"));
        }
        let ts = f.get("timestamp").ok_or((18, "Missing Timestamp"))?;
        let ts_ok = ts
            .parse::<i64>()
            .is_ok_and(|t| (t - vendor::now_millis()).abs() < 600_000);
        if !ts_ok {
            return Err((19, "Invalid Timestamp"));
        }
        let sign = f.get("sign").ok_or((17, "Missing Signature"))?;
        let expected = hex::encode(Sha256::digest(format!("{key}{ts}{}", self.master_secret)));
        if *sign != expected {
            return Err((16, "Invalid Signature"));
        }
        let token = core.issue_token("");
        Ok(Reply::json(
            StatusCode::OK,
            json!({"code": 0, "message": "Success", "data": {"auth_token": token, "create_time": vendor::now_millis()}}).to_string(),
        ))
    }

    fn unicast(&self, core: &Core, r: &Request) -> Result<Reply, (i64, &'static str)> {
        let f = vendor::parse_form(&r.body).ok_or((25, "Encoding error"))?;
        let token = f
            .get("auth_token")
            .cloned()
            .or_else(|| {
                r.head
                    .headers
                    .get("auth_token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .ok_or((29, "Missing AuthToken"))?;
        if core.check_token(&token) != Some(true) {
            return Err((11, "Invalid AuthToken"));
        }
        let message: Value = f
            .get("message")
            .and_then(|m| serde_json::from_str(m).ok())
            .ok_or((40, "Missing Required Argument: message"))?;
        if message["target_type"].as_i64() != Some(2) {
            return Err((41, "Invalid Argument: target_type"));
        }
        let regid = message["target_value"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or((40, "Missing Required Argument: target_value"))?;
        let n = &message["notification"];
        let (Some(title), Some(content)) = (n["title"].as_str(), n["content"].as_str()) else {
            return Err((40, "Missing Required Argument: title/content"));
        };
        // Offline storage: off_line_ttl in seconds, at most 10 days; channel_id a string.
        if !n["off_line_ttl"].is_null()
            && !n["off_line_ttl"]
                .as_u64()
                .is_some_and(|t| (1..=864_000).contains(&t))
        {
            return Err((41, "Invalid Argument: off_line_ttl"));
        }
        if !n["channel_id"].is_null() && n["channel_id"].as_str().is_none_or(str::is_empty) {
            return Err((41, "Invalid Argument: channel_id"));
        }
        match core.script(regid) {
            Some(Scripted::Dead) => return Err((INVALID_REGID, "Invalid RegistrationId")),
            Some(Scripted::RateLimit) => return Err((-2, "Flow Control")),
            Some(Scripted::Quota) => {
                return Err((33, "The Number Of Messages Exceeds The Daily Limit"))
            }
            None => {}
        }
        let push = Accepted {
            token: regid,
            title,
            content,
            payload: vendor::nested_payload(n["action_parameters"].as_str()),
        };
        core.accept(r, push, message.clone());
        let id = core.next_id();
        Ok(Reply::json(
            StatusCode::OK,
            json!({"code": 0, "message": "Success", "data": {"messageId": format!("{}-{id}", server::unix_millis())}}).to_string(),
        ))
    }
}
