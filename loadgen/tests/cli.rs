//! The `fanfare-loadgen` binary end to end on small sizes: each scenario spawns its
//! own engine process on loopback, and its JSON report and SVG plot are checked.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Run `fanfare-loadgen run ARGS --json .. --svg ..` (`args` split at spaces);
/// returns the JSON report.
fn run(args: &str) -> Value {
    let args: Vec<&str> = args.split_whitespace().collect();
    let dir = tempfile::tempdir().unwrap();
    let (json, svg) = (
        dir.path().join("report.json"),
        dir.path().join("latency.svg"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fanfare-loadgen"))
        .arg("run")
        .args(&args)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fanfare-loadgen run {args:?} failed:\n{text}"
    );
    assert_svg(&svg);
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

fn assert_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{svg:.200}"
    );
    assert!(svg.contains("latency (ms)"), "{svg:.200}");
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v:#}"))
}

fn f(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {v:#}"))
}

/// The fields every report has, and a clean run's errors.
fn assert_common(v: &Value, scenario: &str) {
    assert_eq!(v["scenario"], scenario);
    for field in [
        "pushes_delivered",
        "pushes_per_s",
        "ceiling_pushes_per_s",
        "engine_cpu_ms_per_1k_pushes",
        "engine_peak_rss_bytes",
        "errors",
        "latency_us",
        "wall_s",
    ] {
        assert!(v.get(field).is_some(), "{field} missing in {v:#}");
    }
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][q].is_u64(), "latency_us.{q} in {v:#}");
    }
    for kind in [
        "api_status_4xx",
        "api_status_5xx",
        "api_transport",
        "vendor_rejections",
        "lost",
    ] {
        assert_eq!(v["errors"][kind], 0, "errors.{kind} in {v:#}");
    }
    assert_eq!(u(v, "pushes_to_online_users"), 0);
    assert_eq!(u(v, "pushes_delivered"), u(v, "pushes_expected"));
}

/// The spawned engine's own CPU and memory were measured.
fn assert_engine_measured(v: &Value) {
    assert_eq!(v["engine_mode"], "spawned");
    assert!(u(v, "engine_peak_rss_bytes") > 0, "{v:#}");
    // Measured (a number, not null): a short fan-out may use less than one 10 ms tick.
    assert!(v["engine_cpu_s"].is_number(), "{v:#}");
}

/// `run` of `scenario` with `args` on a spawned engine: a clean run that measured the
/// engine.
fn run_spawned(scenario: &str, args: &str) -> Value {
    let v = run(&format!("--scenario {scenario} {args}"));
    assert_common(&v, scenario);
    assert_engine_measured(&v);
    v
}

/// [`run_spawned`] of a scenario that pushes: the pushes were measured too.
fn run_pushing(scenario: &str, args: &str) -> Value {
    let v = run_spawned(scenario, args);
    assert_pushes_measured(&v);
    v
}

fn assert_pushes_measured(v: &Value) {
    assert!(u(v, "pushes_delivered") > 0, "{v:#}");
    assert!(f(v, "engine_cpu_ms_per_1k_pushes") > 0.0, "{v:#}");
    assert!(f(v, "ceiling_pushes_per_s") > 0.0, "{v:#}");
    assert!(u(&v["latency_us"], "p50") > 0, "{v:#}");
}

#[test]
fn bind_reports_binds_and_memory_per_binding() {
    let v = run_spawned("bind", "--users 2000 --devices 2");
    assert_eq!(u(&v, "bindings"), 4000);
    assert_eq!(u(&v["bind"], "binds_acked"), 4000);
    assert!(f(&v, "binds_per_s") > 0.0);
    assert!(
        v["bind"]["engine_rss_bytes_per_binding"].is_number(),
        "{v:#}"
    );
}

#[test]
fn presence_churns_for_the_duration() {
    let v = run_spawned(
        "presence",
        "--users 1000 --duration 0.5 --presence-batch 500",
    );
    let p = &v["presence"];
    assert!(u(p, "events_applied") > 0);
    assert_eq!(u(p, "events_applied"), u(p, "events_sent"));
    assert!(f(p, "events_per_s") > 0.0);
}

