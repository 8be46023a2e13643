//! What an operator reads: `/metrics` after real traffic (checked by `promtool`), the
//! Grafana dashboard against it, the vendor failure log and `/readyz` in an outage.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{self, apns_token, Harness, Options, WAIT};

/// The value of the sample `series` (name and labels exactly as written), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a sample value is a number"))
}

/// Wait until `series` reaches at least `min` (effects that follow a vendor answer).
async fn wait_metric(h: &Harness, series: &str, min: f64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = h.get_text("/metrics").await;
        if value(&text, series).is_some_and(|v| v >= min) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {min}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every sample name in an exposition.
fn names(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().expect("a sample has a name"))
        .collect()
}

/// Some traffic of every kind the histograms time: binds, a message delivered, a debug
/// push, a few reads.
async fn traffic(h: &Harness) -> String {
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    h.message_to("m1", "u1", json!({"title": "t"})).await;
    assert!(h.apns.wait_for(1, WAIT).await);
    h.debug_push("d1", json!({"title": "debug"})).await;
    let (s, _) = h.get("/v1/users/u1/push-ids").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.raw(Method::GET, "/docs", Vec::new(), None).await;
    assert_eq!(s, StatusCode::OK);
    wait_metric(h, "fanfare_fanout_duration_seconds_count", 1.0).await
}

#[tokio::test]
async fn metrics_after_traffic_pass_promtool_and_time_vendors_routes_and_fan_out() {
    let h = harness::start().await;
    let text = traffic(&h).await;
    let at_least_one = [
        "fanfare_vendor_request_duration_seconds_count{provider=\"apns\"}",
        "fanfare_api_request_duration_seconds_count{route=\"/v1/messages\"}",
        "fanfare_api_request_duration_seconds_count{route=\"/v1/push-ids/{push_id}\"}",
        "fanfare_api_request_duration_seconds_count{route=\"/v1/users/{user_id}/push-ids\"}",
        "fanfare_api_request_duration_seconds_count{route=\"/v1/debug/push\"}",
        "fanfare_api_request_duration_seconds_count{route=\"/docs\"}",
        "fanfare_fanout_duration_seconds_count",
        "fanfare_build_info{version=\"0.1.0\",profile=\"debug\"}",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ];
    for series in at_least_one {
        let v = value(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
        assert!(v >= 1.0, "{series} = {v}");
    }
    // Two requests to APNs (the message and the debug push): both timed.
    assert_eq!(
        value(
            &text,
            "fanfare_vendor_request_duration_seconds_count{provider=\"apns\"}"
        ),
        Some(2.0)
    );
    for series in [
        "fanfare_storage_wal_segment_bytes",
        "fanfare_storage_wal_written_bytes_total",
        "fanfare_storage_fsync_duration_seconds_count",
        "fanfare_storage_snapshot_duration_seconds_count",
        "fanfare_storage_snapshot_age_seconds",
        "fanfare_storage_recovery_seconds",
        "process_cpu_seconds_total",
    ] {
        assert!(value(&text, series).is_some(), "no {series} in:\n{text}");
    }
    assert!(
        value(&text, "fanfare_storage_wal_written_bytes_total").unwrap() > 0.0,
        "the binds were logged"
    );
    // The raw ids never become labels.
    assert!(!text.contains("u1") && !text.contains("d1\""), "{text}");
    promtool_check(&text);
    h.shutdown().await;
}

/// `promtool check metrics` on `text`: must pass. Without promtool the check fails
/// under CI (`.ci/run` installs it) and is skipped, saying so, elsewhere.
fn promtool_check(text: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("promtool is required under CI (apt-get install prometheus): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED promtool check metrics: promtool not found ({e}); install the Debian package `prometheus`");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads the exposition");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool passes with lint warnings on stdout/stderr: hold them to none too.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.trim().is_empty(), "promtool lint: {said}");
}

#[tokio::test]
async fn every_counter_series_is_there_from_start_and_the_vendor_label_is_provider_everywhere() {
    let h = harness::start().await;
    let text = h.get_text("/metrics").await;
    for series in [
        "fanfare_pushes_rejected_total{provider=\"fcm\",cause=\"bad_device_token\"}",
        "fanfare_pushes_rejected_total{provider=\"apns_voip\",cause=\"payload_too_large\"}",
        "fanfare_pushes_failed_total{provider=\"honor\"}",
        "fanfare_breaker_opened_total{provider=\"apns\"}",
        "fanfare_lane_in_flight{provider=\"webpush\"}",
        "fanfare_queue_depth{provider=\"xiaomi\"}",
        "fanfare_vendor_request_duration_seconds_count{provider=\"vivo\"}",
        "fanfare_api_request_duration_seconds_count{route=\"/v1/calls/{call_id}/cancel\"}",
        "fanfare_fanout_duration_seconds_count",
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series} in:\n{text}");
    }
    assert!(!text.contains("vendor=\""), "one label name: {text}");
    h.shutdown().await;
}

