//! The `fanfare` binary: `serve` and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fanfare",
    version,
    about = "Offline-push fan-out engine for IM servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine (embedded defaults when no --config is given).
    Serve {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and explain every problem.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
}

fn load(path: Option<&std::path::Path>) -> Result<fanfare::config::Config, fanfare::config::Error> {
    fanfare::config::Config::load(path, std::env::vars())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(Some(&file)) {
            Ok(c) => {
                let problems = c.problems();
                if problems.is_empty() {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                } else {
                    eprintln!("{}: {} problem(s):", file.display(), problems.len());
                    for p in problems {
                        eprintln!("  - {p}");
                    }
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!(
                    "{}: {}",
                    file.display(),
                    fanfare::providers::error_chain(&e)
                );
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("FANFARE_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .init();
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("fanfare: {}", fanfare::providers::error_chain(&e));
                    return ExitCode::FAILURE;
                }
            };
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            rt.block_on(async move {
                let running = match fanfare::start(config).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("fanfare: {}", fanfare::providers::error_chain(&e));
                        return ExitCode::FAILURE;
                    }
                };
                wait_for_signal().await;
                tracing::info!("shutdown requested");
                running.shutdown().await;
                ExitCode::SUCCESS
            })
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
