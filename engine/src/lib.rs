//! # Fanfare: offline-push fan-out engine
//!
//! Fanfare runs beside an IM server. The IM server reports presence, binds device push
//! IDs to users, manages groups and hands over messages and call invitations; Fanfare
//! pushes every offline recipient's devices through the vendors' HTTP/2 APIs.
//!
//! Data flows through the modules in this order:
//!
//! - [`api`]: the HTTP API (HTTP/1.1 and h2c), auth, validation, JSON errors;
//! - [`state`]: user interning, presence bitset + sessions, push-ID registry, groups;
//!   every durable change is a [`state::Mutation`] applied through [`Engine::mutate`];
//! - [`fanout`]: planning (offline recipients → device targets per vendor lane),
//!   bounded dispatch lanes, dedup of message ids;
//! - [`providers`]: one module per vendor (auth tokens, payload rendering, response
//!   classification into [`providers::Outcome`]);
//! - [`transport`]: TLS config and the pool of multiplexed HTTP/2 connections.
//!
//! What happened to each message is kept in the delivery ledger ([`fanout::ledger`])
//! and dead tokens and rejections go back to the IM server through [`feedback`].
//!
//! Beside them: [`store`] (write-ahead log, rkyv snapshots, recovery), [`cluster`]
//! (`[cluster]`: the state stream on NATS JetStream in place of the log), [`config`]
//! (TOML + env overrides), [`clock`], [`shutdown`], [`telemetry`] (stats and
//! Prometheus rendering), [`serve`] (what `fanfare serve` runs, shared with the load
//! generator's engine process), and [`client`] (the typed API client of the programs
//! that drive an engine: load generator, tests, benches).
//!
//! Life cycle ([`start`]): bind the API (it answers 503 until ready) → lock the data
//! directory (one engine per directory) and recover state from the snapshot and the
//! log → attach the log → ready. `/healthz` is liveness; `/readyz` is also 503 while
//! durable writes are failing ([`Engine::write_failure`]). Shutdown
//! ([`Running::shutdown`]): stop accepting → finish open requests → drain queued
//! pushes for up to `api.shutdown_grace_s` → final snapshot → close the log.

