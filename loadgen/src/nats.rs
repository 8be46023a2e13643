//! Real `nats-server` processes for cluster mode: one server, or a three-server
//! JetStream cluster, on loopback ports with their stores in a temporary directory.
//! Shared by the cluster tests and the load generator.
//!
//! Ports are picked free (bind `127.0.0.1:0`, release) and a start that fails because
//! another process took one meanwhile is tried again with new ports. Each server keeps
//! its ports and store for life, so [`Nats::restart`] brings a SIGKILLed server back
//! where the engines look for it. Every process is killed when the handle drops.
//!
//! `nats-server` comes from the Debian package (`apt-get install nats-server`,
//! 2.9.x); `FANFARE_NATS_SERVER` names another binary.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use parking_lot::Mutex;

/// How long one server may take to listen (and a cluster to elect its JetStream
/// leader) before the start is given up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts tried before giving up (a port taken between picking and binding).
const ATTEMPTS: usize = 4;
/// Log lines kept per server to explain a failure.
const LOG_LINES: usize = 200;

/// The cluster name of a multi-server setup.
pub const CLUSTER_NAME: &str = "fanfare";

/// The `nats-server` binary: `$FANFARE_NATS_SERVER`, else `nats-server` on `PATH` or in
/// `/usr/sbin` (where Debian puts it).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FANFARE_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

/// Whether a `nats-server` binary is there to run.
pub fn available() -> bool {
    binary().is_file()
}

/// One server's fixed places.
struct Spec {
    name: String,
    port: u16,
    route_port: Option<u16>,
    store: PathBuf,
}

struct Server {
    spec: Spec,
    child: Mutex<Option<Child>>,
    log: Arc<Mutex<Vec<String>>>,
}

/// A running set of NATS servers (1, or a cluster of 3 or more).
pub struct Nats {
    servers: Vec<Server>,
    /// The stores' parent; removed on drop.
    _dir: tempfile::TempDir,
}

impl Nats {
    /// One JetStream server.
    pub fn single() -> anyhow::Result<Nats> {
        Self::start(1)
    }

    /// `n` JetStream servers; with more than one, routed as one cluster (every server
    /// is given every route, as JetStream clustering wants).
    pub fn start(n: usize) -> anyhow::Result<Nats> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match Self::try_start(n) {
                Ok(nats) => return Ok(nats),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .expect("at least one attempt")
            .context("start nats-server"))
    }

    fn try_start(n: usize) -> anyhow::Result<Nats> {
        let dir = tempfile::Builder::new().prefix("fanfare-nats").tempdir()?;
        let ports = free_ports(if n > 1 { 2 * n } else { n })?;
        let mut servers: Vec<Server> = (0..n)
            .map(|i| Server {
                spec: Spec {
                    name: format!("n{i}"),
                    port: ports[i],
                    route_port: (n > 1).then(|| ports[n + i]),
                    store: dir.path().join(format!("n{i}")),
                },
                child: Mutex::new(None),
                log: Arc::new(Mutex::new(Vec::new())),
            })
            .collect();
        let routes = routes(&servers);
        for s in &mut servers {
            s.launch(&routes)?;
        }
        let nats = Nats { servers, _dir: dir };
        for i in 0..n {
            nats.wait_listening(i)?;
        }
        if n > 1 {
            nats.wait_log_any("JetStream cluster new metadata leader")?;
        } else {
            nats.wait_log_any("Server is ready")?;
        }
        Ok(nats)
    }

    /// Every server's client URL, comma-separated (`cluster.nats_urls` from the
    /// environment takes this form too).
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.spec.port))
            .collect()
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].spec.port)
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// SIGKILL server `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.lock().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start server `i` again on its ports and store (after [`Nats::kill`]); returns
    /// once it listens.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let routes = routes(&self.servers);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.servers[i].log.lock().clear();
            self.servers[i].launch(&routes)?;
            match self.wait_listening(i) {
                Ok(()) => return Ok(()),
                // The old process's port may linger for a moment.
                Err(_) if Instant::now() < deadline => {
                    self.kill(i);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What server `i` has logged (for a failing test's message).
    pub fn log(&self, i: usize) -> String {
        self.servers[i].log.lock().join("\n")
    }

    fn wait_listening(&self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let s = &self.servers[i];
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", s.spec.port)).is_ok()
                && s.log.lock().iter().any(|l| l.contains("Server is ready"))
            {
                return Ok(());
            }
            if Instant::now() >= deadline || !s.alive() {
                bail!(
                    "nats server {} did not start on port {}:\n{}",
                    s.spec.name,
                    s.spec.port,
                    self.log(i)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_log_any(&self, needle: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self
                .servers
                .iter()
                .any(|s| s.log.lock().iter().any(|l| l.contains(needle)))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("no nats server logged {needle:?}:\n{}", self.log(0));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

impl Server {
    fn alive(&self) -> bool {
        (self.child.lock().as_mut()).is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn launch(&mut self, routes: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.spec.store)?;
        let mut cmd = Command::new(binary());
        cmd.args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.spec.port.to_string())
            .arg("-sd")
            .arg(&self.spec.store)
            .args(["--server_name", &self.spec.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(rp) = self.spec.route_port {
            cmd.args(["--cluster_name", CLUSTER_NAME])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{rp}"))
                .arg("--routes")
                .arg(routes);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("run {} (apt-get install nats-server)", binary().display()))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock();
                if log.len() >= LOG_LINES {
                    log.remove(0);
                }
                log.push(line);
            }
        });
        *self.child.lock() = Some(child);
        Ok(())
    }
}

/// Every server's route URL, comma-separated.
fn routes(servers: &[Server]) -> String {
    servers
        .iter()
        .filter_map(|s| s.spec.route_port)
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `n` distinct ports free a moment ago on 127.0.0.1.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?)
}

/// The store directory of a server (tests that look at what JetStream wrote).
pub fn store_of(nats: &Nats, i: usize) -> &Path {
    &nats.servers[i].spec.store
}
