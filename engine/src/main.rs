//! The `fanfare` binary: `serve` and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: every push allocates (h2 stream state, header
/// maps, buffers) across threads, and glibc's malloc/free was a fifth of the engine's
/// CPU in the push-path profile (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Offline-push fan-out engine for IM servers
#[derive(Parser)]
#[command(version)]
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
    match Command::parse() {
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
        Command::Serve { config } => fanfare::serve::main(config.as_deref()),
    }
}
