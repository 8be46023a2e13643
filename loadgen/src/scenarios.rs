//! The load scenarios, and what they share: binding users' devices, reporting users
//! online, metering the engine's CPU over a phase, and the run around them (start the
//! rig, run the scenario, fill the common report fields, stop the engine).
//!
//! - [`bind`]: binds/s and the engine's resident memory per binding;
//! - [`presence`]: online/offline churn with session TTLs, events/s;
//! - [`group`]: groups of 1k .. 1M members, fan-out time and rate against the ceiling;
//! - [`ceiling`]: the bare HTTP/2 client alone against the mock APNs;
//! - [`traffic`]: `peer` (open loop), `call`, `vendors` and the `mixed` blend.
//!
//! The `faults` scenario has its own report (`crate::faults`), and so has [`cluster`]
//! (three NATS servers and three engines, one SIGKILLed mid fan-out).

pub mod bind;
pub mod ceiling;
pub mod cluster;
pub mod group;
pub mod presence;
pub mod traffic;

use fanfare::client::request;
use futures::StreamExt;

use crate::engine_proc::ProcStats;
use crate::progress::{Progress, Sent};
use crate::report::{Errors, Report};
use crate::setup::{EngineChoice, Env};
use crate::RunArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// A realistic blend: binds, presence churn, a group message, open-loop peer
    /// messages, call invitations.
    Mixed,
    /// Register users × devices (APNs/FCM mix); binds/s, engine RSS per binding.
    Bind,
    /// Online/offline churn with session TTLs in batches; events/s.
    Presence,
    /// Open-loop peer messages at --rate, coordinated-omission corrected.
    Peer,
    /// Groups of --group-sizes members, 10% online: fan-out time and rate vs. ceiling.
    Group,
    /// Call invitations to offline invitees (VoIP + FCM).
    Call,
    /// The bare HTTP/2 client alone against the mock APNs (no engine).
    Ceiling,
    /// Users spread over all eight vendors (APNs, FCM, Huawei, Honor, Xiaomi, OPPO,
    /// vivo, Web Push), one group message to all of them.
    Vendors,
    /// Peer messages and short calls while the mocks inject 503s, 429s with
    /// Retry-After, GOAWAYs and a 2 s outage; checks exactly-once.
    Faults,
    /// Three NATS servers (R3) and three engines: binds spread over them, replication
    /// lag, a group fan-out to --users members with one engine SIGKILLed and rejoining
    /// with an empty disk; lost (must be 0), duplicates, join time.
    Cluster,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Mixed => "mixed",
            Scenario::Bind => "bind",
            Scenario::Presence => "presence",
            Scenario::Peer => "peer",
            Scenario::Group => "group",
            Scenario::Call => "call",
            Scenario::Ceiling => "ceiling",
            Scenario::Vendors => "vendors",
            Scenario::Faults => "faults",
            Scenario::Cluster => "cluster",
        }
    }
}

/// The engine a run asks for.
pub(crate) fn engine_choice(args: &RunArgs) -> anyhow::Result<EngineChoice> {
    use crate::engine_proc::Program;
    Ok(match (&args.engine, &args.spawn_engine) {
        _ if args.scenario == Scenario::Ceiling => EngineChoice::None,
        (Some(url), None) => EngineChoice::External {
            url: url.clone(),
            dir: args.mock_dir.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "--engine needs --mock-dir DIR (where the engine's config is written)"
                )
            })?,
            pid: args.engine_pid,
            wait: std::time::Duration::from_secs_f64(args.engine_wait),
        },
        (None, Some(path)) => EngineChoice::Spawn(Program::Fanfare(path.clone())),
        (None, None) => EngineChoice::Spawn(Program::SelfExe),
        (Some(_), Some(_)) => anyhow::bail!("--engine and --spawn-engine exclude each other"),
    })
}

