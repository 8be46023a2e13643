//! `peer`, `call`, `vendors` and `mixed`: users with one device each (`--users`, 60%
//! APNs and 40% FCM, or round-robin over all eight vendors for `vendors`),
//! `--online-share` of them online, then:
//!
//! - group (`mixed`, `vendors`): one message to a group of all users;
//! - peer (`mixed`, `peer`): `--rate` messages/s for `--duration` s, open loop on a
//!   fixed schedule, latency taken from each message's scheduled send time
//!   (coordinated omission corrected); the driver's own lateness (send left vs
//!   schedule) is reported apart, and so is the latency from the actual send;
//! - presence churn (`mixed`): online/offline events for users outside the bound
//!   range (they have no devices, so the push expectations stay exact) beside the
//!   peer traffic;
//! - call (`mixed`, `call`): 200 call invitations, one invitee each.
//!
//! Every push is attributed to its message by the `payload` sequence number (which
//! gives its send time and traffic class: each class's latency is reported apart as
//! well as together), and to its user by its device token. At the end the ceiling client sends as many APNs
//! pushes as the engine delivered (at least 5,000) to the same mock, for reference.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use fanfare::client::{request, Client, MembersRequest, PresenceEvent};

use crate::ceiling;
use crate::progress::{Progress, Sent};
use crate::report::{self, Class, PresenceReport, Report};
use crate::scenarios::{bind_all, mark_online, Meter, Scenario};
use crate::setup::Mocks;
use crate::setup::{apns_device, apns_token, fcm_device, fcm_token, online_rule, Env};
use crate::RunArgs;

pub async fn run(env: &Env, args: &RunArgs) -> anyhow::Result<Report> {
    let mut report = Report::new(args.scenario);
    report.users = u64::from(args.users);
    let is_online = online_rule(args.online_share);
    let owners = bind_users(env, args, &mut report).await;
    mark_online(env, args.users, is_online, &mut report.errors).await;

    let mocks = &env.mocks;
    let before = mocks.received_total();
    let meter = Meter::start(env);
    let mut phase = Phase {
        env,
        args,
        sent: Sent::default(),
        sent_at: Vec::new(),
        left_at: Vec::new(),
        first_peer: 0,
    };
    let progress = Progress::spawn(
        args.scenario.name(),
        "requests sent",
        phase.sent.clone(),
        Some(Box::new({
            let mocks = mocks.clone();
            move || mocks.received_total().saturating_sub(before)
        })),
    );
    if matches!(args.scenario, Scenario::Mixed | Scenario::Vendors) {
        phase.group(&mut report).await;
    }
    if matches!(args.scenario, Scenario::Mixed | Scenario::Peer) {
        phase.peer(&mut report).await?;
    }
    if matches!(args.scenario, Scenario::Mixed | Scenario::Call) {
        phase.calls(&mut report).await;
    }
    // Drain: wait for every expected push, bounded by --drain-timeout.
    let drain_deadline = Duration::from_secs_f64(args.drain_timeout);
    let drain_start = quanta::Instant::now();
    while mocks.received_total() - before < report.pushes_expected
        && drain_start.elapsed() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    progress.finish().await;
    let cost = meter.stop(env);

    let delivered = mocks.received_total() - before;
    report.pushes_delivered = delivered;
    let apns_pushes = attribute(mocks, &phase, &owners, is_online, &mut report);
    report.errors.lost = report.pushes_expected.saturating_sub(delivered);
    report.engine_cpu_s = cost.engine_cpu_s;
    report.engine_cpu_ms_per_1k_pushes = cost.engine_ms_per_1k(delivered);
    report.driver_cpu_ms_per_1k_pushes = cost.driver_ms_per_1k(delivered);
    measure_ceiling(mocks, &apns_pushes, &mut report).await?;
    Ok(report)
}

