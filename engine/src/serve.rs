//! What `fanfare serve` does, as a library function, so that every binary that runs the
//! engine (the `fanfare` binary, and `fanfare-loadgen`'s engine child process that it
//! measures alone) runs exactly the same thing: the config loaded (file + environment
//! overrides), logging set up per `[log]` and `FANFARE_LOG`, a multi-threaded runtime, [`crate::start`],
//! then SIGTERM or SIGINT → [`crate::Running::shutdown`]; SIGHUP re-reads the config
//! file ([`crate::reload`]).
//!
//! Once the engine is ready it logs `fanfare ready addr=<ip:port>` at info level: the
//! line a supervisor (or the load generator) reads to learn the API address when the
//! config asks for port 0.

use std::path::Path;
use std::process::ExitCode;

/// Run the engine until SIGTERM or SIGINT, then shut it down (drain, snapshot).
/// Returns the process exit code: failure when the config is invalid or the engine
/// cannot start.
pub fn main(config: Option<&Path>) -> ExitCode {
    let config = match crate::config::Config::load(config, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fanfare: {}", crate::providers::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    crate::telemetry::logging::init(&config.log);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanfare: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        ignore_file_size_signal();
        let running = match crate::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("fanfare: {}", crate::providers::error_chain(&e));
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(addr = %running.local_addr(), "fanfare ready");
        let reloads = tokio::spawn(reload_on_hangup(running.engine().clone()));
        let failed = tokio::select! {
            _ = wait_for_signal() => None,
            reason = running.failure() => Some(reason),
        };
        reloads.abort();
        match &failed {
            None => tracing::info!("shutdown requested"),
            Some(reason) => tracing::error!(reason, "stopping: the engine cannot go on serving"),
        }
        running.shutdown().await;
        if failed.is_some() {
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    })
}

/// A write past `RLIMIT_FSIZE` raises SIGXFSZ, whose default action kills the process.
/// With a handler installed the write fails with EFBIG instead, which the log handles
/// like a full disk: the change is refused and nothing is lost. (tokio keeps the handler
/// installed for the life of the process once registered.)
fn ignore_file_size_signal() {
    let xfsz = tokio::signal::unix::SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
    if let Err(e) = tokio::signal::unix::signal(xfsz) {
        tracing::warn!(error = %e, "cannot handle SIGXFSZ: a write past the file size limit will kill the process");
    }
}

/// SIGHUP re-reads the config file, as `POST /v1/admin/reload` does (the reload logs
/// its outcome).
async fn reload_on_hangup(engine: std::sync::Arc<crate::Engine>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP: reload through the API only");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        let _ = engine.reload.reload(&engine).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler succeeds on unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
