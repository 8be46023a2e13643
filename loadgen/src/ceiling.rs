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

/// Where and as whom the ceiling client sends.
pub(crate) struct Target<'a> {
    pub url: &'a str,
    pub ca_file: &'a Path,
    pub provider_token: &'a str,
    pub topic: &'a str,
}

/// How much it sends: `total` pushes over `connections` with `concurrency` in flight.
pub(crate) struct Load {
    pub total: u64,
    pub connections: usize,
    pub concurrency: usize,
}

/// Send one push per token (cycling) until `load.total` were sent; returns (accepted,
/// seconds).
pub(crate) async fn blast(
    target: Target<'_>,
    tokens: &[String],
    body: Bytes,
    load: Load,
) -> anyhow::Result<(u64, f64)> {
    let Target {
        url,
        ca_file,
        provider_token,
        topic,
    } = target;
    let Load {
        total,
        connections,
        concurrency,
    } = load;
    let tls = tls::client_config(Some(ca_file), &[b"h2"])?;
    let pool = Pool::new(
        Endpoint::parse(url)?,
        tls,
        connections,
        Duration::from_secs(30),
    )?;
    let auth: Arc<str> = format!("bearer {provider_token}").into();
    let topic: Arc<str> = topic.into();
    let tokens: Arc<[String]> = tokens.into();
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let started = quanta::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (pool, auth, topic, tokens, next, ok, body) = (
            pool.clone(),
            auth.clone(),
            topic.clone(),
            tokens.clone(),
            next.clone(),
            ok.clone(),
            body.clone(),
        );
        let base = url.trim_end_matches('/').to_string();
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
                        .header("apns-priority", "10")
                        .header("content-type", "application/json")
                        .body(())
                        .expect("valid request head")
                };
                if let Ok(r) = pool.send(make, body.clone()).await {
                    if r.status == http::StatusCode::OK {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok((ok.load(Ordering::Relaxed), started.elapsed().as_secs_f64()))
}
