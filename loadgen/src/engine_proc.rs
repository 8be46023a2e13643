//! The engine under test in its own process, so that its CPU time and memory are
//! measured alone (the driver and the mock vendors stay in the load generator's
//! process).
//!
//! [`EngineProc::spawn`] starts a child — by default this very binary re-executed as
//! `fanfare-loadgen engine --config FILE`, which runs [`fanfare::serve::main`], exactly
//! what `fanfare serve` runs; or a given `fanfare` binary as `PATH serve --config FILE` —
//! and reads the API address from its `fanfare ready addr=...` log line. The child is
//! stopped on every exit path: [`EngineProc::stop`] sends SIGTERM and waits (bounded,
//! then SIGKILL); dropping the handle kills it (`kill_on_drop`).
//!
//! [`ProcStats`] reads a process's CPU time (utime + stime) and resident memory
//! (VmRSS, VmHWM) from /proc; [`pid_listening_on`] finds an engine started by hand.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the child may take from exec to `fanfare ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd child may take to drain and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines of the child kept to explain a failure.
const LOG_TAIL: usize = 40;

/// Which program runs the engine.
#[derive(Debug, Clone)]
pub enum Program {
    /// This binary, `fanfare-loadgen engine --config FILE`.
    SelfExe,
    /// A `fanfare` binary, `PATH serve --config FILE`.
    Fanfare(PathBuf),
}

/// A running engine child process.
pub struct EngineProc {
    child: Child,
    pid: u32,
    addr: String,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl EngineProc {
    /// Start the engine on `config` and wait until it logged that it is ready.
    pub async fn spawn(program: &Program, config: &Path) -> anyhow::Result<EngineProc> {
        let mut cmd = match program {
            Program::SelfExe => {
                let exe = std::env::current_exe().context("locate the fanfare-loadgen binary")?;
                let mut c = Command::new(exe);
                c.arg("engine");
                c
            }
            Program::Fanfare(path) => {
                let mut c = Command::new(path);
                c.arg("serve");
                c
            }
        };
        cmd.arg("--config")
            .arg(config)
            // The child's own log filter; `fanfare ready` (logged at info) always passes.
            .env(
                "FANFARE_LOG",
                format!(
                    "{},fanfare::serve=info",
                    std::env::var("FANFARE_ENGINE_LOG").unwrap_or_else(|_| "info".into())
                ),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start the engine process ({program:?})"))?;
        let pid = child.id().context("the engine process has a pid")?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let (ready_tx, ready_rx) = tokio::sync::mpsc::channel::<String>(1);
        let stdout = child.stdout.take().context("engine stdout is piped")?;
        let stderr = child.stderr.take().context("engine stderr is piped")?;
        tokio::spawn(follow_log(stdout, tail.clone(), ready_tx.clone()));
        tokio::spawn(follow_log(stderr, tail.clone(), ready_tx));
        let mut ready_rx = ready_rx;
        let addr = tokio::select! {
            a = ready_rx.recv() => a,
            _ = tokio::time::sleep(READY_TIMEOUT) => None,
        };
        let Some(addr) = addr else {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill().await;
            bail!(
                "the engine process did not become ready (exit status {status:?}); its last log lines:\n{}",
                tail.lock().iter().cloned().collect::<Vec<_>>().join("\n")
            );
        };
        Ok(EngineProc {
            child,
            pid,
            addr,
            tail,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://ip:port` of the engine's API.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL and reap (an engine dying mid-work).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then wait for the exit (drain + shutdown), killing it after
    /// [`STOP_TIMEOUT`]. Fails when the engine did not exit cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.pid as i32)
            .context("the engine's pid is positive")?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!(
                "the engine exited with {status}; its last log lines:\n{}",
                self.tail
                    .lock()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Ok(Err(e)) => Err(e).context("wait for the engine process"),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the engine did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed")
            }
        }
    }
}

/// Keep the last lines of the child's log, pass its warnings and errors on to our
/// stderr, and report the address of its `fanfare ready addr=...` line.
async fn follow_log(
    stream: impl tokio::io::AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
    ready: tokio::sync::mpsc::Sender<String>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("fanfare ready") {
            if let Some(addr) = line.split("addr=").nth(1) {
                let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                let _ = ready.try_send(addr);
            }
        }
        // Durability none is the load generator's own choice, not news.
        let expected = line.contains("storage.durability = none");
        if (line.contains(" WARN ") || line.contains(" ERROR ")) && !expected {
            eprintln!("engine| {line}");
        }
        let mut t = tail.lock();
        if t.len() == LOG_TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// CPU time and memory of one process, from /proc.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcStats {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// VmRSS, bytes.
    pub rss_bytes: u64,
    /// VmHWM (peak resident set), bytes.
    pub peak_rss_bytes: u64,
}

impl ProcStats {
    /// The stats of process `pid` (`None`: this process). `None` when /proc cannot
    /// tell (the process is gone, or this is not Linux).
    pub fn read(pid: Option<u32>) -> Option<ProcStats> {
        let p = match pid {
            Some(pid) => procfs::process::Process::new(pid as i32).ok()?,
            None => procfs::process::Process::myself().ok()?,
        };
        let stat = p.stat().ok()?;
        let status = p.status().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        Some(ProcStats {
            cpu_s: (stat.utime + stat.stime) as f64 / ticks,
            rss_bytes: status.vmrss.unwrap_or(0) * 1024,
            peak_rss_bytes: status.vmhwm.unwrap_or(0) * 1024,
        })
    }
}

/// The process listening on TCP `addr` (an engine started by hand), found through
/// /proc/net/tcp{,6} and the processes' socket descriptors this user may read.
pub fn pid_listening_on(addr: std::net::SocketAddr) -> Option<u32> {
    use procfs::net::TcpState;
    use procfs::process::FDTarget;
    let entries = procfs::net::tcp()
        .into_iter()
        .chain(procfs::net::tcp6())
        .flatten();
    let inode = entries
        .filter(|e| e.state == TcpState::Listen && e.local_address.port() == addr.port())
        .find(|e| e.local_address.ip() == addr.ip() || e.local_address.ip().is_unspecified())?
        .inode;
    procfs::process::all_processes()
        .ok()?
        .flatten()
        .find_map(|p| {
            p.fd()
                .ok()?
                .flatten()
                .any(|fd| matches!(fd.target, FDTarget::Socket(i) if i == inode))
                .then_some(p.pid as u32)
        })
}
