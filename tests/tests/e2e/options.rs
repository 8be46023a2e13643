//! The API 1.1 push options end to end (`sound`, `silent`, `collapse_id`, `ttl_s`,
//! `priority`, `badge`, `badge_increment`, `resources_id`): each arrives at every
//! vendor's mock as the field README.md's options table says, a silent push never
//! shows an alert anywhere, each group member gets their own badge total, and an
//! unknown rule set is refused.

use fanfare_loadgen::mock::vendor::VendorPush;
use http::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, apns_token, device_token, fcm_token, Harness, Options, WAIT};

/// A rule set for every vendor; the request's own `sound` and `priority` win over it.
const RESOURCES: &str = r#"
[resources.chat.apns]
category = "MESSAGE"
sound = "rule.caf"
thread_id = "chat"
interruption_level = "time-sensitive"
mutable_content = true
[resources.chat.fcm]
channel_id = "chat_messages"
sound = "rule"
click_action = "OPEN_CHAT"
[resources.chat.huawei]
category = "IM"
importance = "NORMAL"
[resources.chat.honor]
importance = "LOW"
[resources.chat.xiaomi]
channel_id = "chat_x"
[resources.chat.oppo]
channel_id = "chat_o"
[resources.chat.vivo]
category = "IM"
[resources.chat.webpush]
urgency = "low"
"#;

const LAUNCHER: &str = "com.example.chat.MainActivity";

async fn start() -> Harness {
    harness::start_with(Options {
        vendors: true,
        extra: RESOURCES.into(),
        // Huawei sets the badge only for an app whose launcher class it knows.
        env: vec![("FANFARE_HUAWEI_BADGE_CLASS".into(), LAUNCHER.into())],
        ..Options::default()
    })
    .await
}

/// Bind one device of every vendor to `user`.
async fn bind_every_vendor(h: &Harness, user: &str, seed: u32) {
    let sub = h.v().webpush.subscribe();
    let devices = [
        ("apns", apns_token(seed)),
        ("fcm", fcm_token(seed)),
        ("huawei", device_token("huawei", seed)),
        ("honor", device_token("huawei", seed + 1_000_000)),
        ("xiaomi", device_token("xiaomi", seed)),
        ("oppo", device_token("oppo", seed)),
        ("vivo", device_token("vivo", seed)),
        ("webpush", sub.to_json()),
    ];
    for (vendor, token) in devices {
        h.bind(&format!("{vendor}-{seed}"), user, vendor, &token)
            .await;
    }
}

/// Waits until every mock in `names` has `n` pushes.
async fn wait_vendors(h: &Harness, n: usize, names: &[&str]) {
    let v = h.v();
    for name in names {
        let ok = match *name {
            "apns" => h.apns.wait_for(n, WAIT).await,
            "fcm" => h.fcm.wait_for(n, WAIT).await,
            "huawei" => v.huawei.wait_for(n, WAIT).await,
            "honor" => v.honor.wait_for(n, WAIT).await,
            "xiaomi" => v.xiaomi.wait_for(n, WAIT).await,
            "oppo" => v.oppo.wait_for(n, WAIT).await,
            "vivo" => v.vivo.wait_for(n, WAIT).await,
            "webpush" => v.webpush.wait_for(n, WAIT).await,
            other => panic!("no mock {other}"),
        };
        assert!(ok, "{name} did not get {n} pushes");
    }
}

fn last(pushes: Vec<VendorPush>) -> VendorPush {
    pushes.into_iter().last().expect("a push arrived")
}

