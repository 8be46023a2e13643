//! Trimming the state stream: it really shrinks, an engine with an empty data
//! directory still joins from the stored snapshot and the stream's tail, and no live
//! engine — one that is behind, or one that is joining — loses a record it needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream;

use super::durability::{binds, joins_from_the_object_store_as};
use super::harness::{eventually, Cluster};

/// The state stream's first and last sequence, read from NATS.
async fn stream_bounds(js: &jetstream::Context) -> (u64, u64) {
    let stream = js
        .get_stream("FANFARE_STATE")
        .await
        .expect("the state stream exists");
    let info = stream.get_info().await.expect("the state stream's info");
    (info.state.first_sequence, info.state.last_sequence)
}

/// One NATS server and engine e0 storing a snapshot every second, and the test's
/// own JetStream context on that server.
async fn e0_snapshotting_every_second() -> (Cluster, jetstream::Context) {
    let mut c = Cluster::start(1, 0).await;
    c.snapshot_interval_s = 1;
    c.spawn(0).await;
    let client = async_nats::connect(c.nats.url(0))
        .await
        .expect("the test reaches nats");
    (c, jetstream::new(client))
}

/// The sequence the snapshot in the object store covers (0: none yet).
async fn stored_seq(js: &jetstream::Context) -> u64 {
    let Ok(store) = js.get_object_store("fanfare_snapshots").await else {
        return 0;
    };
    store
        .info("state")
        .await
        .ok()
        .and_then(|info| info.metadata.get("seq").and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_state_stream_is_trimmed_an_empty_engine_joins_and_serves_the_same_state() {
    let (mut c, js) = e0_snapshotting_every_second().await;
    c.spawn(1).await;
    binds(&c, 0, 0..20).await;
    c.api(0).set_badge("u2", 5).await.expect("badge");
    // Writes between stored snapshots until e0 has trimmed the stream.
    let mut next = 20;
    eventually("e0 trims the state stream", || {
        let (c, js, from) = (&c, &js, next);
        next += 5;
        async move {
            binds(c, 0, from..from + 5).await;
            stream_bounds(js).await.0 > 1
        }
    })
    .await;
    // After the trim, more through the other engine: they come from the stream's tail.
    binds(&c, 1, next..next + 10).await;
    c.api(1).unbind("p3").await.expect("unbind");
    joins_from_the_object_store_as(&mut c, 2, &[]).await;
    let log = c.log(2);
    assert!(!log.contains("lost records"), "{log}");
    let (first, last) = stream_bounds(&js).await;
    assert!(first > 1, "the stream stays trimmed: {first}..{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_engine_that_is_behind_or_joining_keeps_the_records_it_needs() {
    let (mut c, js) = e0_snapshotting_every_second().await;
    // A second engine as NATS sees it: its heartbeat, holding its floor. 0 is what an
    // engine that is joining (or has applied nothing yet) says.
    let nodes = js
        .get_key_value("fanfare_nodes")
        .await
        .expect("the heartbeat bucket exists");
    let floor = Arc::new(AtomicU64::new(0));
    let beat = {
        let (nodes, floor) = (nodes.clone(), floor.clone());
        tokio::spawn(async move {
            loop {
                let value = floor.load(Ordering::SeqCst).to_string();
                nodes.put("e9", value.into()).await.expect("heartbeat put");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    let mut next = 0;
    // While it says 0, e0 stores snapshots and trims nothing (the first version
    // purged the whole stream here: `purge seq 1` means everything to nats-server).
    let mut seen = vec![stored_seq(&js).await];
    let deadline = std::time::Instant::now() + super::harness::DEADLINE;
    while seen.len() < 4 {
        binds(&c, 0, next..next + 10).await;
        next += 10;
        let now = stored_seq(&js).await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "e0 stored {seen:?} only: {}",
            c.log(0)
        );
    }
    assert_eq!(stream_bounds(&js).await.0, 1, "{}", c.log(0));
    // Behind at `held`: trimmed up to it and never past it.
    let held = stream_bounds(&js).await.1 - 5;
    floor.store(held, Ordering::SeqCst);
    eventually("e0 trims up to the lagging engine's floor", || {
        let (c, js, from) = (&c, &js, next);
        next += 10;
        async move {
            binds(c, 0, from..from + 10).await;
            let first = stream_bounds(js).await.0;
            assert!(first <= held + 1, "trimmed past {held}: {first}");
            first == held + 1
        }
    })
    .await;
    // Gone: trimming goes on past it, and a new engine still joins exactly.
    beat.abort();
    let _ = beat.await;
    nodes.delete("e9").await.expect("heartbeat delete");
    eventually("e0 trims past the departed engine's floor", || {
        let (c, js, from) = (&c, &js, next);
        next += 10;
        async move {
            binds(c, 0, from..from + 10).await;
            stream_bounds(js).await.0 > held + 1
        }
    })
    .await;
    joins_from_the_object_store_as(&mut c, 1, &[]).await;
}

/// A TCP proxy to a NATS server that the test can cut off: while cut, its open
/// connections are dropped and new ones closed at once (an engine cut off from NATS).
async fn cuttable_proxy(to: String) -> (String, tokio::sync::watch::Sender<bool>) {
    let upstream = to.trim_start_matches("nats://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound");
    let up = tokio::sync::watch::Sender::new(true);
    let state = up.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !*state.borrow() {
                continue;
            }
            let mut cut = state.subscribe();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    (format!("nats://{addr}"), up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_cut_off_while_the_stream_is_trimmed_past_it_stops_and_rejoins_on_restart() {
    let (mut c, js) = e0_snapshotting_every_second().await;
    // e1 reaches NATS through a proxy the test can cut.
    let (proxied, link) = cuttable_proxy(c.nats.url(0)).await;
    c.more = serde_json::json!({"cluster": {"nats_urls": [proxied]}});
    c.spawn(1).await;
    c.more = serde_json::json!({});
    binds(&c, 1, 0..10).await;
    // Cut off: its heartbeat lapses (deleted here rather than waiting out its TTL)
    // and e0 trims the stream past everything e1 has.
    link.send_replace(false);
    let (_, cut_at) = stream_bounds(&js).await;
    js.get_key_value("fanfare_nodes")
        .await
        .expect("the heartbeat bucket exists")
        .delete("e1")
        .await
        .expect("heartbeat delete");
    let mut next = 10;
    eventually("e0 trims the stream past where e1 was cut off", || {
        let (c, js, from) = (&c, &js, next);
        next += 5;
        async move {
            binds(c, 0, from..from + 5).await;
            stream_bounds(js).await.0 > cut_at + 1
        }
    })
    .await;
    // Back on NATS, e1 finds the gap: it stops instead of serving a state no other
    // engine has, and its restart on the same data directory rejoins exactly.
    link.send_replace(true);
    let (status, log) = c.exited(1).await;
    assert!(
        !status.success(),
        "a failure exit for the supervisor: {log}"
    );
    assert!(log.contains("lost records"), "{log}");
    assert!(log.contains("stopping"), "{log}");
    c.more = serde_json::json!({"cluster": {"nats_urls": [c.nats.url(0)]}});
    joins_from_the_object_store_as(&mut c, 1, &[]).await;
}
