//! The OpenAPI document (API.md 1.1 "Documents") against a running engine: served
//! without a token, a valid OpenAPI 3.1 document, every documented operation served
//! and every other method refused, and real requests and answers of every JSON
//! endpoint match the document's schemas.

use std::collections::BTreeSet;
use std::process::Command;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, apns_token, Harness};

/// `GET path` over a fresh HTTP/1.1 connection without any token: status, content
/// type and body as sent.
async fn get_plain(h: &Harness, path: &str) -> (u16, String, Vec<u8>) {
    let addr = h.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head ends");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().expect("a status code");
    let kind = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type:"))
        .unwrap_or("")
        .trim()
        .to_string();
    (status, kind, raw[split + 4..].to_vec())
}

async fn document(h: &Harness) -> Value {
    let (status, kind, body) = get_plain(h, "/v1/openapi.json").await;
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    serde_json::from_slice(&body).expect("the document is JSON")
}

/// `openapi-spec-validator` (PyPI, installed by `.ci/run`) on `doc`. Without it the
/// check is skipped on a developer's machine and fails under CI.
fn spec_validator(doc: &Value) {
    let present = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "openapi-spec-validator is missing under CI (.ci/run installs it)"
        );
        eprintln!("skipped: python3 -m pip install openapi-spec-validator to run this check");
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write the document");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("the validator runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token_and_validates() {
    let h = harness::start_with_token().await;
    let doc = document(&h).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    spec_validator(&doc);
    // Every schema is a valid JSON Schema (2020-12, the dialect of OpenAPI 3.1).
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        let valid = jsonschema::meta::validate(schema);
        assert!(valid.is_ok(), "schema {name}: {valid:?}");
    }
    let (status, kind, page) = get_plain(&h, "/docs").await;
    assert_eq!((status, kind.as_str()), (200, "text/html; charset=utf-8"));
    let page = String::from_utf8(page).expect("the page is UTF-8");
    assert!(page.contains(r#"href="/v1/openapi.json""#), "{page}");
    assert!(
        !page.contains("http"),
        "the page loads nothing from elsewhere: {page}"
    );
    // The rest of /v1 still needs the token.
    let (status, _, _) = get_plain(&h, "/v1/stats").await;
    assert_eq!(status, 401);
    h.shutdown().await;
}

/// `path` with a sample value for each parameter.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| match s {
            "{conversation_type}" => "peer",
            s if s.starts_with('{') => "probe-1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_every_other_method_is_refused() {
    let h = harness::start_with_token().await;
    let doc = document(&h).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{} paths", paths.len());
    for (path, item) in paths {
        let url = concrete(path);
        for method in [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ] {
            let documented = item.get(method.as_str().to_lowercase()).is_some();
            let (status, body) = h.call(method.clone(), &url, None).await;
            let what = format!("{method} {url} → {status} {body}");
            if documented {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
                let unrouted = body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no endpoint"));
                assert!(!unrouted, "{what}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
            }
        }
    }
    h.shutdown().await;
}

/// Real exchanges checked against the document: each request body against its
/// operation's request schema, each answer against the schema of its status.
struct Checker {
    doc: Value,
    checked: BTreeSet<(String, String)>,
}

impl Checker {
    /// The schema of `pointer` within the document, as a standalone JSON Schema whose
    /// `#/components/...` references resolve.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::validator_for(&root).expect("the schema compiles")
    }

    fn assert_matches(&self, what: &str, schema: &Value, instance: &Value) {
        let v = self.validator(schema);
        let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{what}: {instance} does not match {schema}: {errors:?}"
        );
    }

    fn operation(&self, method: &Method, path: &str) -> &Value {
        let op = &self.doc["paths"][path][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not documented");
        op
    }

    /// Send `body` to `template` (filled in as `url`) and check both sides (the
    /// request only when it is meant to succeed: bad ones are sent on purpose).
    async fn exchange(
        &mut self,
        h: &Harness,
        method: Method,
        template: &str,
        url: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Value {
        let op = self.operation(&method, template).clone();
        let what = format!("{method} {url}");
        if let Some(b) = body.as_ref().filter(|_| want.is_success()) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{what}: no request schema");
            self.assert_matches(&format!("{what} request"), schema, b);
        }
        let (status, answer) = h.call(method.clone(), url, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        let mut response = op["responses"][status.as_str()].clone();
        if let Some(r) = response["$ref"].as_str() {
            let pointer = r.strip_prefix('#').expect("a local reference");
            response = self
                .doc
                .pointer(pointer)
                .expect("the reference resolves")
                .clone();
        }
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{what}: status {status} is not documented"
        );
        self.assert_matches(&format!("{what} answer {status}"), schema, &answer);
        self.checked
            .insert((method.to_string(), template.to_string()));
        answer
    }
}

