//! Mock of vivo Push (`VENDORS.md` §3.5).
//!
//! - `POST /message/auth`: JSON `appId`, `appKey`, `timestamp` (ms, ±10 min), `sign`
//!   = hex MD5(appId + appKey + timestamp + appSecret) → `{"result":0,"authToken":..}`.
//! - `POST /message/send`: `authToken` header (10050 if invalid, [U] code), JSON with
//!   `appId` (10094 on mismatch), `regId`, `requestId`, `title` ≤ 40 units, `content`
//!   ≤ 100 units (a CJK character counts two), `timeToLive` 900 s … 7 days,
//!   `classification` 0/1. Dead token → 10302 with `invalidUser`; rate limit and
//!   quota → 10070 (total send quota exceeded).
//!
//! Serves HTTP/1.1 only.

use http::{Method, StatusCode};
use md5::{Digest, Md5};
use rand::Rng as _;
use serde_json::{json, Value};

use super::server::{Reply, Request};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Dialect, MockOem, Refused, Scripted};

/// The `result` the mock answers for an invalid authToken. [U]
pub const AUTH_INVALID: i64 = 10050;

/// vivo's app credentials.
#[derive(Debug)]
pub struct Vivo {
    pub app_id: u64,
    pub app_key: String,
    pub app_secret: String,
}

/// vivo task ids are large numbers; the mock's first one.
const FIRST_TASK_ID: u64 = 121_397_329;

pub fn start(ca: &TestCa, common: Common) -> anyhow::Result<MockOem<Vivo>> {
    let mut rng = rand::thread_rng();
    let vivo = Vivo {
        app_id: rng.gen_range(10_000..99_999),
        app_key: hex::encode(rng.gen::<[u8; 16]>()),
        app_secret: hex::encode(rng.gen::<[u8; 16]>()),
    };
    vendor::start_oem(ca, &common, vivo)
}

fn units(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

#[allow(private_interfaces)]
impl Dialect for Vivo {
    const H2: bool = false;

    fn serve(&self, core: &Core, r: &Request) -> Result<Reply, Refused> {
        if r.head.method != Method::POST {
            return Ok(Reply::empty(StatusCode::METHOD_NOT_ALLOWED));
        }
        let result = match r.head.uri.path() {
            "/message/auth" => self.auth(core, r),
            "/message/send" => self.send(core, r),
            _ => return Ok(Reply::empty(StatusCode::NOT_FOUND)),
        };
        result.map_err(|(code, desc, extra)| {
            let mut body = json!({"result": code, "desc": desc});
            if let Some(extra) = extra {
                body["invalidUser"] = extra;
            }
            Refused::new(200, desc, Reply::json(StatusCode::OK, body.to_string()))
        })
    }
}

type Failure = (i64, &'static str, Option<Value>);

impl Vivo {
    fn auth(&self, core: &Core, r: &Request) -> Result<Reply, Failure> {
        let v: Value = serde_json::from_slice(&r.body).map_err(|_| (10000, "参数不合法", None))?;
        let app_id = v["appId"].as_u64().ok_or((10200, "appId不能为空", None))?;
        let app_key = v["appKey"]
            .as_str()
            .ok_or((10201, "appKey不能为空", None))?;
        let ts = v["timestamp"]
            .as_i64()
            .ok_or((10202, "timestamp不能为空", None))?;
        let sign = v["sign"].as_str().ok_or((10203, "sign不能为空", None))?;
        if app_id != self.app_id || app_key != self.app_key {
            return Err((10205, "appId或appKey不合法", None));
        }
        if (ts - vendor::now_millis()).abs() > 600_000 {
            return Err((10204, "timestamp不合法", None));
        }
        let expected = hex::encode(Md5::digest(
            format!("{app_id}{app_key}{ts}{}", self.app_secret).trim(),
        ));
        if sign != expected {
            return Err((10206, "sign不合法", None));
        }
        let token = core.issue_token("");
        Ok(Reply::json(
            StatusCode::OK,
            json!({"result": 0, "desc": "请求成功", "authToken": token}).to_string(),
        ))
    }

    fn send(&self, core: &Core, r: &Request) -> Result<Reply, Failure> {
        let token = r
            .head
            .headers
            .get("authToken")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if core.check_token(token) != Some(true) {
            return Err((AUTH_INVALID, "authToken不合法或已过期", None));
        }
        let v: Value = serde_json::from_slice(&r.body).map_err(|_| (10000, "参数不合法", None))?;
        if v["appId"].as_u64() != Some(self.app_id) {
            return Err((10094, "appId不一致", None));
        }
        let regid = v["regId"].as_str().unwrap_or("");
        if regid.len() != 23 {
            return Err((
                10302,
                "regId不合法",
                Some(json!({"status": 1, "userid": regid})),
            ));
        }
        if v["requestId"].as_str().is_none_or(str::is_empty) {
            return Err((10055, "requestId不能为空", None));
        }
        let title = v["title"].as_str().unwrap_or("");
        let content = v["content"].as_str().unwrap_or("");
        if title.is_empty() || units(title) > 40 {
            return Err((10056, "title不合法", None));
        }
        if content.is_empty() || units(content) > 100 {
            return Err((10057, "content不合法", None));
        }
        let ttl = v["timeToLive"].as_u64().unwrap_or(86_400);
        if !(900..=604_800).contains(&ttl) {
            return Err((10058, "timeToLive不合法", None));
        }
        if !matches!(v["classification"].as_u64(), None | Some(0) | Some(1)) {
            return Err((10059, "classification不合法", None));
        }
        match core.script(regid) {
            Some(Scripted::Dead) => {
                return Err((
                    10302,
                    "regId不合法",
                    Some(json!({"status": 1, "userid": regid})),
                ))
            }
            Some(Scripted::RateLimit) | Some(Scripted::Quota) => {
                return Err((10070, "发送总量超过限制", None))
            }
            None => {}
        }
        let push = Accepted {
            token: regid,
            title,
            content,
            payload: v["clientCustomMap"]["payload"].as_str().map(str::to_owned),
        };
        core.accept(r, push, v.clone());
        let task = FIRST_TASK_ID - 1 + core.next_id();
        Ok(Reply::json(
            StatusCode::OK,
            json!({"result": 0, "desc": "请求成功", "taskId": task.to_string()}).to_string(),
        ))
    }
}