fn header<'a>(p: &'a VendorPush, name: &str) -> &'a str {
    p.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn every_option_arrives_as_each_vendors_own_field() {
    let h = start().await;
    bind_every_vendor(&h, "u1", 1).await;
    let push = json!({"title": "t", "content": "hello", "payload": "p",
        "sound": "msg.caf", "collapse_id": "conv-42", "ttl_s": 3600, "priority": "normal",
        "badge": 3, "resources_id": "chat"});
    let now = fanfare::clock::unix_now_s();
    let a = h.send_message("m-1", "u0", "peer", "u1", push).await;
    assert_eq!(a.targets, 8);
    let all = [
        "apns", "fcm", "huawei", "honor", "xiaomi", "oppo", "vivo", "webpush",
    ];
    wait_vendors(&h, 1, &all).await;

    let apns = h.apns.received().pop().expect("apns push");
    assert_eq!(apns.push_type, "alert");
    assert_eq!(apns.priority, 5, "priority normal is APNs 5");
    assert_eq!(apns.collapse_id.as_deref(), Some("conv-42"));
    let exp = apns.expiration.expect("apns-expiration");
    assert!((now + 3590..=now + 3700).contains(&exp), "{exp} vs {now}");
    let aps = &apns.body["aps"];
    assert_eq!(
        aps["sound"], "msg.caf",
        "the request's sound wins over the rule"
    );
    assert_eq!(aps["badge"], 3);
    assert_eq!(aps["category"], "MESSAGE");
    assert_eq!(aps["thread-id"], "chat");
    assert_eq!(aps["interruption-level"], "time-sensitive");
    assert_eq!(aps["mutable-content"], 1);

    let fcm = h.fcm.received().pop().expect("fcm push");
    let android = &fcm.message["android"];
    assert_eq!(android["priority"], "NORMAL");
    assert_eq!(android["ttl"], "3600s");
    assert_eq!(android["collapse_key"], "conv-42");
    let n = &android["notification"];
    assert_eq!(n["tag"], "conv-42");
    assert_eq!(n["sound"], "msg.caf");
    assert_eq!(n["channel_id"], "chat_messages");
    assert_eq!(n["click_action"], "OPEN_CHAT");
    assert_eq!(n["notification_count"], 3);

    let v = h.v();
    let hw = last(v.huawei.received()).body;
    let android = &hw["message"]["android"];
    assert_eq!(
        android["notification"]["badge"],
        json!({"class": LAUNCHER, "set_num": 3})
    );
    assert_eq!(android["urgency"], "NORMAL");
    assert_eq!(android["ttl"], "3600s");
    assert_eq!(android["category"], "IM", "the rule's category");
    assert_eq!(android["notification"]["importance"], "NORMAL");
    assert_eq!(android["notification"]["tag"], "conv-42");
    assert_eq!(android["notification"]["sound"], "msg.caf");
    assert_eq!(android["notification"]["default_sound"], false);

    let honor = last(v.honor.received()).body;
    assert_eq!(honor["android"]["urgency"], "NORMAL");
    assert_eq!(honor["android"]["ttl"], "3600s");
    assert_eq!(honor["android"]["notification"]["importance"], "LOW");
    assert_eq!(honor["android"]["notification"]["tag"], "conv-42");

    let mi = last(v.xiaomi.received()).body;
    assert_eq!(mi["pass_through"], "0");
    assert_eq!(mi["time_to_live"], "3600000");
    assert_eq!(mi["extra.channel_id"], "chat_x", "the rule's channel");
    let notify_id = fanfare::providers::collapse_number("conv-42").to_string();
    assert_eq!(mi["notify_id"], notify_id.as_str());

    let oppo = last(v.oppo.received()).body;
    assert_eq!(oppo["notification"]["channel_id"], "chat_o");
    assert_eq!(oppo["notification"]["off_line_ttl"], 3600);

    let vivo = last(v.vivo.received()).body;
    assert_eq!(vivo["category"], "IM");
    assert_eq!(vivo["timeToLive"], 3600);

    let web = last(v.webpush.received());
    assert_eq!(header(&web, "ttl"), "3600");
    assert_eq!(
        header(&web, "urgency"),
        "normal",
        "the request's priority wins"
    );
    let topic = header(&web, "topic");
    assert_eq!(topic.len(), 32, "{topic}");
    assert_eq!(web.body["badge"], 3);

    // Without a priority, the rule's urgency; ttl_s 0 is APNs' "now or never".
    let push = json!({"title": "t", "content": "again", "ttl_s": 0, "resources_id": "chat"});
    h.send_message("m-2", "u0", "peer", "u1", push).await;
    wait_vendors(&h, 2, &["apns", "fcm", "webpush"]).await;
    let apns = h.apns.received().pop().expect("apns push");
    assert_eq!(apns.expiration, Some(0));
    assert_eq!(apns.priority, 10, "alerts default to high");
    assert_eq!(apns.body["aps"]["sound"], "rule.caf", "the rule's sound");
    assert_eq!(
        h.fcm.received().pop().expect("fcm").message["android"]["priority"],
        "HIGH"
    );
    let web = last(v.webpush.received());
    assert_eq!(header(&web, "urgency"), "low");
    assert_eq!(header(&web, "ttl"), "0");
    h.shutdown().await;
}

