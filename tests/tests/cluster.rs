//! Cluster mode end to end: real `nats-server` processes, engines as processes, mock
//! vendors. Each test is bounded by [`harness::DEADLINE`] per wait and kills what it
//! started on drop.

#[path = "cluster/durability.rs"]
mod durability;
#[path = "cluster/fanout.rs"]
mod fanout;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/ledger.rs"]
mod ledger;
#[path = "cluster/trim.rs"]
mod trim;
#[path = "cluster/work.rs"]
mod work;

use fanfare::api::wire::MembersRequest;
use fanfare::client::request;
use harness::{eventually, push_ids, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_engine_are_read_on_every_engine() {
    let c = Cluster::start(1, 2).await;
    let (a, b) = (c.api(0), c.api(1));
    // Bind on A: A shows it at once (read-your-writes), B shortly after.
    c.bind(0, "pa", "alice").await;
    assert_eq!(push_ids(&a, "alice").await, ["pa"]);
    eventually("B sees the binding made on A", || async {
        push_ids(&b, "alice").await == ["pa"]
    })
    .await;
    // A group changed through B is visible on A.
    let members = MembersRequest {
        add: vec!["alice".into(), "bob".into()],
        remove: Vec::new(),
    };
    assert_eq!(
        b.members("g1", &members)
            .await
            .expect("group update")
            .members,
        2
    );
    eventually("A sees the group made on B", || async {
        a.group("g1").await.is_ok_and(|g| g.members == 2)
    })
    .await;
    // Do-not-disturb and a badge set through A are visible on B.
    a.set_notification("bob", ("group", "g1"), "do_not_disturb")
        .await
        .expect("mute");
    a.set_badge("bob", 7).await.expect("badge set");
    eventually("B sees the mute and the badge set on A", || async {
        let muted = b
            .notification("bob", ("group", "g1"))
            .await
            .is_ok_and(|n| n.status == "do_not_disturb");
        muted && b.badge("bob").await.is_ok_and(|n| n.count == 7)
    })
    .await;
    // Unbind through B: gone on A.
    b.unbind("pa").await.expect("unbind");
    eventually("A sees the unbind made on B", || async {
        push_ids(&a, "alice").await.is_empty()
    })
    .await;
    // Replication lag: from A's acknowledgement to B's answer showing the write
    // (B polled back to back, so the figure includes one request's time).
    let mut lags = Vec::new();
    for i in 0..40 {
        let user = format!("lag{i}");
        c.bind(0, &format!("lag{i}"), &user).await;
        let acked = std::time::Instant::now();
        while push_ids(&b, &user).await.is_empty() {
            assert!(acked.elapsed() < harness::DEADLINE, "B never saw {user}");
        }
        lags.push(acked.elapsed());
    }
    lags.sort();
    eprintln!(
        "replication lag A -> B: p50 {:?}, p99 {:?}",
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_writes_answer_503_reads_go_on_and_the_engine_reconnects_by_itself() {
    let mut c = Cluster::start(1, 1).await;
    let api = c.api(0);
    c.bind(0, "p1", "alice").await;
    c.nats.kill(0);
    let refused = api
        .bind("p2", &request::bind("alice", "fcm", "tok-p2"))
        .await
        .expect_err("no NATS: the write is refused");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(503), "{refused}");
    assert_eq!(refused.code(), Some("overloaded"));
    assert!(
        matches!(
            &refused,
            fanfare::client::Error::Api {
                retry_after_s: Some(_),
                ..
            }
        ),
        "Retry-After is given: {refused:?}"
    );
    // Reads go on from memory.
    assert_eq!(push_ids(&api, "alice").await, ["p1"]);
    c.nats.restart(0).expect("nats restarts");
    eventually("writes succeed again once NATS is back", || async {
        api.bind("p2", &request::bind("alice", "fcm", "tok-p2"))
            .await
            .is_ok()
    })
    .await;
    assert_eq!(push_ids(&api, "alice").await, ["p1", "p2"]);
}
