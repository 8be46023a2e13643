//! Bounded fuzzing of the API's request parsing (proptest, a fixed number of cases so
//! it runs in every `cargo test`), and the start-up warning about a short token.
//!
//! The target is everything between the bytes a client sends and a typed request:
//! the body of every endpoint through [`wire::parse`] and its validation, the path
//! segments, and the `Authorization` header. Whatever the input, nothing panics, and
//! a refusal is a 400 `invalid_argument` (never a 500, never a 413 from parsing).

use proptest::prelude::*;
use serde_json::Value;

use super::error::ApiError;
use super::routes::{bearer, segments};
use super::wire::{self, parse};

/// Field names of every request body, so generated objects reach past "unknown field".
const KEYS: &[&str] = &[
    "user_id",
    "provider",
    "token",
    "app_id",
    "environment",
    "events",
    "session_id",
    "online",
    "ttl_s",
    "add",
    "remove",
    "message_id",
    "sender_id",
    "conversation_type",
    "conversation_id",
    "push",
    "title",
    "content",
    "payload",
    "extended_data",
    "resources_id",
    "badge",
    "call_id",
    "inviter_id",
    "invitees",
    "timeout_s",
    "push_id",
    "keys",
    "endpoint",
    "p256dh",
    "auth",
    "x",
];

/// String values that mean something to some field.
const WORDS: &[&str] = &[
    "",
    "u1",
    "apns",
    "apns_voip",
    "fcm",
    "huawei",
    "honor",
    "xiaomi",
    "oppo",
    "vivo",
    "webpush",
    "production",
    "sandbox",
    "peer",
    "group",
    "com.example.chat",
    "00000000abababababababababababababababababababababababababababababab",
    "CN_00000001ab12ab12ab12ab12ab12ab12",
    "0000000177777777777777",
    "{\"endpoint\":\"https://push.example/x\",\"keys\":{\"p256dh\":\"AA\",\"auth\":\"AA\"}}",
    "[\"https://push.example/x\",[\"a\",\"b\"]]",
    "a\u{0}b",
    "\u{7f}",
    "é",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(WORDS).prop_map(|s| Value::String(s.to_string())),
        ".{0,40}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(KEYS), json()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// Request bodies: raw bytes, JSON values, JSON values with something after them.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json().prop_map(|v| v.to_string().into_bytes()),
        object().prop_map(|v| v.to_string().into_bytes()),
        (json(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(v, tail)| {
            let mut b = v.to_string().into_bytes();
            b.extend(tail);
            b
        }),
    ]
}

/// The parse and validation of every endpoint's body, as each handler does it before
/// touching any state.
fn every_endpoint(body: &[u8]) -> Vec<(&'static str, Result<(), ApiError>)> {
    let content = |p: Option<wire::PushConfig>| p.map(|p| p.into_content()).transpose();
    let ids = |fields: &[(&str, &str)]| -> Result<(), ApiError> {
        fields
            .iter()
            .try_for_each(|(f, v)| wire::id(f, v).map(drop))
    };
    vec![
        (
            "bind",
            parse::<wire::BindRequest>(body).and_then(|r| r.into_binding().map(drop)),
        ),
        (
            "presence",
            parse::<wire::PresenceRequest>(body).and_then(|r| r.validate()),
        ),
        (
            "members",
            parse::<wire::MembersRequest>(body).and_then(|r| r.into_ids().map(drop)),
        ),
        (
            "message",
            parse::<wire::MessageRequest>(body).and_then(|r| {
                ids(&[
                    ("message_id", &r.message_id),
                    ("sender_id", &r.sender_id),
                    ("conversation_id", &r.conversation_id),
                ])?;
                content(r.push).map(drop)
            }),
        ),
        (
            "call",
            parse::<wire::CallRequest>(body).and_then(|r| {
                ids(&[("call_id", &r.call_id), ("inviter_id", &r.inviter_id)])?;
                r.invitees
                    .iter()
                    .try_for_each(|u| wire::id("invitees", u).map(drop))?;
                content(r.push).map(drop)
            }),
        ),
        (
            "debug_push",
            parse::<wire::DebugPushRequest>(body).and_then(|r| {
                wire::id("push_id", &r.push_id)?;
                content(r.push).map(drop)
            }),
        ),
    ]
}

