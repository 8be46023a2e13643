//! The open API connections: the cap and whom it sheds, idleness, and the memory
//! budgets of request bodies.
//!
//! **The cap sheds the idle instead of refusing everyone.** The old accept loop stopped
//! accepting at 4,096 open connections, so 4,096 clients that never finished a request
//! locked every other client out, `/healthz` included. Now [`Registry::admit`] at the
//! cap asks the connection idle the longest (no request in flight: a keep-alive
//! connection, or one still dribbling its request head) to close and admits the new
//! one; only when every connection has a request in flight is the new one refused.
//! Connections asked to close are gone within a second (`server::CLOSE_GRACE`), and
//! the total is hard-capped at twice the cap meanwhile.
//!
//! **Bodies are held against two budgets.** Each connection may hold
//! `api.max_connection_body_bytes` of request bodies in memory (all its HTTP/2 streams
//! together) and all connections together `api.max_total_body_bytes`. A request whose
//! next chunk does not fit gets 503 at once rather than waiting: one HTTP/2 connection
//! with 1,000 streams of unfinished 1 MB bodies used to take the engine from 233 MB to
//! 1.4 GB of memory. The budgets are counters of bytes, taken per body chunk as it
//! arrives and given back when the request is answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config;

/// Every open API connection.
pub struct Registry {
    inner: Mutex<Inner>,
    max: usize,
    epoch: Instant,
    connection_body_bytes: usize,
    total_body: Arc<Budget>,
}

struct Inner {
    conns: HashMap<u64, Arc<Conn>>,
    next_id: u64,
    /// Connections asked to close that have not ended yet.
    closing: usize,
    /// The server is stopping: admit nothing more.
    stopping: bool,
}

/// One open connection, shared by its task and the requests it serves.
pub struct Conn {
    id: u64,
    epoch: Instant,
    /// Requests being handled.
    active: AtomicU32,
    /// When the last request ended (or the connection opened), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    /// Asked to close (evicted, idle, or the server is stopping).
    closing: AtomicBool,
    close: Notify,
    body: Budget,
    total_body: Arc<Budget>,
}

/// A counter of bytes held against a limit.
pub struct Budget {
    held: AtomicUsize,
    limit: usize,
}

/// Which budget a body chunk did not fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    Connection { limit: usize },
    Total { limit: usize },
}

/// Body bytes held by one request; given back on drop.
pub struct Held<'c> {
    conn: &'c Conn,
    bytes: usize,
}

/// A request in flight on its connection (for idleness); ends on drop.
pub struct Active<'c>(&'c Conn);

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    fn try_take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&h| h <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

impl Registry {
    pub fn new(api: &config::Api) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                conns: HashMap::new(),
                next_id: 0,
                closing: 0,
                stopping: false,
            }),
            max: api.max_connections,
            epoch: Instant::now(),
            connection_body_bytes: api.max_connection_body_bytes,
            total_body: Arc::new(Budget::new(api.max_total_body_bytes)),
        })
    }

    /// Register a new connection; at the cap, first ask the connection idle the
    /// longest to close. `None`: the new connection is refused (every connection has a
    /// request in flight, or the server is stopping).
    pub fn admit(&self) -> Option<Arc<Conn>> {
        let mut inner = self.inner.lock();
        if inner.stopping || inner.conns.len() >= 2 * self.max {
            return None;
        }
        if inner.conns.len() - inner.closing >= self.max && !evict_locked(&mut inner) {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            epoch: self.epoch,
            active: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(ms_since(self.epoch, Instant::now())),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            body: Budget::new(self.connection_body_bytes),
            total_body: self.total_body.clone(),
        });
        inner.conns.insert(id, conn.clone());
        Some(conn)
    }

    /// Ask `conn` to close (it has been idle too long).
    pub fn close(&self, conn: &Conn) {
        let mut inner = self.inner.lock();
        if !conn.closing.swap(true, Ordering::AcqRel) {
            inner.closing += 1;
        }
        conn.close.notify_one();
    }

    /// The connection ended.
    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.lock();
        if let Some(conn) = inner.conns.remove(&id) {
            if conn.closing.load(Ordering::Acquire) {
                inner.closing -= 1;
            }
        }
    }

    /// Stop admitting and ask every connection to close (idle ones at once, busy ones
    /// after their requests).
    pub fn close_all(&self) {
        let mut inner = self.inner.lock();
        inner.stopping = true;
        let mut newly = 0;
        for conn in inner.conns.values() {
            if !conn.closing.swap(true, Ordering::AcqRel) {
                newly += 1;
            }
            conn.close.notify_one();
        }
        inner.closing += newly;
    }

    /// Open connections, those asked to close included.
    pub fn len(&self) -> usize {
        self.inner.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Request-body bytes held by all connections.
    pub fn total_body(&self) -> &Budget {
        &self.total_body
    }
}