/// Bind one device per user: 60% APNs, 40% FCM, or for `vendors` round-robin over
/// the eight vendors. Returns the owner of each OEM token (or Web Push endpoint).
async fn bind_users(env: &Env, args: &RunArgs, report: &mut Report) -> HashMap<String, u32> {
    let users = args.users;
    let mut owners: HashMap<String, u32> = HashMap::new();
    let mut vendor_bind: Vec<(&'static str, String)> = Vec::new();
    if let Some(v) = &env.mocks.vendors {
        eprintln!(
            "setup: binding {users} users round-robin over apns, fcm, huawei, honor, xiaomi, oppo, vivo, webpush, {:.0}% online",
            args.online_share * 100.0
        );
        for i in 0..users {
            let (provider, token, key) = match i % 8 {
                2 => (
                    "huawei",
                    format!("IQAAAACy0{i:010}{}", "kX_-".repeat(30)),
                    None,
                ),
                3 => (
                    "honor",
                    format!("BQAAAACy0{i:010}{}", "hN_-".repeat(30)),
                    None,
                ),
                4 => ("xiaomi", format!("{i:010}{}", "Ab+/".repeat(14)), None),
                5 => ("oppo", format!("CN_{i:010}{}", "ab12".repeat(6)), None),
                6 => ("vivo", format!("{i:010}{}", "7".repeat(13)), None),
                7 => {
                    let sub = v.webpush.subscribe();
                    ("webpush", sub.to_json(), Some(sub.endpoint))
                }
                _ => ("", String::new(), None),
            };
            if !provider.is_empty() {
                owners.insert(key.unwrap_or_else(|| token.clone()), i);
            }
            vendor_bind.push((provider, token));
        }
    } else {
        eprintln!(
            "setup: binding {users} users (60% APNs, 40% FCM), {:.0}% online",
            args.online_share * 100.0
        );
    }
    let (acked, secs) = bind_all(
        env,
        users,
        1,
        |i| match vendor_bind.get(i as usize) {
            Some((p, t)) if !p.is_empty() => (*p, t.clone()),
            Some(_) if i % 8 == 0 => ("apns", apns_token(i)),
            Some(_) => ("fcm", fcm_token(i)),
            None => super::bind::apns_fcm_mix(i),
        },
        &mut report.errors,
    )
    .await;
    report.binds_per_s = acked as f64 / secs;
    owners
}

/// The measured phase's traffic.
struct Phase<'a> {
    env: &'a Env,
    args: &'a RunArgs,
    sent: Sent,
    /// Payload sequence number → (scheduled) send instant and traffic class.
    sent_at: Vec<(quanta::Instant, Class)>,
    /// Peer messages: payload sequence number − the first peer's → when the send
    /// actually left (its task started writing the request).
    left_at: Vec<Option<quanta::Instant>>,
    /// The first peer message's payload sequence number.
    first_peer: usize,
}

