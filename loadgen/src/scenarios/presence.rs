//! `presence`: churn of online/offline events through `POST /v1/presence`, in batches
//! of `--presence-batch` events, 8 requests in flight, for `--duration` seconds.
//! Each event picks one of `--users` users and one of two sessions at random: 60% of
//! events report it online with a TTL of `--session-ttl` seconds (the long-connection
//! timeout), 40% offline. Reports events applied per second and the engine's CPU per
//! event.

use std::time::Duration;

use fanfare::client::{request, PresenceEvent, PresenceRequest};
use rand::{Rng, SeedableRng};

use crate::progress::{Progress, Sent};
use crate::report::{PresenceReport, Report};
use crate::scenarios::{Meter, Scenario};
use crate::setup::Env;
use crate::RunArgs;

const IN_FLIGHT: usize = 8;

fn batch(rng: &mut impl Rng, users: u32, size: usize, ttl_s: u64) -> PresenceRequest {
    let events = (0..size)
        .map(|_| {
            let u = rng.gen_range(0..users);
            let session = if rng.gen_bool(0.5) { "a" } else { "b" };
            if rng.gen_bool(0.6) {
                PresenceEvent {
                    ttl_s: Some(ttl_s),
                    ..request::session(&format!("u{u}"), session, true)
                }
            } else {
                request::session(&format!("u{u}"), session, false)
            }
        })
        .collect();
    request::presence(events)
}

pub async fn run(env: &Env, args: &RunArgs) -> anyhow::Result<Report> {
    let mut report = Report::new(Scenario::Presence);
    let users = args.users;
    report.users = u64::from(users);
    let size = args.presence_batch;
    eprintln!(
        "presence: {:.1} s of churn over {users} users, {size} events per request, {IN_FLIGHT} in flight, TTL {} s",
        args.duration, args.session_ttl
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let meter = Meter::start(env);
    let sent = Sent::default();
    let progress = Progress::spawn("presence", "events applied", sent.clone(), None);
    let t0 = quanta::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration);
    let mut tasks = tokio::task::JoinSet::new();
    let (mut events_sent, mut applied) = (0u64, 0u64);
    loop {
        let open = tokio::time::Instant::now() < deadline;
        if open && tasks.len() < IN_FLIGHT {
            let body = batch(&mut rng, users, size, args.session_ttl);
            let api = env.api.clone();
            events_sent += size as u64;
            tasks.spawn(async move { api.presence(&body).await });
            continue;
        }
        let Some(r) = tasks.join_next().await else {
            break;
        };
        if let Some(v) = report.errors.check(r?) {
            let n = v.applied as u64;
            applied += n;
            sent.add(n);
        }
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-6);
    progress.finish().await;
    let cost = meter.stop(env);
    let stats = env.stats().await?;
    report.engine_cpu_s = cost.engine_cpu_s;
    report.presence = Some(PresenceReport {
        events_sent,
        events_applied: applied,
        events_per_s: applied as f64 / secs,
        batch: size,
        session_ttl_s: args.session_ttl,
        engine_cpu_us_per_event: cost
            .engine_cpu_s
            .filter(|_| applied > 0)
            .map(|s| s * 1e6 / applied as f64),
        online_users_at_end: stats["online_users"].as_u64(),
    });
    Ok(report)
}
