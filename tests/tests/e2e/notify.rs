//! Do not disturb and badge counters (API 1.1) through the HTTP API: what a muted
//! conversation pushes (nothing), what it does not silence (other conversations,
//! calls), the exact answers and refusals, and both surviving a restart.

use fanfare::client::MessageAccepted;
use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{self, apns_token, fcm_token, WAIT};

const DND: &str = "/v1/users/u2/conversations/group/team/notification";

#[tokio::test]
async fn a_member_who_muted_a_group_gets_no_push_of_it_and_still_gets_the_rest() {
    let h = harness::start().await;
    h.add_members("team", &["u0", "u1", "u2", "u3"]).await;
    h.bind("d1", "u1", "fcm", &fcm_token(1)).await;
    h.bind("d2", "u2", "apns", &apns_token(2)).await;
    h.bind("d3", "u3", "fcm", &fcm_token(3)).await;
    let (s, v) = h.put(DND, json!({"status": "do_not_disturb"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let push = json!({"title": "team", "content": "hi"});
    let v = h.group_message("m-1", "u0", "team", push.clone()).await;
    // u2 is offline but muted the group: recipients 3, offline 3, one muted, two
    // devices pushed.
    let want = MessageAccepted {
        muted: 1,
        ..harness::accepted("m-1", 3, 3, 2)
    };
    assert_eq!(v, want);
    assert!(h.fcm.wait_for(2, WAIT).await);
    // A peer message to u2 still arrives, and is the only APNs push.
    let v = h.peer_message("m-2", "u1", "u2", push.clone()).await;
    assert_eq!(v.targets, 1);
    assert!(h.apns.wait_for(1, WAIT).await);
    let apns = h.apns.received();
    assert_eq!(apns.len(), 1);
    assert_eq!(apns[0].token, apns_token(2));

    // Set back to notify: the group pushes u2 again.
    let (s, _) = h.put(DND, json!({"status": "notify"})).await;
    assert_eq!(s, StatusCode::OK);
    let v = h.group_message("m-3", "u0", "team", push).await;
    assert_eq!(v.targets, 3);
    assert!(h.apns.wait_for(2, WAIT).await);
    h.shutdown().await;
}

#[tokio::test]
async fn a_peer_mute_silences_that_sender_only_and_calls_still_ring() {
    let h = harness::start().await;
    h.bind("d1", "u1", "fcm", &fcm_token(1)).await;
    let path = "/v1/users/u1/conversations/peer/u0/notification";
    let (s, _) = h.put(path, json!({"status": "do_not_disturb"})).await;
    assert_eq!(s, StatusCode::OK);
    let push = json!({"title": "dm", "content": "hi"});
    let v = h.message_to("m-1", "u1", push.clone()).await;
    let want = MessageAccepted {
        muted: 1,
        ..harness::accepted("m-1", 1, 1, 0)
    };
    assert_eq!(v, want);
    let v = h.peer_message("m-2", "u9", "u1", push).await;
    assert_eq!(v.targets, 1, "another sender is not muted");
    let (s, v) = h
        .post(
            "/v1/calls",
            json!({"call_id": "c-1", "inviter_id": "u0", "invitees": ["u1"], "timeout_s": 60,
                   "push": {"title": "call", "content": "u0 is calling"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["targets"], 1, "do-not-disturb does not silence calls");
    assert!(h.fcm.wait_for(2, WAIT).await);
    h.shutdown().await;
}

#[tokio::test]
async fn notification_status_answers_exactly_and_bad_input_changes_nothing() {
    let h = harness::start().await;
    let (s, v) = h.get(DND).await;
    assert_eq!(s, StatusCode::OK);
    let notify = json!({"user_id": "u2", "conversation_type": "group",
                        "conversation_id": "team", "status": "notify"});
    assert_eq!(v, notify, "never set reads notify");
    let (s, v) = h.put(DND, json!({"status": "do_not_disturb"})).await;
    let muted = json!({"user_id": "u2", "conversation_type": "group",
                       "conversation_id": "team", "status": "do_not_disturb"});
    assert_eq!((s, &v), (StatusCode::OK, &muted));
    assert_eq!(h.get(DND).await, (StatusCode::OK, muted.clone()));

    let bad = [
        (
            "/v1/users/u2/conversations/room/team/notification",
            json!({"status": "notify"}),
            "conversation_type",
        ),
        (DND, json!({"status": "mute"}), "status"),
        (DND, json!({"status": "notify", "until": 5}), "until"),
        (DND, json!({}), "status"),
        (
            "/v1/users/u2/conversations/group/%01/notification",
            json!({"status": "notify"}),
            "conversation_id",
        ),
    ];
    for (path, body, named) in bad {
        let (s, v) = h.put(path, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_argument");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message:?} names {named}");
    }
    let (s, _) = h.call(Method::DELETE, DND, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.get(DND).await, (StatusCode::OK, muted), "nothing changed");
    // The typed client speaks the same endpoint.
    let got = h.api.notification("u2", ("group", "team")).await.unwrap();
    assert_eq!(got.status, "do_not_disturb");
    h.shutdown().await;
}

#[tokio::test]
async fn the_badge_counter_is_set_read_and_refuses_bad_counts() {
    let h = harness::start().await;
    let path = "/v1/users/u1/badge";
    assert_eq!(
        h.get(path).await,
        (StatusCode::OK, json!({"user_id": "u1", "count": 0}))
    );
    let (s, v) = h.put(path, json!({"count": 5})).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"user_id": "u1", "count": 5}))
    );
    for body in [
        json!({"count": -1}),
        json!({"count": "7"}),
        json!({"count": 4_294_967_296u64}),
        json!({}),
        json!({"count": 1, "extra": true}),
    ] {
        let (s, v) = h.put(path, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_argument");
    }
    assert_eq!(h.api.badge("u1").await.unwrap().count, 5, "nothing changed");
    assert_eq!(h.api.set_badge("u1", 0).await.unwrap().count, 0);
    assert_eq!(h.api.badge("u1").await.unwrap().count, 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_user_cannot_mute_more_than_the_limit_and_the_refusal_changes_nothing() {
    let h = harness::start().await;
    let limit = fanfare::state::notify::MAX_MUTED_PER_USER;
    for i in 0..limit {
        let kind = if i % 2 == 0 { "peer" } else { "group" };
        let id = format!("c{i}");
        let got = h.api.set_notification("u1", (kind, &id), "do_not_disturb");
        got.await.expect("under the limit");
    }
    let path = "/v1/users/u1/conversations/peer/one-more/notification";
    let (s, v) = h.put(path, json!({"status": "do_not_disturb"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "limit_exceeded");
    assert_eq!(h.get(path).await.1["status"], "notify");
    // Muting one already muted, or unmuting, still works; then there is room again.
    let again = h
        .api
        .set_notification("u1", ("peer", "c0"), "do_not_disturb");
    again.await.expect("re-muting is not a new mute");
    h.api
        .set_notification("u1", ("group", "c1"), "notify")
        .await
        .expect("unmuting is always accepted");
    let (s, _) = h.put(path, json!({"status": "do_not_disturb"})).await;
    assert_eq!(s, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn mutes_and_badge_counts_survive_a_clean_restart() {
    let mut h = harness::start().await;
    h.put(DND, json!({"status": "do_not_disturb"})).await;
    let peer = "/v1/users/u5/conversations/peer/u0/notification";
    h.put(peer, json!({"status": "do_not_disturb"})).await;
    h.api.set_badge("u1", 3).await.unwrap();
    let running = h.engine.take().expect("engine runs");
    let engine = running.engine().clone();
    // What a fan-out with badge_increment does to a recipient.
    let u1 = engine.state.users.pin().get("u1").expect("u1 has a count");
    assert_eq!(engine.state.badges.add(u1, 2), 5);
    let before = engine.state.durable_view();
    let config = engine.config.clone();
    drop(engine);
    running.shutdown().await;
    let restarted = fanfare::start(config).await.expect("engine restarts");
    assert_eq!(restarted.engine().state.durable_view(), before);
    h.attach(restarted);
    assert_eq!(h.get(DND).await.1["status"], "do_not_disturb");
    assert_eq!(h.get(peer).await.1["status"], "do_not_disturb");
    assert_eq!(h.api.badge("u1").await.unwrap().count, 5);
    h.shutdown().await;
}
