//! Live reload (`POST /v1/admin/reload`): a changed credential takes effect for the
//! next pushes, a file with problems is refused with every problem named while the
//! running configuration keeps delivering, and reloads under load lose no push.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::apps::{bind_app, delivered};
use crate::harness::{
    self, apns_token, assert_error, fcm_token, Elsewhere, Harness, Options, WAIT,
};

/// `POST /v1/admin/reload`: its status and body.
async fn reload(h: &Harness) -> (StatusCode, Value) {
    h.post("/v1/admin/reload", json!({})).await
}

/// Rewrite the engine's config file: what it was at start, then `more`.
fn rewrite(h: &Harness, original: &str, more: &str) {
    std::fs::write(&h.config_path, format!("{original}\n{more}")).expect("config written");
}

#[tokio::test]
async fn a_reload_moves_an_app_to_another_fcm_project_for_the_next_pushes() {
    let h = harness::start_with_token().await;
    let original = std::fs::read_to_string(&h.config_path).expect("config readable");
    bind_app(
        &h,
        "d1",
        "u1",
        "fcm",
        &fcm_token(1),
        Some("com.example.other"),
    )
    .await;
    h.message_to("m1", "u1", json!({"title": "t", "content": "c"}))
        .await;
    delivered(&h, "m1").await;
    assert_eq!(h.fcm.received_count(), 1, "before: the top-level project");

    let other = Elsewhere::new();
    let (fcm2, table) = other.fcm("com.example.other", "second-project");
    let app_endpoint =
        |v: &Value| v["config"]["apps"]["com.example.other"]["fcm"]["endpoint"].clone();
    let (s, before) = h.get("/v1/admin/config").await;
    assert_eq!(
        (s, app_endpoint(&before)),
        (StatusCode::OK, Value::Null),
        "{before}"
    );
    rewrite(&h, &original, &table);
    let refused = h
        .raw(Method::POST, "/v1/admin/reload", Vec::new(), None)
        .await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, v) = reload(&h).await;
    assert_eq!((s, &v["reloaded"]), (StatusCode::OK, &json!(true)), "{v}");
    assert_eq!(v["needs_restart"], json!([]), "{v}");
    let (_, after) = h.get("/v1/admin/config").await;
    assert_eq!(
        app_endpoint(&after),
        json!(fcm2.url()),
        "the view shows the reloaded file"
    );

    h.message_to("m2", "u1", json!({"title": "t", "content": "c"}))
        .await;
    delivered(&h, "m2").await;
    assert_eq!(
        h.fcm.received_count(),
        1,
        "after: nothing more to the old project"
    );
    let tokens: Vec<String> = fcm2.received().into_iter().map(|p| p.token).collect();
    assert_eq!(tokens, [fcm_token(1)]);
    assert_eq!(fcm2.tokens_issued(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn an_invalid_reload_is_refused_naming_every_problem_and_the_old_settings_keep_delivering() {
    let h = harness::start().await;
    let original = std::fs::read_to_string(&h.config_path).expect("config readable");
    bind_app(&h, "d1", "u1", "apns", &apns_token(1), None).await;
    rewrite(
        &h,
        &original,
        "[apps.\"com.x\".fcm]\nservice_account_file = \"/nonexistent/sa.json\"\n\
         [retry]\nmax_attempts = 0\n\
         [resources.calls.apns]\ninterruption_level = \"loud\"\n",
    );
    let (s, v) = reload(&h).await;
    assert_error((s, v.clone()), StatusCode::BAD_REQUEST, "invalid_argument");
    let message = v["error"]["message"].as_str().expect("a message");
    for key in [
        "apps.\"com.x\".fcm.service_account_file",
        "retry.max_attempts",
        "resources.calls.apns.interruption_level",
    ] {
        assert!(message.contains(key), "{key} is named: {message}");
    }
    // The running configuration stays: its rule sets, and delivery.
    let (s, v) = h
        .post(
            "/v1/messages",
            json!({"message_id": "m0", "sender_id": "u0", "conversation_type": "peer",
                   "conversation_id": "u1", "push": {"title": "t", "resources_id": "calls"}}),
        )
        .await;
    assert_error((s, v), StatusCode::BAD_REQUEST, "invalid_argument");
    h.message_to("m1", "u1", json!({"title": "t", "content": "c"}))
        .await;
    delivered(&h, "m1").await;
    assert_eq!(h.apns.received_count(), 1);

    // A file that is not TOML at all is refused the same way.
    rewrite(&h, &original, "[apns\n");
    let (s, v) = reload(&h).await;
    assert_error((s, v), StatusCode::BAD_REQUEST, "invalid_argument");
    h.message_to("m2", "u1", json!({"title": "t", "content": "c"}))
        .await;
    delivered(&h, "m2").await;
    h.shutdown().await;
}

#[tokio::test]
async fn reloads_under_load_lose_no_push() {
    const MEMBERS: u32 = 40;
    const MESSAGES: usize = 150;
    const RELOADS: usize = 6;
    let h = harness::start_with(Options {
        apns_other_topics: vec!["com.example.other".into()],
        ..Options::default()
    })
    .await;
    let original = std::fs::read_to_string(&h.config_path).expect("config readable");
    let mut members = Vec::new();
    for i in 1..=MEMBERS {
        let (user, push_id) = (format!("u{i}"), format!("d{i}"));
        let app = (i % 2 == 0).then_some("com.example.other");
        bind_app(&h, &push_id, &user, "apns", &apns_token(i), app).await;
        members.push(user);
    }
    h.add_members("g", &members).await;

    let send = async {
        let mut targets = 0;
        for i in 0..MESSAGES {
            let id = format!("m{i}");
            let a = h
                .group_message(&id, "u0", "g", json!({"title": "t", "content": "c"}))
                .await;
            targets += a.targets;
        }
        targets
    };
    let reloads = async {
        for k in 0..RELOADS {
            // Each reload while pushes are queued and in flight.
            let want = (h.apns.received_count() + 200).min(MESSAGES * MEMBERS as usize);
            assert!(h.apns.wait_for(want, WAIT).await, "pushes flow");
            // Alternately give the other app a table of its own (a new client) and
            // take it away, and change the lane's limits: every reload swaps clients.
            let more = if k % 2 == 0 {
                "[apps.\"com.example.other\".apns]\ntopic = \"com.example.other\"\nmax_in_flight = 64\n"
            } else {
                ""
            };
            rewrite(&h, &original, more);
            let (s, v) = reload(&h).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    };
    let (targets, ()) = tokio::join!(send, reloads);
    assert_eq!(targets, MESSAGES * MEMBERS as usize);
    for i in 0..MESSAGES {
        delivered(&h, &format!("m{i}")).await;
    }
    assert_eq!(
        h.apns.received_count(),
        targets,
        "every accepted push delivered once"
    );
    assert!(h.apns.rejections().is_empty(), "{:?}", h.apns.rejections());
    h.shutdown().await;
}

#[tokio::test]
async fn a_reload_names_restart_only_sections_whose_values_changed_and_no_others() {
    let h = harness::start_with_token().await;
    let original = std::fs::read_to_string(&h.config_path).expect("config readable");
    // Defaults spelled out are no change.
    rewrite(
        &h,
        &original,
        "[log]\nformat = \"text\"\naccess = false\n[presence]\ndefault_ttl_s = 0\n",
    );
    let (s, v) = reload(&h).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["needs_restart"], json!([]), "{v}");
    // Changed values of restart-only sections are named, in the documented order.
    rewrite(
        &h,
        &original,
        "[log]\nformat = \"json\"\n[presence]\ndefault_ttl_s = 45\n",
    );
    let (s, v) = reload(&h).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["needs_restart"], json!(["presence", "log"]), "{v}");
    h.shutdown().await;
}
