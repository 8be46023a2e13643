//! Nothing acknowledged is lost: an engine SIGKILLed and restarted, an engine joining
//! with an empty data directory, one of three NATS servers SIGKILLed under writes.

use std::sync::Arc;

use fanfare::api::wire::MembersRequest;
use fanfare::client::{request, Client};

use super::harness::{eventually, push_ids, Cluster};

/// The state the tests compare between engines, read through the API.
async fn view(api: &Client, users: &[String], groups: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for u in users {
        out.push(format!("{u}: {:?}", push_ids(api, u).await));
        let badge = api.badge(u).await.map(|b| b.count).unwrap_or(u32::MAX);
        let muted = api.notification(u, ("group", "g0")).await.map(|n| n.status);
        out.push(format!("{u}: badge {badge} g0 {muted:?}"));
    }
    for g in groups {
        out.push(format!(
            "{g}: {:?}",
            api.group(g).await.map(|g| g.members).ok()
        ));
    }
    out
}

/// Binds `p<i>` → `u<i % 10>` for `range`, through engine `e`.
pub(super) async fn binds(c: &Cluster, e: usize, range: std::ops::Range<usize>) {
    for i in range {
        c.bind(e, &format!("p{i}"), &format!("u{}", i % 10)).await;
    }
}

/// Start engine `i` on an empty data directory: it joins from the object store and
/// shows what engine 0 shows of users `u0..u9` and `groups`.
pub(super) async fn joins_from_the_object_store_as(c: &mut Cluster, i: usize, groups: &[&str]) {
    c.spawn(i).await;
    assert!(
        c.log(i).contains("source=\"object store\""),
        "joined from the object store: {}",
        c.log(i)
    );
    let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let on_a = view(&c.api(0), &users, groups).await;
    assert_eq!(view(&c.api(i), &users, groups).await, on_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_engine_restarts_with_every_acknowledged_write() {
    let mut c = Cluster::start(1, 0).await;
    c.snapshot_interval_s = 1;
    c.spawn(0).await;
    binds(&c, 0, 0..30).await;
    let dir = c.data_dir(0);
    eventually("a local snapshot is written", || async {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .any(|f| f.file_name().to_string_lossy().ends_with(".rkyv"))
            })
            .unwrap_or(false)
    })
    .await;
    // More after the snapshot: they are only in the stream.
    binds(&c, 0, 30..60).await;
    let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let before = view(&c.api(0), &users, &[]).await;
    c.kill(0).await;
    c.spawn(0).await;
    assert!(
        c.log(0).contains("source=\"local\""),
        "restarted from its local snapshot: {}",
        c.log(0)
    );
    assert_eq!(view(&c.api(0), &users, &[]).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_with_an_empty_data_dir_joins_and_serves_the_same_state() {
    let mut c = Cluster::start(1, 0).await;
    c.snapshot_interval_s = 1;
    c.spawn(0).await;
    c.spawn(1).await;
    binds(&c, 0, 0..40).await;
    let a = c.api(0);
    let members = MembersRequest {
        add: (0..8).map(|i| format!("u{i}")).collect(),
        remove: Vec::new(),
    };
    a.members("g0", &members).await.expect("group");
    a.set_notification("u1", ("group", "g0"), "do_not_disturb")
        .await
        .expect("mute");
    a.set_badge("u2", 5).await.expect("badge");
    eventually("e0 stores a snapshot in the object store", || async {
        c.log(0).contains("snapshot stored in the object store")
    })
    .await;
    // Writes after the stored snapshot come from the stream's tail.
    binds(&c, 1, 40..60).await;
    c.api(1).unbind("p3").await.expect("unbind");
    joins_from_the_object_store_as(&mut c, 2, &["g0"]).await;
    let joined = c.log(2);
    let line = joined
        .lines()
        .find(|l| l.contains("joined the cluster"))
        .unwrap_or("");
    eprintln!("join: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_three_nats_servers_under_concurrent_writes_loses_no_acknowledged_write()
{
    let mut c = Cluster::start(3, 2).await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let api = c.api(w % 2);
            let acked = acked.clone();
            tokio::spawn(async move {
                for i in 0..60 {
                    let push_id = format!("w{w}x{i}");
                    let req = request::bind(&format!("u{w}"), "fcm", &Cluster::token(&push_id));
                    // A 503 while NATS elects a new leader is retried, as an IM
                    // server would after Retry-After (a set-style write converges).
                    let deadline = std::time::Instant::now() + super::harness::DEADLINE;
                    while api.bind(&push_id, &req).await.is_err() {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "{push_id} never taken"
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    acked
                        .lock()
                        .expect("acked lock")
                        .push((format!("u{w}"), push_id));
                }
            })
        })
        .collect();
    eventually("some writes are acknowledged", || async {
        acked.lock().expect("acked lock").len() >= 40
    })
    .await;
    c.nats.kill(1);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("acked lock").clone();
    assert_eq!(acked.len(), 240, "every write was taken in the end");
    // A new engine reads the whole stream from the two servers left.
    c.spawn(2).await;
    for e in 0..3 {
        let api = c.api(e);
        for w in 0..4 {
            let user = format!("u{w}");
            let mut want: Vec<String> = acked
                .iter()
                .filter(|(u, _)| *u == user)
                .map(|(_, p)| p.clone())
                .collect();
            want.sort();
            eventually("every acknowledged write is on every engine", || async {
                let have = push_ids(&api, &user).await;
                want.iter().all(|p| have.contains(p))
            })
            .await;
        }
    }
}