#[tokio::test]
async fn a_silent_push_shows_no_alert_anywhere_and_skips_vendors_without_a_silent_type() {
    let h = start().await;
    bind_every_vendor(&h, "u1", 1).await;
    let push = json!({"payload": "sync", "silent": true, "collapse_id": "s-1",
        "sound": "msg.caf", "badge": 2});
    let a = h.send_message("m-s", "u0", "peer", "u1", push).await;
    assert_eq!(a.targets, 6, "OPPO and vivo have no silent type: not sent");
    let sent = ["apns", "fcm", "huawei", "honor", "xiaomi", "webpush"];
    wait_vendors(&h, 1, &sent).await;

    let apns = h.apns.received().pop().expect("apns push");
    assert_eq!(apns.push_type, "background");
    assert_eq!(apns.priority, 5);
    let aps = apns.body["aps"].as_object().expect("aps");
    assert_eq!(aps.get("content-available"), Some(&json!(1)));
    for k in ["alert", "sound", "badge"] {
        assert!(
            !aps.contains_key(k),
            "a background push has no {k}: {aps:?}"
        );
    }
    assert_eq!(apns.body["payload"], "sync");

    let fcm = h.fcm.received().pop().expect("fcm push").message;
    assert!(fcm.get("notification").is_none(), "data only: {fcm}");
    assert!(fcm["android"].get("notification").is_none(), "{fcm}");
    assert_eq!(fcm["data"]["payload"], "sync");

    let v = h.v();
    let hw = last(v.huawei.received()).body;
    assert!(
        hw["message"]["android"].get("notification").is_none(),
        "{hw}"
    );
    assert!(hw["message"].get("notification").is_none(), "{hw}");
    let honor = last(v.honor.received()).body;
    assert!(honor.get("notification").is_none(), "{honor}");
    assert!(honor["android"].get("notification").is_none(), "{honor}");
    let mi = last(v.xiaomi.received()).body;
    assert_eq!(mi["pass_through"], "1");
    let web = last(v.webpush.received()).body;
    assert_eq!(web["silent"], true);
    assert!(
        web.get("title").is_none() && web.get("badge").is_none(),
        "{web}"
    );

    let stats = h
        .wait_stats("no_silent_type counted", |s| {
            let n = |p: &str| s["providers"][p]["rejected"]["no_silent_type"].as_u64();
            n("oppo") == Some(1) && n("vivo") == Some(1)
        })
        .await;
    assert_eq!(v.oppo.received_count(), 0, "{stats}");
    assert_eq!(v.vivo.received_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn each_group_member_gets_their_own_badge_total_once_per_message() {
    let h = start().await;
    let (s, _) = h
        .post(
            "/v1/groups/team/members",
            json!({"add": ["u0", "u1", "u2", "u3"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // u1 has two devices (APNs and FCM), u2 one, u3 one and is online (not pushed).
    h.bind("a1", "u1", "apns", &apns_token(1)).await;
    h.bind("f1", "u1", "fcm", &fcm_token(1)).await;
    h.bind("f2", "u2", "fcm", &fcm_token(2)).await;
    h.bind("f3", "u3", "fcm", &fcm_token(3)).await;
    h.bind("h2", "u2", "huawei", &device_token("huawei", 2))
        .await;
    h.online("u3", "s3").await;
    h.api.set_badge("u1", 4).await.expect("set badge");
    h.api.set_badge("u2", 10).await.expect("set badge");

    let push = json!({"title": "team", "content": "hi", "badge_increment": 2});
    let a = h.send_message("g-1", "u0", "group", "team", push).await;
    assert_eq!(a.targets, 4);
    assert!(h.apns.wait_for(1, WAIT).await);
    assert!(h.fcm.wait_for(2, WAIT).await);
    let apns = h.apns.received().pop().expect("apns push");
    assert_eq!(
        apns.body["aps"]["badge"], 6,
        "u1: 4 + 2, once for two devices"
    );
    let mut fcm: Vec<(String, Value)> = h
        .fcm
        .received()
        .into_iter()
        .map(|p| {
            let n = p.message["android"]["notification"]["notification_count"].clone();
            (p.token, n)
        })
        .collect();
    fcm.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![(fcm_token(1), json!(6)), (fcm_token(2), json!(12))];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(fcm, want);
    assert!(h.v().huawei.wait_for(1, WAIT).await);
    let hw = h.v().huawei.received().pop().expect("huawei push").body;
    assert_eq!(
        hw["message"]["android"]["notification"]["badge"],
        json!({"class": LAUNCHER, "set_num": 12}),
        "u2's Huawei phone: the same total as u2's FCM device"
    );
    assert_eq!(h.api.badge("u1").await.expect("badge").count, 6);
    assert_eq!(h.api.badge("u2").await.expect("badge").count, 12);
    assert_eq!(
        h.api.badge("u3").await.expect("badge").count,
        0,
        "online: not pushed"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn an_unknown_resources_id_is_refused_naming_it_and_pushes_nothing() {
    let h = start().await;
    h.bind("a1", "u1", "apns", &apns_token(1)).await;
    let body = json!({"message_id": "m-x", "sender_id": "u0",
        "conversation_type": "peer", "conversation_id": "u1",
        "push": {"title": "t", "resources_id": "nope", "badge_increment": 1}});
    refused_naming_nope(h.post("/v1/messages", body).await);
    assert_eq!(h.api.badge("u1").await.expect("badge").count, 0);
    // The id was not claimed: the same message with a known rule set goes out.
    let push = json!({"title": "t", "resources_id": "chat"});
    h.send_message("m-x", "u0", "peer", "u1", push).await;
    assert!(h.apns.wait_for(1, WAIT).await);
    h.shutdown().await;
}

#[tokio::test]
async fn the_debug_push_applies_the_rule_set_and_refuses_an_unknown_one() {
    let h = start().await;
    h.bind("a1", "u1", "apns", &apns_token(1)).await;
    let v = h
        .debug_push("a1", json!({"title": "t", "resources_id": "chat"}))
        .await;
    assert_eq!(v["outcome"], "delivered", "{v}");
    let aps = h.apns.received().pop().expect("apns push").body["aps"].clone();
    assert_eq!(aps["category"], "MESSAGE");
    assert_eq!(aps["sound"], "rule.caf");
    let body = json!({"push_id": "a1", "push": {"title": "t", "resources_id": "nope"}});
    refused_naming_nope(h.post("/v1/debug/push", body).await);
    assert_eq!(
        h.apns.received_count(),
        1,
        "nothing sent for the refused one"
    );
    h.shutdown().await;
}

/// A 400 `invalid_argument` whose message names the unknown rule set `nope`.
#[track_caller]
fn refused_naming_nope(answer: (StatusCode, Value)) {
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nope"), "{}", answer.1);
    harness::assert_error(answer, StatusCode::BAD_REQUEST, "invalid_argument");
}
