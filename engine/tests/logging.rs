//! The log of the real `fanfare` binary: `[log] format = "json"` writes one JSON
//! object a line, and `[log] access = true` one line per API request with its method,
//! route template, status, duration and request id, never the token or the path's ids.
//! Both keys are set here through their environment overrides.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fanfare::client::{Client, Protocol};
use http_body_util::Full;
use parking_lot::Mutex;
use serde_json::Value;

use common::DEADLINE;

const TOKEN: &str = "a-long-api-token-never-logged";

/// Wait (bounded) until a logged line satisfies `f`; that line, parsed.
fn wait_line(log: &Mutex<Vec<String>>, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let found = log
            .lock()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| f(v));
        if let Some(v) = found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never logged {what}: {:#?}",
            log.lock()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[tokio::test]
async fn json_logs_and_the_access_log_name_the_route_status_and_request_id_but_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_file(dir.path(), "fsync", "");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("[api]\n", &format!("[api]\ntoken = \"{TOKEN}\"\n")),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("FANFARE_LOG", "info")
        .env("FANFARE_LOG_FORMAT", "json")
        .env("FANFARE_LOG_ACCESS", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fanfare");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().expect("stdout is piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr is piped")),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().push(line);
            }
        });
    }
    let _child = Kill(child);
    let ready = wait_line(&log, "the ready line", |v| v["message"] == "fanfare ready");
    let base = format!(
        "http://{}",
        ready["addr"].as_str().expect("addr is a field")
    );

    let api = Client::builder(&base)
        .protocol(Protocol::Http1)
        .token(Some(TOKEN))
        .build();
    let get = |path: &str, id: Option<&str>| {
        let mut req = http::Request::builder().uri(format!("{base}{path}"));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.body(Full::new(Bytes::new())).unwrap()
    };
    let deadline = Instant::now() + DEADLINE;
    while api.send(get("/readyz", None)).await.map(|r| r.status).ok() != Some(http::StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ok = api
        .send(get("/v1/users/secret-user-7/push-ids", Some("req-42")))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let bare = Client::builder(&base).protocol(Protocol::Http1).build();
    let refused = bare.send(get("/v1/groups/g-9", None)).await.unwrap();
    assert_eq!(refused.status, 401);

    let line = wait_line(&log, "the access line of the lookup", |v| {
        v["target"] == "fanfare::access" && v["request_id"] == "req-42"
    });
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/v1/users/{user_id}/push-ids");
    assert_eq!(line["status"], 200);
    assert_eq!(line["level"], "INFO");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{line}"
    );
    assert!(line["timestamp"].is_string(), "{line}");
    let refused = wait_line(&log, "the access line of the 401", |v| {
        v["target"] == "fanfare::access" && v["status"] == 401
    });
    assert_eq!(refused["route"], "/v1/groups/{group_id}");
    assert!(
        refused["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("fanfare-")),
        "an id of the engine's own: {refused}"
    );

    let lines = log.lock().clone();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
    }
    let all = lines.join("\n");
    assert!(!all.contains(TOKEN), "the token was logged: {all}");
    assert!(
        !all.contains("secret-user-7"),
        "a path id was logged: {all}"
    );
}
