//! `fanfare-loadgen`: drive a Fanfare engine with a load scenario against mock vendors
//! and report throughput, latency and cost.
//!
//! The engine runs in its own process (this binary re-executed as the hidden
//! `engine` subcommand, a given `fanfare` binary, or one already running), so that its
//! CPU time and memory are measured alone; the driver and the mock vendors share this
//! process and one `quanta` clock.
//!
//! Modules: [`setup`] (mocks, engine config, the rig), [`engine_proc`] (the engine
//! child process, /proc readings), [`scenarios`] (one module per scenario),
//! [`ceiling`] (the bare HTTP/2 client), [`faults`], [`report`] (JSON, table, SVG),
//! [`progress`] (the progress line).

mod ceiling;
mod engine_proc;
mod faults;
mod progress;
mod report;
mod scenarios;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The same allocator as the `fanfare` binary: the built-in engine (the hidden `engine`
/// subcommand) must measure what `fanfare serve` would.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for Fanfare, with mock push vendors
#[derive(Parser)]
#[command(version)]
enum Command {
    /// Start mock vendors and an engine on loopback, run a scenario, print a report.
    Run(Box<RunArgs>),
    /// Run the engine exactly as `fanfare serve --config FILE` does (the load
    /// generator's engine child process).
    #[command(hide = true)]
    Engine {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Scenario to run.
    #[arg(long, value_enum, default_value = "mixed")]
    pub scenario: scenarios::Scenario,
    /// Users (default per scenario: 5,000; bind and presence 100,000; the ceiling's
    /// device tokens 10,000; group: the largest of --group-sizes).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub users: u32,
    /// Devices per user (bind).
    #[arg(long, default_value_t = 1)]
    pub devices: u32,
    /// Group sizes (group); 10% of members online unless --online-share says otherwise.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    pub group_sizes: Vec<u32>,
    /// group: each group message carries `badge_increment` = this (0 = none), so every
    /// recipient's counter is raised and their own total rendered into their push (for
    /// the A/B of the badge cost against a run without it).
    #[arg(long, default_value_t = 0)]
    pub badge_increment: u32,
    /// Share of users online (they must not be pushed).
    #[arg(long, default_value_t = 0.1)]
    pub online_share: f64,
    /// Seconds of open-loop peer traffic (peer, mixed) or presence churn (presence).
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Peer messages per second (open loop, fixed schedule).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Presence events per request (presence; the API takes up to 10,000).
    #[arg(long, default_value_t = 1_000)]
    pub presence_batch: usize,
    /// Session TTL of online events, seconds (presence).
    #[arg(long, default_value_t = 30)]
    pub session_ttl: u64,
    /// Pushes the bare HTTP/2 client sends (ceiling).
    #[arg(long, default_value_t = 200_000)]
    pub pushes: u64,
    /// Give up waiting for deliveries after this many seconds (group: plus 1 s per
    /// 1,000 pushes of the group's fan-out).
    #[arg(long, default_value_t = 60.0)]
    pub drain_timeout: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency distribution as an SVG plot to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Run the engine as `PATH serve --config FILE` (a `fanfare` binary) instead of
    /// this binary's built-in engine.
    #[arg(long, value_name = "PATH")]
    pub spawn_engine: Option<PathBuf>,
    /// Use an engine started by hand at this URL (e.g. http://127.0.0.1:7070); the run
    /// starts the mocks, writes the engine's config to --mock-dir and waits for it.
    #[arg(long, value_name = "URL", requires = "mock_dir")]
    pub engine: Option<String>,
    /// Where the engine config for --engine is written (with the mocks' CA and keys).
    #[arg(long, value_name = "DIR")]
    pub mock_dir: Option<PathBuf>,
    /// The --engine process's pid, for its CPU time and memory (default: the process
    /// listening on the --engine address, found in /proc).
    #[arg(long, value_name = "PID")]
    pub engine_pid: Option<u32>,
    /// Seconds to wait for the --engine to become healthy.
    #[arg(long, default_value_t = 300.0)]
    pub engine_wait: f64,
    /// cluster: engines (1..=3).
    #[arg(long, default_value_t = 3)]
    pub engines: usize,
    /// cluster: NATS servers, 1 or 3 (the streams' replicas; default 3). Other
    /// scenarios with a spawned engine: 1 runs that engine in cluster mode against one
    /// local nats-server (replicas 1), for the A/B against the standalone engine (the
    /// default, no NATS).
    #[arg(long, value_name = "N")]
    pub nats: Option<usize>,
    /// cluster: delay every mock vendor adds before each answer, ms (0..=10000), so
    /// that the vendor and not the CPU is the bottleneck.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// cluster: what runs after the binds and the replication lag. `full`: one group
    /// message with one engine SIGKILLed while it holds chunks, then restarted with an
    /// empty data directory (`join_s`); `fanout`: the group message, nobody killed (a
    /// throughput run); `join`: no group message, an extra engine joins with an empty
    /// data directory.
    #[arg(long, value_enum, default_value = "full")]
    pub shape: scenarios::cluster::Shape,
    /// cluster `--shape full`: kill once this share of the pushes arrived, in [0, 1);
    /// 0 kills as soon as an engine has queued a chunk (with --latency-ms, while its
    /// pushes wait for their answers).
    #[arg(long, default_value_t = 0.25)]
    pub kill_at: f64,
    /// Tags message and call ids, so that runs against one --engine do not collide
    /// with its dedup window.
    #[arg(skip = format!("{:08x}", rand::random::<u32>()))]
    pub run_id: String,
}

impl RunArgs {
    /// Fill in the per-scenario defaults.
    fn resolve(mut self) -> RunArgs {
        use scenarios::Scenario;
        if self.users == 0 {
            self.users = match self.scenario {
                Scenario::Bind | Scenario::Presence | Scenario::Cluster => 100_000,
                Scenario::Ceiling => 10_000,
                Scenario::Group => self.group_sizes.iter().copied().max().unwrap_or(0),
                _ => 5_000,
            };
        }
        self
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.users > 0, "--users must be > 0");
        anyhow::ensure!(self.devices > 0, "--devices must be > 0");
        anyhow::ensure!(
            (0.0..1.0).contains(&self.online_share),
            "--online-share must be in [0, 1)"
        );
        anyhow::ensure!(
            self.duration > 0.0 && self.duration <= 3600.0,
            "--duration must be in (0, 3600] seconds"
        );
        anyhow::ensure!(
            self.drain_timeout > 0.0 && self.drain_timeout <= 3600.0,
            "--drain-timeout must be in (0, 3600] seconds"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.presence_batch),
            "--presence-batch must be in 1..=10000"
        );
        anyhow::ensure!(self.rate > 0, "--rate must be > 0");
        anyhow::ensure!(
            self.pushes > 0 && self.pushes <= 100_000_000,
            "--pushes must be in 1..=100000000"
        );
        anyhow::ensure!(
            self.group_sizes
                .iter()
                .all(|s| (1..=10_000_000).contains(s)),
            "--group-sizes must be in 1..=10000000"
        );
        self.validate_cluster()?;
        if let Some(url) = &self.engine {
            let host = url
                .strip_prefix("http://")
                .and_then(|h| h.split(':').next())
                .unwrap_or("");
            anyhow::ensure!(
                host == "127.0.0.1" || host == "localhost" || host == "[::1]",
                "--engine must be a loopback http:// URL (the load generator stays on loopback)"
            );
        }
        Ok(())
    }
}

