//! Huawei, Honor, Xiaomi, OPPO, vivo and Web Push end to end: delivery with payload,
//! dead-token removal, rate-limit handling, auth token reuse, the debug verdict, and
//! token format validation — through the public API against the vendor mocks.

use fanfare_loadgen::mock::vendor::{TokenVerdict, VendorPush};
use http::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, apns_token, device_token, fcm_token, Harness, WAIT};

const VENDORS: [&str; 6] = ["huawei", "honor", "xiaomi", "oppo", "vivo", "webpush"];

/// `body` for each vendor mock of `h.v()` in `VENDORS` order, with `$i` its index
/// there and `$m` the mock (each of another type, hence a macro): an array of results.
macro_rules! each_vendor {
    ($h:expr, |$i:ident, $m:ident| $body:expr) => {{
        let v = $h.v();
        each_vendor!(@ v, $i, $m, $body; 0 huawei, 1 honor, 2 xiaomi, 3 oppo, 4 vivo, 5 webpush)
    }};
    (@ $v:ident, $i:ident, $m:ident, $body:expr; $($n:literal $field:ident),*) => {
        [$({ let ($i, $m): (usize, _) = ($n, &$v.$field); $body }),*]
    };
}

/// Bind one device per vendor for `user` (push ids `<vendor>-<seed>`); returns the
/// tokens in `VENDORS` order (the Web Push one is the subscription's endpoint).
async fn bind_all(h: &Harness, user: &str, seed: u32) -> Vec<String> {
    let sub = h.v().webpush.subscribe();
    let tokens = [
        device_token("huawei", seed),
        device_token("huawei", seed + 1_000_000),
        device_token("xiaomi", seed),
        device_token("oppo", seed),
        device_token("vivo", seed),
        sub.to_json(),
    ];
    for (vendor, token) in VENDORS.iter().zip(&tokens) {
        h.bind(&format!("{vendor}-{seed}"), user, vendor, token)
            .await;
    }
    let mut keys: Vec<String> = tokens[..5].to_vec();
    keys.push(sub.endpoint);
    keys
}

/// Bind one device per vendor for `user` (`bind_all` with `seed`), script `verdict`
/// for each but the vendors in `except`, and send `user` a message with `push`: it
/// targets all six devices.
async fn message_under_verdicts(
    h: &Harness,
    user: &str,
    seed: u32,
    verdict: TokenVerdict,
    except: &[&str],
    push: Value,
) {
    let tokens = bind_all(h, user, seed).await;
    set_verdicts(h, &tokens, verdict, except);
    let accepted = h.message_to(&format!("m-{user}"), user, push).await;
    assert_eq!(accepted.targets, 6);
}

/// Every mock's received pushes, in `VENDORS` order.
fn received(h: &Harness) -> Vec<Vec<VendorPush>> {
    each_vendor!(h, |_i, m| m.received()).into()
}

/// Wait (bounded) until every vendor mock has received `n` pushes.
async fn wait_all(h: &Harness, n: usize) {
    let got = each_vendor!(h, |_i, m| (m.wait_for(n, WAIT).await, m.received_count()));
    for (vendor, (arrived, count)) in VENDORS.iter().zip(got) {
        assert!(arrived, "{vendor} got {count}");
    }
}

/// Script `verdict` for each vendor's token in `tokens` (`bind_all` order), but for
/// the vendors in `except`.
fn set_verdicts(h: &Harness, tokens: &[String], verdict: TokenVerdict, except: &[&str]) {
    each_vendor!(h, |i, m| if !except.contains(&VENDORS[i]) {
        m.set_token_verdict(&tokens[i], verdict)
    });
}