fn assert_400(endpoint: &str, r: &Result<(), ApiError>) {
    if let Err(e) = r {
        assert_eq!(
            (e.status.as_u16(), e.code),
            (400, "invalid_argument"),
            "{endpoint}: {}",
            e.message
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_body_parses_or_is_refused_with_400(body in body()) {
        for (endpoint, r) in every_endpoint(&body) {
            assert_400(endpoint, &r);
        }
    }

    #[test]
    fn anything_after_the_json_object_is_refused(
        v in object(),
        tail in "[^ \t\r\n][ -~]{0,8}",
    ) {
        let body = format!("{v}{tail}");
        for (endpoint, r) in every_endpoint(body.as_bytes()) {
            prop_assert!(r.is_err(), "{endpoint} took {body}");
            assert_400(endpoint, &r);
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused(v in json()) {
        prop_assume!(!v.is_object());
        let body = v.to_string();
        for (endpoint, r) in every_endpoint(body.as_bytes()) {
            prop_assert!(r.is_err(), "{endpoint} took {body}");
            assert_400(endpoint, &r);
        }
    }

    #[test]
    fn any_path_splits_or_is_refused_with_400(path in "(/[a-zA-Z0-9%._~-]{0,12}){0,6}|.{0,64}") {
        if let Err(e) = segments(&path) {
            assert_400("segments", &Err(e));
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive(
        scheme in "[bB][eE][aA][rR][eE][rR]",
        spaces in " {1,3}",
        token in "[!-~]{1,40}",
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let value = format!("{scheme}{spaces}{token}");
        prop_assert_eq!(bearer(value.as_bytes()), Some(token.as_bytes()));
        let _ = bearer(&junk);
        let basic = format!("Basic {token}");
        prop_assert_eq!(bearer(basic.as_bytes()), None);
    }
}

#[test]
fn trailing_data_and_arrays_are_named_in_the_error() {
    let e = parse::<wire::MembersRequest>(br#"{"add":["x"]}]]]] garbage"#)
        .expect_err("trailing data is refused");
    assert!(e.message.contains("after its JSON object"), "{}", e.message);
    assert!(parse::<wire::MembersRequest>(br#"{"add":["x"]}{"add":["y"]}"#).is_err());
    assert!(parse::<wire::MembersRequest>(b" {\"add\":[\"x\"]} \r\n\t").is_ok());
    let e = parse::<wire::BindRequest>(br#"["u","apns","00"]"#).expect_err("an array is refused");
    assert!(e.message.contains("JSON object"), "{}", e.message);
    let e = parse::<wire::MessageRequest>(
        br#"{"message_id":"m","sender_id":"s","conversation_type":"peer","conversation_id":"c","push":["t"]}"#,
    )
    .expect_err("a nested array is refused");
    assert!(e.message.contains("push"), "{}", e.message);
    let e = parse::<wire::PresenceRequest>(br#"{"events":[["u","s",true]]}"#)
        .expect_err("an array event is refused");
    assert!(e.message.contains("events[0]"), "{}", e.message);
}

#[test]
fn a_webpush_subscription_must_be_an_object_too() {
    let key = format!("B{}", "A".repeat(86));
    let ok = format!(
        r#"{{"endpoint":"https://push.example/x","keys":{{"p256dh":"{key}","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}}}"#
    );
    assert!(wire::validate_token(crate::state::ProviderKind::Webpush, &ok).is_ok());
    let arr = format!(r#"["https://push.example/x",["{key}","AAAAAAAAAAAAAAAAAAAAAA"]]"#);
    assert!(wire::validate_token(crate::state::ProviderKind::Webpush, &arr).is_err());
    let nested = format!(
        r#"{{"endpoint":"https://push.example/x","keys":["{key}","AAAAAAAAAAAAAAAAAAAAAA"]}}"#
    );
    assert!(wire::validate_token(crate::state::ProviderKind::Webpush, &nested).is_err());
}

/// Start an engine on 127.0.0.1:0 with `token`, capturing its log on this thread (the
/// runtime is current-thread, so the API task logs here), and return the log once the
/// API has started.
async fn startup_log(token: &str) -> String {
    let captured = crate::telemetry::CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().expect("a temp dir");
    let env = vec![
        ("FANFARE_API_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("FANFARE_API_TOKEN".into(), token.into()),
        (
            "FANFARE_STORAGE_DIR".into(),
            dir.path().display().to_string(),
        ),
        ("FANFARE_STORAGE_DURABILITY".into(), "none".into()),
    ];
    let config = crate::config::Config::load(None, env).expect("a valid config");
    let running = crate::start(config).await.expect("the engine starts");
    // The API task logs when it starts; wait for the first connection it serves.
    let addr = running.local_addr();
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("reads");
    running.shutdown().await;
    captured.text()
}

#[tokio::test]
async fn a_short_api_token_is_warned_about_at_start_up_without_printing_it() {
    let log = startup_log("sh0rt-t0ken").await;
    assert!(
        log.contains("WARN") && log.contains("api.token is shorter than 16 characters"),
        "{log}"
    );
    assert!(!log.contains("sh0rt-t0ken"), "{log}");
    let log = startup_log("a-long-enough-t0ken-for-sure").await;
    assert!(!log.contains("api.token is shorter"), "{log}");
}
