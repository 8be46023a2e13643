//! The `faults` scenario: delivery under vendor faults, checked push by push.
//!
//! Mock APNs and FCM inject 5% 503s, 1% 429s with `Retry-After: 1`, a GOAWAY on every
//! 10,000th stream, and both go down for 2 s halfway through. The driver sends
//! open-loop peer messages (24 h TTL) and call invitations with a 2 s timeout (some
//! expire in the outage), then waits until the engine's lanes are empty.
//!
//! Every expected push is a (payload sequence number, device token) pair. From the
//! mocks' records the report derives: `pushes_delivered` (distinct expected pairs
//! received), `duplicates` (receipts beyond the first), `delivered_after_expiry`
//! (received after the push's expiry: APNs from its `apns-expiration`, FCM calls from
//! the send time + timeout + 1 s, an upper bound of the engine's expiry), `expired`
//! (never delivered, expired) and `lost` (never delivered though unexpired).
//!
//! Open connections end gracefully at the outage (GOAWAY, then connections refused),
//! or abruptly with `FANFARE_LOADGEN_OUTAGE=abrupt`, which cuts streams in flight:
//! their fate is unknown and their resends may show up as duplicates.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use fanfare_loadgen::mock::faults::{Close, FaultCounts, Faults};
use serde_json::{json, Value};

use crate::engine_proc::ProcStats;
use crate::report::Errors;
use crate::scenarios::{bind_all, engine_choice, mark_online};
use crate::setup::{apns_token, fcm_token, online_rule, Env};
use crate::RunArgs;
use fanfare::client::request;

const OUTAGE: Duration = Duration::from_secs(2);
const CALL_TIMEOUT_S: u64 = 2;

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub users: u32,
    pub messages_sent: u64,
    pub calls_sent: u64,
    pub pushes_expected: u64,
    pub pushes_delivered: u64,
    pub duplicates: u64,
    pub delivered_after_expiry: u64,
    /// The first few late deliveries: (provider, sequence number, ms after expiry).
    pub after_expiry_detail: Vec<(&'static str, u64, u64)>,
    /// Expected pushes never delivered that expired (calls caught by the outage).
    pub expired: u64,
    /// Expected pushes never delivered though unexpired.
    pub lost: u64,
    pub api_errors: u64,
    pub outage: &'static str,
    /// Faults the mocks injected, by kind, summed over APNs and FCM.
    pub injected: HashMap<&'static str, u64>,
    /// The engine's per-provider counters and lane states at the end (`/v1/stats`).
    pub engine: Value,
    pub pushes_per_s: f64,
    /// Engine CPU seconds over the traffic and drain, from /proc of its process.
    pub engine_cpu_s: Option<f64>,
    pub engine_peak_rss_bytes: Option<u64>,
    /// The load generator's process (driver + mocks).
    pub driver_peak_rss_bytes: u64,
    pub wall_s: f64,
}

/// What was sent: sequence number → (device token, expiry in UNIX ms, is a call).
struct Expected {
    token: String,
    expires_ms: u64,
}

#[allow(clippy::disallowed_methods)] // the load generator is a client: its own wall clock
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn token_of(i: u32) -> String {
    if i % 5 < 3 {
        apns_token(i)
    } else {
        fcm_token(i)
    }
}

fn set_faults(f: &Faults) {
    f.set_unavailable(0.05, 0);
    f.set_throttle(0.01, 1);
    f.set_goaway_every(10_000);
}

