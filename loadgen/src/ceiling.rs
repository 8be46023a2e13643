//! The physical limit the engine is measured against: a bare HTTP/2 client — the
//! engine's own connection pool with nothing around it (no API, no planning, no lanes)
//! — sending the same APNs bodies to the same mock with the same connections and stream
//! concurrency, in the same run.
//!
//! The client runs on its own Tokio runtime (threads named `lg-ceiling`), not on the
//! driver's, so that like the engine process it does not queue behind the mock
//! vendors' tasks; its threads' CPU time is read from /proc (`Blast::cpu_s`).
//!
//! Beside it, when installed, [`h2load`] (nghttp2) sends the same requests as the
//! reference figure of a bare HTTP/2 client in C ([`reference`]).

pub(crate) mod h2load;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare::transport::{tls, Endpoint, Pool};
use hdrhistogram::Histogram;

use crate::setup::Mocks;
use fanfare_loadgen::mock::apns::ApnsPush;

/// Where and as whom the ceiling client sends.
pub(crate) struct Target<'a> {
    pub url: &'a str,
    pub ca_file: &'a Path,
    pub provider_token: &'a str,
    pub topic: &'a str,
}

/// What one blast achieved.
pub(crate) struct Blast {
    /// Pushes answered 200.
    pub ok: u64,
    pub secs: f64,
    /// CPU seconds of the client's threads (`None` when /proc cannot tell).
    pub cpu_s: Option<f64>,
    /// Request written → answer, µs.
    pub latency: Histogram<u64>,
}

impl Blast {
    pub fn pushes_per_s(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-6)
    }

    /// ms of the client's CPU per 1,000 pushes.
    pub fn cpu_ms_per_1k(&self) -> Option<f64> {
        self.cpu_s
            .filter(|_| self.ok > 0)
            .map(|s| s * 1e3 / (self.ok as f64 / 1e3))
    }
}

const THREAD_NAME: &str = "lg-ceiling";

/// CPU seconds of this process's threads named [`THREAD_NAME`].
fn threads_cpu_s() -> Option<f64> {
    let me = procfs::process::Process::myself().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let mut total = 0u64;
    for task in me.tasks().ok()?.flatten() {
        if let Ok(stat) = task.stat() {
            if stat.comm.starts_with(THREAD_NAME) {
                total += stat.utime + stat.stime;
            }
        }
    }
    Some(total as f64 / ticks)
}

/// A bare HTTP/2 APNs client over the engine's pool, on its own runtime; its
/// connections stay open between blasts.
pub(crate) struct Client {
    rt: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

impl Client {
    /// A client for the run's mock APNs: the engine's APNs connection count, a fresh
    /// provider token, the run's topic; warmed up with one push of `body` to
    /// `warm_token`.
    pub async fn to_mock_apns(
        mocks: &Mocks,
        warm_token: &str,
        body: Bytes,
    ) -> anyhow::Result<Client> {
        let (connections, _) = mocks.apns_limits();
        let jwt = mocks
            .creds
            .provider_token(fanfare::clock::unix_now_s() as i64)?;
        let target = Target {
            url: &mocks.apns.url(),
            ca_file: &mocks.ca_file,
            provider_token: &jwt,
            topic: crate::setup::TOPIC,
        };
        Self::connect(target, connections, warm_token, body).await
    }

    /// A pool of `connections` to the target on a runtime of its own, opened by a
    /// first push (`warm_token`) on each connection so that connection set-up is not
    /// measured.
    pub async fn connect(
        target: Target<'_>,
        connections: usize,
        warm_token: &str,
        body: Bytes,
    ) -> anyhow::Result<Client> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()?;
        let tls = tls::client_config(Some(target.ca_file), &[b"h2"])?;
        let endpoint = Endpoint::parse(target.url)?;
        let (base, auth, topic) = (
            target.url.trim_end_matches('/').to_string(),
            format!("bearer {}", target.provider_token).into(),
            target.topic.into(),
        );
        let warm: Arc<[String]> = Arc::new([warm_token.to_string()]);
        let inner = rt
            .spawn(async move {
                let inner = Arc::new(Inner {
                    pool: Pool::new(endpoint, tls, connections, Duration::from_secs(30))?,
                    base,
                    auth,
                    topic,
                });
                inner
                    .blast(warm, body, connections as u64 * 2, connections)
                    .await?;
                anyhow::Ok(inner)
            })
            .await??;
        Ok(Client {
            rt: Some(rt),
            inner,
        })
    }

