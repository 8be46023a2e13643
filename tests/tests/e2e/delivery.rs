//! Pushes reaching the mock vendors: content, routing, calls, dead tokens, dedup,
//! token reuse, the debug endpoint.

use fanfare_loadgen::mock::apns::ApnsVerdict;
use fanfare_loadgen::mock::fcm::FcmVerdict;
use http::StatusCode;
use serde_json::json;

use crate::harness::{self, apns_token, fcm_token, TOPIC, WAIT};

#[tokio::test]
async fn peer_message_reaches_every_device_of_an_offline_user() {
    let h = harness::start().await;
    h.bind("ios", "u1", "apns", &apns_token(1)).await;
    h.bind("android", "u1", "fcm", &fcm_token(1)).await;
    h.bind("voip", "u1", "apns_voip", &apns_token(2)).await;
    let v = h
        .message_to("m-1001", "u1", json!({"title": "New message", "content": "hello", "payload": "{\"k\":1}", "resources_id": "chat", "badge": 3}))
        .await;
    // The apns_voip binding gets call invitations only.
    assert_eq!(v, harness::accepted("m-1001", 1, 1, 2));
    assert!(h.apns.wait_for(1, WAIT).await);
    assert!(h.fcm.wait_for(1, WAIT).await);

    let a = &h.apns.received()[0];
    assert_eq!(a.token, apns_token(1));
    assert_eq!(a.topic, TOPIC);
    assert_eq!(a.push_type, "alert");
    assert_eq!(a.priority, 10);
    assert!(a.expiration.unwrap() > fanfare::clock::unix_now_s());
    assert_eq!(a.body["aps"]["alert"]["title"], "New message");
    assert_eq!(a.body["aps"]["alert"]["body"], "hello");
    assert_eq!(a.body["aps"]["badge"], 3);
    assert_eq!(a.body["payload"], "{\"k\":1}");

    let f = &h.fcm.received()[0];
    assert_eq!(f.token, fcm_token(1));
    assert_eq!(f.message["notification"]["title"], "New message");
    assert_eq!(f.message["notification"]["body"], "hello");
    assert_eq!(f.message["data"]["payload"], "{\"k\":1}");
    for (_, val) in f.message["data"].as_object().unwrap() {
        assert!(val.is_string(), "FCM data values must be strings");
    }
    let stats = h
        .wait_stats("delivered counters", |s| {
            s["providers"]["apns"]["delivered"] == 1 && s["providers"]["fcm"]["delivered"] == 1
        })
        .await;
    assert_eq!(stats["providers"]["apns_voip"]["sent"], 0);
    assert_eq!(h.apns.received_count(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn online_users_are_not_pushed_and_legacy_extended_data_is_the_payload() {
    let h = harness::start().await;
    h.bind("d-on", "online-user", "apns", &apns_token(1)).await;
    h.bind("d-off", "offline-user", "apns", &apns_token(2))
        .await;
    h.online("online-user", "conn-1").await;
    let v = h
        .message_to("m1", "online-user", json!({"title": "t", "content": "c"}))
        .await;
    assert_eq!(v, harness::accepted("m1", 1, 0, 0));
    // A later message to an offline user is the barrier: once it arrived, the first
    // one would have too, had it been queued.
    let v = h
        .message_to(
            "m2",
            "offline-user",
            json!({"title": "t", "extended_data": "legacy"}),
        )
        .await;
    assert_eq!(v.targets, 1);
    assert!(h.apns.wait_for(1, WAIT).await);
    let got = h.apns.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].token, apns_token(2));
    assert_eq!(got[0].body["payload"], "legacy");
    // Once the user goes offline they are pushed again.
    h.offline("online-user", "conn-1").await;
    let v = h
        .message_to("m3", "online-user", json!({"title": "t"}))
        .await;
    assert_eq!(v.targets, 1);
    assert!(h.apns.wait_for(2, WAIT).await);
    h.shutdown().await;
}

#[tokio::test]
async fn group_fan_out_skips_sender_and_online_members() {
    let h = harness::start().await;
    let members: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    h.add_members("team", &members).await;
    for i in 0..20u32 {
        if i % 2 == 0 {
            h.bind(
                &format!("ios-{i}"),
                &format!("m{i}"),
                "apns",
                &apns_token(i),
            )
            .await;
        } else {
            h.bind(&format!("and-{i}"), &format!("m{i}"), "fcm", &fcm_token(i))
                .await;
        }
    }
    // m0 sends; m1..m4 are online.
    for i in 1..5 {
        h.online(&format!("m{i}"), "s").await;
    }
    let push = json!({"title": "team", "content": "hi all"});
    let v = h.group_message("g-1", "m0", "team", push).await;
    assert_eq!(v, harness::accepted("g-1", 19, 15, 15));
    // m5..m19 offline: even ones on APNs (6,8,..,18 = 7), odd ones on FCM (5,7,..,19 = 8).
    assert!(h.apns.wait_for(7, WAIT).await);
    assert!(h.fcm.wait_for(8, WAIT).await);
    let mut apns: Vec<String> = h.apns.received().into_iter().map(|p| p.token).collect();
    apns.sort();
    let mut want: Vec<String> = (5..20).filter(|i| i % 2 == 0).map(apns_token).collect();
    want.sort();
    assert_eq!(apns, want);
    let mut fcm: Vec<String> = h.fcm.received().into_iter().map(|p| p.token).collect();
    fcm.sort();
    let mut want: Vec<String> = (5..20).filter(|i| i % 2 == 1).map(fcm_token).collect();
    want.sort();
    assert_eq!(fcm, want);
    // Unknown group → 404.
    let (s, _) = h
        .post("/v1/messages", json!({"message_id": "g-2", "sender_id": "m0", "conversation_type": "group", "conversation_id": "nope", "push": {"title": "x"}}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.shutdown().await;
}

#[tokio::test]
async fn sandbox_bindings_go_to_the_sandbox_host_and_app_id_sets_the_topic() {
    let h = harness::start().await;
    h.bind_env("dev", "u1", "apns", &apns_token(1), "sandbox")
        .await;
    let (s, v) = h
        .put(
            "/v1/push-ids/other-app",
            json!({"user_id": "u2", "provider": "apns", "token": apns_token(2), "app_id": TOPIC}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.message_to("m1", "u1", json!({"title": "t"})).await;
    h.message_to("m2", "u2", json!({"title": "t"})).await;
    assert!(h.apns_sandbox.wait_for(1, WAIT).await);
    assert!(h.apns.wait_for(1, WAIT).await);
    assert_eq!(h.apns_sandbox.received()[0].token, apns_token(1));
    assert_eq!(h.apns.received()[0].token, apns_token(2));
    assert_eq!(h.apns.received()[0].topic, TOPIC);
    assert_eq!(h.apns_sandbox.received_count(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn calls_ring_voip_once_per_iphone_and_expire_with_the_call() {
    let h = harness::start().await;
    // u1: an iPhone with both an alert token and a PushKit token → VoIP only.
    h.bind("u1-ios", "u1", "apns", &apns_token(1)).await;
    h.bind("u1-voip", "u1", "apns_voip", &apns_token(2)).await;
    // u2: iPhone without PushKit → alert; u3: Android → FCM high priority with ttl.
    h.bind("u2-ios", "u2", "apns", &apns_token(3)).await;
    h.bind("u3-and", "u3", "fcm", &fcm_token(3)).await;
    // u4 is online: not pushed.
    h.bind("u4-ios", "u4", "apns", &apns_token(4)).await;
    h.online("u4", "s").await;
    let before = fanfare::clock::unix_now_s();
    let (s, v) = h
        .post(
            "/v1/calls",
            json!({"call_id": "c-77", "inviter_id": "u0", "invitees": ["u1", "u2", "u3", "u4"], "timeout_s": 90,
                   "push": {"title": "Incoming call", "content": "u0 is calling", "payload": "room-9"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v,
        json!({"call_id": "c-77", "offline_invitees": 3, "targets": 3, "unconfigured": 0, "muted": 0})
    );
    assert!(h.apns.wait_for(2, WAIT).await);
    assert!(h.fcm.wait_for(1, WAIT).await);
    let after = fanfare::clock::unix_now_s();
    let apns = h.apns.received();
    assert_eq!(apns.len(), 2);
    let voip = apns
        .iter()
        .find(|p| p.token == apns_token(2))
        .expect("voip push");
    assert_eq!(voip.push_type, "voip");
    assert_eq!(voip.topic, format!("{TOPIC}.voip"));
    assert_eq!(voip.priority, 10);
    let exp = voip.expiration.unwrap();
    assert!(
        exp >= before + 90 && exp <= after + 90,
        "expiration {exp} not now+90"
    );
    assert_eq!(voip.body["payload"], "room-9");
    assert_eq!(voip.body["call"]["call_id"], "c-77");
    let alert = apns
        .iter()
        .find(|p| p.token == apns_token(3))
        .expect("alert push");
    assert_eq!(alert.push_type, "alert");
    assert_eq!(alert.topic, TOPIC);
    assert!(
        !apns.iter().any(|p| p.token == apns_token(1)),
        "u1 got an alert beside VoIP"
    );
    let f = &h.fcm.received()[0];
    assert_eq!(f.message["android"]["priority"], "HIGH");
    assert_eq!(f.message["android"]["ttl"], "90s");
    assert_eq!(f.message["data"]["call_id"], "c-77");
    assert_eq!(f.message["data"]["payload"], "room-9");
    h.shutdown().await;
}

#[tokio::test]
async fn dead_tokens_remove_their_bindings() {
    let h = harness::start().await;
    h.bind("gone-ios", "u1", "apns", &apns_token(1)).await;
    h.bind("bad-ios", "u1", "apns", &apns_token(2)).await;
    h.bind("gone-and", "u1", "fcm", &fcm_token(1)).await;
    h.bind("ok-and", "u1", "fcm", &fcm_token(2)).await;
    h.apns
        .set_token_verdict(&apns_token(1), ApnsVerdict::Unregistered);
    h.apns
        .set_token_verdict(&apns_token(2), ApnsVerdict::BadDeviceToken);
    h.fcm
        .set_token_verdict(&fcm_token(1), FcmVerdict::Unregistered);
    let v = h.message_to("m1", "u1", json!({"title": "t"})).await;
    assert_eq!(v.targets, 4);
    let stats = h
        .wait_stats("three dead tokens removed", |s| {
            s["invalid_tokens_removed"] == 3
        })
        .await;
    assert_eq!(stats["bindings"], 1);
    assert_eq!(stats["providers"]["fcm"]["delivered"], 1);
    let (_, v) = h.get("/v1/users/u1/push-ids").await;
    let ids: Vec<&str> = v["push_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["push_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["ok-and"]);
    let mut rejections = h.apns.rejections();
    rejections.sort();
    assert_eq!(
        rejections,
        vec![
            (400, "BadDeviceToken".to_string()),
            (410, "Unregistered".to_string())
        ]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_dead_token_report_spares_a_binding_re_registered_with_a_new_token() {
    let h = harness::start().await;
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    h.apns
        .set_token_verdict(&apns_token(1), ApnsVerdict::Unregistered);
    // The debug endpoint answers synchronously, so the removal has happened when it returns.
    let v = h.debug_push("d1", json!({"title": "t"})).await;
    assert_eq!(v["status"], 410);
    assert_eq!(v["reason"], "Unregistered");
    assert_eq!(v["outcome"], "token_dead");
    assert_eq!(h.stats().await["bindings"], 0);
    // Re-register with a fresh token; it works.
    h.bind("d1", "u1", "apns", &apns_token(5)).await;
    let v = h.debug_push("d1", json!({"title": "t"})).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["provider"], "apns");
    assert!(
        v["vendor_id"].as_str().is_some_and(|id| id.len() == 36),
        "{v}"
    );
    let (s, _) = h.post("/v1/debug/push", json!({"push_id": "nope"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.shutdown().await;
}

#[tokio::test]
async fn debug_push_reports_the_fcm_verdict() {
    let h = harness::start().await;
    h.bind("a1", "u1", "fcm", &fcm_token(1)).await;
    let v = h.debug_push("a1", json!({"title": "hi"})).await;
    assert_eq!(v["provider"], "fcm");
    assert_eq!(v["status"], 200);
    assert!(
        v["vendor_id"]
            .as_str()
            .unwrap()
            .starts_with("projects/fanfare-test/messages/"),
        "{v}"
    );
    h.fcm
        .set_token_verdict(&fcm_token(1), FcmVerdict::SenderIdMismatch);
    let (_, v) = h.post("/v1/debug/push", json!({"push_id": "a1"})).await;
    assert_eq!(v["status"], 403);
    assert_eq!(v["reason"], "SENDER_ID_MISMATCH");
    assert_eq!(h.stats().await["bindings"], 0);
    h.shutdown().await;
}

#[tokio::test]
async fn repeated_message_id_is_pushed_once() {
    let h = harness::start().await;
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    h.message_to("same", "u1", json!({"title": "first"})).await;
    let (s, v) = h
        .post("/v1/messages", json!({"message_id": "same", "sender_id": "u0", "conversation_type": "peer", "conversation_id": "u1", "push": {"title": "again"}}))
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"message_id": "same", "duplicate": true})
        )
    );
    // Barrier: a different message after the duplicate.
    h.message_to("other", "u1", json!({"title": "second"}))
        .await;
    assert!(h.apns.wait_for(2, WAIT).await);
    let titles: Vec<String> = h
        .apns
        .received()
        .iter()
        .map(|p| {
            p.body["aps"]["alert"]["title"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(titles.iter().filter(|t| *t == "first").count(), 1);
    assert!(!titles.contains(&"again".to_string()));
    assert_eq!(h.stats().await["messages_duplicate"], 1);
    h.shutdown().await;
}

#[tokio::test]
async fn provider_jwt_and_oauth_token_are_reused() {
    let h = harness::start().await;
    for i in 0..30u32 {
        h.bind(&format!("i{i}"), &format!("u{i}"), "apns", &apns_token(i))
            .await;
        h.bind(&format!("a{i}"), &format!("u{i}"), "fcm", &fcm_token(i))
            .await;
    }
    let members: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    h.add_members("all", &members).await;
    for m in 0..3 {
        h.group_message(&format!("m{m}"), "nobody", "all", json!({"title": "t"}))
            .await;
    }
    assert!(h.apns.wait_for(90, WAIT).await);
    assert!(h.fcm.wait_for(90, WAIT).await);
    assert_eq!(
        h.apns.distinct_jwts(),
        1,
        "one APNs provider token for 90 pushes"
    );
    assert_eq!(
        h.fcm.tokens_issued(),
        1,
        "one OAuth access token for 90 pushes"
    );
    assert!(
        h.apns.connections_accepted() <= 2,
        "pushes share the pooled connections"
    );
    assert!(h.apns.rejections().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn unconfigured_vendors_are_counted_not_crashed() {
    let h = harness::start().await;
    let (s, _) = h
        .put(
            "/v1/push-ids/hw",
            json!({"user_id": "u1", "provider": "huawei", "token": "IQAAAACy0kYkAACr1QJ5"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let v = h.message_to("m1", "u1", json!({"title": "t"})).await;
    assert_eq!(v.targets, 0);
    let stats = h.stats().await;
    assert_eq!(stats["providers"]["huawei"]["unconfigured"], 1);
    h.shutdown().await;
}