pub async fn run(mut args: RunArgs) -> anyhow::Result<Report> {
    // Enough streams for GOAWAYs every 10k: 10 s at 3,000 msg/s unless asked otherwise.
    if args.duration == 3.0 && args.rate == 2_000 {
        args.duration = 10.0;
        args.rate = 3_000;
    }
    let abrupt = std::env::var("FANFARE_LOADGEN_OUTAGE").is_ok_and(|v| v == "abrupt");
    args.validate()?;
    if args.svg.is_some() {
        eprintln!(
            "faults: no latency plot (--svg) for this scenario; its report is about delivery"
        );
    }
    let env = Env::start(&engine_choice(&args)?, false).await?;
    let started = quanta::Instant::now();
    let (wall0_ms, q0) = (unix_ms(), quanta::Instant::now());
    let users = args.users;
    let is_online = online_rule(args.online_share);
    let mut errors = Errors::default();
    eprintln!("setup: binding {users} users (60% APNs, 40% FCM)");
    bind_all(
        &env,
        users,
        1,
        |i| {
            let provider = if i % 5 < 3 { "apns" } else { "fcm" };
            (provider, token_of(i))
        },
        &mut errors,
    )
    .await;
    mark_online(&env, users, is_online, &mut errors).await;
    let engine_cpu0 = env.engine_proc();

    set_faults(env.mocks.apns.faults());
    set_faults(env.mocks.fcm().faults());
    let total = (args.duration * f64::from(args.rate)).round() as u64;
    eprintln!(
        "faults: {total} peer messages at {}/s + calls every 50 ms (timeout {CALL_TIMEOUT_S} s); \
         5% 503, 1% 429 (Retry-After 1), GOAWAY every 10k streams, {} s {} outage at half time",
        args.rate,
        OUTAGE.as_secs(),
        if abrupt { "abrupt" } else { "graceful" },
    );
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let calls_every = (f64::from(args.rate) / 20.0).max(1.0) as u64;
    let outage_at = total / 2;
    let mut tasks = tokio::task::JoinSet::new();
    let t0 = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut sent: Vec<(u64, u32, bool, u64)> = Vec::new(); // (seq, user, is_call, sent_ms)
    for k in 0..total {
        tokio::time::sleep_until(t0 + interval.mul_f64(k as f64)).await;
        if k == outage_at {
            let close = if abrupt {
                Close::Abrupt
            } else {
                Close::Graceful
            };
            env.mocks.apns.faults().outage(OUTAGE, close);
            env.mocks.fcm().faults().outage(OUTAGE, close);
            eprintln!("  outage: both vendors down for {} s", OUTAGE.as_secs());
        }
        let to = (k as u32).wrapping_mul(2_654_435_761) % users;
        let is_call = k % calls_every == 0;
        let s = k + 1;
        sent.push((s, to, is_call, unix_ms()));
        let api = env.api.clone();
        tasks.spawn(async move {
            // Either answer reduced to the targets it queued.
            let r = if is_call {
                let push = request::push("call", "ring", s.to_string());
                let invitees = vec![format!("u{to}")];
                let c = request::call(
                    format!("fc-{s}"),
                    "driver",
                    invitees,
                    CALL_TIMEOUT_S,
                    Some(push),
                );
                api.call(&c).await.map(|a| Some(a.targets))
            } else {
                let push = request::push("peer", "hi", s.to_string());
                let m = request::message(
                    format!("fm-{s}"),
                    "driver",
                    "peer",
                    format!("u{to}"),
                    Some(push),
                );
                api.message(&m)
                    .await
                    .map(|a| a.accepted().map(|a| a.targets))
            };
            (s, r)
        });
    }
    let mut accepted: HashMap<u64, u64> = HashMap::new(); // seq → targets
    let (mut messages, mut calls) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        let (s, r) = r?;
        match errors.check(r) {
            Some(Some(targets)) => {
                accepted.insert(s, targets as u64);
            }
            // A duplicate answer: unexpected, counted as before with the 5xx.
            Some(None) => errors.api_status_5xx += 1,
            None => {}
        }
    }
    let mut expected: HashMap<u64, Expected> = HashMap::new();
    for (s, to, is_call, sent_ms) in &sent {
        if accepted.get(s).copied().unwrap_or(0) == 0 {
            if accepted.contains_key(s) {
                if *is_call {
                    calls += 1;
                } else {
                    messages += 1;
                }
            }
            continue;
        }
        if *is_call {
            calls += 1;
        } else {
            messages += 1;
        }
        let expires_ms = if *is_call {
            // The engine's expiry is floor(render s) + timeout; render follows send.
            (sent_ms / 1000 + CALL_TIMEOUT_S + 1) * 1000
        } else {
            u64::MAX
        };
        expected.insert(
            *s,
            Expected {
                token: token_of(*to),
                expires_ms,
            },
        );
    }

    // Drain: until every lane is empty (delivered, expired or failed), bounded.
    let deadline = quanta::Instant::now() + Duration::from_secs_f64(args.drain_timeout);
    loop {
        let stats = env.stats().await?;
        let queued: u64 = stats["queue_depth"]
            .as_object()
            .map_or(0, |q| q.values().filter_map(Value::as_u64).sum());
        if queued == 0 || quanta::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let end_ms = unix_ms();

    // Receipts: (seq, token) → count, and receipts after expiry.
    let to_wall =
        |at: quanta::Instant| wall0_ms + at.saturating_duration_since(q0).as_millis() as u64;
    let mut got: HashMap<(u64, String), u64> = HashMap::new();
    let mut after_expiry = 0u64;
    let mut late: Vec<(&'static str, u64, u64)> = Vec::new();
    let mut last = q0;
    for p in env.mocks.apns.received() {
        let Some(s) = p.body["payload"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        last = last.max(p.received_at);
        if let Some(exp) = p.expiration.filter(|e| *e > 0) {
            let at = to_wall(p.received_at);
            if at >= exp * 1000 + 100 {
                after_expiry += 1;
                if late.len() < 10 {
                    late.push(("apns", s, at - exp * 1000));
                }
            }
        }
        *got.entry((s, p.token)).or_default() += 1;
    }
    for p in env.mocks.fcm().received() {
        let Some(s) = p.message["data"]["payload"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        last = last.max(p.received_at);
        if let Some(e) = expected.get(&s) {
            let at = to_wall(p.received_at);
            if e.expires_ms != u64::MAX && at >= e.expires_ms + 100 {
                after_expiry += 1;
                if late.len() < 10 {
                    late.push(("fcm", s, at - e.expires_ms));
                }
            }
        }
        *got.entry((s, p.token)).or_default() += 1;
    }
    let duplicates: u64 = got.values().map(|n| n.saturating_sub(1)).sum();
    let (mut delivered, mut expired, mut lost) = (0u64, 0u64, 0u64);
    for (s, e) in &expected {
        if got.contains_key(&(*s, e.token.clone())) {
            delivered += 1;
        } else if e.expires_ms <= end_ms {
            expired += 1;
        } else {
            lost += 1;
        }
    }
    let mut injected: HashMap<&'static str, u64> = HashMap::new();
    for f in [env.mocks.apns.faults(), env.mocks.fcm().faults()] {
        let c = f.counts();
        for (k, v) in [
            ("http_503", &c.unavailable),
            ("http_429", &c.throttled),
            ("goaway", &c.goaways),
            ("connections_refused", &c.refused_connections),
            ("connections_dropped", &c.dropped_connections),
        ] {
            *injected.entry(k).or_default() += FaultCounts::get(v);
        }
    }
    let engine_proc = env.engine_proc();
    let engine_cpu_s = engine_cpu0
        .zip(engine_proc)
        .map(|(a, b)| (b.cpu_s - a.cpu_s).max(0.0));
    let stats = env.stats().await?;
    let engine = json!({
        "apns": stats["providers"]["apns"],
        "apns_voip": stats["providers"]["apns_voip"],
        "fcm": stats["providers"]["fcm"],
        "lanes": {"apns": stats["lanes"]["apns"], "fcm": stats["lanes"]["fcm"]},
    });
    let span = last.saturating_duration_since(q0).as_secs_f64().max(1e-3);
    let report = Report {
        scenario: "faults",
        users,
        messages_sent: messages,
        calls_sent: calls,
        pushes_expected: expected.len() as u64,
        pushes_delivered: delivered,
        duplicates,
        delivered_after_expiry: after_expiry,
        after_expiry_detail: late,
        expired,
        lost,
        api_errors: errors.api_total(),
        outage: if abrupt { "abrupt" } else { "graceful" },
        injected,
        engine,
        pushes_per_s: delivered as f64 / span,
        engine_cpu_s,
        engine_peak_rss_bytes: engine_proc.map(|p| p.peak_rss_bytes),
        driver_peak_rss_bytes: ProcStats::read(None).map_or(0, |p| p.peak_rss_bytes),
        wall_s: wall,
    };
    print(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    env.finish().await?;
    Ok(report)
}

fn print(r: &Report) {
    println!("\nFanfare faults report");
    println!("{}", "-".repeat(62));
    let rows = [
        ("users", r.users.to_string()),
        (
            "messages / calls sent",
            format!("{} / {}", r.messages_sent, r.calls_sent),
        ),
        ("outage", format!("2 s, {}", r.outage)),
        ("injected", format!("{:?}", r.injected)),
        ("pushes expected", r.pushes_expected.to_string()),
        ("pushes delivered", r.pushes_delivered.to_string()),
        ("duplicates", r.duplicates.to_string()),
        (
            "delivered after expiry",
            r.delivered_after_expiry.to_string(),
        ),
        ("expired undelivered (calls)", r.expired.to_string()),
        ("lost", r.lost.to_string()),
        ("api errors", r.api_errors.to_string()),
        ("pushes/s", format!("{:.0}", r.pushes_per_s)),
        (
            "engine CPU",
            r.engine_cpu_s.map_or("n/a".into(), |s| format!("{s:.2} s")),
        ),
        (
            "engine peak RSS",
            r.engine_peak_rss_bytes
                .map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        ),
        ("wall time", format!("{:.2} s", r.wall_s)),
    ];
    for (k, v) in rows {
        println!("{k:<32}{v}");
    }
    println!("{}", "-".repeat(62));
    println!(
        "{}: {} of {} expected pushes delivered, {} duplicates, {} after expiry, {} lost",
        if ok(r) { "OK" } else { "PROBLEMS" },
        r.pushes_delivered,
        r.pushes_expected,
        r.duplicates,
        r.delivered_after_expiry,
        r.lost
    );
}

fn ok(r: &Report) -> bool {
    r.lost == 0 && r.duplicates == 0 && r.delivered_after_expiry == 0 && r.api_errors == 0
}

pub fn exit_code(r: anyhow::Result<Report>) -> ExitCode {
    match r {
        Ok(r) if ok(&r) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fanfare-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
