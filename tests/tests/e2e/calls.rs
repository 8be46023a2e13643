//! Calls after API 1.1: `call_id` as an idempotency key, cancel (withdrawn invitations
//! never reach the vendor, each device already rung gets one silent cancellation),
//! 404s; and the 1.1 answers of messages and calls: `unconfigured`, size limits only
//! of the vendors a target uses, `push.ttl_s` as the expiry.

use fanfare::client::{request, CallCancelled, CancelRequest, PushConfig};
use http::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, apns_token, device_token, fcm_token, Harness, Options, WAIT};

fn provider<'a>(stats: &'a Value, p: &str) -> &'a Value {
    &stats["providers"][p]
}

/// The payload string a device received, parsed.
fn payload(v: &Value) -> Value {
    serde_json::from_str(v.as_str().expect("payload is a string")).expect("payload is JSON")
}

async fn cancel(h: &Harness, call_id: &str, body: Value) -> (StatusCode, Value) {
    h.post(&format!("/v1/calls/{call_id}/cancel"), body).await
}

#[tokio::test]
async fn a_cancel_withdraws_unsent_invitations_and_sends_one_silent_cancellation_to_each_device_rung(
) {
    let h = harness::start().await;
    // u1: an iPhone (alert) and an Android phone; u2: an Android phone whose first
    // push FCM throttles for 3 s; u3: an iPhone with PushKit; u4: a Huawei phone
    // (Huawei has no credentials in this harness).
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    h.bind("u1-and", "u1", "fcm", &fcm_token(1)).await;
    h.bind("u2-and", "u2", "fcm", &fcm_token(2)).await;
    h.bind("u3-voip", "u3", "apns_voip", &apns_token(3)).await;
    h.bind("u4-hw", "u4", "huawei", &device_token("huawei", 4))
        .await;
    h.fcm.set_token_throttle(&fcm_token(2), 1, 3);
    let before = fanfare::clock::unix_now_s();
    let (s, v) = h
        .post(
            "/v1/calls",
            json!({"call_id": "c-77", "inviter_id": "u0", "invitees": ["u1", "u2", "u3", "u4"],
                   "timeout_s": 60, "push": {"title": "Incoming call", "payload": "room-9"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v,
        json!({"call_id": "c-77", "offline_invitees": 4, "targets": 4, "unconfigured": 1, "muted": 0})
    );
    assert!(h.apns.wait_for(2, WAIT).await, "alert and VoIP rang");
    assert!(h.fcm.wait_for(1, WAIT).await, "u1's Android phone rang");
    // u2's invitation now waits 3 s for its retry.
    h.wait_stats("u2's invitation waiting for its retry", |s| {
        provider(s, "fcm")["retried"] == 1
    })
    .await;

    // No body at all: the body is optional.
    let (s, v) = h
        .raw(
            http::Method::POST,
            "/v1/calls/c-77/cancel",
            Vec::new(),
            h.token.as_deref(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"call_id": "c-77", "withdrawn": 1, "cancel_pushes": 3})
    );
    harness::expect_pushes(&h.apns, 4, "both iPhones got the cancel").await;
    harness::expect_pushes(&h.fcm, 2, "u1's Android phone got the cancel").await;
    // The withdrawn retry falls due and is dropped: the lane empties without it.
    let s = h
        .wait_stats("the FCM lane empty", |s| s["queue_depth"]["fcm"] == 0)
        .await;
    assert_eq!(provider(&s, "fcm")["delivered"], 2, "{s}");
    assert_eq!(provider(&s, "fcm")["retried"], 1, "{s}");

    let fcm = h.fcm.received();
    assert_eq!(fcm.len(), 2, "{fcm:?}");
    assert!(
        fcm.iter().all(|p| p.token == fcm_token(1)),
        "the withdrawn invitation never reached FCM: {fcm:?}"
    );
    let cancel_data = &fcm[1].message["data"];
    assert_eq!(
        payload(&cancel_data["payload"]),
        json!({"call_id": "c-77", "type": "call_cancel"})
    );
    assert_ne!(
        cancel_data["type"], "call_invite",
        "a cancel is no invitation"
    );
    let ttl = fcm[1].message["android"]["ttl"].as_str().expect("ttl");
    let ttl: u64 = ttl.trim_end_matches('s').parse().expect("ttl seconds");
    assert!((1..=60).contains(&ttl), "the call's remaining time: {ttl}");

    let after = fanfare::clock::unix_now_s();
    let apns = h.apns.received();
    let alert = apns
        .iter()
        .filter(|p| p.token == apns_token(1))
        .nth(1)
        .expect("u1's iPhone got a second push");
    assert_eq!(
        payload(&alert.body["payload"]),
        json!({"call_id": "c-77", "type": "call_cancel"})
    );
    let exp = alert.expiration.expect("apns-expiration");
    assert!(exp >= before && exp <= after + 60, "expires with the call");
    let voip = apns
        .iter()
        .filter(|p| p.token == apns_token(3))
        .nth(1)
        .expect("u3's PushKit token got a second push");
    assert_eq!(voip.push_type, "voip", "PushKit takes VoIP pushes only");
    assert_eq!(
        payload(&voip.body["payload"]),
        json!({"call_id": "c-77", "type": "call_cancel"})
    );
    assert_eq!(voip.body["call"]["call_id"], "c-77");
    h.shutdown().await;
}

#[tokio::test]
async fn a_cancel_carries_the_callers_push_and_is_answered_by_the_typed_client() {
    let h = harness::start().await;
    h.bind("u1-and", "u1", "fcm", &fcm_token(1)).await;
    let call = request::call("c-1", "u0", vec!["u1".into()], 30, None);
    let rung = h.api.call(&call).await.expect("call accepted");
    assert_eq!((rung.targets, rung.unconfigured), (1, 0));
    assert!(h.fcm.wait_for(1, WAIT).await);
    let req = CancelRequest {
        push: Some(PushConfig {
            title: Some("Missed call".into()),
            payload: Some("room-9".into()),
            ..PushConfig::default()
        }),
    };
    let done = h.api.cancel_call("c-1", &req).await.expect("cancelled");
    assert_eq!(
        done,
        CallCancelled {
            call_id: "c-1".into(),
            cancel_pushes: 1,
            withdrawn: 0,
        }
    );
    assert!(h.fcm.wait_for(2, WAIT).await);
    let m = &h.fcm.received()[1].message;
    assert_eq!(
        payload(&m["data"]["payload"]),
        json!({"call_id": "c-1", "type": "call_cancel", "payload": "room-9"})
    );
    let again = h
        .api
        .cancel_call("c-1", &req)
        .await
        .expect_err("cancelled once");
    assert_eq!(again.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(again.code(), Some("not_found"));
    h.shutdown().await;
}

#[tokio::test]
async fn cancelling_an_unknown_cancelled_or_timed_out_call_is_404_and_bad_bodies_are_400() {
    let h = harness::start().await;
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    let (s, v) = cancel(&h, "nobody-called", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "not_found");

    let call = |id: &str, timeout_s: u64| json!({"call_id": id, "inviter_id": "u0", "invitees": ["u1"], "timeout_s": timeout_s});
    let (s, v) = h.post("/v1/calls", call("c-short", 1)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let accepted_by = fanfare::clock::unix_now_s();
    let (s, v) = h.post("/v1/calls", call("c-long", 60)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");

    // A body that is not a cancel request changes nothing.
    let (s, v) = cancel(&h, "c-long", json!({"push": {"sound": ""}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = cancel(&h, "c-long", json!({"reason": "hung up"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = cancel(&h, "c-long", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = cancel(&h, "c-long", json!({})).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found")),
        "already cancelled: {v}"
    );

    // c-short times out one second after it was accepted.
    let deadline = tokio::time::Instant::now() + WAIT;
    while fanfare::clock::unix_now_s() <= accepted_by + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the clock stood still"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (s, v) = cancel(&h, "c-short", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "timed out: {v}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_repeated_call_id_rings_nothing_again_and_never_collides_with_a_message_id() {
    let h = harness::start().await;
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    h.bind("u2-ios", "u2", "apns", &apns_token(2)).await;
    let ring = json!({"call_id": "x-1", "inviter_id": "u0", "invitees": ["u1"], "timeout_s": 30});
    let (s, _) = h.post("/v1/calls", ring.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, v) = h.post("/v1/calls", ring).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"call_id": "x-1", "duplicate": true}));
    // The same string as a message id is a message of its own.
    let m = h.message_to("x-1", "u2", json!({"title": "t"})).await;
    assert_eq!(m.targets, 1);
    // The message is queued behind any repeat ring on the APNs lane: once it has
    // arrived, a second ring would have too.
    assert!(h.apns.wait_for(2, WAIT).await);
    let got = h.apns.received();
    let rings = got.iter().filter(|p| p.token == apns_token(1)).count();
    assert_eq!((got.len(), rings), (2, 1), "{got:?}");
    // The repeat did not take over the call: cancelling it cancels the one ring.
    let (s, v) = cancel(&h, "x-1", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["cancel_pushes"], 1, "{v}");
    h.shutdown().await;
}

#[tokio::test]
async fn only_vendors_a_target_uses_limit_the_push_size() {
    let h = harness::start_with_vendors().await;
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    let sub = h.v().webpush.subscribe();
    h.bind("u2-web", "u2", "webpush", &sub.to_json()).await;
    // Over Web Push's 3993 bytes of plaintext (4006), within APNs' 4096 (4042).
    let push = json!({"title": "t", "payload": "p".repeat(3980)});
    let message = |id: &str, to: &str| {
        json!({"message_id": id, "sender_id": "u0", "conversation_type": "peer",
               "conversation_id": to, "push": push.clone()})
    };
    let (s, v) = h.post("/v1/messages", message("m-1", "u2")).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    let why = v["error"]["message"].as_str().expect("message");
    assert!(
        why.contains("webpush") && why.contains("3993"),
        "names the vendor and its limit: {why}"
    );
    let s = h.stats().await;
    assert_eq!(s["messages_accepted"], 0, "{s}");
    // The iPhone user is limited by APNs only; the refused id was not claimed.
    let (s, v) = h.post("/v1/messages", message("m-1", "u1")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert!(h.apns.wait_for(1, WAIT).await);
    assert_eq!(h.v().webpush.received_count(), 0);

    // Calls too (4030 bytes for Web Push, 4052 for APNs: the call's fields take about
    // 100 more); the refused call id stays free.
    let push = json!({"title": "t", "payload": "p".repeat(3930)});
    let call = |to: &str| {
        json!({"call_id": "c-big", "inviter_id": "u0", "invitees": [to], "timeout_s": 30,
               "push": push.clone()})
    };
    let (s, v) = h.post("/v1/calls", call("u2")).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, v) = cancel(&h, "c-big", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing tracked: {v}");
    let (s, v) = h.post("/v1/calls", call("u1")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    h.shutdown().await;
}

#[tokio::test]
async fn the_202_counts_targets_of_vendors_without_credentials() {
    let h = harness::start().await;
    h.bind("u1-hw", "u1", "huawei", &device_token("huawei", 1))
        .await;
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    let (s, v) = h
        .post(
            "/v1/messages",
            json!({"message_id": "m-1", "sender_id": "u0", "conversation_type": "peer",
                   "conversation_id": "u1", "push": {"title": "t"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v,
        json!({"message_id": "m-1", "recipients": 1, "offline_recipients": 1, "targets": 1,
               "unconfigured": 1, "muted": 0})
    );
    h.shutdown().await;
}

#[tokio::test]
async fn push_ttl_s_sets_the_expiry_and_zero_allows_one_attempt_only() {
    let h = harness::start_with(Options {
        extra: "[retry]\nbase_ms = 20\nmax_ms = 100\nmax_attempts = 50\n".into(),
        ..Options::default()
    })
    .await;
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    h.bind("u2-and", "u2", "fcm", &fcm_token(2)).await;
    let before = fanfare::clock::unix_now_s();
    h.message_to("m-1", "u1", json!({"title": "t", "ttl_s": 30}))
        .await;
    let (s, v) = h
        .post(
            "/v1/calls",
            json!({"call_id": "c-1", "inviter_id": "u0", "invitees": ["u1"], "timeout_s": 90,
                   "push": {"title": "call", "ttl_s": 20}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert!(h.apns.wait_for(2, WAIT).await);
    let after = fanfare::clock::unix_now_s();
    let got = h.apns.received();
    let titled = |t: &str| {
        let p = got.iter().find(|p| p.body["aps"]["alert"]["title"] == t);
        p.and_then(|p| p.expiration).expect("apns-expiration")
    };
    let message = titled("t");
    assert!(
        (before + 30..=after + 30).contains(&message),
        "push.ttl_s, not messages.ttl_s: {message}"
    );
    let call = titled("call");
    assert!(
        (before + 20..=after + 20).contains(&call),
        "min(ttl_s, timeout_s): {call}"
    );

    // ttl_s = 0: one attempt; a 503 ends it instead of a retry.
    h.fcm.faults().set_unavailable(1.0, 0);
    h.message_to("m-2", "u2", json!({"title": "t", "ttl_s": 0}))
        .await;
    let s = h
        .wait_stats("the one attempt made", |s| {
            provider(s, "fcm")["expired"] == 1
        })
        .await;
    assert_eq!(provider(&s, "fcm")["retried"], 0, "{s}");
    assert_eq!(s["queue_depth"]["fcm"], 0, "{s}");
    assert_eq!(h.fcm.received_count(), 0);
    h.shutdown().await;
}