pub mod api;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod fanout;
pub mod feedback;
pub mod providers;
pub mod reload;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod transport;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use config::Config;
use fanout::dedup::Dedup;
use fanout::dispatch::Dispatcher;
use fanout::ledger::Ledger;
use providers::Providers;
use state::{Applied, Mutation, State};
use telemetry::{Gauges, Stats};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Providers(#[from] providers::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("recovery failed")]
    Recovery(#[source] Arc<store::Error>),
    #[error("recovery task died")]
    RecoveryPanicked,
    #[error("the feedback webhook client could not be built")]
    Feedback(#[source] transport::tls::Error),
}

/// The running engine's shared core, handed to every API handler.
pub struct Engine {
    pub config: Config,
    pub state: Arc<State>,
    pub stats: Arc<Stats>,
    pub dispatcher: Dispatcher,
    /// Re-reads the config file (`POST /v1/admin/reload`, SIGHUP).
    pub reload: reload::Reloader,
    pub dedup: Dedup,
    /// What happened to each message and call (`GET /v1/messages/{id}`).
    pub ledger: Ledger,
    store: OnceLock<Arc<store::Store>>,
    /// Cluster mode: this engine's node, once it has joined.
    cluster: OnceLock<Arc<cluster::Node>>,
    ready: AtomicBool,
    /// Set when the engine can no longer serve correctly and must stop (cluster mode:
    /// the state stream lost records it had not applied); [`Running::failure`].
    fatal: tokio::sync::watch::Sender<Option<String>>,
}

impl Engine {
    /// The vendor clients and delivery settings as configured now (a reload swaps
    /// them: hold the guard for one use, not across a long wait).
    pub fn providers(&self) -> arc_swap::Guard<Arc<Providers>> {
        self.dispatcher.providers()
    }

    /// Apply a durable mutation and return once it is durable: the one write path for
    /// bindings and groups. Only called once ready (the API refuses work before).
    pub async fn mutate(&self, m: Mutation) -> Result<Applied, store::Error> {
        if let Some(node) = self.cluster.get() {
            return node
                .commit(&m)
                .await
                .map_err(|e| store::Error::Cluster(Box::new(e)));
        }
        match self.store.get() {
            Some(store) => store.commit(&m).await,
            None => Err(store::Error::Stopped),
        }
    }

    /// Cluster mode's node (`None` on a single engine).
    pub fn cluster(&self) -> Option<&Arc<cluster::Node>> {
        self.cluster.get()
    }

    /// The store, once recovery has finished.
    pub fn store(&self) -> Option<&Arc<store::Store>> {
        self.store.get()
    }

    /// True once start-up (and, with storage, recovery) has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Why durable writes are being refused, while they are (`/readyz` says so); the
    /// text is an I/O error's, without paths or secrets.
    pub fn write_failure(&self) -> Option<String> {
        if let Some(node) = self.cluster.get() {
            return node.write_failure();
        }
        self.store.get().and_then(|s| s.write_failure())
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            bindings: self.state.registry.len(),
            users: self.state.users.len(),
            online_users: self.state.presence.online_users(),
            groups: self.state.groups.len(),
            storage_refused_writes: self.store.get().map_or(0, |s| s.refused_writes()),
            storage_writes_failing: self
                .store
                .get()
                .is_some_and(|s| s.write_failure().is_some()),
            queues: self.dispatcher.depths(),
            storage: self.store.get().map(|s| (s.stats().clone(), s.wal_bytes())),
            now_unix_ms: self.state.clock.unix_now_ms(),
        }
    }
}

/// A started engine: its address, its core, and the way to stop it.
pub struct Running {
    addr: SocketAddr,
    engine: Arc<Engine>,
    api_trigger: shutdown::Trigger,
    workers_trigger: shutdown::Trigger,
    api_task: Option<tokio::task::JoinHandle<()>>,
    tasks: JoinSet<()>,
    /// `Some` once recovery has ended: its error, if any (`None` inside: it panicked).
    ready: tokio::sync::watch::Receiver<Option<Result<(), Option<Arc<store::Error>>>>>,
}

/// Start the engine and return once it is ready (recovery done).
pub async fn start(config: Config) -> Result<Running, Error> {
    let mut running = start_background(config).await?;
    running.wait_ready().await?;
    Ok(running)
}

/// Bind the API and start recovery in the background; the API answers 503 until
/// [`Running::wait_ready`] resolves.
pub async fn start_background(config: Config) -> Result<Running, Error> {
    let settings = config.validate()?;
    let providers = Providers::new(&settings)?;
    for p in state::ProviderKind::ALL {
        if !providers.is_configured(p) {
            tracing::info!(
                provider = p.as_str(),
                "vendor not configured: its pushes are counted as unconfigured"
            );
        }
    }
    if config.storage.durability == config::Durability::None {
        tracing::warn!("storage.durability = none: acknowledged changes can be lost (tests only)");
    }
    let clock = clock::Clock::new();
    let state = Arc::new(State::with_presence(clock.clone(), &config.presence));
    let stats = Arc::new(Stats::default());
    let providers = Arc::new(providers);
    let (api_trigger, api_shutdown) = shutdown::channel();
    let (workers_trigger, workers_shutdown) = shutdown::channel();
    let dispatcher = Dispatcher::spawn(
        providers.clone(),
        state.clone(),
        stats.clone(),
        config.messages.queue_capacity,
        workers_shutdown.clone(),
    );
    let mut tasks = JoinSet::new();
    let reload = reload::Reloader::new(
        settings.feedback.as_ref(),
        &stats,
        &clock,
        &dispatcher,
        workers_shutdown.clone(),
    )
    .map_err(Error::Feedback)?;
    let addr = config.listen_addr();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    let engine = Arc::new(Engine {
        dedup: Dedup::new(clock.clone(), config.messages.dedup_window_s),
        ledger: Ledger::new(
            clock,
            (config.messages.ledger_retention_s).unwrap_or(config.messages.dedup_window_s),
        ),
        config,
        state,
        stats,
        dispatcher,
        reload,
        store: OnceLock::new(),
        cluster: OnceLock::new(),
        ready: AtomicBool::new(false),
        fatal: tokio::sync::watch::Sender::new(None),
    });
    let api_task = tokio::spawn(api::server::run(listener, engine.clone(), api_shutdown));
    tracing::info!(%addr, "fanfare API listening (ready after recovery)");
    let (ready_tx, ready) = tokio::sync::watch::channel(None);
    let recovering = engine.clone();
    match recovering.config.cluster.clone() {
        Some(cfg) => tasks.spawn(async move {
            let outcome = join_cluster(&recovering, &cfg, workers_shutdown).await;
            let _ = ready_tx.send(Some(outcome.map_err(Some)));
        }),
        None => tasks.spawn(async move {
            let outcome = recover(&recovering).await;
            let ok = outcome.is_ok();
            let _ = ready_tx.send(Some(outcome));
            if ok {
                snapshots(recovering, workers_shutdown).await;
            }
        }),
    };
    tasks.spawn(housekeeping(engine.clone(), api_trigger.subscribe()));
    Ok(Running {
        addr,
        engine,
        api_trigger,
        workers_trigger,
        api_task: Some(api_task),
        tasks,
        ready,
    })
}

/// Single-engine recovery: open the store (snapshot, then WAL replay) off the runtime,
/// then ready. `Err(None)` when the recovery task panicked.
async fn recover(engine: &Arc<Engine>) -> Result<(), Option<Arc<store::Error>>> {
    let e = engine.clone();
    let result =
        tokio::task::spawn_blocking(move || store::Store::open(&e.config.storage, &e.state)).await;
    match result {
        Ok(Ok((store, rec))) => {
            tracing::info!(
                snapshot_seq = ?rec.snapshot_seq,
                snapshot_bytes = rec.snapshot_bytes,
                bindings_from_snapshot = rec.bindings_from_snapshot,
                wal_records = rec.wal_records,
                wal_bytes = rec.wal_bytes,
                snapshots_passed_over = rec.snapshots_passed_over,
                wal_segments_skipped = rec.wal_segments_skipped,
                torn_tail_bytes = rec.torn_tail_bytes,
                last_seq = rec.last_seq,
                elapsed_ms = rec.elapsed.as_millis() as u64,
                "recovery finished"
            );
            let _ = engine.store.set(Arc::new(store));
            loaded(engine, rec.elapsed);
            Ok(())
        }
        Ok(Err(e)) => Err(Some(Arc::new(e))),
        Err(_) => {
            tracing::error!("recovery task panicked");
            Err(None)
        }
    }
}

/// Recovery or the cluster join is done: log what the state holds and how long
/// loading it took, then answer requests.
fn loaded(engine: &Engine, elapsed: std::time::Duration) {
    tracing::info!(
        elapsed_ms = elapsed.as_millis() as u64,
        bindings = engine.state.registry.len(),
        groups = engine.state.groups.len(),
        "ready"
    );
    engine.ready.store(true, Ordering::Release);
}

/// Cluster mode's recovery: join the cluster ([`cluster::start`]), route dead-token
/// removals to the state stream, then ready.
async fn join_cluster(
    engine: &Arc<Engine>,
    cfg: &config::Cluster,
    shutdown: shutdown::Shutdown,
) -> Result<(), Arc<store::Error>> {
    let (node, joined) = cluster::start(engine, cfg, shutdown)
        .await
        .map_err(|e| Arc::new(store::Error::Cluster(Box::new(e))))?;
    let writer = node.clone();
    engine
        .dispatcher
        .set_durable_writer(Arc::new(move |m| writer.publish_best_effort(m)));
    tracing::info!(
        node_id = node.id(),
        source = joined.source,
        snapshot_seq = joined.base,
        bindings_from_snapshot = joined.bindings_from_snapshot,
        stream_last_seq = joined.stream_last,
        "joined the cluster"
    );
    let _ = engine.cluster.set(node);
    loaded(engine, joined.elapsed);
    Ok(())
}

/// Take a snapshot every `snapshot_interval_s` and whenever the log segment passes
/// `wal_max_bytes` (checked every second).
async fn snapshots(engine: Arc<Engine>, mut shutdown: shutdown::Shutdown) {
    let Some(store) = engine.store.get().cloned() else {
        return;
    };
    let cfg = engine.config.storage.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let due_by_time =
            !cfg.snapshot_interval_s.is_zero() && last.elapsed() >= cfg.snapshot_interval_s;
        let due_by_size = store.wal_bytes() >= cfg.wal_max_bytes;
        if !(due_by_time || due_by_size) {
            continue;
        }
        last = tokio::time::Instant::now();
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.snapshot()).await {
            Ok(Ok(info)) => tracing::info!(
                seq = info.seq,
                bytes = info.bytes,
                bindings = info.bindings,
                elapsed_ms = info.elapsed.as_millis() as u64,
                "snapshot written"
            ),
            Ok(Err(e)) => tracing::error!(error = %providers::error_chain(&e), "snapshot failed"),
            Err(_) => tracing::error!("snapshot task panicked"),
        }
    }
}

