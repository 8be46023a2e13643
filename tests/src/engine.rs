//! The engine as a binary of this package, so that the cluster tests can run engines
//! as processes (`CARGO_BIN_EXE_fanfare-engine`, which Cargo only gives a package's
//! tests for its own binaries): `fanfare-engine serve --config FILE` runs
//! [`fanfare::serve::main`], exactly what `fanfare serve` runs.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    fanfare::serve::main(config.as_deref())
}
