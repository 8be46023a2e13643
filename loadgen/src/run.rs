//! One load run: mock vendors + an in-process engine on loopback, a scenario driven
//! through the engine's public HTTP API over h2c, and the report.
//!
//! Latency is measured per push from the moment the driver sent the API request to
//! the moment the mock vendor received the push; the driver and the mocks share one
//! `quanta` clock. Peer traffic is open-loop on a fixed schedule, and latency is taken
//! from each message's *scheduled* send time, so a stalled engine cannot hide its
//! queueing delay (coordinated omission is corrected).

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use fanfare_loadgen::mock::apns::{self, Credentials, MockApns};
use fanfare_loadgen::mock::fcm::{self, MockFcm};
use fanfare_loadgen::mock::tls::TestCa;
use fanfare_loadgen::mock::vendor::{self, VendorPush};
use fanfare_loadgen::mock::{honor, huawei, oppo, vivo, webpush, xiaomi};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::RunArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Mixed,
    Peer,
    Group,
    Call,
    /// Users spread over all eight vendors (APNs, FCM, Huawei, Honor, Xiaomi, OPPO,
    /// vivo, Web Push), one group message to all of them.
    Vendors,
    /// Peer messages and short calls while the mocks inject 503s, 429s with
    /// Retry-After, GOAWAYs and a 2 s outage; checks exactly-once (`faults.rs`).
    Faults,
}

/// The Chinese OEM and Web Push mocks of the `vendors` scenario.
struct VendorMocks {
    huawei: huawei::MockHuawei,
    honor: honor::MockHonor,
    xiaomi: xiaomi::MockXiaomi,
    oppo: oppo::MockOppo,
    vivo: vivo::MockVivo,
    webpush: webpush::MockWebpush,
}

impl VendorMocks {
    /// (provider, pushes received) per mock.
    fn counts(&self) -> [(&'static str, usize); 6] {
        [
            ("huawei", self.huawei.received_count()),
            ("honor", self.honor.received_count()),
            ("xiaomi", self.xiaomi.received_count()),
            ("oppo", self.oppo.received_count()),
            ("vivo", self.vivo.received_count()),
            ("webpush", self.webpush.received_count()),
        ]
    }

    fn received(&self) -> Vec<VendorPush> {
        let mut all = self.huawei.received();
        all.extend(self.honor.received());
        all.extend(self.xiaomi.received());
        all.extend(self.oppo.received());
        all.extend(self.vivo.received());
        all.extend(self.webpush.received());
        all
    }

    fn rejections(&self) -> usize {
        self.huawei.rejections().len()
            + self.honor.rejections().len()
            + self.xiaomi.rejections().len()
            + self.oppo.rejections().len()
            + self.vivo.rejections().len()
            + self.webpush.rejections().len()
    }
}

const TOPIC: &str = "com.example.chat";

pub(crate) type Api = Client<HttpConnector, Full<Bytes>>;

pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) apns: MockApns,
    pub(crate) fcm: MockFcm,
    vendors: Option<VendorMocks>,
    pub(crate) engine: fanfare::Running,
    pub(crate) api: Api,
    pub(crate) base: String,
    /// What the `ceiling` client needs to reach the same mock APNs.
    ca_file: std::path::PathBuf,
    creds: Credentials,
}

const PACKAGE: &str = "com.example.chat";