/// Periodic sweeps: presence TTLs and a step of the idle-user sweep (every 200 ms),
/// the dedup window and the delivery ledger's retention (every 5 s).
async fn housekeeping(engine: Arc<Engine>, mut shutdown: shutdown::Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        engine.state.sweep();
        n += 1;
        if n % 25 == 0 {
            engine.dedup.sweep();
            engine.ledger.sweep();
        }
    }
}

impl Running {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Resolves, with the reason, once the engine found it can no longer serve
    /// correctly and must stop (the process exits with a failure, and a supervisor
    /// restarts it: cluster mode then rejoins from the stored snapshot).
    pub async fn failure(&self) -> String {
        let mut fatal = self.engine.fatal.subscribe();
        let reason = match fatal.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives in the engine, held here.
            Err(_) => std::future::pending().await,
        };
        reason
    }

    /// Resolves once recovery has finished (or failed).
    pub async fn wait_ready(&mut self) -> Result<(), Error> {
        let outcome = self
            .ready
            .wait_for(|r| r.is_some())
            .await
            .map_err(|_| Error::RecoveryPanicked)?
            .clone()
            .expect("checked by wait_for");
        outcome.map_err(|e| e.map_or(Error::RecoveryPanicked, Error::Recovery))
    }

    /// Stop everything without draining or a final snapshot, as a crash would, but
    /// with the log flushed: what recovery must then rebuild from the last snapshot
    /// plus the log. For tests and benchmarks.
    pub async fn stop_without_snapshot(mut self) {
        self.api_trigger.fire();
        if let Some(t) = self.api_task.take() {
            let _ = t.await;
        }
        self.workers_trigger.fire();
        while self.tasks.join_next().await.is_some() {}
        if let Some(store) = self.engine.store.get().cloned() {
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
        }
    }

    /// The one shutdown path: stop accepting and finish open API requests, drain queued
    /// pushes for up to `api.shutdown_grace_s`, stop the workers, take a final
    /// snapshot, close the log.
    pub async fn shutdown(mut self) {
        self.api_trigger.fire();
        if let Some(t) = self.api_task.take() {
            let _ = t.await;
        }
        let grace = self.engine.config.api.shutdown_grace_s;
        let deadline = tokio::time::Instant::now() + grace;
        let mut waited = false;
        loop {
            let queued: usize = self.engine.dispatcher.depths().iter().map(|(_, d)| d).sum();
            if queued == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(queued, "shutdown grace elapsed with pushes still queued");
                break;
            }
            if !waited {
                tracing::info!(queued, "draining queued pushes");
                waited = true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.workers_trigger.fire();
        while self.tasks.join_next().await.is_some() {}
        if let Some(node) = self.engine.cluster.get() {
            match node.snapshot().await {
                Ok(info) => tracing::info!(
                    seq = info.seq,
                    bindings = info.bindings,
                    "final snapshot written"
                ),
                Err(e) => {
                    tracing::error!(error = %providers::error_chain(&e), "final snapshot failed; the state stream still holds every change")
                }
            }
            node.flush().await;
        }
        if let Some(store) = self.engine.store.get().cloned() {
            let result = tokio::task::spawn_blocking(move || {
                let r = store.snapshot();
                store.close();
                r
            })
            .await;
            match result {
                Ok(Ok(info)) => tracing::info!(
                    seq = info.seq,
                    bindings = info.bindings,
                    "final snapshot written"
                ),
                Ok(Err(e)) => {
                    tracing::error!(error = %providers::error_chain(&e), "final snapshot failed; the log still holds every change")
                }
                Err(_) => tracing::error!("final snapshot task panicked"),
            }
        }
        tracing::info!("fanfare stopped");
    }
}
