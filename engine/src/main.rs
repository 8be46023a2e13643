//! The `fanfare` binary: `serve`, `check-config` and `config default`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fanfare::config::Config;

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
    /// Validate a config file (with the FANFARE_* environment overrides) and explain
    /// every problem, including a storage dir that cannot be created or written.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// The configuration file format.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default and its documentation, as a TOML file.
    Default,
}

fn main() -> ExitCode {
    match Command::parse() {
        Command::CheckConfig { file } => check_config(file),
        Command::Config(ConfigCommand::Default) => {
            print!("{}", fanfare::config::REFERENCE);
            ExitCode::SUCCESS
        }
        Command::Serve { config } => fanfare::serve::main(config.as_deref()),
    }
}

/// Every problem of `file`: its keys (with line and column), the environment
/// overrides, what the keys mean together, and the storage dir.
fn check_config(file: PathBuf) -> ExitCode {
    let loaded = match Config::read(Some(&file), std::env::vars()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "{}: {}",
                file.display(),
                fanfare::providers::error_chain(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    let mut problems = loaded.problems;
    problems.extend(loaded.config.problems());
    problems.extend(loaded.config.storage_problems());
    if problems.is_empty() {
        println!("{}: ok", file.display());
        return ExitCode::SUCCESS;
    }
    eprintln!("{}: {} problem(s):", file.display(), problems.len());
    for p in problems {
        eprintln!("  - {p}");
    }
    ExitCode::FAILURE
}
