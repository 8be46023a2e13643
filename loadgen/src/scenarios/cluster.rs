//! The `cluster` scenario (issue 14): three NATS servers in one JetStream cluster
//! (replicas 3) and three engines on loopback, the mocks as in every scenario. Members
//! are bound through the three engines in turn; the replication lag is measured (a
//! bind acknowledged by engine 0, engine 1 polled until it shows it); then one group
//! message to every member is sent through engine 0 and engine 1 is SIGKILLed once a
//! quarter of the pushes arrived (its unacknowledged chunks go to the others after the
//! work stream's ack wait, 30 s); once every member was pushed (or the drain timeout
//! passed), engine 1 is restarted with an EMPTY data directory and `join_s` is the
//! time until it is ready.
//!
//! The report (JSON): `engines`, `members`, `targets`, `lost` (members the mock never
//! got a push for; must be 0), `duplicates` (pushes past the first per member, and the
//! engines' own `cluster.duplicates`), `replication_lag_ms` {p50, p99}, `join_s`,
//! `binds_per_s`, `fanout_s`. Everything is bounded: `--users` members (default
//! 100,000), a lag sample of [`LAG_SAMPLES`], waits bounded by `--drain-timeout` plus
//! the ack wait.

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

/// Engines and NATS servers.
const ENGINES: usize = 3;
/// Binds timed for the replication lag.
const LAG_SAMPLES: usize = 200;
/// Binds and member updates in flight.
const IN_FLIGHT: usize = 128;
/// Members per group update.
const MEMBERS_PER_UPDATE: usize = 10_000;
/// How long a chunk of a dead engine waits before another engine gets it.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// The scenario's report.
#[derive(Debug, serde::Serialize)]
pub struct ClusterReport {
    pub scenario: &'static str,
    pub engines: usize,
    pub members: u64,
    pub targets: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Targets the engines counted as delivered again (`cluster.duplicates`).
    pub redelivered_targets: u64,
    pub replication_lag_ms: Lag,
    pub join_s: f64,
    pub binds_per_s: f64,
    pub fanout_s: f64,
    pub killed_after_pushes: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct Lag {
    pub p50: f64,
    pub p99: f64,
}

/// The three engines: their configs and processes.
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
                    "stream_replicas": ENGINES,
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
}

pub async fn run(args: &RunArgs, program: Program) -> anyhow::Result<ClusterReport> {
    anyhow::ensure!(
        fanfare_loadgen::nats::available(),
        "nats-server is not installed (apt-get install nats-server)"
    );
    let dir = tempfile::Builder::new()
        .prefix("fanfare-cluster")
        .tempdir()?;
    let nats = tokio::task::spawn_blocking(|| Nats::start(ENGINES)).await??;
    let rig = Rig::start(dir.path(), &rig::Options::default())?;
    let mut engines = Engines {
        program,
        dir: dir.path().to_path_buf(),
        procs: Vec::new(),
        apis: Vec::new(),
    };
    for i in 0..ENGINES {
        let data = dir.path().join(format!("data{i}"));
        engines.start(&rig, &nats, i, &data).await?;
    }
    let members = u64::from(args.users);
    let binds_per_s = bind_members(&engines.apis, members).await?;
    let replication_lag_ms = lag(&engines.apis).await?;
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
    // The fan-out, with engine 1 SIGKILLed a quarter of the way.
    let id = format!("cluster-{}", args.run_id);
    let m = request::message(
        &id,
        "s",
        "group",
        "g",
        Some(request::push("hi", "there", "{}")),
    );
    let started = Instant::now();
    let targets = match engines.apis[0].message(&m).await? {
        MessageAnswer::Accepted(a) => a.targets as u64,
        other => anyhow::bail!("the group message was not accepted: {other:?}"),
    };
    let fcm = rig.fcm();
    wait_for(Duration::from_secs(60), || async {
        fcm.received_count() as u64 * 4 >= targets
    })
    .await
    .ok();
    let killed_after_pushes = fcm.received_count() as u64;
    if let Some(p) = engines.procs[1].take() {
        p.kill().await;
    }
    let drain = Duration::from_secs_f64(args.drain_timeout) + ACK_WAIT;
    let deadline = Instant::now() + drain;
    let mut distinct = 0;
    while Instant::now() < deadline {
        if fcm.received_count() as u64 >= targets {
            distinct = distinct_tokens(&rig);
            if distinct >= targets {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    distinct = distinct.max(distinct_tokens(&rig));
    let fanout_s = started.elapsed().as_secs_f64();
    let pushes = fcm.received_count() as u64;
    // Rejoin with an empty data directory.
    let joined = Instant::now();
    let fresh = dir.path().join("data1-fresh");
    engines.start(&rig, &nats, 1, &fresh).await?;
    let join_s = joined.elapsed().as_secs_f64();
    let mut redelivered_targets = 0;
    for api in &engines.apis {
        let s = api.stats().await?;
        redelivered_targets += s["cluster"]["duplicates"].as_u64().unwrap_or(0);
    }
    for p in engines.procs.iter_mut().filter_map(Option::take) {
        p.stop().await?;
    }
    Ok(ClusterReport {
        scenario: "cluster",
        engines: ENGINES,
        members,
        targets,
        lost: targets.saturating_sub(distinct),
        duplicates: pushes.saturating_sub(distinct),
        redelivered_targets,
        replication_lag_ms,
        join_s,
        binds_per_s,
        fanout_s,
        killed_after_pushes,
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

/// Binds acknowledged by engine 0, engine 1 polled back to back until it shows each.
async fn lag(apis: &[Client]) -> anyhow::Result<Lag> {
    let mut ms = Vec::with_capacity(LAG_SAMPLES);
    for i in 0..LAG_SAMPLES {
        let user = format!("lag{i}");
        let req = request::bind(&user, "fcm", &format!("tok-lag{i}"));
        apis[0].bind(&format!("lag{i}"), &req).await?;
        let acked = Instant::now();
        wait_for(Duration::from_secs(10), || async {
            apis[1]
                .push_ids(&user)
                .await
                .is_ok_and(|l| !l.push_ids.is_empty())
        })
        .await
        .context("engine 1 shows a bind made through engine 0")?;
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