impl Phase<'_> {
    /// One message to a group of every user.
    async fn group(&mut self, report: &mut Report) {
        let (env, users) = (self.env, self.args.users);
        let members: Vec<String> = (0..users).map(|i| format!("u{i}")).collect();
        for chunk in members.chunks(50_000) {
            let add = MembersRequest {
                add: chunk.to_vec(),
                remove: Vec::new(),
            };
            let r = env.api.members("lg-all", &add).await;
            report.errors.check(r);
        }
        eprintln!("group: one message to a group of {users}");
        let seq = self.sent_at.len();
        self.sent_at.push((quanta::Instant::now(), Class::Group));
        let mut push = request::push("group", "hello everyone", seq.to_string());
        if self.args.scenario == Scenario::Mixed {
            // The main job exercises the API 1.1 options: a per-recipient badge, a
            // sound, a collapse id and the rig's `chat` rule set.
            push.badge_increment = Some(1);
            push.sound = Some("msg.caf".into());
            push.collapse_id = Some("lg-all".into());
            push.resources_id = Some("chat".into());
        }
        let id = format!("lg-{}-group", self.args.run_id);
        let m = request::message(id, "driver", "group", "lg-all", Some(push));
        let r = env.api.message(&m).await;
        self.sent.add(1);
        if let Some(a) = report.errors.check_message(r) {
            report.pushes_expected += a.targets as u64;
            report.messages_sent += 1;
        }
    }

    /// Open-loop peer messages (and, in `mixed`, presence churn beside them).
    async fn peer(&mut self, report: &mut Report) -> anyhow::Result<()> {
        let (env, args, users) = (self.env, self.args, self.args.users);
        let churn = (args.scenario == Scenario::Mixed).then(|| {
            tokio::spawn(churn(
                env.api.clone(),
                users,
                Duration::from_secs_f64(args.duration),
            ))
        });
        let total = (args.duration * f64::from(args.rate)).round() as u64;
        eprintln!("peer: {total} messages at {} msg/s, open loop", args.rate);
        let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
        let mixed = args.scenario == Scenario::Mixed;
        let first_seq = self.sent_at.len();
        let t0 = quanta::Instant::now() + Duration::from_millis(10);
        self.sent_at
            .extend((0..total).map(|k| (t0 + interval.mul_f64(k as f64), Class::Peer)));
        let mut tasks = tokio::task::JoinSet::new();
        let tokio_t0 = tokio::time::Instant::now() + Duration::from_millis(10);
        for k in 0..total {
            tokio::time::sleep_until(tokio_t0 + interval.mul_f64(k as f64)).await;
            let api = env.api.clone();
            let to = (k as u32).wrapping_mul(2_654_435_761) % users;
            let seq = first_seq + k as usize;
            let id = format!("lg-{}-peer-{k}", args.run_id);
            tasks.spawn(async move {
                let mut push = request::push("peer", "hi", seq.to_string());
                if mixed {
                    push.sound = Some("msg.caf".into());
                    push.collapse_id = Some(format!("driver-u{to}"));
                    push.resources_id = Some("chat".into());
                }
                let m = request::message(id, "driver", "peer", format!("u{to}"), Some(push));
                let left = quanta::Instant::now();
                (k, left, api.message(&m).await)
            });
            self.sent.add(1);
        }
        // How late each send left against its schedule: the driver's own share of
        // the latency (a late timer, a busy runtime), told apart from the engine's.
        let mut lateness = report::histogram();
        self.left_at = vec![None; total as usize];
        while let Some(r) = tasks.join_next().await {
            let (k, left, r) = r?;
            let scheduled = self.sent_at[first_seq + k as usize].0;
            let _ = lateness
                .record((left.saturating_duration_since(scheduled).as_micros() as u64).max(1));
            self.left_at[k as usize] = Some(left);
            if let Some(a) = report.errors.check_message(r) {
                report.pushes_expected += a.targets as u64;
                report.messages_sent += 1;
            }
        }
        self.first_peer = first_seq;
        report.driver_lateness_ms = report::DriverLateness::of(&lateness);
        if let Some(churn) = churn {
            let (events, applied, secs, errors) = churn.await?;
            report.errors.api_status_4xx += errors.api_status_4xx;
            report.errors.api_status_5xx += errors.api_status_5xx;
            report.errors.api_transport += errors.api_transport;
            report.presence = Some(PresenceReport {
                events_sent: events,
                events_applied: applied,
                events_per_s: applied as f64 / secs.max(1e-6),
                batch: CHURN_BATCH,
                session_ttl_s: CHURN_TTL_S,
                engine_cpu_us_per_event: None,
                online_users_at_end: None,
            });
        }
        Ok(())
    }

    /// 200 call invitations, one invitee each, one after the other.
    async fn calls(&mut self, report: &mut Report) {
        let (env, users) = (self.env, self.args.users);
        let n = 200.min(users);
        eprintln!("call: {n} call invitations");
        for c in 0..n {
            let seq = self.sent_at.len();
            self.sent_at.push((quanta::Instant::now(), Class::Call));
            let invitee = (c * 7919) % users;
            let push = request::push("call", "ring", seq.to_string());
            let id = format!("lg-{}-call-{c}", self.args.run_id);
            let invitees = vec![format!("u{invitee}")];
            let r = env
                .api
                .call(&request::call(id, "driver", invitees, 60, Some(push)))
                .await;
            self.sent.add(1);
            if let Some(a) = report.errors.check(r) {
                report.pushes_expected += a.targets as u64;
                report.calls_sent += 1;
            }
        }
    }
}

