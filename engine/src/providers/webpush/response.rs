//! Push service answers (RFC 8030) → [`Verdict`]: 201 created (`Location` names the
//! message), 404/410 the subscription is gone, 413 too large, 429 slow down, 5xx
//! retry; 401/403 a VAPID problem.

use crate::providers::{retry_after, Cause, Outcome, Verdict};
use crate::transport::Response;

pub fn classify(resp: &Response, detail: bool) -> Verdict {
    let status = resp.status.as_u16();
    let after = retry_after(&resp.headers);
    let outcome = match status {
        200..=202 => Outcome::Delivered,
        404 | 410 => Outcome::TokenDead(Cause::Unregistered),
        413 => Outcome::Rejected(Cause::PayloadTooLarge),
        429 => Outcome::retry(Cause::TooManyRequests, after),
        401 | 403 => Outcome::Rejected(Cause::ProviderAuth),
        503 => Outcome::retry(Cause::Unavailable, after),
        s if s >= 500 => Outcome::retry(Cause::ServerError, after),
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    // Autopush explains failures as {"code","errno","error","message"}.
    let reason = match outcome {
        Outcome::Delivered => None,
        _ => Some(
            serde_json::from_slice::<serde_json::Value>(&resp.body)
                .ok()
                .and_then(|v| {
                    v["errno"]
                        .as_i64()
                        .map(|e| format!("http {status}, errno {e}"))
                })
                .unwrap_or_else(|| format!("http {status}")),
        ),
    };
    Verdict {
        status: Some(status),
        reason,
        vendor_id: if detail {
            resp.headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        } else {
            None
        },
        outcome,
    }
}
