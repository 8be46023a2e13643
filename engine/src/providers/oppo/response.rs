//! OPPO answers → [`Verdict`]: `{"code":n,"message":..,"data":{"messageId":..}}`, HTTP
//! 200 for business errors. Common codes are [V]; the per-endpoint business codes
//! (10000–20000) that mean a dead registration id are configured ([U]).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::providers::{retry_after, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    code: i64,
    #[serde(default)]
    data: Value,
}

const FLOW_CONTROL_PAUSE: Duration = Duration::from_secs(1);

pub fn classify(resp: &Response, dead_codes: &[i64], detail: bool) -> Verdict {
    let status = resp.status.as_u16();
    let body: Option<Body> = serde_json::from_slice(&resp.body).ok();
    let after = retry_after(&resp.headers);
    let outcome = match (status, body.as_ref().map(|b| b.code)) {
        (200, Some(0)) => Outcome::Delivered,
        (_, Some(c)) if dead_codes.contains(&c) => Outcome::TokenDead(Cause::BadDeviceToken),
        (_, Some(11 | 29)) => Outcome::Retry {
            after: None,
            cause: Cause::ProviderAuth,
        },
        (_, Some(-2 | 13 | 55)) => Outcome::Retry {
            after: Some(after.unwrap_or(FLOW_CONTROL_PAUSE)),
            cause: Cause::TooManyRequests,
        },
        (_, Some(33)) => Outcome::Retry {
            after: Some(super::super::until_next_day_cst()),
            cause: Cause::QuotaExceeded,
        },
        (_, Some(-1)) => Outcome::Retry {
            after,
            cause: Cause::Unavailable,
        },
        (_, Some(14 | 15 | 16 | 17 | 26 | 27 | 28 | 30)) => Outcome::Rejected(Cause::ProviderAuth),
        (s, _) if s >= 500 => Outcome::Retry {
            after,
            cause: Cause::ServerError,
        },
        (429, _) => Outcome::Retry {
            after: Some(after.unwrap_or(FLOW_CONTROL_PAUSE)),
            cause: Cause::TooManyRequests,
        },
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    Verdict {
        status: Some(status),
        reason: match (&outcome, &body) {
            (Outcome::Delivered, _) => None,
            (_, Some(b)) => Some(b.code.to_string()),
            _ => Some(format!("http {status}")),
        },
        vendor_id: if detail {
            body.and_then(|b| b.data["messageId"].as_str().map(str::to_string))
        } else {
            None
        },
        outcome,
    }
}

pub fn is_auth_error(v: &Verdict) -> bool {
    matches!(
        v.outcome,
        Outcome::Retry {
            cause: Cause::ProviderAuth,
            ..
        }
    )
}
