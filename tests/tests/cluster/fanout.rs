//! Pushes through any engine: cluster-wide dedup of message ids, presence seen by every
//! engine's planning, group members bound through other engines.

use fanfare::api::wire::{MembersRequest, MessageAnswer};
use fanfare::client::request;

use super::harness::{eventually, push_ids, Cluster};

fn message(id: &str, from: &str, kind: &str, to: &str) -> fanfare::api::wire::MessageRequest {
    request::message(id, from, kind, to, Some(request::push("hi", "there", "{}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_id_sent_to_two_engines_is_pushed_once() {
    let c = Cluster::start(1, 2).await;
    c.bind(0, "pb", "bob").await;
    let (a, b) = (c.api(0), c.api(1));
    eventually("B knows bob's device", || async {
        push_ids(&b, "bob").await == ["pb"]
    })
    .await;
    let first = a.message(&message("m-1", "alice", "peer", "bob")).await;
    assert!(matches!(first, Ok(MessageAnswer::Accepted(_))), "{first:?}");
    let again = b.message(&message("m-1", "alice", "peer", "bob")).await;
    assert!(
        matches!(again, Ok(MessageAnswer::Duplicate(_))),
        "{again:?}"
    );
    // A different id through B is pushed: B pushes, it only refused the repeat.
    let other = b.message(&message("m-2", "alice", "peer", "bob")).await;
    assert!(matches!(other, Ok(MessageAnswer::Accepted(_))), "{other:?}");
    eventually("both distinct messages arrive", || async {
        c.pushes_to("pb") >= 2
    })
    .await;
    assert_eq!(c.pushes_to("pb"), 2, "m-1 once, m-2 once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_online_through_one_engine_is_not_pushed_through_another() {
    let c = Cluster::start(1, 2).await;
    c.bind(0, "pb", "bob").await;
    let (a, b) = (c.api(0), c.api(1));
    a.presence(&request::presence(vec![request::session(
        "bob", "s1", true,
    )]))
    .await
    .expect("presence");
    eventually("B sees bob online", || async {
        b.presence_of("bob").await.is_ok_and(|p| p.online)
    })
    .await;
    eventually("B knows bob's device", || async {
        push_ids(&b, "bob").await == ["pb"]
    })
    .await;
    match b.message(&message("m-1", "alice", "peer", "bob")).await {
        Ok(MessageAnswer::Accepted(acc)) => {
            assert_eq!((acc.offline_recipients, acc.targets), (0, 0), "{acc:?}")
        }
        other => panic!("accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_through_c_reaches_members_bound_through_a_and_b() {
    let c = Cluster::start(1, 3).await;
    c.bind(0, "pa", "alice").await;
    c.bind(1, "pb", "bob").await;
    let members = MembersRequest {
        add: vec!["alice".into(), "bob".into(), "carol".into()],
        remove: Vec::new(),
    };
    c.api(0).members("g", &members).await.expect("group");
    let api_c = c.api(2);
    eventually("C knows the group and both devices", || async {
        api_c.group("g").await.is_ok_and(|g| g.members == 3)
            && push_ids(&api_c, "alice").await == ["pa"]
            && push_ids(&api_c, "bob").await == ["pb"]
    })
    .await;
    let sent = api_c.message(&message("gm-1", "carol", "group", "g")).await;
    match sent {
        Ok(MessageAnswer::Accepted(acc)) => assert_eq!(acc.targets, 2, "{acc:?}"),
        other => panic!("accepted: {other:?}"),
    }
    eventually("alice's and bob's devices are pushed", || async {
        c.pushes_to("pa") == 1 && c.pushes_to("pb") == 1
    })
    .await;
}