pub(crate) async fn setup(with_vendors: bool) -> anyhow::Result<Env> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::generate()?;
    let ca_file = ca.write_ca_file(dir.path())?;
    let creds = Credentials::generate()?;
    let key_file = creds.write_key_file(dir.path())?;
    let apns = MockApns::start(
        &ca,
        &creds,
        apns::Config {
            topic: TOPIC.into(),
            record_limit: 2_000_000,
            ..apns::Config::default()
        },
    )?;
    let fcm = MockFcm::start(
        &ca,
        fcm::Config {
            record_limit: 2_000_000,
            ..fcm::Config::default()
        },
    )?;
    let sa_file = fcm.write_service_account(dir.path())?;
    let mut config = fanfare::config::Config::default();
    config.api.listen = "127.0.0.1:0".into();
    config.storage.dir = dir.path().join("data");
    config.storage.durability = fanfare::config::Durability::None;
    config.messages.queue_capacity = 1_000_000;
    config.apns.key_file = Some(key_file);
    config.apns.key_id = Some(creds.key_id.clone());
    config.apns.team_id = Some(creds.team_id.clone());
    config.apns.topic = Some(TOPIC.into());
    config.apns.endpoint_production = apns.url();
    config.apns.endpoint_sandbox = apns.url();
    config.apns.ca_file = Some(ca_file.clone());
    config.fcm.service_account_file = Some(sa_file);
    config.fcm.endpoint = fcm.url();
    config.fcm.ca_file = Some(ca_file.clone());
    let vendors = if with_vendors {
        let common = || vendor::Common {
            record_limit: 2_000_000,
            ..vendor::Common::default()
        };
        let m = VendorMocks {
            huawei: huawei::start(&ca, common())?,
            honor: honor::start(&ca, common())?,
            xiaomi: xiaomi::start(&ca, PACKAGE, common())?,
            oppo: oppo::start(&ca, common())?,
            vivo: vivo::start(&ca, common())?,
            webpush: webpush::start(&ca, common())?,
        };
        use fanfare::config::Secret;
        let ca = Some(ca_file.clone());
        let (h, o, x, p, v) = (
            m.huawei.vendor(),
            m.honor.vendor(),
            m.xiaomi.vendor(),
            m.oppo.vendor(),
            m.vivo.vendor(),
        );
        config.huawei.app_id = Some(h.app_id.clone());
        config.huawei.client_secret = Some(Secret::new(h.client_secret.clone()));
        config.huawei.endpoint = m.huawei.url();
        config.huawei.token_endpoint = m.huawei.token_endpoint();
        config.huawei.ca_file = ca.clone();
        config.honor.app_id = Some(o.app_id.clone());
        config.honor.client_id = Some(o.client_id.clone());
        config.honor.client_secret = Some(Secret::new(o.client_secret.clone()));
        config.honor.endpoint = m.honor.url();
        config.honor.token_endpoint = m.honor.token_endpoint();
        config.honor.ca_file = ca.clone();
        config.xiaomi.app_secret = Some(Secret::new(x.app_secret.clone()));
        config.xiaomi.package_name = Some(PACKAGE.into());
        config.xiaomi.endpoint = m.xiaomi.url();
        config.xiaomi.ca_file = ca.clone();
        config.oppo.app_key = Some(p.app_key.clone());
        config.oppo.master_secret = Some(Secret::new(p.master_secret.clone()));
        config.oppo.endpoint = m.oppo.url();
        config.oppo.endpoint_intl = m.oppo.url();
        config.oppo.ca_file = ca.clone();
        config.vivo.app_id = Some(v.app_id.to_string());
        config.vivo.app_key = Some(v.app_key.clone());
        config.vivo.app_secret = Some(Secret::new(v.app_secret.clone()));
        config.vivo.endpoint = m.vivo.url();
        config.vivo.ca_file = ca.clone();
        let vapid = dir.path().join("vapid.pem");
        std::fs::write(&vapid, webpush::generate_vapid_key_pem()?)?;
        config.webpush.vapid_private_key_file = Some(vapid);
        config.webpush.subject = Some("mailto:loadgen@example.com".into());
        config.webpush.ca_file = ca;
        Some(m)
    } else {
        None
    };
    let engine = fanfare::start(config).await.context("start engine")?;
    let base = format!("http://{}", engine.local_addr());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let api = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector);
    Ok(Env {
        _dir: dir,
        apns,
        fcm,
        vendors,
        engine,
        api,
        base,
        ca_file,
        creds,
    })
}

