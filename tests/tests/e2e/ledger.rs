//! The delivery ledger through the API: `GET /v1/messages/{id}` and
//! `GET /v1/calls/{id}` count each target's outcome as the mocks answer, list the
//! failures with the vendor's status and reason, and answer `404` for unknown ids.

use fanfare::client::{DeliveryReport, FailedTarget, Outcomes};
use fanfare_loadgen::mock::apns::ApnsVerdict;
use http::StatusCode;
use serde_json::json;

use crate::harness::{self, apns_token, assert_error, device_token, fcm_token, Harness, WAIT};

/// Poll the ledger of message (or call, with `call`) `id` until nothing is pending.
pub async fn settled(h: &Harness, id: &str, call: bool) -> DeliveryReport {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = if call {
            h.api.call_report(id).await
        } else {
            h.api.message_report(id).await
        };
        let r = r.unwrap_or_else(|e| panic!("ledger of {id}: {e}"));
        if r.outcomes.pending == 0 {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} still pending: {r:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn sorted(mut f: Vec<FailedTarget>) -> Vec<FailedTarget> {
    f.sort_by(|a, b| a.push_id.cmp(&b.push_id));
    f
}

#[tokio::test]
async fn a_group_messages_ledger_counts_delivered_dead_and_unconfigured_targets() {
    let h = harness::start().await;
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    h.bind("d2", "u2", "apns", &apns_token(2)).await;
    h.bind("d3", "u3", "huawei", &device_token("huawei", 3))
        .await;
    h.bind("d4", "u4", "fcm", &fcm_token(4)).await;
    h.apns
        .set_token_verdict(&apns_token(2), ApnsVerdict::Unregistered);
    h.add_members("g1", &["u0", "u1", "u2", "u3", "u4"]).await;
    let before = fanfare::clock::unix_now_ms();
    let a = h
        .group_message("m-1", "u0", "g1", json!({"title": "hi"}))
        .await;
    let after = fanfare::clock::unix_now_ms();
    assert_eq!((a.targets, a.unconfigured), (3, 1));

    let r = settled(&h, "m-1", false).await;
    assert_eq!(r.message_id.as_deref(), Some("m-1"));
    assert_eq!(r.call_id, None);
    assert!((before..=after).contains(&r.accepted_at_ms), "{r:?}");
    assert_eq!(r.targets, 4);
    assert_eq!(
        r.outcomes,
        Outcomes {
            delivered: 2,
            token_dead: 1,
            unconfigured: 1,
            ..Outcomes::default()
        }
    );
    assert_eq!(
        sorted(r.failures.clone()),
        vec![
            FailedTarget {
                push_id: "d2".into(),
                provider: "apns".into(),
                outcome: "token_dead".into(),
                status: Some(410),
                reason: Some("Unregistered".into()),
            },
            FailedTarget {
                push_id: "d3".into(),
                provider: "huawei".into(),
                outcome: "unconfigured".into(),
                status: None,
                reason: None,
            },
        ]
    );
    // The body is API.md's, field for field.
    let (s, v) = h.get("/v1/messages/m-1").await;
    assert_eq!(s, StatusCode::OK);
    let text = h.get_text("/v1/messages/m-1").await;
    let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
    let order = [
        "message_id",
        "accepted_at_ms",
        "targets",
        "outcomes",
        "failures",
    ]
    .map(at);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(
        v["outcomes"],
        json!({"delivered": 2, "pending": 0, "token_dead": 1, "rejected": 0,
               "expired": 0, "withdrawn": 0, "unconfigured": 1})
    );

    // A repeat within the dedup window opens no entry of its own.
    let (s, v) = h
        .post(
            "/v1/messages",
            json!({"message_id": "m-1", "sender_id": "u0", "conversation_type": "group",
                   "conversation_id": "g1", "push": {"title": "hi"}}),
        )
        .await;
    assert_eq!((s, &v["duplicate"]), (StatusCode::OK, &json!(true)), "{v}");
    assert_eq!(h.api.message_report("m-1").await.expect("still there"), r);
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_are_404_and_a_message_is_no_call() {
    let h = harness::start().await;
    h.bind("d1", "u1", "fcm", &fcm_token(1)).await;
    h.message_to("m-1", "u1", json!({"title": "hi"})).await;
    assert_error(
        h.get("/v1/messages/nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        h.get("/v1/calls/m-1").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        h.call(http::Method::DELETE, "/v1/messages/m-1", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let r = settled(&h, "m-1", false).await;
    assert_eq!((r.targets, r.outcomes.delivered), (1, 1));
    // A message without `push` pushes nothing and is still on record.
    let (s, _) = h
        .post(
            "/v1/messages",
            json!({"message_id": "m-2", "sender_id": "u0", "conversation_type": "peer",
                   "conversation_id": "u1"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let r = h.api.message_report("m-2").await.expect("on record");
    assert_eq!((r.targets, r.failures.len()), (0, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_calls_ledger_counts_its_withdrawn_invitation() {
    let h = harness::start().await;
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    h.bind("u2-and", "u2", "fcm", &fcm_token(2)).await;
    // u2's invitation is throttled for 30 s: it waits for its retry.
    h.fcm.set_token_throttle(&fcm_token(2), 1, 30);
    let (s, v) = h
        .post(
            "/v1/calls",
            json!({"call_id": "c-1", "inviter_id": "u0", "invitees": ["u1", "u2"],
                   "timeout_s": 60, "push": {"title": "Incoming call"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert!(h.apns.wait_for(1, WAIT).await, "u1 rang");
    h.wait_stats("u2's invitation waiting for its retry", |s| {
        s["providers"]["fcm"]["retried"] == 1
    })
    .await;
    let r = h.api.call_report("c-1").await.expect("on record");
    assert_eq!((r.outcomes.delivered, r.outcomes.pending), (1, 1), "{r:?}");

    let (s, v) = h.post("/v1/calls/c-1/cancel", json!({})).await;
    assert_eq!((s, &v["withdrawn"]), (StatusCode::OK, &json!(1)), "{v}");
    // Counted at the cancel, not when the retry would have fallen due.
    let r = h.api.call_report("c-1").await.expect("on record");
    assert_eq!(r.call_id.as_deref(), Some("c-1"));
    assert_eq!(
        r.outcomes,
        Outcomes {
            delivered: 1,
            withdrawn: 1,
            ..Outcomes::default()
        }
    );
    assert_eq!(
        r.failures,
        vec![FailedTarget {
            push_id: "u2-and".into(),
            provider: "fcm".into(),
            outcome: "withdrawn".into(),
            status: None,
            reason: None,
        }]
    );
    assert_error(
        h.get("/v1/messages/c-1").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_zero_retention_turns_the_ledger_off() {
    let h = harness::start_with(harness::Options {
        messages: "ledger_retention_s = 0".into(),
        ..harness::Options::default()
    })
    .await;
    h.bind("d1", "u1", "fcm", &fcm_token(1)).await;
    h.message_to("m-1", "u1", json!({"title": "hi"})).await;
    assert!(h.fcm.wait_for(1, WAIT).await);
    assert_error(
        h.get("/v1/messages/m-1").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    h.shutdown().await;
}
