//! Mock of Xiaomi MiPush `/v3/message/regid` (`VENDORS.md` §3.3).
//!
//! `Authorization: key=<AppSecret>` (lowercase `key`), form body with
//! `registration_id`, `restricted_package_name` (22022 if wrong), `title` (< 50
//! chars) and `description` (< 128) for notifications (10016/10017), `payload`,
//! `pass_through`. Business errors are HTTP 200 `{"result":"error","code":n,..}`:
//! 21301 bad auth, dead token → 65003, rate limit → 10027, quota → 10034.
//!
//! Serves HTTP/2 (Xiaomi ships an HTTP/2 SDK) and HTTP/1.1.

use http::header::AUTHORIZATION;
use http::{Method, StatusCode};
use rand::Rng as _;
use serde_json::{json, Map, Value};

use super::server::{self, Reply, Request};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Dialect, MockOem, Refused, Scripted};

/// Xiaomi's app credentials.
#[derive(Debug)]
pub struct Xiaomi {
    pub app_secret: String,
    pub package_name: String,
}

pub fn start(ca: &TestCa, package_name: &str, common: Common) -> anyhow::Result<MockOem<Xiaomi>> {
    let xiaomi = Xiaomi {
        app_secret: base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            rand::thread_rng().gen::<[u8; 16]>(),
        ),
        package_name: package_name.to_owned(),
    };
    vendor::start_oem(ca, &common, xiaomi)
}

fn error(code: i64, reason: &'static str) -> Refused {
    let body = json!({"result": "error", "code": code, "reason": reason, "description": reason,
                      "trace_id": format!("Xcm{}", server::unix_millis())});
    Refused::new(200, reason, Reply::json(StatusCode::OK, body.to_string()))
}

#[allow(private_interfaces)]
impl Dialect for Xiaomi {
    const H2: bool = true;

    fn serve(&self, core: &Core, r: &Request) -> Result<Reply, Refused> {
        self.send(core, r)
            .map_err(|(code, reason)| error(code, reason))
    }
}

impl Xiaomi {
    fn send(&self, core: &Core, r: &Request) -> Result<Reply, (i64, &'static str)> {
        if r.head.uri.path() != "/v3/message/regid" {
            return Ok(Reply::empty(StatusCode::NOT_FOUND));
        }
        if r.head.method != Method::POST {
            return Ok(Reply::empty(StatusCode::METHOD_NOT_ALLOWED));
        }
        let auth = r
            .head
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth.and_then(|a| a.strip_prefix("key=")) != Some(self.app_secret.as_str()) {
            return Err((21301, "Authentication failed"));
        }
        if vendor::media_type(&r.head.headers) != "application/x-www-form-urlencoded" {
            return Err((10017, "Invalid parameter value: content-type"));
        }
        let form = vendor::parse_form(&r.body).ok_or((10017, "Invalid parameter value"))?;
        let regids = form
            .get("registration_id")
            .filter(|s| !s.is_empty())
            .ok_or((10016, "Missing parameter: registration_id"))?;
        if form.get("restricted_package_name") != Some(&self.package_name) {
            return Err((22022, "Invalid package name"));
        }
        let pass_through = form.get("pass_through").map_or("0", String::as_str);
        if !matches!(pass_through, "0" | "1") {
            return Err((10017, "Invalid parameter value: pass_through"));
        }
        if let Some(id) = form.get("notify_id") {
            if !id.parse::<u32>().is_ok_and(|n| n <= i32::MAX as u32) {
                return Err((10017, "Invalid parameter value: notify_id"));
            }
        }
        if let Some(ttl) = form.get("time_to_live") {
            if ttl.parse::<u64>().is_err() {
                return Err((10017, "Invalid parameter value: time_to_live"));
            }
        }
        let title = form.get("title").cloned().unwrap_or_default();
        let description = form.get("description").cloned().unwrap_or_default();
        if pass_through == "0" && title.is_empty() && description.is_empty() {
            return Err((10016, "Missing parameter: title"));
        }
        if title.chars().count() >= 50 || description.chars().count() >= 128 {
            return Err((
                10017,
                "Invalid parameter value: title or description too long",
            ));
        }
        if form.get("payload").is_some_and(|p| p.len() > 4096) {
            return Err((65009, "message content too long"));
        }
        let regid = regids.split(',').next().unwrap_or_default();
        match core.script(regid) {
            Some(Scripted::Dead) => return Err((65003, "device not found")),
            Some(Scripted::RateLimit) => return Err((10027, "API called too often")),
            Some(Scripted::Quota) => return Err((10034, "too many messages today")),
            None => {}
        }
        let fields: Map<String, Value> = form.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let push = Accepted {
            token: regid,
            title: &title,
            content: &description,
            payload: form.get("payload").cloned(),
        };
        core.accept(r, push, Value::Object(fields));
        let id = core.next_id();
        Ok(Reply::json(
            StatusCode::OK,
            json!({"result": "ok", "trace_id": format!("Xcm{}", server::unix_millis()), "code": 0,
                   "data": {"id": format!("scm{id:012}")}, "description": "成功",
                   "info": "Received push messages for 1 REGID"})
            .to_string(),
        ))
    }
}
