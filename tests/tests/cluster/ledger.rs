//! The delivery ledger, call cancel, counters and quotas across engines: whichever
//! engine is asked answers for the whole cluster.

use std::time::Duration;

use fanfare::client::request;
use fanfare_loadgen::mock::fcm::FcmVerdict;
use serde_json::json;

use super::harness::{eventually, Cluster};
use super::work::{group_of, send};

/// A cluster of `engines` on one NATS server whose engines run with `more` config.
async fn cluster_with(engines: usize, more: serde_json::Value) -> Cluster {
    let mut c = Cluster::start(1, 0).await;
    c.more = more;
    for i in 0..engines {
        c.spawn(i).await;
    }
    c
}

/// Work chunks engine `i` pulled.
async fn chunks_of(c: &Cluster, i: usize) -> u64 {
    let s = c.api(i).stats().await.expect("stats");
    s["cluster"]["chunks"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_pushed_by_other_engines_shows_every_target_settled_whichever_engine_is_asked() {
    // Lanes of 500: a chunk is 500 targets and an engine holds one at a time, so the
    // slow vendor spreads the 4 chunks over the engines.
    let c = cluster_with(3, json!({"messages": {"queue_capacity": 500}})).await;
    let n = 2_000;
    group_of(&c, n, &[0, 1, 2]).await;
    c.rig
        .fcm()
        .set_token_verdict(&Cluster::token("m7"), FcmVerdict::Unregistered);
    c.rig.fcm().faults().set_latency(Duration::from_millis(20));
    assert_eq!(send(&c.api(0), "led-1").await, n);
    for i in 0..3 {
        let api = c.api(i);
        eventually("every engine shows every target settled", || async {
            api.message_report("led-1")
                .await
                .is_ok_and(|r| r.outcomes.pending == 0)
        })
        .await;
        let r = api.message_report("led-1").await.expect("report");
        let o = &r.outcomes;
        assert_eq!(
            (r.targets, o.delivered, o.token_dead),
            (n as u64, n as u64 - 1, 1),
            "e{i}: {r:?}"
        );
        let sum = o.delivered
            + o.pending
            + o.token_dead
            + o.rejected
            + o.expired
            + o.withdrawn
            + o.unconfigured;
        assert_eq!(sum, r.targets, "e{i}: the outcomes add up to the targets");
        assert_eq!(r.failures.len(), 1, "e{i}: {:?}", r.failures);
        assert_eq!(
            (
                r.failures[0].push_id.as_str(),
                r.failures[0].outcome.as_str()
            ),
            ("m7", "token_dead")
        );
    }
    let mut ran = 0;
    for i in 0..3 {
        ran += usize::from(chunks_of(&c, i).await > 0);
    }
    assert!(ran >= 2, "the chunks ran on several engines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_before_any_engine_pulled_it_is_withdrawn_and_never_rings() {
    // Lanes of 10: one 10-member group message fills an engine's lanes, and a slow
    // vendor keeps them full, so the call's chunk waits in the work stream.
    let c = cluster_with(2, json!({"messages": {"queue_capacity": 10}})).await;
    group_of(&c, 10, &[0, 1]).await;
    c.bind(0, "pc", "carol").await;
    c.rig.fcm().faults().set_latency(Duration::from_secs(6));
    send(&c.api(0), "block-1").await;
    send(&c.api(0), "block-2").await;
    eventually("each engine holds one blocking chunk", || async {
        chunks_of(&c, 0).await == 1 && chunks_of(&c, 1).await == 1
    })
    .await;
    let call = request::call("c-early", "alice", vec!["carol".into()], 60, None);
    assert_eq!(c.api(0).call(&call).await.expect("call").targets, 1);
    let done = c
        .api(1)
        .cancel_call("c-early", &Default::default())
        .await
        .expect("a call not pulled yet is cancelled");
    assert_eq!((done.withdrawn, done.cancel_pushes), (1, 0), "{done:?}");
    for i in 0..2 {
        let api = c.api(i);
        eventually(
            "the call's chunk was pulled and its invitation withdrawn",
            || async {
                api.call_report("c-early")
                    .await
                    .is_ok_and(|r| r.outcomes.pending == 0 && r.outcomes.withdrawn == 1)
            },
        )
        .await;
    }
    assert_eq!(c.pushes_to("pc"), 0, "the cancelled call never rang");
    let again = c.api(0).cancel_call("c-early", &Default::default()).await;
    assert_eq!(
        again
            .expect_err("cancelled once")
            .status()
            .map(|s| s.as_u16()),
        Some(404)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_stream_larger_than_nats_can_store_stops_the_engine_naming_the_key() {
    let mut c = Cluster::start(1, 0).await;
    c.more = json!({"cluster": {"work_max_bytes": 1u64 << 50}});
    let out = c.spawn_failing(0).await;
    assert!(out.contains("cluster.work_max_bytes"), "{out}");
    // A size NATS can hold starts, and a later start may change it.
    c.more = json!({"cluster": {"work_max_bytes": 8u64 << 20}});
    c.spawn(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_work_stream_refused_is_not_counted_as_accepted() {
    // Without dedup the claim needs no NATS: the hand-off is what fails.
    let mut c = cluster_with(1, json!({"messages": {"dedup_window_s": 0}})).await;
    c.bind(0, "pb", "bob").await;
    let api = c.api(0);
    c.nats.kill(0);
    let m = request::message(
        "m-1",
        "alice",
        "peer",
        "bob",
        Some(request::push("hi", "x", "{}")),
    );
    let refused = api.message(&m).await.expect_err("no NATS: refused");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(503), "{refused}");
    let s = api.stats().await.expect("stats");
    assert_eq!(s["messages_accepted"], 0, "{s}");
    assert_eq!(s["requests_shed"], 1, "{s}");
    c.nats.restart(0).expect("nats restarts");
    eventually("the retry is accepted once NATS is back", || async {
        api.message(&m).await.is_ok()
    })
    .await;
    let s = api.stats().await.expect("stats");
    assert_eq!(s["messages_accepted"], 1, "{s}");
}

/// The pace engine `i`'s FCM lane sends at now.
async fn fcm_pace(c: &Cluster, i: usize) -> u64 {
    let s = c.api(i).stats().await.expect("stats");
    s["lanes"]["fcm"]["pace_rps"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_two_engines_paces_its_lanes_at_half_of_max_rps() {
    let more = json!({"fcm": {"max_rps": 1000}, "messages": {"queue_capacity": 10}});
    let mut c = cluster_with(1, more).await;
    assert_eq!(
        fcm_pace(&c, 0).await,
        1000,
        "alone, an engine takes all of max_rps"
    );
    c.spawn(1).await;
    // Idle lanes take their share as soon as each engine sees the other's heartbeat
    // (every 2 s): no work needs to pass through them first.
    eventually(
        "both engines pace their FCM lane at half of max_rps",
        || async { fcm_pace(&c, 0).await == 500 && fcm_pace(&c, 1).await == 500 },
    )
    .await;
}
