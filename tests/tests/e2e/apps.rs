//! Several apps in one engine (`[apps.<app_id>.<vendor>]`): a binding's `app_id`
//! selects its app's credentials; an app with another key or project gets its own
//! connections and auth token, one that only changes the APNs topic shares them.

use fanfare::client::{request, BindRequest};
use fanfare_loadgen::mock::apns::{self, Credentials, MockApns};
use fanfare_loadgen::mock::fcm::{self, MockFcm};
use http::StatusCode;
use serde_json::{json, Value};

use crate::harness::Elsewhere;
use crate::harness::{self, apns_token, fcm_token, Harness, Options, TOPIC, WAIT};

impl Elsewhere {
    /// A second FCM project and the `[apps.<app>.fcm]` table that selects it.
    pub fn fcm(&self, app: &str, project: &str) -> (MockFcm, String) {
        let config = fcm::Config {
            project_id: project.into(),
            ..fcm::Config::default()
        };
        let mock = MockFcm::start(&self.ca, config).expect("second FCM mock");
        let sa = mock
            .write_service_account(self.dir.path())
            .expect("service account");
        let table = format!(
            "[apps.\"{app}\".fcm]\nservice_account_file = \"{}\"\nendpoint = \"{}\"\nca_file = \"{}\"\n",
            sa.display(),
            mock.url(),
            self.ca_file.display()
        );
        (mock, table)
    }

    /// An APNs mock trusting another team's key, for bundle `app`, and the
    /// `[apps.<app>.apns]` table that selects it (its topic: the app id).
    pub fn apns(&self, app: &str) -> (MockApns, String) {
        let creds = Credentials::generate().expect("APNs key");
        let key_file = creds.write_key_file(self.dir.path()).expect("key file");
        let config = apns::Config {
            topic: app.into(),
            ..apns::Config::default()
        };
        let mock = MockApns::start(&self.ca, &creds, config).expect("second APNs mock");
        let table = format!(
            "[apps.\"{app}\".apns]\nkey_file = \"{}\"\nkey_id = \"{}\"\nteam_id = \"{}\"\n\
             endpoint_production = \"{url}\"\nendpoint_sandbox = \"{url}\"\nca_file = \"{}\"\n",
            key_file.display(),
            creds.key_id,
            creds.team_id,
            self.ca_file.display(),
            url = mock.url(),
        );
        (mock, table)
    }
}

/// Bind `push_id` for `user` with `app_id`.
pub async fn bind_app(
    h: &Harness,
    push_id: &str,
    user: &str,
    provider: &str,
    token: &str,
    app: Option<&str>,
) {
    let req = BindRequest {
        app_id: app.map(Into::into),
        ..request::bind(user, provider, token)
    };
    h.api.bind(push_id, &req).await.expect("bind");
}

/// Wait until every target of message `id` is delivered; returns its ledger entry.
pub async fn delivered(h: &Harness, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, v) = h.get(&format!("/v1/messages/{id}")).await;
        if s == StatusCode::OK && v["outcomes"]["pending"] == 0 {
            assert_eq!(v["outcomes"]["delivered"], v["targets"], "{v}");
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id} not delivered: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An engine started with `options` in which u1 binds `provider` without an app and
/// u2 with `app`, each sent one message, both delivered.
async fn one_message_each_to_two_apps(options: Options, provider: &str, app: &str) -> Harness {
    let h = harness::start_with(options).await;
    let token = |seed| harness::device_token(provider, seed);
    bind_app(&h, "d1", "u1", provider, &token(1), None).await;
    bind_app(&h, "d2", "u2", provider, &token(2), Some(app)).await;
    message_each(&h, &["u1", "u2"]).await;
    h
}

/// Send one message to each of `users` and wait until every one is delivered.
async fn message_each(h: &Harness, users: &[&str]) {
    for u in users {
        h.message_to(&format!("m-{u}"), u, json!({"title": "t", "content": "c"}))
            .await;
    }
    for u in users {
        delivered(h, &format!("m-{u}")).await;
    }
}

#[tokio::test]
async fn two_fcm_projects_in_one_engine_each_see_only_their_apps_pushes_with_their_own_token() {
    let other = Elsewhere::new();
    let (fcm2, table) = other.fcm("com.example.other", "second-project");
    let options = Options {
        extra: table,
        ..Options::default()
    };
    let h = one_message_each_to_two_apps(options, "fcm", "com.example.other").await;
    // A binding whose app has no [apps] table uses the top-level project.
    bind_app(&h, "d3", "u3", "fcm", &fcm_token(3), Some("com.example.x")).await;
    message_each(&h, &["u3"]).await;
    let tokens =
        |m: &MockFcm| -> Vec<String> { m.received().into_iter().map(|p| p.token).collect() };
    assert_eq!(tokens(&h.fcm), [fcm_token(1), fcm_token(3)]);
    assert_eq!(tokens(&fcm2), [fcm_token(2)]);
    assert!(h.fcm.rejections().is_empty(), "{:?}", h.fcm.rejections());
    assert!(fcm2.rejections().is_empty(), "{:?}", fcm2.rejections());
    assert_eq!(
        (h.fcm.tokens_issued(), fcm2.tokens_issued()),
        (1, 1),
        "each project's OAuth token comes from its own token URI"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn two_apns_topics_of_one_key_share_the_connections_and_the_provider_token() {
    // The app's table sets only its topic: key, team, hosts, CA and connections are
    // inherited from [apns].
    let options = Options {
        extra: "[apps.\"com.example.other\".apns]\ntopic = \"com.example.other\"\n".into(),
        apns_other_topics: vec!["com.example.other".into()],
        ..Options::default()
    };
    let h = one_message_each_to_two_apps(options, "apns", "com.example.other").await;
    let mut seen: Vec<(String, String)> = h
        .apns
        .received()
        .into_iter()
        .map(|p| (p.token, p.topic))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (apns_token(1), TOPIC.to_string()),
            (apns_token(2), "com.example.other".to_string())
        ]
    );
    assert!(h.apns.rejections().is_empty(), "{:?}", h.apns.rejections());
    assert_eq!(
        h.apns.distinct_jwts(),
        1,
        "one provider token for both topics"
    );
    assert!(
        h.apns.connections_accepted() <= 2,
        "one set of connections ([apns] connections = 2), not one per app: {}",
        h.apns.connections_accepted()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn an_apns_app_with_another_key_gets_its_own_connections_and_provider_token() {
    let other = Elsewhere::new();
    let (apns2, table) = other.apns("com.example.second");
    let options = Options {
        extra: table,
        ..Options::default()
    };
    let h = one_message_each_to_two_apps(options, "apns", "com.example.second").await;
    let seen = |m: &MockApns| -> Vec<(String, String)> {
        m.received()
            .into_iter()
            .map(|p| (p.token, p.topic))
            .collect()
    };
    assert_eq!(seen(&h.apns), [(apns_token(1), TOPIC.to_string())]);
    assert_eq!(
        seen(&apns2),
        [(apns_token(2), "com.example.second".to_string())]
    );
    assert!(apns2.rejections().is_empty(), "{:?}", apns2.rejections());
    assert_eq!((h.apns.distinct_jwts(), apns2.distinct_jwts()), (1, 1));
    h.shutdown().await;
}