/// Run one scenario (not `faults`) and report.
pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    args.validate()?;
    let nats = match args.nats {
        Some(_) => Some(tokio::task::spawn_blocking(fanfare_loadgen::nats::Nats::single).await??),
        None => None,
    };
    let choice = engine_choice(&args)?;
    let env = Env::start_on(&choice, args.scenario == Scenario::Vendors, nats).await?;
    let started = quanta::Instant::now();
    let mut report = match args.scenario {
        Scenario::Bind => bind::run(&env, &args).await?,
        Scenario::Presence => presence::run(&env, &args).await?,
        Scenario::Group => group::run(&env, &args).await?,
        Scenario::Ceiling => ceiling::run(&env, &args).await?,
        Scenario::Mixed | Scenario::Peer | Scenario::Call | Scenario::Vendors => {
            traffic::run(&env, &args).await?
        }
        Scenario::Faults | Scenario::Cluster => {
            anyhow::bail!("the {} scenario has its own runner", args.scenario.name())
        }
    };
    report.engine_mode = env.engine_mode();
    report.engine_pid = env.engine_pid();
    report.wall_s = started.elapsed().as_secs_f64();
    report.errors.vendor_rejections = env.mocks.rejections();
    report.driver_peak_rss_bytes = ProcStats::read(None).map_or(0, |s| s.peak_rss_bytes);
    if let Some(p) = env.engine_proc() {
        report.engine_peak_rss_bytes = Some(p.peak_rss_bytes);
    }
    if args.scenario != Scenario::Ceiling {
        let stats = env.stats().await?;
        report.bindings = stats["bindings"].as_u64().unwrap_or(0);
    }
    report.print_table();
    if let Some(path) = &args.json {
        report.write_json(path)?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(path) = &args.svg {
        report.write_svg(path)?;
        eprintln!("latency plot written to {}", path.display());
    }
    env.finish().await?;
    Ok(report)
}

/// CPU of the engine and of this process over a phase.
pub(crate) struct Meter {
    engine: Option<ProcStats>,
    driver: Option<ProcStats>,
}

/// What a phase cost.
pub(crate) struct Cost {
    pub engine_cpu_s: Option<f64>,
    pub driver_cpu_s: Option<f64>,
}

impl Cost {
    /// ms of engine CPU per 1,000 `n`.
    pub fn engine_ms_per_1k(&self, n: u64) -> Option<f64> {
        per_1k(self.engine_cpu_s, n)
    }

    pub fn driver_ms_per_1k(&self, n: u64) -> Option<f64> {
        per_1k(self.driver_cpu_s, n)
    }
}

fn per_1k(cpu_s: Option<f64>, n: u64) -> Option<f64> {
    cpu_s.filter(|_| n > 0).map(|s| s * 1e3 / (n as f64 / 1e3))
}

impl Meter {
    pub fn start(env: &Env) -> Meter {
        Meter {
            engine: env.engine_proc(),
            driver: ProcStats::read(None),
        }
    }

    pub fn stop(&self, env: &Env) -> Cost {
        let delta = |a: Option<ProcStats>, b: Option<ProcStats>| match (a, b) {
            (Some(a), Some(b)) => Some((b.cpu_s - a.cpu_s).max(0.0)),
            _ => None,
        };
        Cost {
            engine_cpu_s: delta(self.engine, env.engine_proc()),
            driver_cpu_s: delta(self.driver, ProcStats::read(None)),
        }
    }
}

/// Bind device `d<k>` of user `u<k / devices>` for every `k < users × devices`, 128
/// requests in flight, with a progress line; `device_of(k)` gives the provider and
/// token. Counts failures in `errors`; returns the binds acknowledged and the seconds
/// they took.
pub(crate) async fn bind_all(
    env: &Env,
    users: u32,
    devices: u32,
    device_of: impl Fn(u32) -> (&'static str, String),
    errors: &mut Errors,
) -> (u64, f64) {
    let sent = Sent::default();
    let progress = Progress::spawn("bind", "binds acked", sent.clone(), None);
    let t0 = quanta::Instant::now();
    let total = users.saturating_mul(devices.max(1));
    let mut binds = futures::stream::iter(0..total)
        .map(|k| {
            let api = env.api.clone();
            let (provider, token) = device_of(k);
            let user = k / devices.max(1);
            async move {
                let req = request::bind(&format!("u{user}"), provider, &token);
                api.bind(&format!("d{k}"), &req).await
            }
        })
        .buffer_unordered(128);
    let mut acked = 0;
    while let Some(r) = binds.next().await {
        if errors.check(r).is_some() {
            acked += 1;
            sent.add(1);
        }
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-6);
    progress.finish().await;
    (acked, secs)
}

/// Report every user `i < users` with `is_online(i)` online (one session, no TTL),
/// 10,000 events per request.
pub(crate) async fn mark_online(
    env: &Env,
    users: u32,
    is_online: impl Fn(u32) -> bool,
    errors: &mut Errors,
) {
    let online: Vec<u32> = (0..users).filter(|i| is_online(*i)).collect();
    for chunk in online.chunks(10_000) {
        let events = (chunk.iter())
            .map(|i| request::session(&format!("u{i}"), "lg", true))
            .collect();
        let r = env.api.presence(&request::presence(events)).await;
        errors.check(r);
    }
}
