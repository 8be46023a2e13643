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
    let retry = |cause| Outcome::Retry { after, cause };
    match (status, reason) {
        (410, _) => Outcome::TokenDead(Cause::Unregistered),
        (400, "BadDeviceToken") => Outcome::TokenDead(Cause::BadDeviceToken),
        (400, "DeviceTokenNotForTopic") => Outcome::TokenDead(Cause::DeviceTokenNotForTopic),
        // The connection idled out; the request was not acted on: resend.
        (400, "IdleTimeout") => retry(Cause::Transport),
        (400, "BadTopic" | "TopicDisallowed" | "MissingTopic") => {
            Outcome::Rejected(Cause::BadTopic)
        }
        (400, "PayloadEmpty") => Outcome::Rejected(Cause::BadPayload),
        // The JWT is re-signed by the client on this answer (respecting the 20-min
        // floor); the push is retried with the new one.
        (403, "ExpiredProviderToken") => retry(Cause::ProviderAuth),
        (403, _) => Outcome::Rejected(Cause::ProviderAuth),
        (413, _) => Outcome::Rejected(Cause::PayloadTooLarge),
        // Re-signing too often: back off, the cached token stays.
        (429, "TooManyProviderTokenUpdates") => retry(Cause::ProviderAuth),
        // Too many pushes to this one device: back off for this push only.
        (429, _) => retry(Cause::DeviceThrottled),
        (500, _) => retry(Cause::ServerError),
        // `ServiceUnavailable` and `Shutdown` (the connection is going away).
        (503, _) => retry(Cause::Unavailable),
        (s, _) if s >= 500 => retry(Cause::ServerError),
        _ => Outcome::Rejected(Cause::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_outcomes() {
        let after = Some(std::time::Duration::from_secs(3));
        let retry = |after, cause| Outcome::Retry { after, cause };
        #[rustfmt::skip]
        let table = [
            (410, "Unregistered", None, Outcome::TokenDead(Cause::Unregistered)),
            (400, "BadDeviceToken", None, Outcome::TokenDead(Cause::BadDeviceToken)),
            (400, "BadTopic", None, Outcome::Rejected(Cause::BadTopic)),
            (403, "InvalidProviderToken", None, Outcome::Rejected(Cause::ProviderAuth)),
            (400, "TopicDisallowed", None, Outcome::Rejected(Cause::BadTopic)),
            (400, "PayloadEmpty", None, Outcome::Rejected(Cause::BadPayload)),
            (429, "TooManyRequests", after, retry(after, Cause::DeviceThrottled)),
            (429, "TooManyProviderTokenUpdates", None, retry(None, Cause::ProviderAuth)),
            (500, "InternalServerError", after, retry(after, Cause::ServerError)),
        ];
        for (status, reason, after, want) in table {
            assert_eq!(outcome(status, reason, after), want, "{status} {reason}");
        }
        assert!(matches!(
            outcome(503, "Shutdown", None),
            Outcome::Retry {
                cause: Cause::Unavailable,
                ..
            }
        ));
    }
}
