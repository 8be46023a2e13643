//! The `cluster` scenario (issue 14): NATS servers in one JetStream cluster (`--nats`,
//! 3 by default, replicas = that) and engines (`--engines`, 3 by default) on loopback,
//! the mocks as in every scenario (each answer delayed by `--latency-ms`). Members are
//! bound through the engines in turn; the replication lag is measured (a bind
//! acknowledged by engine 0, the last engine polled until it shows it). Then, by
//! `--shape`:
//!
//! - `full` (the default): one group message to every member is sent through engine 0;
//!   once a quarter of the pushes arrived, the engine holding the most chunks is
//!   SIGKILLed (its unacknowledged chunks go to the others after the work stream's ack
//!   wait, 30 s); once every member was pushed (or the drain timeout passed), it is
//!   restarted with an EMPTY data directory and `join_s` is the time until it is ready.
//! - `fanout`: the same group message, nobody killed: `pushes_per_s` is a throughput.
//! - `join`: no group message; one more engine starts with an empty data directory and
//!   `join_s` is the time until it is ready (the object-store snapshot plus the tail).
//!
//! The report (JSON): `engines`, `nats_servers`, `shape`, `latency_ms`, `members`,
//! `targets`, `lost` (members the mock never got a push for; must be 0), `duplicates`
//! (pushes past the first per member, and the engines' own `cluster.duplicates`),
//! `replication_lag_ms` {p50, p99}, `join_s`, `binds_per_s`, `fanout_s` (accept → the
//! last distinct push), `pushes_per_s`. Everything is bounded: `--users` members
//! (default 100,000), a lag sample of [`LAG_SAMPLES`], waits bounded by
//! `--drain-timeout` plus the ack wait.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fanfare::api::wire::{MembersRequest, MessageAnswer};
use fanfare::client::{request, Client, Protocol};
use fanfare_loadgen::mock::rig::{self, Rig};
use fanfare_loadgen::nats::Nats;
use futures::StreamExt;
use serde_json::json;

use crate::engine_proc::{EngineProc, Program};
use crate::RunArgs;

/// Binds timed for the replication lag.
const LAG_SAMPLES: usize = 200;
/// Binds and member updates in flight.
const IN_FLIGHT: usize = 128;
/// Members per group update.
const MEMBERS_PER_UPDATE: usize = 10_000;
/// How long a chunk of a dead engine waits before another engine gets it.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// What runs after the binds (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Full,
    Fanout,
    Join,
}

/// The scenario's report.
#[derive(Debug, serde::Serialize)]
pub struct ClusterReport {
    pub scenario: &'static str,
    pub shape: Shape,
    pub engines: usize,
    pub nats_servers: usize,
    pub latency_ms: u64,
    pub members: u64,
    pub targets: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Targets the engines counted as delivered again (`cluster.duplicates`).
    pub redelivered_targets: u64,
    pub replication_lag_ms: Lag,
    pub join_s: Option<f64>,
    pub binds_per_s: f64,
    pub fanout_s: Option<f64>,
    /// Distinct members pushed per second of `fanout_s`.
    pub pushes_per_s: Option<f64>,
    /// Pushes the mock had when an engine was killed (`full`).
    pub killed_after_pushes: Option<u64>,
    /// The chunks the killed engine had queued when it was killed (`full`).
    pub killed_engine_chunks: Option<u64>,
    /// The work chunks each engine queued (`cluster.chunks`; a restarted engine's
    /// since its restart).
    pub chunks_per_engine: Vec<u64>,
}

#[derive(Debug, serde::Serialize)]
pub struct Lag {
    pub p50: f64,
    pub p99: f64,
}

/// The engines: their configs and processes.
struct Engines {
    program: Program,
    dir: PathBuf,
    procs: Vec<Option<EngineProc>>,
    apis: Vec<Client>,
}

impl Engines {
    /// Write engine `i`'s config on data directory `data` and start it.
    async fn start(&mut self, rig: &Rig, nats: &Nats, i: usize, data: &Path) -> anyhow::Result<()> {
        let config = self.dir.join(format!("e{i}.toml"));
        rig.write_engine_config(
            &config,
            &json!({
                "api": {"listen": "127.0.0.1:0"},
                "storage": {"dir": data, "snapshot_interval_s": 5},
                "cluster": {
                    "nats_urls": nats.urls(),
                    "node_id": format!("e{i}"),
                    "stream_replicas": nats.len(),
                },
            }),
        )?;
        let proc = EngineProc::spawn(&self.program, &config).await?;
        let api = Client::builder(proc.base_url())
            .protocol(Protocol::Http1)
            .timeout(Duration::from_secs(30))
            .build();
        if self.procs.len() <= i {
            self.procs.resize_with(i + 1, || None);
            self.apis.resize_with(i + 1, || api.clone());
        }
        self.procs[i] = Some(proc);
        self.apis[i] = api;
        Ok(())
    }

