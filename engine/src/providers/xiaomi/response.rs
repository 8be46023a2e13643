//! MiPush answers → [`Verdict`]: `{"result":"ok"|"error","code":n,...}` with HTTP 200
//! for business errors.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::providers::{retry_after, Cause, Outcome, Verdict};
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

/// "API called too often" carries no Retry-After; pause at least this long.
const TOO_OFTEN_PAUSE: Duration = Duration::from_secs(1);

pub fn classify(resp: &Response, regid: &str, detail: bool) -> Verdict {
    let status = resp.status.as_u16();
    let body: Option<Body> = serde_json::from_slice(&resp.body).ok();
    let after = retry_after(&resp.headers);
    let outcome = match (status, &body) {
        (200, Some(b)) if b.result == "ok" && b.code == 0 => {
            // A multi-regId send lists the unknown ones in `data.bad_regids`.
            let bad = b.data["bad_regids"]
                .as_str()
                .is_some_and(|s| s.split(',').any(|r| r == regid));
            if bad {
                Outcome::TokenDead(Cause::Unregistered)
            } else {
                Outcome::Delivered
            }
        }
        (200, Some(b)) => match b.code {
            65003 => Outcome::TokenDead(Cause::Unregistered),
            21301 | 21302 | 22000 | 22022 | 10031 => Outcome::Rejected(Cause::ProviderAuth),
            10027 | 26004 => Outcome::Retry {
                after: Some(after.unwrap_or(TOO_OFTEN_PAUSE)),
                cause: Cause::TooManyRequests,
            },
            10034 => Outcome::Retry {
                after: Some(super::super::until_next_day_cst()),
                cause: Cause::QuotaExceeded,
            },
            65009 | 65014 | 65015 => Outcome::Rejected(Cause::PayloadTooLarge),
            -1 | 1 | 10001 | 10002 | 20301 => Outcome::Retry {
                after,
                cause: Cause::ServerError,
            },
            _ => Outcome::Rejected(Cause::BadRequest),
        },
        (429, _) => Outcome::Retry {
            after: Some(after.unwrap_or(TOO_OFTEN_PAUSE)),
            cause: Cause::TooManyRequests,
        },
        (401, _) | (403, _) => Outcome::Rejected(Cause::ProviderAuth),
        (s, _) if s >= 500 => Outcome::Retry {
            after,
            cause: Cause::ServerError,
        },
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    Verdict {
        status: Some(status),
        reason: match (&outcome, &body) {
            (Outcome::Delivered, _) => None,
            (_, Some(b)) if b.code != 0 => Some(b.code.to_string()),
            _ => Some(format!("http {status}")),
        },
        vendor_id: if detail {
            body.and_then(|b| b.data["id"].as_str().map(str::to_string))
        } else {
            None
        },
        outcome,
    }
}
