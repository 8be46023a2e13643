//! One shutdown signal for every task.
//!
//! A [`Shutdown`] is a cloneable watch receiver: tasks `select!` on
//! [`Shutdown::wait`] and stop accepting new work when it fires. [`Trigger::fire`]
//! is called once, by the API handle or a signal handler.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub struct Trigger(watch::Sender<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been requested (or the trigger was dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// Run `f` unless shutdown comes first: `None` when it did. For loops that wait on
    /// one thing at a time (a message, a tick, a backoff) and stop at shutdown.
    pub async fn or<T>(&mut self, f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = f => Some(out),
            _ = self.wait() => None,
        }
    }
}