    /// Each live engine's `cluster.<field>` from `/v1/stats` (0 for a dead one).
    async fn cluster_stat(&self, field: &str) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::with_capacity(self.apis.len());
        for (api, proc) in self.apis.iter().zip(&self.procs) {
            out.push(match proc {
                Some(_) => api.stats().await?["cluster"][field].as_u64().unwrap_or(0),
                None => 0,
            });
        }
        Ok(out)
    }
}

/// The group fan-out's outcome.
struct Fanout {
    targets: u64,
    distinct: u64,
    pushes: u64,
    secs: f64,
}

pub async fn run(args: &RunArgs, program: Program) -> anyhow::Result<ClusterReport> {
    args.validate()?;
    anyhow::ensure!(
        fanfare_loadgen::nats::available(),
        "nats-server is not installed (apt-get install nats-server)"
    );
    let servers = args.nats.unwrap_or(3);
    let dir = tempfile::Builder::new()
        .prefix("fanfare-cluster")
        .tempdir()?;
    let nats = tokio::task::spawn_blocking(move || Nats::start(servers)).await??;
    let options = rig::Options {
        latency: Duration::from_millis(args.latency_ms),
        ..rig::Options::default()
    };
    let rig = Rig::start(dir.path(), &options)?;
    let mut engines = Engines {
        program,
        dir: dir.path().to_path_buf(),
        procs: Vec::new(),
        apis: Vec::new(),
    };
    for i in 0..args.engines {
        let data = dir.path().join(format!("data{i}"));
        engines.start(&rig, &nats, i, &data).await?;
    }
    let members = u64::from(args.users);
    let binds_per_s = bind_members(&engines.apis, members).await?;
    let replication_lag_ms = lag(&engines.apis).await?;
    let mut report = ClusterReport {
        scenario: "cluster",
        shape: args.shape,
        engines: args.engines,
        nats_servers: servers,
        latency_ms: args.latency_ms,
        members,
        targets: 0,
        lost: 0,
        duplicates: 0,
        redelivered_targets: 0,
        replication_lag_ms,
        join_s: None,
        binds_per_s,
        fanout_s: None,
        pushes_per_s: None,
        killed_after_pushes: None,
        killed_engine_chunks: None,
        chunks_per_engine: Vec::new(),
    };
    // The engine restarted (full) or added (join) with an empty data directory.
    let joiner = match args.shape {
        Shape::Full | Shape::Fanout => {
            let f = fanout(args, &rig, &mut engines, &mut report).await?;
            report.targets = f.targets;
            report.lost = f.targets.saturating_sub(f.distinct);
            report.duplicates = f.pushes.saturating_sub(f.distinct);
            report.fanout_s = Some(f.secs);
            report.pushes_per_s = Some(f.distinct as f64 / f.secs.max(1e-9));
            engines.procs.iter().position(Option::is_none)
        }
        Shape::Join => Some(args.engines),
    };
    if let Some(i) = joiner {
        let joined = Instant::now();
        let fresh = dir.path().join(format!("data{i}-fresh"));
        engines.start(&rig, &nats, i, &fresh).await?;
        report.join_s = Some(joined.elapsed().as_secs_f64());
    }
    report.redelivered_targets = engines.cluster_stat("duplicates").await?.iter().sum();
    report.chunks_per_engine = engines.cluster_stat("chunks").await?;
    for p in engines.procs.iter_mut().filter_map(Option::take) {
        p.stop().await?;
    }
    Ok(report)
}

