//! The API surface: every endpoint, auth, and bad input that must change nothing.

use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{self, apns_token, fcm_token};

#[tokio::test]
async fn health_metrics_and_stats() {
    let h = harness::start().await;
    let (s, v) = h.get("/healthz").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let stats = h.stats().await;
    assert_eq!(stats["bindings"], 0);
    assert!(stats["providers"]["apns"]["sent"].is_u64());
    let (s, _) = h.raw(Method::GET, "/metrics", Vec::new(), None).await;
    assert_eq!(s, StatusCode::OK);
    harness::assert_error(h.get("/v1/nope").await, StatusCode::NOT_FOUND, "not_found");
    let (s, v) = h.call(Method::PATCH, "/v1/messages", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    h.shutdown().await;
}

#[tokio::test]
async fn bind_list_move_unbind_and_remove_all() {
    let h = harness::start().await;
    let v = h.bind("d1", "u1", "apns", &apns_token(1)).await;
    assert_eq!(
        (v.push_id.as_str(), v.user_id.as_str(), v.previous_user_id),
        ("d1", "u1", None)
    );
    // Idempotent re-bind to the same user names no previous owner.
    let v = h.bind("d1", "u1", "apns", &apns_token(1)).await;
    assert_eq!(v.previous_user_id, None);
    h.bind("d2", "u1", "fcm", &fcm_token(2)).await;

    let (s, v) = h.get("/v1/users/u1/push-ids").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !v.to_string().contains(&apns_token(1)),
        "tokens must not be echoed: {v}"
    );
    let list = h.api.push_ids("u1").await.expect("push ids are listed");
    assert_eq!(list.push_ids.len(), 2);
    assert!(list
        .push_ids
        .iter()
        .any(|d| d.push_id == "d1" && d.provider == "apns" && d.environment == "production"));

    // Moving d1 to u2 names the old owner and removes it from u1.
    let v = h.bind("d1", "u2", "apns", &apns_token(1)).await;
    assert_eq!(v.previous_user_id.as_deref(), Some("u1"));
    let list = h.api.push_ids("u1").await.expect("push ids are listed");
    assert_eq!(list.push_ids.len(), 1);
    let list = h.api.push_ids("u2").await.expect("push ids are listed");
    assert_eq!(list.push_ids[0].push_id, "d1");

    let (s, v) = h.delete("/v1/push-ids/d1").await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"push_id": "d1", "user_id": "u2"}))
    );
    harness::assert_error(
        h.delete("/v1/push-ids/d1").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    h.bind("d3", "u1", "fcm", &fcm_token(3)).await;
    let (s, v) = h.delete("/v1/users/u1/push-ids").await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"user_id": "u1", "removed": 2}))
    );
    assert_eq!(h.stats().await["bindings"], 0);
    let (_, v) = h.delete("/v1/users/nobody/push-ids").await;
    assert_eq!(v["removed"], 0);
    h.shutdown().await;
}

#[tokio::test]
async fn presence_sessions_and_ttl() {
    let h = harness::start().await;
    let (s, v) = h
        .post(
            "/v1/presence",
            json!({"events": [
                {"user_id": "u1", "session_id": "phone", "online": true},
                {"user_id": "u1", "session_id": "web", "online": true},
                {"user_id": "u2", "session_id": "x", "online": true, "ttl_s": 1},
                {"user_id": "u3", "session_id": "y", "online": false}
            ]}),
        )
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"applied": 4})));
    let (_, v) = h.get("/v1/presence/u1").await;
    assert_eq!(v, json!({"user_id": "u1", "online": true, "sessions": 2}));
    h.post(
        "/v1/presence",
        json!({"events": [{"user_id": "u1", "session_id": "phone", "online": false}]}),
    )
    .await;
    let (_, v) = h.get("/v1/presence/u1").await;
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["online"], true);
    let (_, v) = h.get("/v1/presence/u3").await;
    assert_eq!(v["online"], false);
    // u2's session was given a 1 s TTL and is never refreshed: it goes offline by itself.
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    loop {
        let (_, v) = h.get("/v1/presence/u2").await;
        if v["online"] == false {
            assert_eq!(v["sessions"], 0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "u2 never expired");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn group_membership_lifecycle() {
    let h = harness::start().await;
    let (s, _) = h.get("/v1/groups/g1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = h
        .post(
            "/v1/groups/g1/members",
            json!({"add": ["a", "b", "c", "a"]}),
        )
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"group_id": "g1", "members": 3}))
    );
    let (_, v) = h
        .post(
            "/v1/groups/g1/members",
            json!({"add": ["d"], "remove": ["a", "zz"]}),
        )
        .await;
    assert_eq!(v["members"], 3);
    let (s, v) = h.get("/v1/groups/g1").await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"group_id": "g1", "members": 3}))
    );
    let (s, v) = h.delete("/v1/groups/g1").await;
    assert_eq!((s, v), (StatusCode::OK, json!({"group_id": "g1"})));
    let (s, _) = h.delete("/v1/groups/g1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .post("/v1/groups/g2/members", json!({"remove": ["a"]}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(h.stats().await["groups"], 0);
    h.shutdown().await;
}

