//! Hardening (issue 10, items 8 and 10): memory that must not grow without bound.
//!
//! - Item 8: user ids seen only in passing (message recipients, call invitees, users
//!   whose sessions or group memberships are gone) cost nothing after the sweep, never
//!   reach a snapshot, and a restart restores exactly the real state.
//! - Item 10: a user's sessions are capped (an extra one evicts the oldest) and
//!   refreshing the same sessions does not grow the expiry wheel.

use http::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, fcm_token, Harness, Options};

/// The engine with a user sweep every 50 ms (the default is 15 s).
async fn start_sweeping() -> Harness {
    harness::start_with(Options {
        extra: "[presence]\nuser_sweep_interval_ms = 50\n".into(),
        ..Options::default()
    })
    .await
}

async fn users(h: &Harness) -> u64 {
    h.stats().await["users"].as_u64().expect("stats has users")
}

/// Wait (bounded) until the engine knows exactly `n` users.
async fn wait_users(h: &Harness, n: u64) {
    h.wait_stats(&format!("{n} users"), |s| s["users"] == n)
        .await;
}

/// Presence events for `users`, 400 per request (the harness's body limit is 64 KiB).
async fn presence(h: &Harness, users: &[String], session: &str, online: bool, ttl_s: u64) {
    for chunk in users.chunks(400) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|u| json!({"user_id": u, "session_id": session, "online": online, "ttl_s": ttl_s}))
            .collect();
        let (s, v) = h.post("/v1/presence", json!({ "events": events })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

fn junk(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}

/// Peer messages with a push to `n` users nobody has seen, 8 requests at a time.
async fn peer_messages_to_strangers(h: &Harness, prefix: &str, n: usize) {
    async fn lane(h: &Harness, prefix: &str, lane: usize, n: usize) {
        for i in (lane..n).step_by(8) {
            let (id, to) = (format!("{prefix}-msg-{i}"), format!("{prefix}-{i:06}"));
            let push = json!({"title": "t", "content": "hello"});
            let v = h.peer_message(&id, "sender", &to, push).await;
            assert_eq!(
                (v.recipients, v.offline_recipients, v.targets),
                (1, 1, 0),
                "{v:?}"
            );
        }
    }
    tokio::join!(
        lane(h, prefix, 0, n),
        lane(h, prefix, 1, n),
        lane(h, prefix, 2, n),
        lane(h, prefix, 3, n),
        lane(h, prefix, 4, n),
        lane(h, prefix, 5, n),
        lane(h, prefix, 6, n),
        lane(h, prefix, 7, n),
    );
}

/// Call invitations to `n` users nobody has seen, 2,500 invitees per call.
async fn calls_to_strangers(h: &Harness, prefix: &str, n: usize) {
    for (c, invitees) in junk(prefix, n).chunks(2_500).enumerate() {
        let (s, v) = h
            .post(
                "/v1/calls",
                json!({"call_id": format!("{prefix}-call-{c}"), "inviter_id": "caller",
                       "invitees": invitees, "timeout_s": 30,
                       "push": {"title": "call", "content": "ring"}}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["offline_invitees"], invitees.len(), "{v}");
        assert_eq!(v["targets"], 0, "{v}");
    }
}

#[tokio::test]
async fn messages_and_calls_to_never_seen_users_leave_no_user_behind() {
    let h = harness::start().await;
    h.bind("d-real", "real", "fcm", &fcm_token(1)).await;
    assert_eq!(users(&h).await, 1);

    peer_messages_to_strangers(&h, "stranger", 10_000).await;
    calls_to_strangers(&h, "invitee", 10_000).await;
    assert_eq!(users(&h).await, 1, "no stranger was interned");

    // A known recipient is still found and pushed to, and duplicates of one unknown
    // invitee count once.
    let push = json!({"title": "t", "content": "c"});
    let v = h.peer_message("to-real", "sender", "real", push).await;
    assert_eq!((v.recipients, v.targets), (1, 1));
    let (s, v) = h
        .post(
            "/v1/calls",
            json!({"call_id": "c-dup", "inviter_id": "caller",
                   "invitees": ["who", "who", "real", "caller"], "timeout_s": 30}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        (&v["offline_invitees"], &v["targets"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(users(&h).await, 1);
    harness::expect_pushes(&h.fcm, 2, "the real user's message and call are pushed").await;
    h.shutdown().await;
}

#[tokio::test]
async fn users_seen_only_through_presence_are_released_once_their_sessions_end() {
    let h = start_sweeping().await;
    h.bind("d-real", "real", "fcm", &fcm_token(1)).await;
    h.online("real", "phone").await;

    // Sessions that go offline.
    let left = junk("left", 2_000);
    presence(&h, &left, "s", true, 0).await;
    assert_eq!(users(&h).await, 2_001);
    presence(&h, &left, "s", false, 0).await;
    wait_users(&h, 1).await;

    // Sessions that expire (the long-connection timeout).
    let expired = junk("expired", 2_000);
    presence(&h, &expired, "s", true, 1).await;
    assert!(users(&h).await > 1);
    wait_users(&h, 1).await;

    // The real user kept their binding and their session throughout.
    let (_, v) = h.get("/v1/presence/real").await;
    assert_eq!((&v["online"], &v["sessions"]), (&json!(true), &json!(1)));
    let (_, v) = h.get("/v1/users/real/push-ids").await;
    assert_eq!(v["push_ids"][0]["push_id"], "d-real");
    let (_, v) = h.get("/v1/presence/left-000007").await;
    assert_eq!((&v["online"], &v["sessions"]), (&json!(false), &json!(0)));
    h.shutdown().await;
}

#[tokio::test]
async fn users_removed_from_groups_are_released_and_the_group_keeps_its_members() {
    let h = start_sweeping().await;
    let members = junk("member", 3_000);
    let mut add = members.clone();
    add.push("keeper".into());
    let (s, v) = h.post("/v1/groups/g/members", json!({ "add": add })).await;
    assert_eq!((s, &v["members"]), (StatusCode::OK, &json!(3_001)), "{v}");
    let (s, v) = h
        .post(
            "/v1/groups/other/members",
            json!({"add": ["member-000001", "solo"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(users(&h).await, 3_002);

    let (s, v) = h
        .post("/v1/groups/g/members", json!({ "remove": members }))
        .await;
    assert_eq!((s, &v["members"]), (StatusCode::OK, &json!(1)), "{v}");
    // member-000001 is still in "other".
    wait_users(&h, 3).await;
    let (s, _) = h.delete("/v1/groups/other").await;
    assert_eq!(s, StatusCode::OK);
    wait_users(&h, 1).await;

    // The surviving member is still the one the group names: a group message to it
    // reaches its device.
    h.bind("d-keeper", "keeper", "fcm", &fcm_token(7)).await;
    let push = json!({"title": "t", "content": "c"});
    let v = h.group_message("gm", "someone", "g", push).await;
    assert_eq!((v.recipients, v.targets), (1, 1));
    harness::expect_pushes(&h.fcm, 1, "the group message reaches keeper").await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_snapshot_after_junk_is_small_and_a_restart_restores_exactly_the_real_state() {
    let mut h = harness::start().await;
    for i in 0..12u32 {
        h.bind(&format!("d{i}"), &format!("user-{i}"), "fcm", &fcm_token(i))
            .await;
    }
    h.add_members("team", &["user-1", "user-2", "guest"]).await;

    // Junk of every kind: recipients, invitees, presence, and group members who left.
    peer_messages_to_strangers(&h, "stranger", 500).await;
    calls_to_strangers(&h, "invitee", 10_000).await;
    let passing = junk("passing", 4_000);
    presence(&h, &passing, "s", true, 0).await;
    presence(&h, &passing[..2_000], "s", false, 0).await;
    h.add_members("team", &passing[..2_000]).await;
    h.remove_members("team", &passing[..2_000]).await;

    let running = h.engine.take().expect("engine runs");
    let engine = running.engine().clone();
    let real = engine.state.durable_view();
    assert_eq!((real.bindings.len(), real.groups["team"].len()), (12, 3));
    let store = engine.store().expect("storage is open").clone();
    let info = tokio::task::spawn_blocking(move || store.snapshot())
        .await
        .expect("snapshot task")
        .expect("snapshot written");
    // 12 bindings, one group of 3, 13 user ids: a few KiB, whatever the junk was
    // (naming the 4,000 presence users alone would take over 50 KB).
    assert!(
        info.bytes < 8 * 1024,
        "snapshot is {} bytes for 12 bindings",
        info.bytes
    );

    let config = engine.config.clone();
    drop(engine);
    running.shutdown().await;
    let restarted = fanfare::start(config).await.expect("engine restarts");
    let engine = restarted.engine().clone();
    h.attach(restarted);
    assert_eq!(engine.state.durable_view(), real);
    assert_eq!(users(&h).await, 13, "12 bound users and the guest");
    let (_, v) = h.get("/v1/groups/team").await;
    assert_eq!(v["members"], 3);
    drop(engine);
    h.shutdown().await;
}

#[tokio::test]
async fn a_users_33rd_session_evicts_the_oldest() {
    let h = harness::start().await;
    let sessions: Vec<String> = (0..33).map(|i| format!("conn-{i:02}")).collect();
    for s in &sessions {
        h.online("busy", s).await;
    }
    let (_, v) = h.get("/v1/presence/busy").await;
    assert_eq!((&v["online"], &v["sessions"]), (&json!(true), &json!(32)));
    // conn-00 was evicted: ending the other 32 leaves the user offline.
    let events: Vec<Value> = sessions[1..]
        .iter()
        .map(|s| json!({"user_id": "busy", "session_id": s, "online": false}))
        .collect();
    let (s, v) = h.post("/v1/presence", json!({ "events": events })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = h.get("/v1/presence/busy").await;
    assert_eq!((&v["online"], &v["sessions"]), (&json!(false), &json!(0)));
    h.shutdown().await;
}

#[tokio::test]
async fn sixty_thousand_sessions_for_one_user_stay_capped() {
    let h = harness::start().await;
    for round in 0..150 {
        let events: Vec<Value> = (0..400)
            .map(|i| json!({"user_id": "hoarder", "session_id": format!("s{round}-{i}"), "online": true, "ttl_s": 600}))
            .collect();
        let (s, v) = h.post("/v1/presence", json!({ "events": events })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, v) = h.get("/v1/presence/hoarder").await;
    assert_eq!(v["sessions"], 32);
    let presence = &h
        .engine
        .as_ref()
        .expect("engine runs")
        .engine()
        .state
        .presence;
    assert_eq!(presence.evicted_sessions(), 60_000 - 32);
    assert_eq!(presence.wheel_len(), 1, "one wheel entry for the user");
    h.shutdown().await;
}

#[tokio::test]
async fn refreshing_the_same_sessions_keeps_the_expiry_wheel_flat() {
    let h = harness::start().await;
    let users = junk("refreshing", 400);
    let state = h
        .engine
        .as_ref()
        .expect("engine runs")
        .engine()
        .state
        .clone();
    for round in 0..50u64 {
        // TTLs that move both ways, like clients with different heartbeat timeouts.
        presence(&h, &users, "conn", true, 60 + (round % 5) * 60).await;
        assert!(
            state.presence.wheel_len() <= users.len(),
            "round {round}: {} wheel entries for {} sessions",
            state.presence.wheel_len(),
            users.len()
        );
    }
    assert_eq!(state.presence.online_users(), 400);
    drop(state);
    h.shutdown().await;
}