    /// Send `total` pushes, one per token (cycling), `concurrency` in flight.
    pub async fn blast(
        &self,
        tokens: &[String],
        body: Bytes,
        total: u64,
        concurrency: usize,
    ) -> anyhow::Result<Blast> {
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        let (inner, tokens) = (self.inner.clone(), Arc::from(tokens));
        let cpu0 = threads_cpu_s();
        let mut b = rt
            .spawn(async move { inner.blast(tokens, body, total, concurrency).await })
            .await??;
        b.cpu_s = cpu0.zip(threads_cpu_s()).map(|(a, b)| (b - a).max(0.0));
        Ok(b)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    pool: Pool,
    base: String,
    auth: Arc<str>,
    topic: Arc<str>,
}

impl Inner {
    /// [`Client::blast`] on the client's own runtime.
    async fn blast(
        &self,
        tokens: Arc<[String]>,
        body: Bytes,
        total: u64,
        concurrency: usize,
    ) -> anyhow::Result<Blast> {
        anyhow::ensure!(!tokens.is_empty(), "the ceiling client needs device tokens");
        let next = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicU64::new(0));
        // One histogram (about 0.5 MB) shared by the senders, not one each.
        let latency = Arc::new(parking_lot::Mutex::new(crate::report::histogram()));
        let started = quanta::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (pool, auth, topic, tokens, next, ok, body, latency) = (
                self.pool.clone(),
                self.auth.clone(),
                self.topic.clone(),
                tokens.clone(),
                next.clone(),
                ok.clone(),
                body.clone(),
                latency.clone(),
            );
            let base = self.base.clone();
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let uri = format!("{base}/3/device/{}", tokens[i as usize % tokens.len()]);
                    let make = || {
                        http::Request::post(uri.as_str())
                            .header("authorization", &*auth)
                            .header("apns-topic", &*topic)
                            .header("apns-push-type", "alert")
                            .body(())
                            .expect("a static APNs request head is valid")
                    };
                    let t = quanta::Instant::now();
                    if let Ok(r) = pool.send(make, body.clone()).await {
                        if r.status == http::StatusCode::OK {
                            ok.fetch_add(1, Ordering::Relaxed);
                            let us = (t.elapsed().as_micros() as u64).max(1);
                            let _ = latency.lock().record(us);
                        }
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r?;
        }
        let latency = std::mem::replace(&mut *latency.lock(), crate::report::histogram());
        Ok(Blast {
            ok: ok.load(Ordering::Relaxed),
            secs: started.elapsed().as_secs_f64(),
            cpu_s: None,
            latency,
        })
    }
}

/// Empties the mock APNs' record while the ceiling client runs (its pushes are only
/// counted).
pub(crate) struct Discard {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Discard {
    pub fn spawn(mocks: Arc<Mocks>) -> Discard {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => drop(mocks.apns.take_received()),
                    _ = &mut stopped => break,
                }
            }
            mocks.apns.take_received();
        });
        Discard { stop, task }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The APNs request head a reference client sends besides `authorization`.
pub(crate) struct Head {
    topic: String,
    push_type: String,
    priority: u8,
    expiration: Option<u64>,
    collapse_id: Option<String>,
}

impl Head {
    /// The engine's own, as the mock recorded one of its pushes.
    pub fn of(p: &ApnsPush) -> Head {
        Head {
            topic: p.topic.clone(),
            push_type: p.push_type.clone(),
            priority: p.priority,
            expiration: p.expiration,
            collapse_id: p.collapse_id.clone(),
        }
    }

    /// The ceiling client's (see [`Inner::blast`]).
    pub fn ceiling() -> Head {
        Head {
            topic: crate::setup::TOPIC.into(),
            push_type: "alert".into(),
            priority: 10,
            expiration: None,
            collapse_id: None,
        }
    }

    /// `name: value` lines, with `jwt` as the provider token.
    fn lines(&self, jwt: &str) -> Vec<String> {
        // The engine's set: no `content-type`, no `apns-priority` when it is 10.
        let mut h = vec![
            format!("authorization: bearer {jwt}"),
            format!("apns-topic: {}", self.topic),
            format!("apns-push-type: {}", self.push_type),
        ];
        h.extend((self.priority != 10).then(|| format!("apns-priority: {}", self.priority)));
        h.extend(self.expiration.map(|e| format!("apns-expiration: {e}")));
        h.extend(
            self.collapse_id
                .as_ref()
                .map(|c| format!("apns-collapse-id: {c}")),
        );
        h
    }
}

/// `h2load` sending `total` pushes of `body` with `head` over `tokens` to the run's
/// mock APNs, with the engine's connections and streams in flight and a fresh
/// provider token, with the h2load binary `bin` ([`h2load::find`]). The mock's
/// records are emptied meanwhile, as for the ceiling client.
pub(crate) async fn reference(
    bin: &std::path::Path,
    mocks: &Arc<Mocks>,
    head: &Head,
    tokens: &[String],
    body: &[u8],
    total: u64,
) -> anyhow::Result<h2load::Run> {
    let (connections, in_flight) = mocks.apns_limits();
    let jwt = mocks
        .creds
        .provider_token(fanfare::clock::unix_now_s() as i64)?;
    let (base, headers) = (mocks.apns.url(), head.lines(&jwt));
    let load = h2load::Load {
        base: base.trim_end_matches('/'),
        tokens,
        headers: &headers,
        body,
        total,
        connections,
        in_flight,
    };
    let discard = Discard::spawn(mocks.clone());
    let run = h2load::run(bin, &load).await;
    discard.finish().await;
    let run = run?;
    eprintln!(
        "h2load: {} of {total} pushes answered 200 ({:.0}/s), {} ms CPU per 1k",
        run.ok,
        run.pushes_per_s(),
        run.cpu_ms_per_1k()
            .map_or("n/a".into(), |c| format!("{c:.2}"))
    );
    Ok(run)
}
