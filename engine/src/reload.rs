//! Live reload: `POST /v1/admin/reload` and SIGHUP re-read the config file (API 1.1,
//! "Multiple apps and reloading").
//!
//! What changes live: vendor credentials and endpoints, `[apps]`, `[resources]`,
//! `[transport]`, `[retry]`, `[breaker]`, each vendor's `max_rps` and `max_in_flight`,
//! and the `[feedback]` target. The new file is read, checked and every client built
//! *before* anything changes, so a file with problems is refused with all of them
//! listed and the running configuration stays. Then the whole vendor set is swapped
//! at once ([`crate::fanout::dispatch::Dispatcher::set_providers`]): the lanes keep
//! their queues, queued pushes and retries go out through the new clients, sends in
//! flight finish on the old ones (which close when the last of them ends), and a push
//! keeps the body it was rendered with (its `[resources]` rule included).
//!
//! What cannot change without a restart — `[api]`, `[storage]`, `[presence]`,
//! `[messages]`, `[cluster]`, `[log]` — keeps its running value; a reload that changes it still succeeds,
//! names those sections in a warning log line and in the answer's `needs_restart`.
//! Environment overrides are those the engine started with.
//!
//! One reload runs at a time. A new `[feedback]` target gets a fresh webhook task and
//! the old task is stopped (events still queued for the old target are dropped).

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::feedback;
use crate::providers::{error_chain, Providers};
use crate::shutdown::{self, Shutdown};
use crate::telemetry::Stats;
use crate::Engine;

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the engine was started without a config file: there is nothing to re-read")]
    NoFile,
    #[error("the configuration was not reloaded: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// What a successful reload reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Sections that changed in the file but keep their running value until a restart.
    pub needs_restart: Vec<&'static str>,
}

/// The sections whose running value a reload cannot change.
const FIXED: [&str; 6] = ["api", "storage", "presence", "messages", "cluster", "log"];

/// The reload's state: serialises reloads and owns the running feedback task.
pub struct Reloader {
    current: tokio::sync::Mutex<Option<FeedbackTask>>,
    /// The configuration tree in force after the last reload (`None` before one): the
    /// file as re-read, with the restart-only ([`FIXED`]) sections as started.
    applied: parking_lot::Mutex<Option<toml::Table>>,
    /// Stops every feedback task at engine shutdown.
    workers: Shutdown,
}

/// A running webhook task: stopped when this is dropped (its trigger with it).
struct FeedbackTask {
    settings: feedback::Settings,
    _stop: shutdown::Trigger,
}

impl Reloader {
    /// Start the feedback task of `settings` (if any), reporting through
    /// `dispatcher`; later tasks stop at `workers` shutdown or when replaced.
    pub fn new(
        settings: Option<&feedback::Settings>,
        stats: &Arc<Stats>,
        clock: &Clock,
        dispatcher: &crate::fanout::dispatch::Dispatcher,
        workers: Shutdown,
    ) -> Result<Self, crate::transport::tls::Error> {
        let task = settings
            .map(|s| start_feedback(s, stats, clock, dispatcher, &workers))
            .transpose()?;
        Ok(Self {
            current: tokio::sync::Mutex::new(task),
            applied: parking_lot::Mutex::new(None),
            workers,
        })
    }

    /// The configuration tree in force (`GET /v1/admin/config`): `started`'s, or the
    /// last reloaded file's with the restart-only sections as `started` has them.
    pub fn tree(&self, started: &Config) -> toml::Table {
        let applied = self.applied.lock();
        applied
            .clone()
            .unwrap_or_else(|| started.source.tree.clone())
    }

