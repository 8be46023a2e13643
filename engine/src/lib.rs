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
//! Beside them: [`config`] (TOML + env overrides), [`clock`], [`shutdown`],
//! [`telemetry`] (stats and Prometheus rendering).

pub mod api;
pub mod clock;
pub mod config;
pub mod fanout;
pub mod providers;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod transport;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use config::Config;
use fanout::dedup::Dedup;
use fanout::dispatch::Dispatcher;
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
}

/// The running engine's shared core, handed to every API handler.
pub struct Engine {
    pub config: Config,
    pub state: Arc<State>,
    pub stats: Arc<Stats>,
    pub providers: Arc<Providers>,
    pub dispatcher: Dispatcher,
    pub dedup: Dedup,
    ready: AtomicBool,
}

impl Engine {
    /// Apply a durable mutation. This is the one write path for bindings and groups
    /// (the write-ahead log hooks in here).
    pub async fn mutate(&self, m: Mutation) -> Applied {
        self.state.apply(&m)
    }

    /// True once start-up (and, with storage, recovery) has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            bindings: self.state.registry.len(),
            users: self.state.users.len(),
            online_users: self.state.presence.online_users(),
            groups: self.state.groups.len(),
            queues: self.dispatcher.depths(),
        }
    }
}

/// A started engine: its address, its core, and the way to stop it.
pub struct Running {
    addr: SocketAddr,
    engine: Arc<Engine>,
    trigger: shutdown::Trigger,
    tasks: JoinSet<()>,
}

/// Build the vendor clients, bind the API listener and start every task.
pub async fn start(config: Config) -> Result<Running, Error> {
    config.validate()?;
    let providers = Providers::from_config(&config)?;
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
    let state = Arc::new(State::new(clock.clone()));
    let stats = Arc::new(Stats::default());
    let providers = Arc::new(providers);
    let (trigger, shutdown) = shutdown::channel();
    let dispatcher = Dispatcher::spawn(
        providers.clone(),
        state.clone(),
        stats.clone(),
        config.messages.queue_capacity,
        shutdown.clone(),
    );
    let addr = config.listen_addr();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    let engine = Arc::new(Engine {
        dedup: Dedup::new(clock, config.messages.dedup_window_s),
        config,
        state,
        stats,
        providers,
        dispatcher,
        ready: AtomicBool::new(false),
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(api::server::run(listener, engine.clone(), shutdown.clone()));
    tasks.spawn(housekeeping(engine.clone(), shutdown));
    engine.ready.store(true, Ordering::Release);
    tracing::info!(%addr, "fanfare API listening");
    Ok(Running {
        addr,
        engine,
        trigger,
        tasks,
    })
}

/// Periodic sweeps: presence TTLs (every 200 ms) and the dedup window (every 5 s).
async fn housekeeping(engine: Arc<Engine>, mut shutdown: shutdown::Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        engine.state.presence.sweep();
        n += 1;
        if n % 25 == 0 {
            engine.dedup.sweep();
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

    /// A handle that can request shutdown from elsewhere (a signal handler).
    pub fn shutdown_handle(&self) -> shutdown::Shutdown {
        self.trigger.subscribe()
    }

    /// Stop accepting, let open API requests finish, stop the tasks.
    pub async fn shutdown(mut self) {
        self.trigger.fire();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("fanfare stopped");
    }
}