pub(crate) async fn call(
    api: &Api,
    method: http::Method,
    url: String,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = api.request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

pub(crate) fn apns_token(i: u32) -> String {
    format!("{i:08x}{}", "5e".repeat(28))
}

pub(crate) fn fcm_token(i: u32) -> String {
    format!("lg{i}:APA91b{}", "Qz-_".repeat(34))
}

/// What the run measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub users: u32,
    pub bindings: u64,
    pub binds_per_s: f64,
    pub messages_sent: u64,
    pub calls_sent: u64,
    pub pushes_expected: u64,
    pub pushes_delivered: u64,
    /// Pushes each vendor mock accepted, by provider name.
    pub per_provider: std::collections::BTreeMap<String, u64>,
    pub pushes_to_online_users: u64,
    pub pushes_per_s: f64,
    pub api_errors: u64,
    pub vendor_rejections: u64,
    pub latency_us: Latency,
    pub process_cpu_ms_per_1k_pushes: f64,
    pub peak_rss_bytes: u64,
    pub wall_s: f64,
    /// `group` only: APNs pushes/s the engine delivered during the fan-out (API accept →
    /// last APNs receipt).
    pub engine_apns_pushes_per_s: Option<f64>,
    /// `group` only: APNs pushes/s of a bare HTTP/2 client (the engine's pool alone)
    /// sending the same bodies to the same mock with the same connections, same run.
    pub ceiling_pushes_per_s: Option<f64>,
}

