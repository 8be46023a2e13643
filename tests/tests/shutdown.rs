//! The one shutdown path drains queued pushes before the final snapshot.

use std::time::Duration;

use fanfare_loadgen::mock::apns::{self, Credentials, MockApns};
use fanfare_loadgen::mock::tls::TestCa;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_queued_pushes_then_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate().unwrap();
    let ca_file = ca.write_ca_file(dir.path()).unwrap();
    let creds = Credentials::generate().unwrap();
    let key_file = creds.write_key_file(dir.path()).unwrap();
    // A slow vendor: every answer takes 200 ms, one stream per connection at a time
    // would take far longer than the grace, so the drain must rely on multiplexing.
    let mock = MockApns::start(
        &ca,
        &creds,
        apns::Config {
            topic: "com.example.chat".into(),
            latency: Duration::from_millis(200),
            ..apns::Config::default()
        },
    )
    .unwrap();
    let mut config = fanfare::config::Config::default();
    config.api.listen = "127.0.0.1:0".into();
    config.api.shutdown_grace_s = 20;
    config.storage.dir = dir.path().join("data");
    config.storage.durability = fanfare::config::Durability::Batch;
    config.apns.key_file = Some(key_file);
    config.apns.key_id = Some(creds.key_id.clone());
    config.apns.team_id = Some(creds.team_id.clone());
    config.apns.topic = Some("com.example.chat".into());
    config.apns.endpoint_production = mock.url();
    config.apns.endpoint_sandbox = mock.url();
    config.apns.ca_file = Some(ca_file);
    let running = fanfare::start(config.clone()).await.unwrap();
    let engine = running.engine().clone();
    let members: Vec<std::sync::Arc<str>> = (0..300).map(|i| format!("u{i}").into()).collect();
    for (i, u) in members.iter().enumerate() {
        engine
            .mutate(fanfare::state::Mutation::Bind {
                push_id: format!("d{i}").into(),
                binding: fanfare::state::Binding {
                    user_id: u.clone(),
                    provider: fanfare::state::ProviderKind::Apns,
                    environment: fanfare::state::Environment::Production,
                    app_id: None,
                    token: fanfare::state::Token::Bytes(
                        [(i as u32).to_be_bytes().as_slice(), &[7u8; 28]]
                            .concat()
                            .into(),
                    ),
                },
            })
            .await
            .unwrap();
    }
    engine
        .mutate(fanfare::state::Mutation::GroupUpdate {
            group_id: "all".into(),
            add: members,
            remove: Vec::new(),
        })
        .await
        .unwrap();
    // Queue 300 pushes through the API, then shut down at once.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let body = serde_json::json!({"message_id": "m1", "sender_id": "x", "conversation_type": "group",
                                  "conversation_id": "all", "push": {"title": "t"}});
    let req = http::Request::post(format!("http://{}/v1/messages", running.local_addr()))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert!(
        mock.received_count() < 300,
        "pushes must still be in flight when shutdown starts"
    );
    running.shutdown().await;
    // Every queued push reached the vendor before shutdown returned.
    assert_eq!(mock.received_count(), 300);
    let snapshots = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot-"))
        .count();
    assert_eq!(snapshots, 1, "final snapshot written");
    // Restart: the state is back from the snapshot.
    let running = fanfare::start(config).await.unwrap();
    assert_eq!(running.engine().state.registry.len(), 300);
    assert_eq!(
        running.engine().state.groups.members("all").unwrap().len(),
        300
    );
    running.shutdown().await;
}
