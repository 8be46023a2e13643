//! The one shutdown path drains queued pushes before the final snapshot.

use std::time::Duration;

use fanfare_loadgen::mock::rig::{self, Rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_queued_pushes_then_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    // A slow vendor: every answer takes 200 ms, one stream per connection at a time
    // would take far longer than the grace, so the drain must rely on multiplexing.
    let rig = Rig::start(
        dir.path(),
        &rig::Options {
            fcm: false,
            latency: Duration::from_millis(200),
            ..rig::Options::default()
        },
    )
    .unwrap();
    let config_file = dir.path().join("engine.toml");
    rig.write_engine_config(
        &config_file,
        &serde_json::json!({
            "api": {"listen": "127.0.0.1:0", "shutdown_grace_s": 20},
            "storage": {"dir": dir.path().join("data"), "durability": "batch"},
        }),
    )
    .unwrap();
    let config = fanfare::config::Config::load(Some(&config_file), Vec::new()).unwrap();
    let mock = &rig.apns;
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