impl Report {
    pub fn lost(&self) -> u64 {
        self.pushes_expected.saturating_sub(self.pushes_delivered)
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// CPU seconds (user + system) of this process, from /proc.
pub(crate) fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state(0) ... utime(11) stime(12), in clock ticks (100/s).
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `is_online(i)` for the users a scenario reports online: every `1/share`-th one.
pub(crate) fn online_rule(share: f64) -> impl Fn(u32) -> bool + Copy {
    let every = if share > 0.0 {
        (1.0 / share).round() as u32
    } else {
        u32::MAX
    };
    move |i: u32| every != u32::MAX && i % every == 0
}

/// Bind device `d<i>` of user `u<i>` for every `i < users`, 64 requests in flight;
/// `device_of(i)` gives the provider and token. Returns the failed requests.
pub(crate) async fn bind_all(
    env: &Env,
    users: u32,
    device_of: impl Fn(u32) -> (&'static str, String),
) -> u64 {
    use futures::StreamExt;
    let mut errors = 0;
    let mut binds = futures::stream::iter(0..users)
        .map(|i| {
            let (api, base) = (env.api.clone(), env.base.clone());
            let (provider, token) = device_of(i);
            async move {
                call(
                    &api,
                    http::Method::PUT,
                    format!("{base}/v1/push-ids/d{i}"),
                    json!({"user_id": format!("u{i}"), "provider": provider, "token": token}),
                )
                .await
            }
        })
        .buffer_unordered(64);
    while let Some(r) = binds.next().await {
        if r.map(|(s, _)| s != 200).unwrap_or(true) {
            errors += 1;
        }
    }
    errors
}

/// Report every user `i < users` with `is_online(i)` online (one session, no TTL).
/// Returns the failed requests.
pub(crate) async fn mark_online(
    env: &Env,
    users: u32,
    is_online: impl Fn(u32) -> bool,
) -> anyhow::Result<u64> {
    let online: Vec<Value> = (0..users)
        .filter(|i| is_online(*i))
        .map(|i| json!({"user_id": format!("u{i}"), "session_id": "lg", "online": true}))
        .collect();
    let mut errors = 0;
    for chunk in online.chunks(10_000) {
        let (s, _) = call(
            &env.api,
            http::Method::POST,
            format!("{}/v1/presence", env.base),
            json!({"events": chunk}),
        )
        .await?;
        if s != 200 {
            errors += 1;
        }
    }
    Ok(errors)
}

pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    if args.users == 0 || !(0.0..1.0).contains(&args.online_share) {
        bail!("--users must be > 0 and --online-share in [0, 1)");
    }
    let env = setup(args.scenario == Scenario::Vendors).await?;
    let started = quanta::Instant::now();
    let users = args.users;
    let is_online = online_rule(args.online_share);
    let mut api_errors = 0u64;
    let spread = args.scenario == Scenario::Vendors;
    if spread {
        eprintln!(
            "setup: binding {users} users round-robin over apns, fcm, huawei, honor, xiaomi, oppo, vivo, webpush, {:.0}% online",
            args.online_share * 100.0
        );
    } else {
        eprintln!(
            "setup: binding {users} users (60% APNs, 40% FCM), {:.0}% online",
            args.online_share * 100.0
        );
    }
    // Device token (or Web Push endpoint) → user, for the vendor mocks' pushes.
    let mut vendor_owner: std::collections::HashMap<String, u32> = Default::default();
    let mut vendor_bind: Vec<(&'static str, String)> = Vec::new();
    if let Some(v) = &env.vendors {
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
                vendor_owner.insert(key.unwrap_or_else(|| token.clone()), i);
            }
            vendor_bind.push((provider, token));
        }
    }

    // 1. Bind every user's device, 64 requests in flight.
    let bind_start = quanta::Instant::now();
    api_errors += bind_all(&env, users, |i| match vendor_bind.get(i as usize) {
        Some((p, t)) if !p.is_empty() => (*p, t.clone()),
        Some(_) if i % 8 == 0 => ("apns", apns_token(i)),
        Some(_) => ("fcm", fcm_token(i)),
        None if i % 5 < 3 => ("apns", apns_token(i)),
        None => ("fcm", fcm_token(i)),
    })
    .await;
    let binds_per_s = f64::from(users) / bind_start.elapsed().as_secs_f64();
    api_errors += mark_online(&env, users, is_online).await?;

    // seq → scheduled send instant, to attribute every received push.
    let mut sent_at: Vec<quanta::Instant> = Vec::new();
    let mut expected = 0u64;
    let mut messages = 0u64;
    let mut calls = 0u64;
    let do_peer = matches!(args.scenario, Scenario::Mixed | Scenario::Peer);
    let do_group = matches!(
        args.scenario,
        Scenario::Mixed | Scenario::Group | Scenario::Vendors
    );
    let do_call = matches!(args.scenario, Scenario::Mixed | Scenario::Call);

    if do_group {
        let members: Vec<String> = (0..users).map(|i| format!("u{i}")).collect();
        for chunk in members.chunks(100_000) {
            let (s, _) = call(
                &env.api,
                http::Method::POST,
                format!("{}/v1/groups/all/members", env.base),
                json!({"add": chunk}),
            )
            .await?;
            if s != 200 {
                api_errors += 1;
            }
        }
        eprintln!("group: one message to a group of {users}");
        let seq = sent_at.len();
        sent_at.push(quanta::Instant::now());
        let (s, v) = call(&env.api, http::Method::POST, format!("{}/v1/messages", env.base),
            json!({"message_id": "lg-group", "sender_id": "u1", "conversation_type": "group", "conversation_id": "all",
                   "push": {"title": "group", "content": "hello everyone", "payload": seq.to_string()}})).await?;
        if s == 202 {
            expected += v["targets"].as_u64().unwrap_or(0);
            messages += 1;
        } else {
            api_errors += 1;
        }
    }

    if do_peer {
        let total = (args.duration * f64::from(args.rate)).round() as u64;
        eprintln!("peer: {total} messages at {} msg/s, open loop", args.rate);
        let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
        let first_seq = sent_at.len();
        let t0 = quanta::Instant::now() + Duration::from_millis(10);
        sent_at.extend((0..total).map(|k| t0 + interval.mul_f64(k as f64)));
        let mut tasks = tokio::task::JoinSet::new();
        let tokio_t0 = tokio::time::Instant::now() + Duration::from_millis(10);
        for k in 0..total {
            let due = tokio_t0 + interval.mul_f64(k as f64);
            tokio::time::sleep_until(due).await;
            let api = env.api.clone();
            let base = env.base.clone();
            let to = (k as u32).wrapping_mul(2_654_435_761) % users;
            let seq = first_seq + k as usize;
            tasks.spawn(async move {
                call(&api, http::Method::POST, format!("{base}/v1/messages"),
                    json!({"message_id": format!("lg-peer-{k}"), "sender_id": "driver", "conversation_type": "peer",
                           "conversation_id": format!("u{to}"), "push": {"title": "peer", "content": "hi", "payload": seq.to_string()}})).await
            });
            if k % u64::from(args.rate.max(1)) == 0 && k > 0 {
                eprintln!(
                    "  sent {k}/{total}, delivered so far {}",
                    env.apns.received_count() + env.fcm.received_count()
                );
            }
        }
        while let Some(r) = tasks.join_next().await {
            match r? {
                Ok((202, v)) => {
                    expected += v["targets"].as_u64().unwrap_or(0);
                    messages += 1;
                }
                _ => api_errors += 1,
            }
        }
    }

    if do_call {
        let n = 200.min(users);
        eprintln!("call: {n} call invitations");
        for c in 0..n {
            let seq = sent_at.len();
            sent_at.push(quanta::Instant::now());
            let invitee = (c * 7919) % users;
            let (s, v) = call(&env.api, http::Method::POST, format!("{}/v1/calls", env.base),
                json!({"call_id": format!("lg-call-{c}"), "inviter_id": "driver", "invitees": [format!("u{invitee}")],
                       "timeout_s": 60, "push": {"title": "call", "content": "ring", "payload": seq.to_string()}})).await?;
            if s == 202 {
                expected += v["targets"].as_u64().unwrap_or(0);
                calls += 1;
            } else {
                api_errors += 1;
            }
        }
    }

    // Drain: wait for every expected push, bounded.
    let drain_deadline = Duration::from_secs_f64(args.drain_timeout);
    let total_received = || {
        let vendors: usize = env
            .vendors
            .as_ref()
            .map_or(0, |v| v.counts().iter().map(|c| c.1).sum());
        (env.apns.received_count() + env.fcm.received_count() + vendors) as u64
    };
    let drain_start = quanta::Instant::now();
    while total_received() < expected && drain_start.elapsed() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed().as_secs_f64();

    // Attribute pushes to messages and build the histogram.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut last: Option<quanta::Instant> = None;
    let mut to_online = 0u64;
    let mut record = |payload: Option<&str>, token_user: Option<u32>, at: quanta::Instant| {
        if let Some(u) = token_user {
            if is_online(u) {
                to_online += 1;
            }
        }
        let Some(seq) = payload.and_then(|p| p.parse::<usize>().ok()) else {
            return;
        };
        let Some(t) = sent_at.get(seq) else { return };
        let us = at.saturating_duration_since(*t).as_micros() as u64;
        let _ = hist.record(us.max(1));
        last = Some(last.map_or(at, |l: quanta::Instant| l.max(at)));
    };
    for p in env.apns.received() {
        let user = u32::from_str_radix(&p.token[..8], 16).ok();
        record(p.body["payload"].as_str(), user, p.received_at);
    }
    for p in env.fcm.received() {
        let user = p
            .token
            .strip_prefix("lg")
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse().ok());
        record(p.message["data"]["payload"].as_str(), user, p.received_at);
    }
    if let Some(v) = &env.vendors {
        for p in v.received() {
            let user = vendor_owner.get(&p.token).copied();
            record(p.payload.as_deref(), user, p.received_at);
        }
    }
    let delivered = total_received();
    let mut per_provider = std::collections::BTreeMap::new();
    per_provider.insert("apns".to_string(), env.apns.received_count() as u64);
    per_provider.insert("fcm".to_string(), env.fcm.received_count() as u64);
    if let Some(v) = &env.vendors {
        for (name, n) in v.counts() {
            per_provider.insert(name.to_string(), n as u64);
        }
    }
    let span = match (sent_at.iter().min(), last) {
        (Some(f), Some(l)) => l.saturating_duration_since(*f).as_secs_f64().max(1e-3),
        _ => 1.0,
    };
    let cpu_s = process_cpu_s();
    let (engine_apns_pushes_per_s, ceiling_pushes_per_s) = if args.scenario == Scenario::Group {
        let apns = env.apns.received();
        let last_apns = apns.iter().map(|p| p.received_at).max();
        match (sent_at.first(), last_apns) {
            (Some(first), Some(last)) if !apns.is_empty() => {
                let engine_rate = apns.len() as f64
                    / last
                        .saturating_duration_since(*first)
                        .as_secs_f64()
                        .max(1e-3);
                let tokens: Vec<String> = apns.iter().map(|p| p.token.clone()).collect();
                let body = bytes::Bytes::from(serde_json::to_vec(&apns[0].body)?);
                let jwt = env
                    .creds
                    .provider_token(fanfare::clock::unix_now_s() as i64)?;
                eprintln!(
                    "ceiling: {} pushes from a bare HTTP/2 client to the same mock",
                    apns.len()
                );
                let (ok, secs) = crate::ceiling::blast(
                    crate::ceiling::Target {
                        url: &env.apns.url(),
                        ca_file: &env.ca_file,
                        provider_token: &jwt,
                        topic: TOPIC,
                    },
                    &tokens,
                    body,
                    crate::ceiling::Load {
                        total: apns.len() as u64,
                        connections: 2,
                        concurrency: 1024,
                    },
                )
                .await?;
                (Some(engine_rate), Some(ok as f64 / secs.max(1e-3)))
            }
            _ => (None, None),
        }
    } else {
        (None, None)
    };
    let report = Report {
        scenario: args.scenario,
        users,
        bindings: env.engine.engine().state.registry.len() as u64,
        binds_per_s,
        messages_sent: messages,
        calls_sent: calls,
        pushes_expected: expected,
        pushes_delivered: delivered,
        per_provider,
        pushes_to_online_users: to_online,
        pushes_per_s: delivered as f64 / span,
        api_errors,
        vendor_rejections: (env.apns.rejections().len()
            + env.fcm.rejections().len()
            + env.vendors.as_ref().map_or(0, VendorMocks::rejections))
            as u64,
        latency_us: Latency {
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        },
        process_cpu_ms_per_1k_pushes: if delivered > 0 {
            cpu_s * 1000.0 / (delivered as f64 / 1000.0)
        } else {
            0.0
        },
        peak_rss_bytes: peak_rss_bytes(),
        wall_s: wall,
        engine_apns_pushes_per_s,
        ceiling_pushes_per_s,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    env.engine.shutdown().await;
    Ok(report)
}

fn print_table(r: &Report) {
    let mut rows: Vec<(&str, String)> = vec![
        ("scenario", format!("{:?}", r.scenario).to_lowercase()),
        ("users / bindings", format!("{} / {}", r.users, r.bindings)),
        ("binds/s (API, h2c)", format!("{:.0}", r.binds_per_s)),
        (
            "messages / calls sent",
            format!("{} / {}", r.messages_sent, r.calls_sent),
        ),
        ("pushes expected", r.pushes_expected.to_string()),
        ("pushes delivered", r.pushes_delivered.to_string()),
        (
            "per provider",
            r.per_provider
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "pushes to online users",
            r.pushes_to_online_users.to_string(),
        ),
        ("pushes/s", format!("{:.0}", r.pushes_per_s)),
        (
            "latency p50 / p90 / p99",
            format!(
                "{} / {} / {} µs",
                r.latency_us.p50, r.latency_us.p90, r.latency_us.p99
            ),
        ),
        (
            "latency p99.9 / max",
            format!("{} / {} µs", r.latency_us.p999, r.latency_us.max),
        ),
        (
            "api errors / vendor rejections",
            format!("{} / {}", r.api_errors, r.vendor_rejections),
        ),
        (
            "process CPU per 1k pushes",
            format!(
                "{:.1} ms (engine + mocks + driver)",
                r.process_cpu_ms_per_1k_pushes
            ),
        ),
        (
            "peak RSS",
            format!("{:.1} MiB", r.peak_rss_bytes as f64 / 1048576.0),
        ),
        ("wall time", format!("{:.2} s", r.wall_s)),
    ];
    if let (Some(e), Some(c)) = (r.engine_apns_pushes_per_s, r.ceiling_pushes_per_s) {
        rows.push((
            "APNs pushes/s: engine / ceiling",
            format!("{e:.0} / {c:.0} ({:.0}%)", 100.0 * e / c.max(1e-9)),
        ));
    }
    println!("\nFanfare load report");
    println!("{}", "-".repeat(62));
    for (k, v) in rows {
        println!("{k:<32}{v}");
    }
    println!("{}", "-".repeat(62));
    let verdict = if r.lost() == 0 && r.pushes_to_online_users == 0 {
        "OK"
    } else {
        "PROBLEMS"
    };
    println!(
        "{verdict}: {} of {} expected pushes delivered, {} to online users",
        r.pushes_delivered, r.pushes_expected, r.pushes_to_online_users
    );
}
