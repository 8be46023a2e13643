//! Mock of Honor Push (`VENDORS.md` §3.2, partly [U]), auth and send on one server.
//!
//! - `POST /auth/token`: client-credentials form → `{"access_token","expires_in",..}`.
//! - `POST /api/v1/{appId}/sendMessage`: bearer token, a `timestamp` header (ms,
//!   within ten minutes), JSON camelCase message (`token` array, `notification`,
//!   `android.notification.clickAction`, `data` string). Answers HTTP 200 with
//!   `{"code":200,"message":"success","data":{"sendResult":true,"requestId":..}}`;
//!   dead token → `80300007`, rate limit/quota → HTTP 503, auth → 401 `80200001`/`80200003`.
//!
//! Serves HTTP/2 and HTTP/1.1 (ALPN).

use http::{Method, StatusCode};
use rand::Rng as _;
use serde_json::{json, Value};

use super::server::{self, Reply, Request, Service};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Mock, Scripted};

pub type MockHonor = Mock<Honor>;

#[derive(Debug)]
pub struct Honor {
    pub app_id: String,
    pub client_id: String,
    pub client_secret: String,
    core: Core,
}

vendor::oem_vendor!(Honor);

pub fn start(ca: &TestCa, common: Common) -> anyhow::Result<MockHonor> {
    let mut rng = rand::thread_rng();
    vendor::start_oem(ca, &common, true, |core| Honor {
        app_id: rng.gen_range(100_000_000u64..999_999_999).to_string(),
        client_id: hex::encode(rng.gen::<[u8; 8]>()),
        client_secret: hex::encode(rng.gen::<[u8; 32]>()),
        core,
    })
}

impl Mock<Honor> {
    pub fn token_endpoint(&self) -> String {
        format!("{}/auth/token", self.url())
    }
}

fn answer(status: StatusCode, code: i64, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"code": code, "message": message}).to_string(),
    )
}

impl Service for Honor {
    type Conn = ();

    fn handle(&self, _: &(), r: Request) -> Reply {
        if r.head.uri.path() == "/auth/token" {
            let form = (r.head.method == Method::POST)
                .then(|| vendor::parse_form(&r.body))
                .flatten();
            let ok = form.is_some_and(|f| {
                f.get("grant_type").map(String::as_str) == Some("client_credentials")
                    && f.get("client_id") == Some(&self.client_id)
                    && f.get("client_secret") == Some(&self.client_secret)
            });
            if !ok {
                self.core.recorder.reject(400, "invalid_client");
                return Reply::json(
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
                );
            }
            let token = self.core.issue_token("HN.");
            return Reply::json(
                StatusCode::OK,
                json!({"access_token": token, "expires_in": self.core.token_lifetime.as_secs(), "token_type": "Bearer"}).to_string(),
            );
        }
        let (reply, code) = self.send(&r);
        if let Some(code) = code {
            self.core.recorder.reject(reply.status.as_u16(), code);
        }
        reply
    }
}

impl Honor {
    fn send(&self, r: &Request) -> (Reply, Option<&'static str>) {
        let app = match vendor::post_param(r, "/api/v1/", "/sendMessage") {
            Ok(app) => app,
            Err((status, code)) => return (Reply::empty(status), Some(code)),
        };
        match self.core.check_bearer(r) {
            Some(true) => {}
            Some(false) => {
                return (
                    answer(StatusCode::UNAUTHORIZED, 80200003, "token expired"),
                    Some("80200003"),
                )
            }
            _ => {
                return (
                    answer(StatusCode::UNAUTHORIZED, 80200001, "authentication error"),
                    Some("80200001"),
                )
            }
        }
        let ts_ok = r
            .head
            .headers
            .get("timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|ts| (ts - vendor::now_millis()).abs() < 600_000);
        if !ts_ok {
            return (
                answer(
                    StatusCode::BAD_REQUEST,
                    80100001,
                    "timestamp header missing or skewed",
                ),
                Some("80100001"),
            );
        }
        if app != self.app_id {
            return (
                answer(StatusCode::OK, 80300002, "no permission for this app"),
                Some("80300002"),
            );
        }
        if r.body_len > 4096 {
            return (
                answer(StatusCode::OK, 80300008, "message body too large"),
                Some("80300008"),
            );
        }
        let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
            return (
                answer(
                    StatusCode::BAD_REQUEST,
                    80100003,
                    "incorrect message structure",
                ),
                Some("80100003"),
            );
        };
        let Some(token) = v["token"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        else {
            return (
                answer(StatusCode::OK, 80300010, "token count out of range"),
                Some("80300010"),
            );
        };
        // A data message has no notification at all and carries `data`.
        let n = &v["android"]["notification"];
        let data_message = n.is_null() && v["notification"].is_null();
        let (title, body) = if data_message {
            if v["data"].as_str().is_none_or(str::is_empty) {
                return (
                    answer(
                        StatusCode::BAD_REQUEST,
                        80100003,
                        "a data message needs data",
                    ),
                    Some("80100003"),
                );
            }
            ("", "")
        } else {
            let (Some(title), Some(body)) = (n["title"].as_str(), n["body"].as_str()) else {
                return (
                    answer(
                        StatusCode::BAD_REQUEST,
                        80100001,
                        "android.notification title/body required",
                    ),
                    Some("80100001"),
                );
            };
            if n["clickAction"]["type"].as_i64().is_none() {
                return (
                    answer(
                        StatusCode::BAD_REQUEST,
                        80100001,
                        "android.notification.clickAction required",
                    ),
                    Some("80100001"),
                );
            }
            (title, body)
        };
        if let Err(field) = super::huawei::check_push_kit_options(&v) {
            return (
                answer(StatusCode::BAD_REQUEST, 80100001, field),
                Some("80100001"),
            );
        }
        match self.core.script(token) {
            Some(Scripted::Dead) => {
                return (
                    answer(StatusCode::OK, 80300007, "all tokens are invalid"),
                    Some("80300007"),
                )
            }
            Some(_) => {
                return (
                    answer(StatusCode::SERVICE_UNAVAILABLE, 81000001, "flow control"),
                    Some("flow_control"),
                )
            }
            None => {}
        }
        let push = Accepted {
            token,
            title,
            content: body,
            payload: vendor::nested_payload(v["data"].as_str()),
        };
        self.core.accept(r, push, v.clone());
        (
            Reply::json(
                StatusCode::OK,
                json!({"code": 200, "message": "success", "data": {"sendResult": true, "requestId": format!("{}", server::unix_millis())}}).to_string(),
            ),
            None,
        )
    }
}
