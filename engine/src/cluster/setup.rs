//! Reaching NATS (bounded) and making sure the stream, the buckets and the object store
//! exist. Every engine runs this at start; the first one creates them, the others find
//! them (a creation race is settled by looking again).

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

use super::{names, Error};
use crate::config::Cluster;

/// Pause between connection attempts at start-up.
const CONNECT_RETRY: Duration = Duration::from_millis(250);

/// Connect to one of `cfg.nats_urls`, retrying until `cfg.connect_timeout_s`. Once
/// connected the client reconnects by itself for as long as the engine runs.
pub(super) async fn connect(cfg: &Cluster, node_id: &str) -> Result<async_nats::Client, Error> {
    let urls: Vec<async_nats::ServerAddr> = cfg
        .nats_urls
        .iter()
        .map(|u| {
            u.parse().map_err(|e: std::io::Error| Error::Setup {
                what: "cluster.nats_urls",
                message: format!("{u:?}: {e}"),
            })
        })
        .collect::<Result<_, _>>()?;
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout_s;
    loop {
        let options = async_nats::ConnectOptions::new()
            .name(format!("fanfare {node_id}"))
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(2_000))
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => tracing::warn!("nats: disconnected"),
                    async_nats::Event::Connected => tracing::info!("nats: connected"),
                    other => tracing::debug!(event = %other, "nats event"),
                }
            });
        match options.connect(urls.as_slice()).await {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() + CONNECT_RETRY < deadline => {
                tracing::debug!(error = %e, "nats not reachable yet; retrying");
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            Err(e) => {
                return Err(Error::Connect {
                    urls: cfg.nats_urls.join(","),
                    secs: cfg.connect_timeout_s.as_secs(),
                    source: e,
                })
            }
        }
    }
}

/// A JetStream context whose requests (and publish acknowledgements) give up after
/// `timeout` (`cluster.write_timeout_ms`).
pub(super) fn jetstream(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(timeout);
    js
}

/// What start-up ensures: the state stream and the buckets.
pub(super) struct Handles {
    pub stream: stream::Stream,
    pub dedup: Option<kv::Store>,
    pub nodes: kv::Store,
    pub snapshots: object_store::ObjectStore,
}

/// Get or create the state stream, the `fanfare_dedup` bucket (unless `dedup_window`
/// is zero: dedup is off), the `fanfare_nodes` bucket and the snapshot store. Only
/// JetStream features nats-server 2.9 has are used.
pub(super) async fn ensure(
    js: &jetstream::Context,
    replicas: usize,
    dedup_window: Duration,
) -> Result<Handles, Error> {
    let stream = match js.get_stream(names::STATE_STREAM).await {
        Ok(s) => s,
        Err(_) => {
            let cfg = stream::Config {
                name: names::STATE_STREAM.into(),
                subjects: vec![names::STATE_SUBJECT.into()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: names::DUPLICATE_WINDOW,
                max_message_size: crate::store::codec::MAX_RECORD as i32,
                ..Default::default()
            };
            match js.create_stream(cfg).await {
                Ok(s) => s,
                // Another engine created it meanwhile.
                Err(create) => {
                    js.get_stream(names::STATE_STREAM)
                        .await
                        .map_err(|_| Error::Setup {
                            what: "the state stream",
                            message: create.to_string(),
                        })?
                }
            }
        }
    };
    let dedup = if dedup_window.is_zero() {
        None
    } else {
        Some(
            bucket(
                js,
                kv::Config {
                    bucket: names::DEDUP_BUCKET.into(),
                    history: 1,
                    max_age: dedup_window,
                    num_replicas: replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                },
            )
            .await?,
        )
    };
    let nodes = bucket(
        js,
        kv::Config {
            bucket: names::NODES_BUCKET.into(),
            history: 1,
            max_age: names::NODE_TTL,
            num_replicas: replicas,
            storage: stream::StorageType::Memory,
            ..Default::default()
        },
    )
    .await?;
    let snapshots = match js.get_object_store(names::SNAPSHOT_BUCKET).await {
        Ok(s) => s,
        Err(_) => {
            let cfg = object_store::Config {
                bucket: names::SNAPSHOT_BUCKET.into(),
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            };
            match js.create_object_store(cfg).await {
                Ok(s) => s,
                Err(create) => js
                    .get_object_store(names::SNAPSHOT_BUCKET)
                    .await
                    .map_err(|_| Error::Setup {
                        what: "the snapshot object store",
                        message: create.to_string(),
                    })?,
            }
        }
    };
    Ok(Handles {
        stream,
        dedup,
        nodes,
        snapshots,
    })
}

/// Get or create a key-value bucket. Created as the stream the KV convention
/// describes (`KV_<bucket>` on `$KV.<bucket>.>`), not through the client's
/// `create_key_value`: that first reads the account's info in a form nats-server 2.9
/// does not send.
async fn bucket(js: &jetstream::Context, cfg: kv::Config) -> Result<kv::Store, Error> {
    if let Ok(kv) = js.get_key_value(cfg.bucket.clone()).await {
        return Ok(kv);
    }
    let stream = stream::Config {
        name: format!("KV_{}", cfg.bucket),
        subjects: vec![format!("$KV.{}.>", cfg.bucket)],
        max_messages_per_subject: cfg.history.max(1),
        max_age: cfg.max_age,
        storage: cfg.storage,
        num_replicas: cfg.num_replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        duplicate_window: cfg.max_age.min(names::DUPLICATE_WINDOW),
        ..Default::default()
    };
    let created = js.create_stream(stream).await.map(drop);
    js.get_key_value(cfg.bucket)
        .await
        .map_err(|get| Error::Setup {
            what: "a key-value bucket",
            message: match created {
                Err(create) => create.to_string(),
                Ok(()) => get.to_string(),
            },
        })
}
