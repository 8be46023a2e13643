//! MiPush answers → [`Verdict`]: `{"result":"ok"|"error","code":n,...}` with HTTP 200
//! for business errors.

use serde::Deserialize;
use serde_json::Value;

use crate::providers::{answer, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    result: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    data: Value,
}

pub fn classify(resp: &Response, regid: &str, detail: bool) -> Verdict {
    let (status, body, after) = answer::read::<Body>(resp);
    let outcome = match (status, &body) {
        // A multi-regId send lists the unknown ones in `data.bad_regids`.
        (200, Some(b)) if b.result == "ok" && b.code == 0 => match b.data["bad_regids"].as_str() {
            Some(bad) if bad.split(',').any(|r| r == regid) => {
                Outcome::TokenDead(Cause::Unregistered)
            }
            _ => Outcome::Delivered,
        },
        (200, Some(b)) => match b.code {
            65003 => Outcome::TokenDead(Cause::Unregistered),
            21301 | 21302 | 22000 | 22022 | 10031 => Outcome::Rejected(Cause::ProviderAuth),
            // "API called too often" carries no Retry-After.
            10027 | 26004 => Outcome::throttled(after),
            10034 => Outcome::quota_spent(),
            65009 | 65014 | 65015 => Outcome::Rejected(Cause::PayloadTooLarge),
            -1 | 1 | 10001 | 10002 | 20301 => Outcome::retry(Cause::ServerError, after),
            _ => Outcome::Rejected(Cause::BadRequest),
        },
        (429, _) => Outcome::throttled(after),
        (401 | 403, _) => Outcome::Rejected(Cause::ProviderAuth),
        (s, _) if s >= 500 => Outcome::retry(Cause::ServerError, after),
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    let code = body
        .as_ref()
        .filter(|b| b.code != 0)
        .map(|b| &b.code as &dyn std::fmt::Display);
    Verdict::answered(status, outcome, code, detail, || {
        body.as_ref()?.data["id"].as_str().map(str::to_string)
    })
}