/// Attribute every received push to its message (latency from `sent_at`, all together
/// and by traffic class) and its user (online check); fills latency, per-provider
/// counts and pushes/s (of `report.pushes_delivered`). Returns the APNs pushes, for
/// the ceiling client.
fn attribute(
    mocks: &Mocks,
    phase: &Phase<'_>,
    owners: &HashMap<String, u32>,
    is_online: impl Fn(u32) -> bool,
    report: &mut Report,
) -> Vec<fanfare_loadgen::mock::apns::ApnsPush> {
    let sent_at = &phase.sent_at[..];
    let mut hist = report::histogram();
    let mut by_class = Class::ALL.map(|_| report::histogram());
    let mut from_send = report::histogram();
    let mut last: Option<quanta::Instant> = None;
    let mut to_online = 0;
    let mut record = |payload: Option<&str>, user: Option<u32>, at: quanta::Instant| {
        if user.is_some_and(&is_online) {
            to_online += 1;
        }
        let Some(seq) = payload.and_then(|p| p.parse::<usize>().ok()) else {
            return;
        };
        let Some(&(t, class)) = sent_at.get(seq) else {
            return;
        };
        let us = (at.saturating_duration_since(t).as_micros() as u64).max(1);
        let _ = hist.record(us);
        let _ = by_class[class as usize].record(us);
        let left = seq
            .checked_sub(phase.first_peer)
            .and_then(|k| phase.left_at.get(k).copied().flatten());
        if let Some(left) = left.filter(|_| class == Class::Peer) {
            let _ =
                from_send.record((at.saturating_duration_since(left).as_micros() as u64).max(1));
        }
        last = Some(last.map_or(at, |l: quanta::Instant| l.max(at)));
    };
    let apns_pushes = mocks.apns.take_received();
    for p in &apns_pushes {
        record(
            p.body["payload"].as_str(),
            apns_device(&p.token),
            p.received_at,
        );
    }
    for p in mocks.fcm().take_received() {
        record(
            p.message["data"]["payload"].as_str(),
            fcm_device(&p.token),
            p.received_at,
        );
    }
    if let Some(v) = &mocks.vendors {
        for p in v.received() {
            record(
                p.payload.as_deref(),
                owners.get(&p.token).copied(),
                p.received_at,
            );
        }
    }
    report.pushes_to_online_users += to_online;
    report
        .per_provider
        .insert("apns".into(), mocks.apns.received_count() as u64);
    report
        .per_provider
        .insert("fcm".into(), mocks.fcm().received_count() as u64);
    if let Some(v) = &mocks.vendors {
        for (name, n) in v.counts() {
            report.per_provider.insert(name.into(), n as u64);
        }
    }
    let span = match (sent_at.iter().map(|s| s.0).min(), last) {
        (Some(f), Some(l)) => l.saturating_duration_since(f).as_secs_f64().max(1e-3),
        _ => 1.0,
    };
    report.pushes_per_s = report.pushes_delivered as f64 / span;
    report.set_latency(hist);
    if !from_send.is_empty() {
        report.peer_latency_from_send_us = Some(report::Latency::of(&from_send));
    }
    for (class, h) in Class::ALL.into_iter().zip(by_class) {
        if sent_at.iter().any(|s| s.1 == class) {
            report.set_class_latency(class, h);
        }
    }
    apns_pushes
}

/// The ceiling client, for reference: as many APNs pushes as the engine delivered
/// (at least 5,000) to the same mock, with the body of the engine's first APNs push.
async fn measure_ceiling(
    mocks: &std::sync::Arc<Mocks>,
    apns_pushes: &[fanfare_loadgen::mock::apns::ApnsPush],
    report: &mut Report,
) -> anyhow::Result<()> {
    let Some(first) = apns_pushes.first() else {
        return Ok(());
    };
    let tokens: Vec<String> = apns_pushes.iter().map(|p| p.token.clone()).collect();
    let body = Bytes::from(first.body.to_string());
    let total = (tokens.len() as u64).max(5_000);
    let (_, in_flight) = mocks.apns_limits();
    eprintln!("ceiling: {total} pushes from the bare HTTP/2 client to the same mock APNs");
    let client = ceiling::Client::to_mock_apns(mocks, &tokens[0], body.clone()).await?;
    let discard = ceiling::Discard::spawn(mocks.clone());
    let b = client.blast(&tokens, body, total, in_flight).await?;
    discard.finish().await;
    report.ceiling_pushes_per_s = Some(b.pushes_per_s());
    report.ceiling_cpu_ms_per_1k_pushes = b.cpu_ms_per_1k();
    Ok(())
}

const CHURN_BATCH: usize = 200;
const CHURN_TTL_S: u64 = 30;

/// Presence churn of users `u<users> .. u<2 × users>` (no devices): a batch of 200
/// events every 100 ms for `duration`. Returns (events sent, applied, seconds, errors).
async fn churn(api: Client, users: u32, duration: Duration) -> (u64, u64, f64, report::Errors) {
    let mut errors = report::Errors::default();
    let (mut events, mut applied) = (0u64, 0u64);
    let t0 = quanta::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0u64;
    while t0.elapsed() < duration {
        tick.tick().await;
        let batch: Vec<_> = (0..CHURN_BATCH as u64)
            .map(|j| {
                let k = n * CHURN_BATCH as u64 + j;
                let u = u64::from(users) + (k.wrapping_mul(2_654_435_761) % u64::from(users));
                PresenceEvent {
                    ttl_s: Some(CHURN_TTL_S),
                    ..request::session(&format!("u{u}"), "c", k % 3 != 0)
                }
            })
            .collect();
        n += 1;
        events += CHURN_BATCH as u64;
        let r = api.presence(&request::presence(batch)).await;
        if let Some(v) = errors.check(r) {
            applied += v.applied as u64;
        }
    }
    (events, applied, t0.elapsed().as_secs_f64(), errors)
}
