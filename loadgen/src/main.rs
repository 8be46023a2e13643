//! `fanfare-loadgen`: drive a Fanfare engine with a load scenario against mock vendors
//! and report throughput, latency and cost.

mod ceiling;
mod faults;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fanfare-loadgen",
    version,
    about = "Load generator for Fanfare, with mock push vendors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start mock vendors and an engine on loopback, run a scenario, print a report.
    Run(RunArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Scenario: mixed (peer + group + call), peer, group, call, vendors (all eight
    /// vendors, one group message), faults (vendor faults, exactly-once check).
    #[arg(long, default_value = "mixed")]
    pub scenario: run::Scenario,
    /// Users to register (each gets one APNs or FCM device).
    #[arg(long, default_value_t = 5_000)]
    pub users: u32,
    /// Share of users online (they must not be pushed).
    #[arg(long, default_value_t = 0.1)]
    pub online_share: f64,
    /// Seconds of open-loop peer traffic.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Peer messages per second (open loop, fixed schedule).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FANFARE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match cli.command {
        Command::Run(args) if args.scenario == run::Scenario::Faults => {
            faults::exit_code(rt.block_on(faults::run(args)))
        }
        Command::Run(args) => match rt.block_on(run::run(args)) {
            Ok(report) => {
                if report.lost() > 0 {
                    eprintln!(
                        "fanfare-loadgen: {} expected pushes were not delivered",
                        report.lost()
                    );
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("fanfare-loadgen: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
