//! The progress line on stderr while a phase runs: once a second, elapsed time, what
//! the driver sent, what the mocks received and the rate over the last second. On a
//! terminal the line is rewritten in place; otherwise one line per second.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts the driver's requests of a phase; cheap to clone into tasks.
#[derive(Clone, Default)]
pub(crate) struct Sent(Arc<AtomicU64>);

impl Sent {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A running progress line; [`Progress::finish`] (or drop) stops it.
pub(crate) struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Start reporting phase `phase`: `sent` counts requests (labelled `unit`; empty:
    /// not shown when `delivered` is given),
    /// `delivered` (when given) counts pushes received by the mocks since the phase
    /// began.
    pub fn spawn(
        phase: &'static str,
        unit: &'static str,
        sent: Sent,
        delivered: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
    ) -> Progress {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let tty = std::io::stderr().is_terminal();
            let start = tokio::time::Instant::now();
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            let (mut last_sent, mut last_delivered) = (0u64, 0u64);
            let mut printed = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let s = sent.get();
                let line = match &delivered {
                    Some(d) => {
                        let d = d();
                        let rate = d.saturating_sub(last_delivered);
                        last_delivered = d;
                        let sent = if unit.is_empty() {
                            String::new()
                        } else {
                            format!("{unit} {s}, ")
                        };
                        format!(
                            "{phase} {:>5.1}s: {sent}pushes delivered {d} ({rate} pushes/s)",
                            start.elapsed().as_secs_f64()
                        )
                    }
                    None => format!(
                        "{phase} {:>5.1}s: {unit} {s} ({}/s)",
                        start.elapsed().as_secs_f64(),
                        s.saturating_sub(last_sent)
                    ),
                };
                last_sent = s;
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r{line}\x1b[K");
                } else {
                    let _ = writeln!(err, "  {line}");
                }
                let _ = err.flush();
                printed = true;
            }
            if tty && printed {
                eprintln!();
            }
        });
        Progress {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stop the line and wait until it is ended.
    pub async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