/// The metric names a Grafana dashboard's queries use.
fn dashboard_metrics(dashboard: &Value) -> BTreeSet<String> {
    let mut exprs = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(dashboard, &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has queries");
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut rest = e;
        let next = |s: &str| {
            let (f, p) = (s.find("fanfare_"), s.find("process_"));
            f.into_iter().chain(p).min()
        };
        while let Some(i) = next(rest) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_in_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/grafana/fanfare.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard is there"))
            .expect("the dashboard is JSON");
    let wanted = dashboard_metrics(&dashboard);
    assert!(wanted.len() >= 10, "{wanted:?}");
    let h = harness::start().await;
    let text = traffic(&h).await;
    let have = names(&text);
    let missing: Vec<_> = wanted
        .iter()
        .filter(|n| !have.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    h.shutdown().await;
}

/// Log lines written by the test thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// A breaker that opens after 3 failures and stays open for the test.
const SLOW_BREAKER: &str = r#"
[retry]
base_ms = 20
max_ms = 100
max_attempts = 50

[breaker]
failures = 3
open_ms = 60000
max_open_ms = 60000
"#;

#[tokio::test]
async fn a_vendor_outage_is_logged_at_once_with_its_cause_and_readyz_shows_the_lane_degraded() {
    // The engine runs on this (current-thread) runtime, so this thread's subscriber
    // sees its log.
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish(),
    );
    let h = harness::start_with(Options {
        extra: SLOW_BREAKER.into(),
        api_token: true,
        ..Options::default()
    })
    .await;
    let (s, ready) = h.get("/readyz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["vendors"]["apns"]["state"], "ok");
    assert_eq!(ready["vendors"]["apns"]["last_failure"], Value::Null);
    assert_eq!(ready["vendors"]["huawei"]["state"], "unconfigured");

    h.apns.faults().set_unavailable(1.0, 0);
    let started = std::time::Instant::now();
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    for i in 0..5 {
        h.message_to(&format!("m{i}"), "u1", json!({"title": "t"}))
            .await;
    }
    h.wait_stats("breaker opened", |s| {
        s["lanes"]["apns"]["breaker_opened"].as_u64() >= Some(1)
    })
    .await;
    let text = log.text();
    let failing: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("telemetry::health") && l.contains("provider=\"apns\""))
        .collect();
    assert!(!failing.is_empty(), "no failure line: {text}");
    let first = failing[0];
    assert!(first.contains("WARN"), "{first}");
    assert!(first.contains("cause=\"unavailable\""), "{first}");
    assert!(first.contains("status=Some(503)"), "{first}");
    let periods = 1 + started.elapsed().as_secs() / 10;
    assert!(
        failing.len() as u64 <= periods,
        "rate-limited to one line per 10 s: {failing:#?}"
    );
    // The breaker's own line names the cause too.
    let opened = text
        .lines()
        .find(|l| l.contains("circuit breaker opened"))
        .expect("the breaker logged its opening");
    assert!(opened.contains("apns unavailable (http 503)"), "{opened}");
    assert!(
        opened.contains("provider=\"apns\""),
        "one vendor label: {opened}"
    );
    assert!(!text.contains(harness::API_TOKEN), "no token in the log");

    // `/readyz` stays 200 (a vendor outage is not the engine's) and says which lane
    // is degraded, and why; `/healthz` stays liveness.
    let (s, ready) = h.get("/readyz").await;
    assert_eq!(s, StatusCode::OK, "{ready}");
    let apns = &ready["vendors"]["apns"];
    assert_eq!(apns["state"], "degraded", "{ready}");
    assert_eq!(apns["breaker"], "open");
    assert_eq!(apns["last_failure"]["cause"], "unavailable");
    assert_eq!(apns["last_failure"]["status"], 503);
    assert_eq!(apns["last_failure"]["provider"], "apns");
    assert_eq!(ready["vendors"]["fcm"]["state"], "ok");
    let (s, health) = h.raw(Method::GET, "/healthz", Vec::new(), None).await;
    assert_eq!((s, health), (StatusCode::OK, json!({"status": "ok"})));
    h.apns.faults().set_unavailable(0.0, 0);
    h.shutdown().await;
}

#[tokio::test]
async fn dead_tokens_are_logged_with_their_message_id() {
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let h = harness::start().await;
    h.bind("gone-ios", "u1", "apns", &apns_token(1)).await;
    h.bind("other-sender", "u1", "fcm", &harness::fcm_token(1))
        .await;
    h.apns.set_token_verdict(
        &apns_token(1),
        fanfare_loadgen::mock::apns::ApnsVerdict::Unregistered,
    );
    h.fcm.set_token_verdict(
        &harness::fcm_token(1),
        fanfare_loadgen::mock::fcm::FcmVerdict::SenderIdMismatch,
    );
    h.message_to("m-logged-7", "u1", json!({"title": "t"}))
        .await;
    h.wait_stats("both dead tokens removed", |s| {
        s["invalid_tokens_removed"] == 2
    })
    .await;
    let text = log.text();
    let dead: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("dead token; binding removed"))
        .collect();
    assert_eq!(dead.len(), 2, "one line per dead token: {text}");
    for line in dead {
        assert!(line.contains("id=\"m-logged-7\""), "{line}");
    }
    h.shutdown().await;
}
