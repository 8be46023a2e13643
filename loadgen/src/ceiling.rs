//! The physical limit the engine is measured against: a bare HTTP/2 client — the
//! engine's own connection pool with nothing around it (no API, no planning, no lanes)
//! — sending the same APNs bodies to the same mock with the same connections and stream
//! concurrency, in the same run.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare::transport::{tls, Endpoint, Pool};
use hdrhistogram::Histogram;

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
    /// Request written → answer, µs.
    pub latency: Histogram<u64>,
}

impl Blast {
    pub fn pushes_per_s(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-6)
    }
}

/// A bare HTTP/2 APNs client over the engine's pool; its connections stay open
/// between blasts.
pub(crate) struct Client {
    pool: Pool,
    base: String,
    auth: Arc<str>,
    topic: Arc<str>,
}

impl Client {
    /// A pool of `connections` to the target, opened by a first push (`warm_token`)
    /// on each connection so that connection set-up is not measured.
    pub async fn connect(
        target: Target<'_>,
        connections: usize,
        warm_token: &str,
        body: Bytes,
    ) -> anyhow::Result<Client> {
        let tls = tls::client_config(Some(target.ca_file), &[b"h2"])?;
        let pool = Pool::new(
            Endpoint::parse(target.url)?,
            tls,
            connections,
            Duration::from_secs(30),
        )?;
        let client = Client {
            pool,
            base: target.url.trim_end_matches('/').to_string(),
            auth: format!("bearer {}", target.provider_token).into(),
            topic: target.topic.into(),
        };
        let tokens = [warm_token.to_string()];
        client
            .blast(&tokens, body, connections as u64 * 2, connections)
            .await?;
        Ok(client)
    }

    /// Send `total` pushes, one per token (cycling), `concurrency` in flight.
    pub async fn blast(
        &self,
        tokens: &[String],
        body: Bytes,
        total: u64,
        concurrency: usize,
    ) -> anyhow::Result<Blast> {
        anyhow::ensure!(!tokens.is_empty(), "the ceiling client needs device tokens");
        let tokens: Arc<[String]> = tokens.into();
        let next = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicU64::new(0));
        let started = quanta::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (pool, auth, topic, tokens, next, ok, body) = (
                self.pool.clone(),
                self.auth.clone(),
                self.topic.clone(),
                tokens.clone(),
                next.clone(),
                ok.clone(),
                body.clone(),
            );
            let base = self.base.clone();
            tasks.spawn(async move {
                let mut latency = crate::report::histogram();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return latency;
                    }
                    let uri = format!("{base}/3/device/{}", tokens[i as usize % tokens.len()]);
                    let make = || {
                        http::Request::post(uri.as_str())
                            .header("authorization", &*auth)
                            .header("apns-topic", &*topic)
                            .header("apns-push-type", "alert")
                            .header("apns-priority", "10")
                            .header("content-type", "application/json")
                            .body(())
                            .expect("a static APNs request head is valid")
                    };
                    let t = quanta::Instant::now();
                    if let Ok(r) = pool.send(make, body.clone()).await {
                        if r.status == http::StatusCode::OK {
                            ok.fetch_add(1, Ordering::Relaxed);
                            let _ = latency.record((t.elapsed().as_micros() as u64).max(1));
                        }
                    }
                }
            });
        }
        let mut latency = crate::report::histogram();
        while let Some(h) = tasks.join_next().await {
            latency.add(h?)?;
        }
        Ok(Blast {
            ok: ok.load(Ordering::Relaxed),
            secs: started.elapsed().as_secs_f64(),
            latency,
        })
    }
}