/// Every kind of bad input gets a JSON error naming the problem and changes nothing.
#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let h = harness::start().await;
    h.bind("keep", "u1", "fcm", &fcm_token(1)).await;
    let before = h.stats().await;

    let long = "x".repeat(129);
    let cases: Vec<(Method, String, Vec<u8>, &str)> = vec![
        (Method::PUT, "/v1/push-ids/d1".into(), b"{not json".to_vec(), "JSON"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"provider": "fcm", "token": "t"}).to_string().into_bytes(), "user_id"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": "u", "provider": "nokia", "token": "t"}).to_string().into_bytes(), "provider"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": "u", "provider": "apns", "token": "abc"}).to_string().into_bytes(), "token"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": "u", "provider": "apns", "token": "zz".repeat(32)}).to_string().into_bytes(), "token"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": "u", "provider": "webpush", "token": "{}"}).to_string().into_bytes(), "token"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": "u", "provider": "fcm", "token": "a b"}).to_string().into_bytes(), "token"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": "u", "provider": "apns", "token": apns_token(1), "environment": "staging"}).to_string().into_bytes(), "environment"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": long, "provider": "fcm", "token": "t"}).to_string().into_bytes(), "user_id"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": 5, "provider": "fcm", "token": "t"}).to_string().into_bytes(), "user_id"),
        (Method::PUT, "/v1/push-ids/d1".into(), json!({"user_id": "u", "provider": "fcm", "token": "t", "colour": 1}).to_string().into_bytes(), "colour"),
        (Method::PUT, format!("/v1/push-ids/{long}"), json!({"user_id": "u", "provider": "fcm", "token": "t"}).to_string().into_bytes(), "push_id"),
        (Method::POST, "/v1/presence".into(), json!({"events": [{"user_id": "u9", "session_id": "s", "online": true}, {"user_id": "", "session_id": "s", "online": true}]}).to_string().into_bytes(), "events[1].user_id"),
        (Method::POST, "/v1/presence".into(), json!({"events": [{"user_id": "u9", "session_id": "s", "online": "yes"}]}).to_string().into_bytes(), "online"),
        (Method::POST, "/v1/groups/g1/members".into(), json!({"add": ["a", ""]}).to_string().into_bytes(), "add[1]"),
        (Method::POST, "/v1/messages".into(), json!({"message_id": "m1", "sender_id": "u0", "conversation_type": "channel", "conversation_id": "u1", "push": {"title": "t"}}).to_string().into_bytes(), "conversation_type"),
        (Method::POST, "/v1/messages".into(), json!({"message_id": "m1", "sender_id": "u0", "conversation_type": "peer", "conversation_id": "u1", "push": {"badge": -1}}).to_string().into_bytes(), "badge"),
        (Method::POST, "/v1/messages".into(), json!({"message_id": "m1", "sender_id": "u0", "conversation_type": "peer", "conversation_id": "u1", "push": {"payload": "a", "extended_data": "b"}}).to_string().into_bytes(), "extended_data"),
        (Method::POST, "/v1/calls".into(), json!({"call_id": "c1", "inviter_id": "u0", "invitees": [], "timeout_s": 30}).to_string().into_bytes(), "invitees"),
        (Method::POST, "/v1/calls".into(), json!({"call_id": "c1", "inviter_id": "u0", "invitees": ["u1"], "timeout_s": 0}).to_string().into_bytes(), "timeout_s"),
    ];
    for (method, path, body, field) in cases {
        let (s, v) = h.raw(method.clone(), &path, body.clone(), None).await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "{method} {path} {}: {v}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "message {msg:?} should name {field:?}");
    }
    // Nothing changed: same bindings, the half-valid presence batch applied nothing,
    // the group was not created, no message was accepted or claimed.
    let after = h.stats().await;
    assert_eq!(before["bindings"], after["bindings"]);
    assert_eq!(after["groups"], 0);
    assert_eq!(after["online_users"], 0);
    assert_eq!(after["messages_accepted"], 0);
    let (_, v) = h.get("/v1/presence/u9").await;
    assert_eq!(v["online"], false);
    let (_, v) = h.get("/v1/users/keep/push-ids").await;
    assert_eq!(v["push_ids"].as_array().unwrap().len(), 0);
    let (_, v) = h.get("/v1/users/u1/push-ids").await;
    assert_eq!(v["push_ids"].as_array().unwrap().len(), 1);
    // m1 was never claimed by the rejected requests: it is accepted now.
    let v = h
        .message_to("m1", "u1", json!({"title": "t", "content": "c"}))
        .await;
    assert_eq!(v.targets, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_and_payloads_get_413_and_change_nothing() {
    let h = harness::start().await;
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    // Body over api.max_body_bytes (64 KiB in the harness).
    let big = json!({"user_id": "u1", "provider": "fcm", "token": "x".repeat(70_000)}).to_string();
    harness::assert_error(
        h.raw(Method::PUT, "/v1/push-ids/d2", big.into_bytes(), None)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Push payload over the vendors' 4096-byte limit.
    harness::assert_error(
        h.post(
            "/v1/messages",
            json!({"message_id": "m-big", "sender_id": "u0", "conversation_type": "peer",
                   "conversation_id": "u1", "push": {"title": "t", "payload": "p".repeat(4100)}}),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let stats = h.stats().await;
    assert_eq!(stats["bindings"], 1);
    assert_eq!(stats["messages_accepted"], 0);
    assert_eq!(stats["providers"]["apns"]["sent"], 0);
    // The id was not consumed: a fitting message with the same id goes through.
    let v = h
        .message_to("m-big", "u1", json!({"title": "t", "payload": "small"}))
        .await;
    assert_eq!(v.targets, 1);
    assert!(h.apns.wait_for(1, harness::WAIT).await);
    h.shutdown().await;
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let h = harness::start_with_token().await;
    let body = json!({"user_id": "u1", "provider": "fcm", "token": fcm_token(1)})
        .to_string()
        .into_bytes();
    harness::assert_error(
        h.raw(Method::PUT, "/v1/push-ids/d1", body.clone(), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let (s, _) = h
        .raw(
            Method::PUT,
            "/v1/push-ids/d1",
            body.clone(),
            Some("wrong-token-xxxx"),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h.raw(Method::GET, "/v1/stats", Vec::new(), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // healthz and metrics are open.
    let (s, _) = h.raw(Method::GET, "/healthz", Vec::new(), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.raw(Method::GET, "/metrics", Vec::new(), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h.stats().await["bindings"],
        0,
        "unauthenticated bind changed state"
    );
    let (s, _) = h
        .raw(
            Method::PUT,
            "/v1/push-ids/d1",
            body,
            Some(harness::API_TOKEN),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn refuses_public_listen_without_token() {
    let env = vec![("FANFARE_API_LISTEN".to_string(), "0.0.0.0:0".to_string())];
    let config = fanfare::config::Config::load(None, env).unwrap();
    let err = fanfare::start(config).await.err().expect("must refuse");
    assert!(err.to_string().contains("api.token"), "{err}");
}

/// The same API over HTTP/2 with prior knowledge (h2c) on the same port.
#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let h = harness::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::put(format!("{}/v1/push-ids/h2dev", h.base))
        .body(Full::new(Bytes::from(
            json!({"user_id": "u1", "provider": "fcm", "token": fcm_token(9)}).to_string(),
        )))
        .unwrap();
    let resp = client.request(req).await.expect("h2c request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["user_id"], "u1");
    h.shutdown().await;
}
