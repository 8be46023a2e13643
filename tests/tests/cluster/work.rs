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
