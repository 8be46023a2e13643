//! APNs responses → [`Verdict`]: status and `reason` per Apple's table.

use serde::Deserialize;

use crate::providers::{retry_after, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct ErrorBody {
    reason: String,
}

pub fn classify(resp: &Response, detail: bool) -> Verdict {
    let status = resp.status.as_u16();
    let vendor_id = || {
        resp.headers
            .get("apns-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if status == 200 {
        return Verdict {
            status: Some(200),
            reason: None,
            vendor_id: if detail { vendor_id() } else { None },
            outcome: Outcome::Delivered,
        };
    }
    let reason = serde_json::from_slice::<ErrorBody>(&resp.body)
        .map(|b| b.reason)
        .unwrap_or_default();
    let outcome = outcome(status, &reason, retry_after(&resp.headers));
    Verdict {
        status: Some(status),
        reason: Some(reason).filter(|r| !r.is_empty()),
        vendor_id: vendor_id(),
        outcome,
    }
}

fn outcome(status: u16, reason: &str, after: Option<std::time::Duration>) -> Outcome {
    match (status, reason) {
        (410, _) => Outcome::TokenDead(Cause::Unregistered),
        (400, "BadDeviceToken") => Outcome::TokenDead(Cause::BadDeviceToken),
        (400, "DeviceTokenNotForTopic") => Outcome::TokenDead(Cause::DeviceTokenNotForTopic),
        (400, "IdleTimeout") => Outcome::Retry {
            after: None,
            cause: Cause::Transport,
        },
        (403, "ExpiredProviderToken") => Outcome::Retry {
            after: None,
            cause: Cause::ProviderAuth,
        },
        (403, _) => Outcome::Rejected(Cause::ProviderAuth),
        (413, _) => Outcome::Rejected(Cause::PayloadTooLarge),
        (429, _) => Outcome::Retry {
            after,
            cause: Cause::TooManyRequests,
        },
        (500, _) => Outcome::Retry {
            after,
            cause: Cause::ServerError,
        },
        (503, _) => Outcome::Retry {
            after,
            cause: Cause::Unavailable,
        },
        (s, _) if s >= 500 => Outcome::Retry {
            after,
            cause: Cause::ServerError,
        },
        _ => Outcome::Rejected(Cause::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_outcomes() {
        assert_eq!(
            outcome(410, "Unregistered", None),
            Outcome::TokenDead(Cause::Unregistered)
        );
        assert_eq!(
            outcome(400, "BadDeviceToken", None),
            Outcome::TokenDead(Cause::BadDeviceToken)
        );
        assert_eq!(
            outcome(400, "BadTopic", None),
            Outcome::Rejected(Cause::BadRequest)
        );
        assert_eq!(
            outcome(403, "InvalidProviderToken", None),
            Outcome::Rejected(Cause::ProviderAuth)
        );
        assert!(matches!(
            outcome(503, "Shutdown", None),
            Outcome::Retry { .. }
        ));
    }
}