#[test]
fn peer_pushes_every_offline_recipient_once() {
    let (users, rate) = (500u32, 300u64);
    let v = run_pushing("peer", "--users 500 --rate 300 --duration 1");
    // Recipient of message k, and the 10% online rule (every 10th user).
    let offline = (0..rate)
        .filter(|k| (*k as u32).wrapping_mul(2_654_435_761) % users % 10 != 0)
        .count() as u64;
    assert_eq!(u(&v, "messages_sent"), rate);
    assert_eq!(u(&v, "pushes_expected"), offline);
}

#[test]
fn group_fans_out_to_offline_members_and_measures_the_ceiling() {
    let v = run_pushing("group", "--group-sizes 100,2000");
    // 10% online, one APNs device each, the sender is no member.
    assert_eq!(u(&v, "pushes_delivered"), 90 + 1800);
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    for (g, members) in groups.iter().zip([100, 2000]) {
        assert_eq!(u(g, "members"), members);
        assert_eq!(u(g, "pushes_delivered"), members * 9 / 10);
        assert!(f(g, "ceiling_pushes_per_s") > 0.0, "{g:#}");
        assert!(f(g, "to_last_push_ms") > 0.0, "{g:#}");
    }
    assert!(f(&v, "engine_to_ceiling") > 0.0);
}

#[test]
fn ceiling_runs_without_an_engine() {
    let v = run("--scenario ceiling --users 100 --pushes 3000");
    assert_common(&v, "ceiling");
    assert_eq!(v["engine_mode"], "none");
    assert_eq!(u(&v, "pushes_delivered"), 3000);
    assert!(v["engine_cpu_ms_per_1k_pushes"].is_null());
    assert!(f(&v, "ceiling_pushes_per_s") > 0.0);
}

#[test]
fn mixed_blends_every_kind_of_traffic() {
    let v = run_pushing("mixed", "--users 500 --rate 200 --duration 1");
    assert_eq!(u(&v, "messages_sent"), 1 + 200);
    assert_eq!(u(&v, "calls_sent"), 200);
    assert!(u(&v["presence"], "events_applied") > 0);
    assert!(u(&v["per_provider"], "apns") > 0 && u(&v["per_provider"], "fcm") > 0);
    // Each traffic class apart: the group fan-out, the peer messages, the calls.
    let mut pushes = 0;
    for class in ["group", "peer", "call"] {
        let c = &v["per_class"][class];
        assert!(u(c, "pushes") > 0, "{class} in {v:#}");
        assert!(u(&c["latency_us"], "p50") > 0, "{class} in {v:#}");
        assert!(u(&c["latency_us"], "max") >= u(&c["latency_us"], "p50"));
        pushes += u(c, "pushes");
    }
    assert_eq!(pushes, u(&v, "pushes_delivered"), "{v:#}");
}

#[test]
fn the_spawned_engine_is_gone_after_the_run() {
    let v = run("--scenario call --users 100");
    assert_common(&v, "call");
    let pid = u(&v, "engine_pid");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "engine {pid} still running"
    );
}

#[test]
fn an_engine_started_by_hand_is_driven_and_measured() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // A free loopback port for the engine (nothing listens on it between the drop and
    // the engine's bind but the engine itself).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = env!("CARGO_BIN_EXE_fanfare-loadgen");
    let mut loadgen = Command::new(bin)
        .args([
            "run",
            "--scenario",
            "peer",
            "--users",
            "300",
            "--rate",
            "200",
            "--duration",
            "0.5",
        ])
        .args([
            "--engine",
            &format!("http://127.0.0.1:{port}"),
            "--engine-wait",
            "60",
            "--mock-dir",
        ])
        .arg(dir.path().join("mocks"))
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(loadgen.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let config = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no engine command printed:\n{}", log.join("\n")))
            .unwrap();
        if let Some(path) = line.trim().strip_prefix("fanfare serve --config ") {
            break std::path::PathBuf::from(path);
        }
        log.push(line);
    };
    // "By hand": the same engine the load generator would spawn.
    let mut engine = Command::new(bin)
        .args(["engine", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let status = loadgen.wait().unwrap();
    log.extend(rest.join().unwrap());
    let pid = rustix::process::Pid::from_raw(engine.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(engine.wait().unwrap().success());
    assert!(status.success(), "{}", log.join("\n"));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_common(&v, "peer");
    assert_eq!(v["engine_mode"], "external");
    assert_eq!(u(&v, "engine_pid"), u64::from(engine.id()));
    assert!(u(&v, "engine_peak_rss_bytes") > 0, "{v:#}");
    assert!(u(&v, "pushes_delivered") > 0, "{v:#}");
}