/// The "done": one group message reaches all eight vendors with the right
/// title, content and payload; the Web Push mock decrypted its copy. A second message
/// reuses every vendor's auth token.
#[tokio::test]
async fn group_message_reaches_all_eight_vendors_and_auth_tokens_are_reused() {
    let h = harness::start_with_vendors().await;
    h.bind("ios", "m-apns", "apns", &apns_token(1)).await;
    h.bind("android", "m-fcm", "fcm", &fcm_token(1)).await;
    let sub = h.v().webpush.subscribe();
    let binds = [
        ("m-huawei", "huawei", device_token("huawei", 1)),
        ("m-honor", "honor", device_token("huawei", 2)),
        ("m-xiaomi", "xiaomi", device_token("xiaomi", 1)),
        ("m-oppo", "oppo", device_token("oppo", 1)),
        ("m-vivo", "vivo", device_token("vivo", 1)),
        ("m-webpush", "webpush", sub.to_json()),
    ];
    for (user, provider, token) in &binds {
        h.bind(&format!("d-{provider}"), user, provider, token)
            .await;
    }
    let mut members: Vec<&str> = binds.iter().map(|b| b.0).collect();
    members.extend(["m-apns", "m-fcm", "sender"]);
    let (s, _) = h
        .post("/v1/groups/all-vendors/members", json!({"add": members}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let push = json!({"title": "团队 Team", "content": "standup in 5", "payload": "{\"conv\":\"all-vendors\"}"});
    let v = h
        .group_message("g-1", "sender", "all-vendors", push.clone())
        .await;
    assert_eq!(v.targets, 8, "{v:?}");
    assert!(h.apns.wait_for(1, WAIT).await);
    assert!(h.fcm.wait_for(1, WAIT).await);
    wait_all(&h, 1).await;

    let a = &h.apns.received()[0];
    assert_eq!(a.body["aps"]["alert"]["title"], "团队 Team");
    assert_eq!(a.body["payload"], "{\"conv\":\"all-vendors\"}");
    let f = &h.fcm.received()[0];
    assert_eq!(f.message["data"]["payload"], "{\"conv\":\"all-vendors\"}");
    let expected_tokens = [
        device_token("huawei", 1),
        device_token("huawei", 2),
        device_token("xiaomi", 1),
        device_token("oppo", 1),
        device_token("vivo", 1),
        sub.endpoint.clone(),
    ];
    for ((vendor, got), token) in VENDORS.iter().zip(received(&h)).zip(&expected_tokens) {
        assert_eq!(got.len(), 1, "{vendor}");
        let p = &got[0];
        assert_eq!(&p.token, token, "{vendor}");
        assert_eq!(p.title, "团队 Team", "{vendor}");
        assert_eq!(p.content, "standup in 5", "{vendor}");
        assert_eq!(
            p.payload.as_deref(),
            Some("{\"conv\":\"all-vendors\"}"),
            "{vendor}"
        );
    }
    // Vendor-specific wire details.
    let r = received(&h);
    assert_eq!(
        r[0][0].body["message"]["android"]["notification"]["channel_id"],
        "chat"
    );
    assert_eq!(r[2][0].body["restricted_package_name"], harness::PACKAGE);
    assert_eq!(r[2][0].body["extra.channel_id"], "chat");
    assert_eq!(r[3][0].body["notification"]["channel_id"], "chat");
    assert_eq!(r[4][0].body["classification"], 1);
    let w = &r[5][0];
    assert_eq!(w.headers["content-encoding"], "aes128gcm");
    assert_eq!(w.headers["urgency"], "normal");
    assert!(w.headers["ttl"].to_str().unwrap().parse::<u64>().unwrap() > 0);

    // A second message: every auth token is reused, none fetched again.
    h.group_message("g-2", "sender", "all-vendors", push).await;
    wait_all(&h, 2).await;
    let v = h.v();
    assert_eq!(v.huawei.tokens_issued(), 1);
    assert_eq!(v.honor.tokens_issued(), 1);
    assert_eq!(v.oppo.tokens_issued(), 1);
    assert_eq!(v.vivo.tokens_issued(), 1);
    assert_eq!(v.webpush.tokens_issued(), 1, "one VAPID JWT per origin");
    let stats = h
        .wait_stats("delivered counters", |s| {
            VENDORS
                .iter()
                .chain(&["apns", "fcm"])
                .all(|p| s["providers"][p]["delivered"] == 2)
        })
        .await;
    assert_eq!(stats["providers"]["apns"]["failed"], 0);
    let rejections = each_vendor!(h, |_i, m| m.rejections());
    for (vendor, rejected) in VENDORS.iter().zip(rejections) {
        assert!(rejected.is_empty(), "{vendor} rejected something");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn dead_tokens_remove_the_bindings_of_every_vendor() {
    let h = harness::start_with_vendors().await;
    let push = json!({"title": "t", "content": "c"});
    message_under_verdicts(&h, "u-dead", 7, TokenVerdict::Dead, &[], push).await;
    let v = h.v();
    let stats = h
        .wait_stats("dead tokens removed", |s| {
            VENDORS
                .iter()
                .all(|p| s["providers"][p]["invalid_tokens_removed"] == 1)
        })
        .await;
    assert_eq!(stats["bindings"], 0);
    let (s, body) = h.get("/v1/users/u-dead/push-ids").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["push_ids"], json!([]));
    let codes: Vec<Vec<(u16, String)>> = vec![
        v.huawei.rejections(),
        v.xiaomi.rejections(),
        v.oppo.rejections(),
        v.vivo.rejections(),
        v.webpush.rejections(),
    ];
    assert_eq!(codes[0], vec![(200, "80300007".to_string())]);
    assert_eq!(codes[1], vec![(200, "device not found".to_string())]);
    assert_eq!(codes[4][0].0, 410);
    h.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_retried_not_token_death() {
    let h = harness::start_with_vendors().await;
    let push = json!({"title": "t", "content": "c", "payload": "p"});
    let verdict = TokenVerdict::RateLimit(1);
    message_under_verdicts(&h, "u-slow", 9, verdict, &["vivo"], push).await;
    let v = h.v();
    wait_all(&h, 1).await;
    let stats = h
        .wait_stats("retries counted", |s| {
            ["huawei", "honor", "xiaomi", "oppo", "webpush"]
                .iter()
                .all(|p| s["providers"][p]["retried"] == 1 && s["providers"][p]["delivered"] == 1)
        })
        .await;
    assert_eq!(stats["providers"]["vivo"]["retried"], 0);
    assert_eq!(stats["bindings"], 6, "nothing was unbound");
    assert_eq!(
        v.huawei.rejections(),
        vec![(503, "flow_control".to_string())]
    );
    assert_eq!(
        v.xiaomi.rejections(),
        vec![(200, "API called too often".to_string())]
    );
    assert_eq!(v.oppo.rejections(), vec![(200, "Flow Control".to_string())]);
    assert_eq!(v.webpush.rejections()[0].0, 429);
    h.shutdown().await;
}

/// vivo's daily quota codes pause vivo sends until tomorrow; the binding stays.
#[tokio::test]
async fn vivo_quota_pauses_sending_without_unbinding() {
    let h = harness::start_with_vendors().await;
    let token = device_token("vivo", 3);
    h.bind("v1", "u-vivo", "vivo", &token).await;
    h.bind("v2", "u-vivo2", "vivo", &device_token("vivo", 4))
        .await;
    h.v().vivo.set_token_verdict(&token, TokenVerdict::Quota);
    let v = h
        .debug_push("v1", json!({"title": "t", "content": "c"}))
        .await;
    assert_eq!(v["provider"], "vivo");
    assert_eq!(v["outcome"], "retry");
    assert_eq!(v["reason"], "10070");
    // Paused: the next push (another device) is not sent to vivo at all.
    let v = h
        .debug_push("v2", json!({"title": "t", "content": "c"}))
        .await;
    assert_eq!(v["outcome"], "retry");
    assert_eq!(v["status"], Value::Null);
    assert_eq!(h.v().vivo.rejections().len(), 1);
    assert_eq!(h.v().vivo.received_count(), 0);
    assert_eq!(h.stats().await["bindings"], 2);
    h.shutdown().await;
}

#[tokio::test]
async fn debug_push_answers_each_vendors_verdict() {
    let h = harness::start_with_vendors().await;
    bind_all(&h, "u-debug", 11).await;
    let expect_status = [200, 200, 200, 200, 200, 201];
    for (vendor, status) in VENDORS.iter().zip(expect_status) {
        let (s, v) = h
            .post(
                "/v1/debug/push",
                json!({"push_id": format!("{vendor}-11"), "push": {"title": "dbg", "content": "c", "payload": "x"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{vendor}: {v}");
        assert_eq!(v["provider"], *vendor);
        assert_eq!(v["outcome"], "delivered", "{vendor}: {v}");
        assert_eq!(v["status"], status, "{vendor}: {v}");
        assert!(v["vendor_id"].is_string(), "{vendor}: {v}");
    }
    wait_all(&h, 1).await;
    h.shutdown().await;
}

#[tokio::test]
async fn malformed_vendor_tokens_are_rejected_and_change_nothing() {
    let h = harness::start_with_vendors().await;
    let bad = [
        ("huawei", "short"),
        ("huawei", "IQAAAACy0kYkAACr1QJ5/+="),
        ("huawei", "has spaces in it but is long enough to pass"),
        ("honor", "x"),
        ("xiaomi", "not base64 because of the spaces!!"),
        ("oppo", "CN_tooshort"),
        ("oppo", "A_B_C_0123456789abcdef0123"),
        ("vivo", "123"),
        ("vivo", "1234567890123456789012-"),
        (
            "webpush",
            "{\"endpoint\":\"http://insecure/x\",\"keys\":{\"p256dh\":\"a\",\"auth\":\"b\"}}",
        ),
    ];
    for (provider, token) in bad {
        let (s, v) = h
            .put(
                "/v1/push-ids/bad",
                json!({"user_id": "u1", "provider": provider, "token": token}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{provider} {token}: {v}");
        assert_eq!(v["error"]["code"], "invalid_argument");
    }
    assert_eq!(h.stats().await["bindings"], 0);
    let (s, _) = h.get("/v1/users/u1/push-ids").await;
    assert!(s == StatusCode::OK || s == StatusCode::NOT_FOUND);
    h.shutdown().await;
}