/// One group message to every member through engine 0; in the `full` shape the engine
/// that queued the most chunks is SIGKILLed once `--kill-at` of the pushes arrived.
async fn fanout(
    args: &RunArgs,
    rig: &Rig,
    engines: &mut Engines,
    report: &mut ClusterReport,
) -> anyhow::Result<Fanout> {
    let members = report.members;
    group(&engines.apis[0], members).await?;
    for api in &engines.apis {
        wait_for(Duration::from_secs(60), || async {
            // The members and the sender.
            api.group("g")
                .await
                .is_ok_and(|g| g.members as u64 == members + 1)
        })
        .await
        .context("every engine knows the group")?;
    }
    let id = format!("cluster-{}", args.run_id);
    let m = request::message(
        &id,
        "s",
        "group",
        "g",
        Some(request::push("hi", "there", "{}")),
    );
    let fcm = rig.fcm();
    let before = fcm.received_count() as u64;
    let started = quanta::Instant::now();
    let targets = match engines.apis[0].message(&m).await? {
        MessageAnswer::Accepted(a) => a.targets as u64,
        other => anyhow::bail!("the group message was not accepted: {other:?}"),
    };
    if args.shape == Shape::Full {
        // At `--kill-at` 0, as soon as an engine has queued a chunk (with a slow mock,
        // its pushes are then still waiting for their answers).
        let share = (targets as f64 * args.kill_at) as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        let chunks = loop {
            if fcm.received_count() as u64 - before >= share {
                let chunks = engines.cluster_stat("chunks").await?;
                if chunks.iter().any(|&c| c > 0) || Instant::now() >= deadline {
                    break chunks;
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no push arrived within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        report.killed_after_pushes = Some(fcm.received_count() as u64 - before);
        let (victim, held) = chunks
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|&(i, c)| (c, std::cmp::Reverse(i)))
            .expect("at least one engine");
        report.killed_engine_chunks = Some(held);
        if let Some(p) = engines.procs[victim].take() {
            p.kill().await;
        }
    }
    let redelivery = match args.shape {
        Shape::Full => ACK_WAIT,
        _ => Duration::ZERO,
    };
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout) + redelivery;
    let mut distinct = 0;
    while Instant::now() < deadline {
        if fcm.received_count() as u64 - before >= targets {
            distinct = distinct_tokens(rig);
            if distinct >= targets {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = fcm.received();
    distinct = distinct.max(distinct_tokens(rig));
    let last = received
        .iter()
        .filter(|p| !p.token.starts_with("tok-lag"))
        .map(|p| p.received_at)
        .max()
        .unwrap_or(started);
    Ok(Fanout {
        targets,
        distinct,
        pushes: received.len() as u64 - before,
        secs: last.saturating_duration_since(started).as_secs_f64(),
    })
}

/// Members `u<k>` (device `d<k>`, FCM token `tok-<k>`) bound through the engines in
/// turn; binds/s.
async fn bind_members(apis: &[Client], members: u64) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let mut binds = futures::stream::iter(0..members)
        .map(|k| {
            let api = apis[k as usize % apis.len()].clone();
            async move {
                let req = request::bind(&format!("u{k}"), "fcm", &format!("tok-{k}"));
                api.bind(&format!("d{k}"), &req).await
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(done) = binds.next().await {
        done.context("a member's bind")?;
    }
    Ok(members as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}

/// Group `g`: every member and the sender `s`.
async fn group(api: &Client, members: u64) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..members).map(|k| format!("u{k}")).collect();
    for (i, add) in ids.chunks(MEMBERS_PER_UPDATE).enumerate() {
        let mut add = add.to_vec();
        if i == 0 {
            add.push("s".into());
        }
        let req = MembersRequest {
            add,
            remove: Vec::new(),
        };
        api.members("g", &req).await.context("a group update")?;
    }
    Ok(())
}

/// Binds acknowledged by engine 0, the last engine polled back to back until it shows
/// each (with one engine: the write's own visibility).
async fn lag(apis: &[Client]) -> anyhow::Result<Lag> {
    let mut ms = Vec::with_capacity(LAG_SAMPLES);
    for i in 0..LAG_SAMPLES {
        let user = format!("lag{i}");
        let req = request::bind(&user, "fcm", &format!("tok-lag{i}"));
        apis[0].bind(&format!("lag{i}"), &req).await?;
        let acked = Instant::now();
        wait_for(Duration::from_secs(10), || async {
            apis[apis.len() - 1]
                .push_ids(&user)
                .await
                .is_ok_and(|l| !l.push_ids.is_empty())
        })
        .await
        .context("the last engine shows a bind made through engine 0")?;
        ms.push(acked.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    Ok(Lag {
        p50: at(0.5),
        p99: at(0.99),
    })
}

/// Members the mock FCM got at least one push for.
fn distinct_tokens(rig: &Rig) -> u64 {
    let tokens: HashSet<String> = rig
        .fcm()
        .received()
        .into_iter()
        .map(|p| p.token)
        .filter(|t| !t.starts_with("tok-lag"))
        .collect();
    tokens.len() as u64
}

/// Poll `f` until true (bounded by `within`, polling back to back with short pauses).
async fn wait_for<F, Fut>(within: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        anyhow::ensure!(Instant::now() < deadline, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Run the scenario, print the JSON report (and write it to `--json`); a failure
/// (lost pushes) is exit code 1.
pub async fn main(args: RunArgs, program: Program) -> anyhow::Result<bool> {
    let report = run(&args, program).await?;
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(report.lost == 0)
}
