//! `group`: one message to each of the groups of `--group-sizes` members (default 1k,
//! 100k and 1M), `--online-share` of them online (default 10%), every member with one
//! APNs device. Per group: API request → `202` (accept), API request → the last push
//! received by the mock APNs, pushes/s over that span, the engine's CPU per 1k pushes,
//! and the ceiling: the bare HTTP/2 client sending as many pushes with the same body
//! to the same mock with the engine's connections and streams in flight, right after,
//! and `h2load` (when on `PATH`) sending them with the engine's request head.
//!
//! Members are `u0 .. u<size>`, so the groups nest and the largest one decides how
//! many users are bound. Binding a million users through the API takes a while; the
//! progress line shows it.

use std::time::Duration;

use bytes::Bytes;
use fanfare::client::{request, MembersRequest};

use crate::ceiling;
use crate::progress::{Progress, Sent};
use crate::report::{self, GroupReport, Latency, Report};
use crate::scenarios::{bind_all, mark_online, Meter, Scenario};
use crate::setup::{apns_device, apns_token, online_rule, Env};
use crate::RunArgs;

/// Member ids per `POST /v1/groups/{id}/members` (well under the 1 MiB body limit).
const MEMBERS_PER_REQUEST: usize = 50_000;

pub async fn run(env: &Env, args: &RunArgs) -> anyhow::Result<Report> {
    let mut report = Report::new(Scenario::Group);
    let mut sizes = args.group_sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let users = *sizes.last().unwrap_or(&0);
    anyhow::ensure!(users > 0, "--group-sizes needs at least one size > 0");
    report.users = u64::from(users);
    let is_online = online_rule(args.online_share);
    let apns = &env.mocks.apns;

    eprintln!(
        "group: binding {users} users (one APNs device each), {:.0}% online",
        args.online_share * 100.0
    );
    let (acked, secs) = bind_all(
        env,
        users,
        1,
        |k| ("apns", apns_token(k)),
        &mut report.errors,
    )
    .await;
    report.binds_per_s = acked as f64 / secs;
    mark_online(env, users, is_online, &mut report.errors).await;

    for &size in &sizes {
        let members: Vec<String> = (0..size).map(|i| format!("u{i}")).collect();
        for chunk in members.chunks(MEMBERS_PER_REQUEST) {
            let add = MembersRequest {
                add: chunk.to_vec(),
                remove: Vec::new(),
            };
            let r = env.api.members(&format!("g{size}"), &add).await;
            report.errors.check(r);
        }
    }

    // Warm-up: one push through the engine opens its APNs connections; its body is the
    // ceiling client's first body and its token the ceiling's warm-up token.
    let warm_user = (0..users).find(|u| !is_online(*u)).unwrap_or(0);
    let push = request::push("group", "hello everyone", "warm-up");
    let warm = format!("lg-{}-warm", args.run_id);
    let m = request::message(warm, "driver", "peer", format!("u{warm_user}"), Some(push));
    let r = env.api.message(&m).await;
    let warm_targets = report
        .errors
        .check_message(r)
        .map_or(0, |a| a.targets as u64);
    apns.wait_for(
        warm_targets as usize,
        Duration::from_secs_f64(args.drain_timeout),
    )
    .await;
    let warm = apns.take_received();
    let warm_body = warm
        .first()
        .map(|p| Bytes::from(p.body.to_string()))
        .unwrap_or_else(|| Bytes::from_static(b"{\"aps\":{\"alert\":{\"title\":\"group\"}}}"));
    let (_, in_flight) = env.mocks.apns_limits();
    let client =
        ceiling::Client::to_mock_apns(&env.mocks, &apns_token(warm_user), warm_body).await?;
    apns.take_received();

    let mut all = report::histogram();
    let (mut fanout_s, mut ceiling_ok, mut ceiling_s) = (0.0, 0u64, 0.0);
    let (mut engine_cpu, mut driver_cpu, mut ceiling_cpu) = (Some(0.0), Some(0.0), Some(0.0));
    let h2load = ceiling::h2load::find();
    if h2load.is_none() {
        eprintln!("group: h2load is not on PATH: no reference figure (h2load_cpu_ms_per_1k_pushes is null)");
    }
    let (mut h2load_ok, mut h2load_cpu) = (0u64, 0.0);
    for &size in &sizes {
        let online = (0..size).filter(|i| is_online(*i)).count() as u64;
        eprintln!("group: one message to g{size} ({size} members, {online} online)");
        let before = apns.received_count();
        let meter = Meter::start(env);
        let sent = Sent::default();
        let progress = Progress::spawn(
            "fan-out",
            "messages sent",
            sent.clone(),
            Some(Box::new({
                let mocks = env.mocks.clone();
                move || mocks.apns.received_count().saturating_sub(before) as u64
            })),
        );
        let t0 = quanta::Instant::now();
        let mut push = request::push("group", "hello everyone", format!("g{size}"));
        push.badge_increment = (args.badge_increment > 0).then_some(args.badge_increment);
        let id = format!("lg-{}-g{size}", args.run_id);
        let m = request::message(id, "driver", "group", format!("g{size}"), Some(push));
        let r = env.api.message(&m).await;
        let accept_ms = t0.elapsed().as_secs_f64() * 1e3;
        sent.add(1);
        let targets = match report.errors.check_message(r) {
            Some(a) => {
                report.messages_sent += 1;
                a.targets as u64
            }
            None => 0,
        };
        report.pushes_expected += targets;
        // Collect as the pushes arrive, keeping only (device, time): the mock's full
        // records of a million pushes would take gigabytes. Bounded by the drain
        // timeout plus 1 s per 1,000 pushes (a million-member fan-out takes a while).
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs_f64(args.drain_timeout + targets as f64 / 1_000.0);
        let mut received: Vec<(Option<u32>, quanta::Instant)> =
            Vec::with_capacity(targets as usize);
        let mut first: Option<(Bytes, ceiling::Head)> = None;
        loop {
            let done = apns
                .wait_for(before + targets as usize, Duration::from_millis(100))
                .await;
            let batch = apns.take_received();
            if first.is_none() {
                first = batch
                    .first()
                    .map(|p| (Bytes::from(p.body.to_string()), ceiling::Head::of(p)));
            }
            received.extend(
                batch
                    .into_iter()
                    .map(|p| (apns_device(&p.token), p.received_at)),
            );
            if done || tokio::time::Instant::now() >= deadline {
                received.extend(
                    apns.take_received()
                        .into_iter()
                        .map(|p| (apns_device(&p.token), p.received_at)),
                );
                break;
            }
        }
        progress.finish().await;
        let cost = meter.stop(env);
        let delivered = received.len() as u64;
        let mut h = report::histogram();
        let mut last = t0;
        for &(device, at) in &received {
            last = last.max(at);
            let _ = h.record((at.saturating_duration_since(t0).as_micros() as u64).max(1));
            if device.is_some_and(is_online) {
                report.pushes_to_online_users += 1;
            }
        }
        let span = last.saturating_duration_since(t0).as_secs_f64().max(1e-6);
        eprintln!(
            "group: g{size} fan-out done, {delivered} pushes in {:.0} ms; now the reference clients",
            span * 1e3
        );
        let (ceiling, reference) = match first {
            Some((body, head)) => {
                let tokens: Vec<String> = received
                    .iter()
                    .filter_map(|r| r.0)
                    .map(apns_token)
                    .collect();
                drop(received);
                let discard = ceiling::Discard::spawn(env.mocks.clone());
                let b = client
                    .blast(&tokens, body.clone(), delivered, in_flight)
                    .await?;
                discard.finish().await;
                ceiling_ok += b.ok;
                ceiling_s += b.secs;
                ceiling_cpu = ceiling_cpu.zip(b.cpu_s).map(|(a, c)| a + c);
                let reference = match &h2load {
                    Some(bin) => Some(
                        ceiling::reference(bin, &env.mocks, &head, &tokens, &body, delivered)
                            .await?,
                    ),
                    None => None,
                };
                if let Some(r) = reference {
                    h2load_ok += r.ok;
                    h2load_cpu += r.cpu_s;
                }
                (
                    Some((b.pushes_per_s(), b.cpu_ms_per_1k())),
                    reference.and_then(|r| r.cpu_ms_per_1k()),
                )
            }
            None => (None, None),
        };
        fanout_s += span;
        all.add(&h)?;
        engine_cpu = engine_cpu.zip(cost.engine_cpu_s).map(|(a, b)| a + b);
        driver_cpu = driver_cpu.zip(cost.driver_cpu_s).map(|(a, b)| a + b);
        report.pushes_delivered += delivered;
        report.groups.push(GroupReport {
            members: u64::from(size),
            online_members: online,
            pushes_expected: targets,
            pushes_delivered: delivered,
            api_accept_ms: accept_ms,
            to_last_push_ms: span * 1e3,
            pushes_per_s: delivered as f64 / span,
            ceiling_pushes_per_s: ceiling.map(|c| c.0),
            ceiling_cpu_ms_per_1k_pushes: ceiling.and_then(|c| c.1),
            h2load_cpu_ms_per_1k_pushes: reference,
            engine_cpu_ms_per_1k_pushes: cost.engine_ms_per_1k(delivered),
            latency_us: Latency::of(&h),
        });
    }
    report.errors.lost = report
        .pushes_expected
        .saturating_sub(report.pushes_delivered);
    report
        .per_provider
        .insert("apns".into(), report.pushes_delivered);
    report.pushes_per_s = report.pushes_delivered as f64 / fanout_s.max(1e-6);
    if ceiling_ok > 0 {
        let c = ceiling_ok as f64 / ceiling_s.max(1e-6);
        report.ceiling_pushes_per_s = Some(c);
        report.engine_to_ceiling = Some(report.pushes_per_s / c);
        report.ceiling_cpu_ms_per_1k_pushes = super::per_1k(ceiling_cpu, ceiling_ok);
    }
    report.engine_cpu_s = engine_cpu;
    report.engine_cpu_ms_per_1k_pushes = super::per_1k(engine_cpu, report.pushes_delivered);
    report.driver_cpu_ms_per_1k_pushes = super::per_1k(driver_cpu, report.pushes_delivered);
    report.set_h2load(h2load.is_some(), super::per_1k(Some(h2load_cpu), h2load_ok));
    report.set_latency(all);
    Ok(report)
}