/// Ask the idle connection with the oldest `idle_since` to close; of connections idle
/// since the same millisecond, the oldest.
fn evict_locked(inner: &mut Inner) -> bool {
    let victim = inner
        .conns
        .values()
        .filter(|c| !c.closing.load(Ordering::Acquire) && c.active.load(Ordering::Acquire) == 0)
        .min_by_key(|c| (c.idle_since_ms.load(Ordering::Acquire), c.id))
        .cloned();
    match victim {
        Some(c) => {
            c.closing.store(true, Ordering::Release);
            inner.closing += 1;
            c.close.notify_one();
            true
        }
        None => false,
    }
}

fn ms_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

impl Conn {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A request starts; it counts as in flight until the guard drops.
    pub fn begin(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self)
    }

    /// How long no request has been in flight; `None` while one is.
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(
            ms_since(self.epoch, now).saturating_sub(since),
        ))
    }

    /// Resolves once the connection is asked to close.
    pub async fn close_requested(&self) {
        self.close.notified().await
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// An empty hold on this connection's body budgets.
    pub fn hold(&self) -> Held<'_> {
        Held {
            conn: self,
            bytes: 0,
        }
    }

    /// Request-body bytes this connection holds.
    pub fn body(&self) -> &Budget {
        &self.body
    }
}

impl Held<'_> {
    /// Hold `n` more bytes, or say which budget they do not fit in.
    pub fn take(&mut self, n: usize) -> Result<(), Shortfall> {
        let conn = self.conn;
        if !conn.body.try_take(n) {
            return Err(Shortfall::Connection {
                limit: conn.body.limit,
            });
        }
        if !conn.total_body.try_take(n) {
            conn.body.give(n);
            return Err(Shortfall::Total {
                limit: conn.total_body.limit,
            });
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.conn.body.give(self.bytes);
            self.conn.total_body.give(self.bytes);
        }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let c = self.0;
        c.idle_since_ms
            .store(ms_since(c.epoch, Instant::now()), Ordering::Release);
        c.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, conn_body: usize, total_body: usize) -> Arc<Registry> {
        Registry::new(&config::Api {
            max_connections: max,
            max_connection_body_bytes: conn_body,
            max_total_body_bytes: total_body,
            ..config::Api::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_is_asked_to_close() {
        let r = registry(2, 10, 10);
        let a = r.admit().expect("room");
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = r.admit().expect("room");
        let _busy = b.begin();
        let c = r.admit().expect("a is idle, so c is admitted");
        assert!(a.is_closing() && !b.is_closing() && !c.is_closing());
        // b is busy and c idle: the next one evicts c.
        let d = r.admit().expect("c is idle");
        assert!(c.is_closing());
        // Only busy connections left (b, d busy): refused.
        let _busy_d = d.begin();
        assert!(r.admit().is_none());
        r.remove(a.id());
        r.remove(c.id());
        assert_eq!(r.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn of_connections_idle_since_the_same_instant_the_oldest_goes_first() {
        let r = registry(3, 10, 10);
        let conns: Vec<_> = (0..3).map(|_| r.admit().expect("room")).collect();
        for evicted in 0..3 {
            r.admit().expect("an idle connection makes room");
            assert!(conns[evicted].is_closing(), "connection {evicted}");
            assert!(conns[evicted + 1..].iter().all(|c| !c.is_closing()));
            r.remove(conns[evicted].id());
        }
    }

    #[test]
    fn body_bytes_are_held_against_both_budgets_and_given_back() {
        let r = registry(4, 10, 15);
        let a = r.admit().expect("room");
        let b = r.admit().expect("room");
        let mut ha = a.hold();
        ha.take(8).expect("fits");
        assert_eq!(ha.take(3), Err(Shortfall::Connection { limit: 10 }));
        let mut hb = b.hold();
        hb.take(7).expect("fits");
        assert_eq!(hb.take(1), Err(Shortfall::Total { limit: 15 }));
        assert_eq!(b.body().held(), 7, "a refused chunk holds nothing");
        drop(ha);
        assert_eq!((a.body().held(), r.total_body().held()), (0, 7));
        hb.take(3).expect("room again");
    }
}