#[tokio::test]
async fn requests_and_answers_of_every_json_endpoint_match_the_document() {
    let h = harness::start_with_token().await;
    let mut c = Checker {
        doc: document(&h).await,
        checked: BTreeSet::new(),
    };
    use Method as M;
    use StatusCode as S;
    // The check has teeth: a body of the wrong shape is refused.
    let bound = json!({"$ref": "#/components/schemas/Bound"});
    assert!(!c
        .validator(&bound)
        .is_valid(&json!({"push_id": 1, "user_id": "u1"})));
    let bind = json!({"$ref": "#/components/schemas/BindRequest"});
    let typo = json!({"user_id": "u1", "provider": "apns", "token": "ab", "envrionment": "x"});
    assert!(
        !c.validator(&bind).is_valid(&typo),
        "unknown request fields are refused"
    );

    c.exchange(&h, M::GET, "/healthz", "/healthz", None, S::OK)
        .await;
    c.exchange(&h, M::GET, "/readyz", "/readyz", None, S::OK)
        .await;
    let t = "/v1/push-ids/{push_id}";
    let body = json!({"user_id": "u1", "provider": "apns", "token": apns_token(1),
                      "app_id": "com.example.chat", "environment": "sandbox"});
    c.exchange(&h, M::PUT, t, "/v1/push-ids/d1", Some(body), S::OK)
        .await;
    let body = json!({"user_id": "u1", "provider": "apns", "token": apns_token(2)});
    c.exchange(&h, M::PUT, t, "/v1/push-ids/d2", Some(body), S::OK)
        .await;
    let t = "/v1/users/{user_id}/push-ids";
    let listed = c
        .exchange(&h, M::GET, t, "/v1/users/u1/push-ids", None, S::OK)
        .await;
    assert_eq!(
        listed["push_ids"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    let events = json!({"events": [{"user_id": "u9", "session_id": "s1", "online": true, "ttl_s": 60},
                                    {"user_id": "u8", "session_id": "s2", "online": false}]});
    c.exchange(
        &h,
        M::POST,
        "/v1/presence",
        "/v1/presence",
        Some(events),
        S::OK,
    )
    .await;
    let t = "/v1/presence/{user_id}";
    c.exchange(&h, M::GET, t, "/v1/presence/u9", None, S::OK)
        .await;

    let t = "/v1/groups/{group_id}/members";
    let members = json!({"add": ["u0", "u1", "u9"], "remove": ["u7"]});
    c.exchange(
        &h,
        M::POST,
        t,
        "/v1/groups/g1/members",
        Some(members),
        S::OK,
    )
    .await;
    c.exchange(
        &h,
        M::GET,
        "/v1/groups/{group_id}",
        "/v1/groups/g1",
        None,
        S::OK,
    )
    .await;

    let t = "/v1/users/{user_id}/conversations/{conversation_type}/{conversation_id}/notification";
    let url = "/v1/users/u1/conversations/peer/u5/notification";
    let dnd = json!({"status": "do_not_disturb"});
    c.exchange(&h, M::PUT, t, url, Some(dnd), S::OK).await;
    c.exchange(&h, M::GET, t, url, None, S::OK).await;
    let t = "/v1/users/{user_id}/badge";
    c.exchange(
        &h,
        M::PUT,
        t,
        "/v1/users/u1/badge",
        Some(json!({"count": 4})),
        S::OK,
    )
    .await;
    c.exchange(&h, M::GET, t, "/v1/users/u1/badge", None, S::OK)
        .await;
    let t = "/v1/users/{user_id}";
    let user = c.exchange(&h, M::GET, t, "/v1/users/u1", None, S::OK).await;
    assert_eq!(
        (&user["badge"], &user["push_ids"].as_array().map(Vec::len)),
        (&json!(4), &Some(2)),
        "{user}"
    );
    assert_eq!(
        user["do_not_disturb"],
        json!([{"conversation_id": "u5", "conversation_type": "peer"}])
    );

    let push = json!({"title": "New message", "content": "hello", "payload": "{\"k\":1}",
                      "badge_increment": 1, "sound": "msg.caf", "silent": false,
                      "collapse_id": "conv-42", "ttl_s": 3600, "priority": "high"});
    let message = json!({"message_id": "m1", "sender_id": "u0", "conversation_type": "group",
                         "conversation_id": "g1", "push": push});
    let t = "/v1/messages";
    let accepted = c
        .exchange(&h, M::POST, t, t, Some(message.clone()), S::ACCEPTED)
        .await;
    assert_eq!(accepted["targets"], 2, "{accepted}");
    c.exchange(&h, M::POST, t, t, Some(message), S::OK).await;
    let t = "/v1/messages/{message_id}";
    c.exchange(&h, M::GET, t, "/v1/messages/m1", None, S::OK)
        .await;

    let call = json!({"call_id": "c1", "inviter_id": "u0", "invitees": ["u1"], "timeout_s": 90,
                      "push": {"title": "Incoming call", "content": "u0 is calling"}});
    let t = "/v1/calls";
    c.exchange(&h, M::POST, t, t, Some(call.clone()), S::ACCEPTED)
        .await;
    c.exchange(&h, M::POST, t, t, Some(call), S::OK).await;
    c.exchange(
        &h,
        M::GET,
        "/v1/calls/{call_id}",
        "/v1/calls/c1",
        None,
        S::OK,
    )
    .await;
    let t = "/v1/calls/{call_id}/cancel";
    let cancel = json!({"push": {"title": "Missed call"}});
    c.exchange(&h, M::POST, t, "/v1/calls/c1/cancel", Some(cancel), S::OK)
        .await;

    let t = "/v1/debug/push";
    let debug = json!({"push_id": "d1", "push": {"title": "t", "content": "c"}});
    let verdict = c.exchange(&h, M::POST, t, t, Some(debug), S::OK).await;
    assert_eq!(verdict["status"], 200, "{verdict}");
    c.exchange(&h, M::GET, "/v1/stats", "/v1/stats", None, S::OK)
        .await;

    // Error answers, each against the status it is documented under.
    let t = "/v1/messages";
    c.exchange(
        &h,
        M::POST,
        t,
        t,
        Some(json!({"message_id": "m2"})),
        S::BAD_REQUEST,
    )
    .await;
    let t = "/v1/groups/{group_id}";
    c.exchange(&h, M::GET, t, "/v1/groups/none", None, S::NOT_FOUND)
        .await;
    let (status, body) = h
        .raw(M::GET, "/v1/stats", Vec::new(), Some("wrong-token"))
        .await;
    assert_eq!(status, S::UNAUTHORIZED);
    let error = json!({"$ref": "#/components/schemas/ErrorAnswer"});
    c.assert_matches("401", &error, &body);

    c.exchange(&h, M::DELETE, t, "/v1/groups/g1", None, S::OK)
        .await;
    let t = "/v1/push-ids/{push_id}";
    c.exchange(&h, M::DELETE, t, "/v1/push-ids/d2", None, S::OK)
        .await;
    c.exchange(&h, M::DELETE, t, "/v1/push-ids/d2", None, S::NOT_FOUND)
        .await;
    let t = "/v1/users/{user_id}/push-ids";
    c.exchange(&h, M::DELETE, t, "/v1/users/u1/push-ids", None, S::OK)
        .await;

    // The file the engine started with, read again: nothing changes.
    let t = "/v1/admin/reload";
    c.exchange(&h, M::POST, t, t, None, S::OK).await;
    let t = "/v1/admin/config";
    let running = c.exchange(&h, M::GET, t, t, None, S::OK).await;
    assert_eq!(running["config"]["api"]["token"], "<redacted>", "{running}");
    assert!(!running.to_string().contains(crate::harness::API_TOKEN));

    // Every operation that answers JSON has had an example checked.
    let mut missing = Vec::new();
    for (path, item) in c.doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let json_answer =
                op["responses"]
                    .as_object()
                    .expect("responses")
                    .iter()
                    .any(|(s, r)| {
                        s.starts_with('2')
                            && r["content"]["application/json"]["schema"]["$ref"].is_string()
                    });
            let key = (method.to_uppercase(), path.clone());
            if json_answer && !c.checked.contains(&key) {
                missing.push(key);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "operations without a checked example: {missing:?}"
    );
    h.shutdown().await;
}
