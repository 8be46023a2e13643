//! The typed API client (`fanfare::client`) against the real engine: every endpoint it
//! wraps, both protocols, error answers as data, and its bound on a silent server.

use std::time::Duration;

use fanfare::client::{self, request, Client, MessageAnswer, Protocol};
use http::StatusCode;
use tokio::net::TcpListener;

use crate::harness::{self, apns_token};

async fn every_endpoint_reads_back_typed(api: &Client, p: &str) {
    let token = apns_token(7);
    let bound = api
        .bind(
            &format!("{p}d1"),
            &request::bind(&format!("{p}u1"), "apns", &token),
        )
        .await
        .expect("bind");
    assert_eq!(bound.previous_user_id, None);
    let list = api.push_ids(&format!("{p}u1")).await.expect("push ids");
    assert_eq!(list.push_ids.len(), 1);
    assert_eq!(list.push_ids[0].provider, "apns");

    let events = vec![request::session(&format!("{p}u2"), "s1", true)];
    let applied = api.presence(&request::presence(events)).await;
    assert_eq!(applied.expect("presence").applied, 1);
    let status = api.presence_of(&format!("{p}u2")).await.expect("presence");
    assert_eq!((status.online, status.sessions), (true, 1));

    let group = format!("{p}g");
    let members = client::MembersRequest {
        add: vec![format!("{p}u0"), format!("{p}u1"), format!("{p}u2")],
        remove: vec![],
    };
    assert_eq!(
        api.members(&group, &members)
            .await
            .expect("members")
            .members,
        3
    );
    assert_eq!(api.group(&group).await.expect("group").members, 3);

    let push = request::push("t", "hello", "1");
    let m = request::message(
        format!("{p}m1"),
        &format!("{p}u0"),
        "group",
        &group,
        Some(push),
    );
    let answer = api.message(&m).await.expect("message");
    let accepted = answer.accepted().expect("a first message is accepted");
    // u1 offline with one device, u2 online.
    assert_eq!(
        (
            accepted.recipients,
            accepted.offline_recipients,
            accepted.targets
        ),
        (2, 1, 1)
    );
    assert!(matches!(
        api.message(&m).await.expect("message"),
        MessageAnswer::Duplicate(d) if d.duplicate
    ));

    let invitees = vec![format!("{p}u1"), format!("{p}u2")];
    let c = request::call(format!("{p}c1"), &format!("{p}u0"), invitees, 30, None);
    let call = api.call(&c).await.expect("call");
    assert_eq!((call.offline_invitees, call.targets), (1, 1));

    assert_eq!(
        api.unbind(&format!("{p}d1")).await.expect("unbind").user_id,
        format!("{p}u1")
    );
    assert_eq!(
        api.remove_user(&format!("{p}u1"))
            .await
            .expect("remove")
            .removed,
        0
    );
    api.delete_group(&group).await.expect("delete group");

    let missing = api.group(&group).await.expect_err("the group is gone");
    assert_eq!(missing.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(missing.code(), Some("not_found"));
    assert!(api.stats().await.expect("stats").is_object());
}

#[tokio::test]
async fn the_typed_client_reads_every_answer_over_h2c_and_http1() {
    let h = harness::start().await;
    assert_eq!(h.api.healthz().await.expect("healthz").status, "ok");
    every_endpoint_reads_back_typed(&h.api, "h1-").await;
    let h2c = Client::builder(h.base.clone())
        .protocol(Protocol::H2c)
        .build();
    every_endpoint_reads_back_typed(&h2c, "h2-").await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_typed_client_sends_its_token_and_reads_401_as_an_error() {
    let h = harness::start_with_token().await;
    assert!(h
        .api
        .group("none")
        .await
        .is_err_and(|e| e.code() == Some("not_found")));
    let anonymous = Client::builder(h.base.clone()).build();
    let refused = anonymous.group("none").await.expect_err("no token");
    assert_eq!(refused.status(), Some(StatusCode::UNAUTHORIZED));
    h.shutdown().await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_the_typed_client_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    // Accept and hold every connection without reading or answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    for protocol in [Protocol::H2c, Protocol::Http1] {
        let api = Client::builder(base.clone())
            .protocol(protocol)
            .timeout(Duration::from_millis(200))
            .build();
        let err = api.healthz().await.expect_err("nothing answers");
        assert!(
            matches!(err, client::Error::Timeout(_)),
            "{protocol:?}: {err}"
        );
    }
    holder.abort();
}

#[test]
fn a_clients_debug_output_names_its_engine_but_never_its_token() {
    let api = Client::builder("http://127.0.0.1:7070")
        .token(Some("s3cret-token-value"))
        .build();
    let shown = format!("{api:?}");
    assert!(shown.contains("127.0.0.1:7070"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}