impl RunArgs {
    /// The cluster flags: bounded, and only where they mean something.
    fn validate_cluster(&self) -> anyhow::Result<()> {
        use scenarios::cluster::Shape;
        use scenarios::Scenario;
        if self.scenario == Scenario::Cluster {
            anyhow::ensure!(
                (1..=3).contains(&self.engines),
                "--engines must be in 1..=3"
            );
            anyhow::ensure!(
                matches!(self.nats, None | Some(1) | Some(3)),
                "--nats must be 1 or 3 for the cluster scenario"
            );
            anyhow::ensure!(
                self.latency_ms <= 10_000,
                "--latency-ms must be in 0..=10000"
            );
            anyhow::ensure!(
                (0.0..1.0).contains(&self.kill_at),
                "--kill-at must be in [0, 1)"
            );
            anyhow::ensure!(
                self.shape != Shape::Full || self.engines > 1,
                "--shape full needs --engines 2 or more (the others finish the killed engine's chunks)"
            );
            return Ok(());
        }
        anyhow::ensure!(
            self.engines == 3
                && self.latency_ms == 0
                && self.shape == Shape::Full
                && self.kill_at == 0.25,
            "--engines, --latency-ms, --shape and --kill-at apply to the cluster scenario only"
        );
        if let Some(n) = self.nats {
            anyhow::ensure!(n == 1, "--nats must be 1 outside the cluster scenario");
            anyhow::ensure!(
                !matches!(self.scenario, Scenario::Ceiling | Scenario::Faults),
                "--nats needs a scenario that drives an engine (not ceiling or faults)"
            );
            anyhow::ensure!(
                self.engine.is_none(),
                "--nats needs a spawned engine (not --engine)"
            );
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let command = Command::parse();
    if let Command::Engine { config } = &command {
        // Die with the load generator, even when it is killed.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
        return fanfare::serve::main(Some(config));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FANFARE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime can be built");
    match command {
        Command::Engine { .. } => unreachable!("handled above"),
        Command::Run(args) if args.scenario == scenarios::Scenario::Faults => {
            faults::exit_code(rt.block_on(faults::run((*args).resolve())))
        }
        Command::Run(args) if args.scenario == scenarios::Scenario::Cluster => {
            let args = (*args).resolve();
            let program = match &args.spawn_engine {
                Some(path) => engine_proc::Program::Fanfare(path.clone()),
                None => engine_proc::Program::SelfExe,
            };
            match rt.block_on(scenarios::cluster::main(args, program)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("fanfare-loadgen: pushes were lost in the cluster run");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("fanfare-loadgen: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => match rt.block_on(scenarios::run((*args).resolve())) {
            Ok(report) if report.ok() => ExitCode::SUCCESS,
            Ok(report) => {
                eprintln!(
                    "fanfare-loadgen: {} expected pushes not delivered, {} to online users, {} API errors",
                    report.errors.lost,
                    report.pushes_to_online_users,
                    report.errors.api_total()
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("fanfare-loadgen: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
