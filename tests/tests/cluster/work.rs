//! Shared fan-out work: the accepting engine hands a message's targets to the work
//! stream in chunks and every engine pushes some of them; a chunk of an engine that
//! dies is finished by the others, its repeats counted and collapsed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fanfare::api::wire::{MembersRequest, MessageAnswer};
use fanfare::client::request;

use super::harness::{eventually, Cluster};

/// Bind `n` users `m<i>` (push id `m<i>`) spread over the running engines `engines`,
/// 32 at a time, and put them all in group `g` with the sender `s`.
pub async fn group_of(c: &Cluster, n: usize, engines: &[usize]) {
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let api = c.api(engines[i % engines.len()]);
        let permit = limit.clone().acquire_owned().await.expect("semaphore open");
        tasks.spawn(async move {
            let id = format!("m{i}");
            api.bind(&id, &request::bind(&id, "fcm", &Cluster::token(&id)))
                .await
                .unwrap_or_else(|e| panic!("bind {id}: {e}"));
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a bind task");
    }
    let mut add: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    add.push("s".into());
    let members = MembersRequest {
        add,
        remove: Vec::new(),
    };
    c.api(engines[0])
        .members("g", &members)
        .await
        .expect("group");
    for &e in engines {
        let api = c.api(e);
        eventually("every engine knows the group and every binding", || async {
            let bindings = api
                .stats()
                .await
                .map_or(0, |s| s["bindings"].as_u64().unwrap_or(0));
            api.group("g").await.is_ok_and(|g| g.members == n + 1) && bindings == n as u64
        })
        .await;
    }
}

/// A group message from `s` to `g` through `api`; returns its target count.
pub async fn send(api: &fanfare::client::Client, id: &str) -> usize {
    let m = request::message(
        id,
        "s",
        "group",
        "g",
        Some(request::push("hi", "there", "{}")),
    );
    match api.message(&m).await {
        Ok(MessageAnswer::Accepted(a)) => a.targets,
        other => panic!("accepted: {other:?}"),
    }
}

/// Pushes the mock FCM received, by token.
pub fn by_token(c: &Cluster) -> HashMap<String, Vec<serde_json::Value>> {
    let mut m: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for p in c.rig.fcm().received() {
        m.entry(p.token).or_default().push(p.message);
    }
    m
}

/// FCM pushes engine `i` had delivered.
pub async fn delivered_by(c: &Cluster, i: usize) -> u64 {
    let s = c.api(i).stats().await.expect("stats");
    s["providers"]["fcm"]["delivered"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_fan_out_through_one_engine_is_pushed_by_several_and_arrives_once() {
    let c = Cluster::start(1, 3).await;
    let n = 6_000;
    group_of(&c, n, &[0, 1, 2]).await;
    // A slow vendor: the work outlasts one engine's share, the others take chunks.
    c.rig.fcm().faults().set_latency(Duration::from_millis(20));
    assert_eq!(send(&c.api(0), "big-1").await, n);
    eventually("every target is pushed", || async {
        c.rig.fcm().received_count() >= n
    })
    .await;
    let pushes = by_token(&c);
    assert_eq!(pushes.len(), n, "every member's token got a push");
    assert!(pushes.values().all(|p| p.len() == 1), "each exactly once");
    let mut per_engine = Vec::new();
    for i in 0..3 {
        per_engine.push(delivered_by(&c, i).await);
    }
    assert_eq!(per_engine.iter().sum::<u64>(), n as u64, "{per_engine:?}");
    assert!(
        per_engine.iter().filter(|d| **d > 0).count() >= 2,
        "the fan-out was shared: {per_engine:?}"
    );
    // No engine died: no chunk was delivered twice.
    for i in 0..3 {
        let s = c.api(i).stats().await.expect("stats");
        assert_eq!(s["cluster"]["duplicates"], 0, "engine {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_mid_fan_out_leaves_its_chunks_to_the_others_and_no_push_is_lost() {
    let mut c = Cluster::start(1, 3).await;
    let n = 20_000;
    group_of(&c, n, &[0, 1, 2]).await;
    c.rig.fcm().faults().set_latency(Duration::from_millis(50));
    assert_eq!(send(&c.api(0), "big-k").await, n);
    eventually("engine 1 is pushing its share", || async {
        delivered_by(&c, 1).await > 0
    })
    .await;
    c.kill(1).await;
    // Its chunks go to the others once their ack wait (30 s) is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while by_token(&c).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} members were pushed",
            by_token(&c).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pushes = by_token(&c);
    let mut repeats = 0;
    for (token, p) in &pushes {
        for later in &p[1..] {
            repeats += 1;
            assert_eq!(
                later["android"]["collapse_key"], "big-k",
                "a repeat to {token} carries the message id as collapse id"
            );
        }
    }
    let mut duplicates = 0;
    for i in [0, 2] {
        let s = c.api(i).stats().await.expect("stats");
        duplicates += s["cluster"]["duplicates"]
            .as_u64()
            .expect("cluster.duplicates");
    }
    eprintln!("killed mid-fan-out: {repeats} repeated pushes, {duplicates} targets redelivered");
    assert!(
        duplicates > 0,
        "the dead engine's chunks were delivered again"
    );
    // It held at most two chunks of 1,000 targets (its prefetch).
    assert!(duplicates <= 2_000, "{duplicates}");
    assert!(repeats as u64 <= duplicates, "{repeats} > {duplicates}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badge_increments_through_one_engine_are_counted_on_every_engine() {
    let c = Cluster::start(1, 2).await;
    c.bind(0, "pb", "bob").await;
    let (a, b) = (c.api(0), c.api(1));
    eventually("B knows bob's device", || async {
        super::harness::push_ids(&b, "bob").await == ["pb"]
    })
    .await;
    for (i, api) in [&a, &b].into_iter().enumerate() {
        let mut push = request::push("hi", "there", "{}");
        push.badge_increment = Some(1);
        let m = request::message(format!("b-{i}"), "alice", "peer", "bob", Some(push));
        assert!(matches!(
            api.message(&m).await,
            Ok(MessageAnswer::Accepted(_))
        ));
        // The engine that took the message shows its increment at once.
        assert_eq!(api.badge("bob").await.expect("badge").count, i as u32 + 1);
    }
    eventually("both engines count both increments", || async {
        a.badge("bob").await.is_ok_and(|n| n.count == 2)
            && b.badge("bob").await.is_ok_and(|n| n.count == 2)
    })
    .await;
    eventually("both pushes arrive", || async { c.pushes_to("pb") == 2 }).await;
    let mut counts: Vec<String> = c
        .rig
        .fcm()
        .received()
        .iter()
        .map(|p| p.message["android"]["notification"]["notification_count"].to_string())
        .collect();
    counts.sort();
    assert_eq!(counts, ["1", "2"], "each push carries bob's total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_through_another_engine_withdraws_the_invitations_it_holds() {
    let mut c = Cluster::start(1, 1).await;
    c.bind(0, "pb", "bob").await;
    // FCM answers 503 with a long Retry-After: the invitation waits in A's lane.
    c.rig.fcm().faults().set_unavailable(1.0, 30);
    let a = c.api(0);
    let call = request::call("c-1", "alice", vec!["bob".into()], 60, None);
    assert_eq!(a.call(&call).await.expect("call").targets, 1);
    eventually(
        "A tried the invitation and holds it for a retry",
        || async {
            let s = a.stats().await.expect("stats");
            s["providers"]["fcm"]["retried"].as_u64().unwrap_or(0) >= 1
        },
    )
    .await;
    c.spawn(1).await;
    let b = c.api(1);
    // B answers 404 until it has seen A's heartbeat; then A withdraws the invitation.
    let deadline = std::time::Instant::now() + super::harness::DEADLINE;
    let done = loop {
        match b.cancel_call("c-1", &Default::default()).await {
            Ok(done) => break done,
            Err(e) => assert!(std::time::Instant::now() < deadline, "never cancelled: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((done.withdrawn, done.cancel_pushes), (1, 0), "{done:?}");
    // Cancelled once: a second cancel finds no call anywhere.
    let again = b.cancel_call("c-1", &Default::default()).await;
    assert_eq!(
        again
            .expect_err("already cancelled")
            .status()
            .map(|s| s.as_u16()),
        Some(404)
    );
}