    /// Re-read the config file and apply it (see the module docs); logs the outcome.
    pub async fn reload(&self, engine: &Engine) -> Result<Reloaded, Error> {
        let result = self.try_reload(engine).await;
        match &result {
            Ok(r) if r.needs_restart.is_empty() => tracing::info!("configuration reloaded"),
            Ok(r) => tracing::warn!(
                sections = ?r.needs_restart,
                "configuration reloaded; changes to these sections take effect only after a restart"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "configuration reload refused; the running configuration stays")
            }
        }
        result
    }

    async fn try_reload(&self, engine: &Engine) -> Result<Reloaded, Error> {
        let mut feedback = self.current.lock().await;
        let source = &engine.config.source;
        let path = source.path.as_deref().ok_or(Error::NoFile)?;
        let config = Config::load(Some(path), source.env.iter().cloned()).map_err(problems)?;
        let settings = config.validate().map_err(problems)?;
        let providers =
            Providers::new(&settings).map_err(|e| Error::Invalid(vec![error_chain(&e)]))?;
        let unchanged = match (&*feedback, &settings.feedback) {
            (None, None) => true,
            (Some(old), Some(new)) => same_feedback(&old.settings, new),
            _ => false,
        };
        let next = match (&settings.feedback, unchanged) {
            (Some(s), false) => {
                let stats = &engine.stats;
                let clock = &engine.state.clock;
                let d = &engine.dispatcher;
                let task = start_feedback(s, stats, clock, d, &self.workers)
                    .map_err(|e| Error::Invalid(vec![format!("feedback: {}", error_chain(&e))]))?;
                Some(Some(task))
            }
            (None, false) => Some(None),
            (_, true) => None,
        };
        // Nothing could fail from here on: swap.
        engine.dispatcher.set_providers(Arc::new(providers));
        if let Some(next) = next {
            if next.is_none() {
                engine.dispatcher.set_feedback(None);
            }
            *feedback = next;
        }
        let mut tree = config.source.tree.clone();
        for name in FIXED {
            match engine.config.source.tree.get(name) {
                Some(started) => tree.insert(name.to_owned(), started.clone()),
                None => tree.remove(name),
            };
        }
        *self.applied.lock() = Some(tree);
        Ok(Reloaded {
            needs_restart: fixed_changes(&engine.config, &config),
        })
    }
}

/// Start a webhook task for `settings`, reporting through `dispatcher` from now on.
fn start_feedback(
    settings: &feedback::Settings,
    stats: &Arc<Stats>,
    clock: &Clock,
    dispatcher: &crate::fanout::dispatch::Dispatcher,
    workers: &Shutdown,
) -> Result<FeedbackTask, crate::transport::tls::Error> {
    let (queue, task) = feedback::spawn(settings, stats.clone(), clock.clone(), workers.clone())?;
    let (stop, mut stopped) = shutdown::channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = task => {}
            // Fired, or the trigger dropped: this target was replaced.
            _ = stopped.wait() => {}
        }
    });
    dispatcher.set_feedback(Some(queue));
    Ok(FeedbackTask {
        settings: settings.clone(),
        _stop: stop,
    })
}

/// The same webhook target and behaviour (the secret compared too: `Debug` hides it).
fn same_feedback(a: &feedback::Settings, b: &feedback::Settings) -> bool {
    a.secret == b.secret && format!("{a:?}") == format!("{b:?}")
}

/// A refused configuration's problems, each a sentence.
fn problems(e: crate::config::Error) -> Error {
    match e {
        crate::config::Error::Invalid(p) => Error::Invalid(p),
        e => Error::Invalid(vec![error_chain(&e)]),
    }
}

/// The [`FIXED`] sections whose value differs between `running` and `read`.
fn fixed_changes(running: &Config, read: &Config) -> Vec<&'static str> {
    let differs = [
        running.api != read.api,
        running.storage != read.storage,
        running.presence != read.presence,
        running.messages != read.messages,
        running.cluster != read.cluster,
        running.log != read.log,
    ];
    FIXED
        .into_iter()
        .zip(differs)
        .filter_map(|(name, d)| d.then_some(name))
        .collect()
}
