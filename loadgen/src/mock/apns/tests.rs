use std::time::Duration;

use http::Method;
use serde_json::json;

use super::*;
use crate::mock::server::unix_secs;
use crate::mock::test_client::{rejections, Client, Response};

const TOKEN: &str = "6f1c0a6de0e8a4f5b0e6c3f6a0e9c6e1d2b7f4a3c1e0d9b8a7f6e5d4c3b2a190";
const BUNDLE: &str = "com.example.chat";
const WAIT: Duration = Duration::from_secs(5);

/// Header changes for [`Fixture::push`]: a new value (`Some`) or none (`None`).
type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

struct Fixture {
    ca: TestCa,
    creds: Credentials,
    mock: MockApns,
    client: Client,
    jwt: String,
}

impl Fixture {
    async fn start(config: Config) -> Fixture {
        let ca = TestCa::generate().unwrap();
        let creds = Credentials::generate().unwrap();
        let mock = MockApns::start(&ca, &creds, config).unwrap();
        let client = Client::connect(&ca, mock.addr()).await.unwrap();
        let jwt = creds.provider_token(unix_secs()).unwrap();
        Fixture {
            ca,
            creds,
            mock,
            client,
            jwt,
        }
    }

    async fn new() -> Fixture {
        Fixture::start(Config::default()).await
    }

    /// POSTs to `/3/device/<token>` with valid defaults (auth, topic, push type);
    /// `changes` overrides (`Some`) or removes (`None`) headers by name.
    async fn push(
        &mut self,
        token: &str,
        changes: &[(&str, Option<&str>)],
        body: &[u8],
    ) -> Response {
        let path = format!("/3/device/{token}");
        self.send(Method::POST, &path, changes, body).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        changes: &[(&str, Option<&str>)],
        body: &[u8],
    ) -> Response {
        let auth = format!("bearer {}", self.jwt);
        let mut headers: Vec<(&str, &str)> = vec![
            ("authorization", &auth),
            ("apns-topic", BUNDLE),
            ("apns-push-type", "alert"),
        ];
        for (name, value) in changes {
            headers.retain(|(n, _)| n != name);
            if let Some(value) = value {
                headers.push((*name, *value));
            }
        }
        self.client
            .request(method, path, &headers, body)
            .await
            .unwrap()
    }
}

fn alert() -> Vec<u8> {
    json!({"aps": {"alert": {"title": "hi", "body": "there"}}, "conv": "c1"})
        .to_string()
        .into_bytes()
}

#[track_caller]
/// The headers of a valid alert push with `authorization`, for a bare client.
fn alert_headers(authorization: &str) -> [(&str, &str); 3] {
    [
        ("authorization", authorization),
        ("apns-topic", BUNDLE),
        ("apns-push-type", "alert"),
    ]
}

fn assert_rejected(response: &Response, status: u16, reason: &str) {
    assert_eq!(response.status, status, "body: {:?}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.data_frames, 1, "error body must be one DATA frame");
    let body = response.json();
    assert_eq!(body["reason"], reason, "body: {body}");
}

#[tokio::test]
async fn valid_push_is_accepted_with_headers_only_and_recorded() {
    let mut fx = Fixture::new().await;
    let apns_id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let response = fx
        .push(
            TOKEN,
            &[
                ("apns-id", Some(apns_id)),
                ("apns-priority", Some("5")),
                ("apns-expiration", Some("1700000000")),
                ("apns-collapse-id", Some("thread-7")),
            ],
            &alert(),
        )
        .await;

    assert_eq!(response.status, 200);
    assert!(
        response.end_stream_on_headers,
        "success must end on HEADERS"
    );
    assert_eq!(response.data_frames, 0);
    assert!(response.body.is_empty());
    assert_eq!(response.header("apns-id"), Some(apns_id));

    assert!(fx.mock.wait_for(1, WAIT).await);
    let received = fx.mock.received();
    assert_eq!(received.len(), 1);
    let push = &received[0];
    assert_eq!(push.token, TOKEN);
    assert_eq!(push.topic, BUNDLE);
    assert_eq!(push.push_type, "alert");
    assert_eq!(push.priority, 5);
    assert_eq!(push.expiration, Some(1_700_000_000));
    assert_eq!(push.apns_id, apns_id);
    assert_eq!(push.collapse_id.as_deref(), Some("thread-7"));
    assert_eq!(push.body["aps"]["alert"]["title"], "hi");
    assert_eq!(fx.mock.received_count(), 1);
    assert!(fx.mock.rejections().is_empty());
    assert_eq!(fx.mock.distinct_jwts(), 1);
    assert_eq!(fx.mock.streams_seen(), 1);
    assert_eq!(fx.mock.connections_accepted(), 1);
}

#[tokio::test]
async fn apns_id_is_generated_when_absent_and_priority_defaults_to_10() {
    let mut fx = Fixture::new().await;
    let response = fx.push(TOKEN, &[], &alert()).await;
    assert_eq!(response.status, 200);
    let id = response.header("apns-id").expect("apns-id header");
    assert!(is_canonical_uuid(id), "{id}");
    let push = &fx.mock.received()[0];
    assert_eq!(push.apns_id, id);
    assert_eq!(push.priority, 10);
    assert_eq!(push.expiration, None);
}

#[tokio::test]
async fn provider_token_problems_are_403() {
    let mut fx = Fixture::new().await;

    let r = fx.push(TOKEN, &[("authorization", None)], &alert()).await;
    assert_rejected(&r, 403, "MissingProviderToken");

    let bearer =
        |creds: &Credentials, iat: i64| format!("bearer {}", creds.provider_token(iat).unwrap());
    // Signed by another key under the right key id and team.
    let mut other = Credentials::generate().unwrap();
    other.key_id = fx.creds.key_id.clone();
    other.team_id = fx.creds.team_id.clone();
    // Right key, wrong key id.
    let mut wrong_kid = fx.creds.clone();
    wrong_kid.key_id = "ZZZZZZZZZZ".to_owned();
    // Right key, other team.
    let mut other_team = fx.creds.clone();
    other_team.team_id = "TEAM000000".to_owned();
    let now = unix_secs();
    let refused = [
        ("bearer not.a.jwt".to_owned(), "InvalidProviderToken"),
        (bearer(&other, now), "InvalidProviderToken"),
        (bearer(&wrong_kid, now), "InvalidProviderToken"),
        (bearer(&other_team, now), "InvalidProviderToken"),
        (bearer(&fx.creds, now - 2 * 3600), "ExpiredProviderToken"),
        (bearer(&fx.creds, now + 600), "InvalidProviderToken"),
        ("Basic abc".to_owned(), "InvalidProviderToken"),
    ];
    for (authorization, reason) in &refused {
        let r = fx
            .push(TOKEN, &[("authorization", Some(authorization))], &alert())
            .await;
        assert_rejected(&r, 403, reason);
    }

    assert_eq!(fx.mock.received_count(), 0);
    assert_eq!(fx.mock.distinct_jwts(), 0);
    let reasons: Vec<_> = fx.mock.rejections().into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons[0], "MissingProviderToken");
    assert_eq!(reasons.len(), 8);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_jwts_are_counted_once() {
    let mut fx = Fixture::new().await;
    let upper = format!("Bearer {}", fx.jwt);
    for _ in 0..3 {
        let r = fx.push(TOKEN, &[], &alert()).await;
        assert_eq!(r.status, 200);
    }
    let r = fx
        .push(TOKEN, &[("authorization", Some(&upper))], &alert())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(fx.mock.distinct_jwts(), 1);

    // The same JWT on a second connection is still one JWT.
    let mut second = Client::connect(&fx.ca, fx.mock.addr()).await.unwrap();
    let auth = format!("bearer {}", fx.jwt);
    let r = second
        .post(
            &format!("/3/device/{TOKEN}"),
            &alert_headers(&auth),
            &alert(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(fx.mock.distinct_jwts(), 1);
    assert_eq!(fx.mock.connections_accepted(), 2);

    // A re-signed token is a new one. ES256 signing is deterministic, so its `iat`
    // must differ from the fixture's even when the clock ticked since (10 min back,
    // still valid for Apple's hour).
    let newer = format!(
        "bearer {}",
        fx.creds.provider_token(unix_secs() - 600).unwrap()
    );
    let r = fx
        .push(TOKEN, &[("authorization", Some(&newer))], &alert())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(fx.mock.distinct_jwts(), 2);
    assert_eq!(fx.mock.received_count(), 6);
}

#[tokio::test]
async fn topic_must_match_push_type() {
    let mut fx = Fixture::new().await;

    let refused: [(Changes, &str); 5] = [
        (&[("apns-topic", Some("com.other.app"))], "BadTopic"),
        (&[("apns-topic", Some("com.example.chatty"))], "BadTopic"),
        (
            &[("apns-topic", Some("com.example.chat.voip"))],
            "DeviceTokenNotForTopic",
        ),
        (
            &[("apns-push-type", Some("voip"))],
            "DeviceTokenNotForTopic",
        ),
        (&[("apns-topic", None)], "MissingTopic"),
    ];
    for (changes, reason) in refused {
        let r = fx.push(TOKEN, changes, &alert()).await;
        assert_rejected(&r, 400, reason);
    }

    let r = fx
        .push(
            TOKEN,
            &[
                ("apns-push-type", Some("voip")),
                ("apns-topic", Some("com.example.chat.voip")),
            ],
            &alert(),
        )
        .await;
    assert_eq!(r.status, 200);

    // Background pushes must use priority 5.
    let background = json!({"aps": {"content-available": 1}}).to_string();
    let r = fx
        .push(
            TOKEN,
            &[("apns-push-type", Some("background"))],
            background.as_bytes(),
        )
        .await;
    assert_rejected(&r, 400, "BadPriority");
    let r = fx
        .push(
            TOKEN,
            &[
                ("apns-push-type", Some("background")),
                ("apns-priority", Some("5")),
            ],
            background.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(fx.mock.received_count(), 2);
}

#[tokio::test]
async fn header_values_are_checked() {
    let mut fx = Fixture::new().await;
    let cases: &[(&str, &str, &str)] = &[
        (
            "apns-id",
            "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D",
            "BadMessageId",
        ),
        ("apns-id", "not-a-uuid", "BadMessageId"),
        ("apns-priority", "7", "BadPriority"),
        ("apns-push-type", "shout", "InvalidPushType"),
        ("apns-expiration", "-1", "BadExpirationDate"),
        ("apns-expiration", "soon", "BadExpirationDate"),
    ];
    for (name, value, reason) in cases {
        let r = fx.push(TOKEN, &[(*name, Some(*value))], &alert()).await;
        assert_rejected(&r, 400, reason);
    }
    let long = "c".repeat(65);
    let r = fx
        .push(TOKEN, &[("apns-collapse-id", Some(&long))], &alert())
        .await;
    assert_rejected(&r, 400, "BadCollapseId");
    let r = fx.push(TOKEN, &[("apns-push-type", None)], &alert()).await;
    assert_rejected(&r, 400, "InvalidPushType");
    assert_eq!(fx.mock.received_count(), 0);
}

#[tokio::test]
async fn path_method_and_device_token_are_checked() {
    let mut fx = Fixture::new().await;

    let r = fx.push("abc", &[], &alert()).await;
    assert_rejected(&r, 400, "BadDeviceToken");
    let r = fx.push(&"zz".repeat(32), &[], &alert()).await;
    assert_rejected(&r, 400, "BadDeviceToken");
    let r = fx.push(&format!("{TOKEN}0"), &[], &alert()).await;
    assert_rejected(&r, 400, "BadDeviceToken");
    let r = fx.push(&"ab".repeat(101), &[], &alert()).await;
    assert_rejected(&r, 400, "BadDeviceToken");
    // Longer tokens within the configured range are fine.
    let r = fx.push(&"AB".repeat(50), &[], &alert()).await;
    assert_eq!(r.status, 200);

    let r = fx.push("", &[], &alert()).await;
    assert_rejected(&r, 400, "MissingDeviceToken");
    let r = fx
        .send(Method::POST, &format!("/3/devices/{TOKEN}"), &[], &alert())
        .await;
    assert_rejected(&r, 404, "BadPath");
    let r = fx
        .send(Method::GET, &format!("/3/device/{TOKEN}"), &[], b"")
        .await;
    assert_rejected(&r, 405, "MethodNotAllowed");
}

#[tokio::test]
async fn token_verdicts_are_answered() {
    let mut fx = Fixture::new().await;
    let gone = "aa".repeat(32);
    let bad = "bb".repeat(32);
    let expired = "cc".repeat(32);
    let before = server::unix_millis();
    fx.mock.set_token_verdict(&gone, ApnsVerdict::Unregistered);
    fx.mock.set_token_verdict(&bad, ApnsVerdict::BadDeviceToken);
    fx.mock
        .set_token_verdict(&expired.to_uppercase(), ApnsVerdict::ExpiredToken);

    let r = fx.push(&gone, &[], &alert()).await;
    assert_rejected(&r, 410, "Unregistered");
    let timestamp = r.json()["timestamp"].as_u64().expect("timestamp in ms");
    assert!((before..=server::unix_millis()).contains(&timestamp));

    let r = fx.push(&bad, &[], &alert()).await;
    assert_rejected(&r, 400, "BadDeviceToken");
    assert!(r.json().get("timestamp").is_none());

    let r = fx.push(&expired, &[], &alert()).await;
    assert_rejected(&r, 410, "ExpiredToken");
    assert!(r.json().get("timestamp").is_none());

    let r = fx.push(TOKEN, &[], &alert()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        fx.mock.rejections(),
        rejections(&[
            (410, "Unregistered"),
            (400, "BadDeviceToken"),
            (410, "ExpiredToken")
        ])
    );
}

#[tokio::test]
async fn payload_is_checked() {
    let mut fx = Fixture::new().await;

    let r = fx.push(TOKEN, &[], b"").await;
    assert_rejected(&r, 400, "PayloadEmpty");

    let filler = "x".repeat(4096);
    let big = json!({"aps": {"alert": "a"}, "pad": filler}).to_string();
    let r = fx.push(TOKEN, &[], big.as_bytes()).await;
    assert_rejected(&r, 413, "PayloadTooLarge");

    // Exactly at the limit is fine.
    let mut exact = json!({"aps": {"alert": "a"}, "pad": ""}).to_string();
    exact.insert_str(exact.len() - 2, &"y".repeat(4096 - exact.len()));
    assert_eq!(exact.len(), 4096);
    let r = fx.push(TOKEN, &[], exact.as_bytes()).await;
    assert_eq!(r.status, 200);

    // VoIP allows 5120 bytes.
    let voip = json!({"aps": {}, "pad": "v".repeat(5000)}).to_string();
    let voip_headers = [
        ("apns-push-type", Some("voip")),
        ("apns-topic", Some("com.example.chat.voip")),
    ];
    let r = fx.push(TOKEN, &voip_headers, voip.as_bytes()).await;
    assert_eq!(r.status, 200);
    let voip = json!({"aps": {}, "pad": "v".repeat(5200)}).to_string();
    let r = fx.push(TOKEN, &voip_headers, voip.as_bytes()).await;
    assert_rejected(&r, 413, "PayloadTooLarge");

    let r = fx.push(TOKEN, &[], b"{not json").await;
    assert_rejected(&r, 400, "BadPayload");
    let r = fx.push(TOKEN, &[], br#"{"alert":"no aps"}"#).await;
    assert_rejected(&r, 400, "BadPayload");
    let r = fx.push(TOKEN, &[], br#"{"aps":"text"}"#).await;
    assert_rejected(&r, 400, "BadPayload");
    let r = fx.push(TOKEN, &[], br#"[{"aps":{}}]"#).await;
    assert_rejected(&r, 400, "BadPayload");

    assert_eq!(fx.mock.received_count(), 2);
}

#[tokio::test]
async fn advertises_max_concurrent_streams_and_serves_streams_concurrently() {
    let config = Config {
        max_concurrent_streams: 7,
        latency: Duration::from_millis(50),
        ..Config::default()
    };
    let mut fx = Fixture::start(config).await;
    let r = fx.push(TOKEN, &[], &alert()).await;
    assert_eq!(r.status, 200);
    assert_eq!(fx.client.max_send_streams(), 7);

    let auth = format!("bearer {}", fx.jwt);
    let body = alert();
    let path = format!("/3/device/{TOKEN}");
    let sends = (0..20).map(|_| {
        let (ca, addr) = (fx.ca.clone(), fx.mock.addr());
        let (auth, body, path) = (auth.clone(), body.clone(), path.clone());
        async move {
            let mut client = Client::connect(&ca, addr).await.unwrap();
            let headers = alert_headers(&auth);
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(client.post(&path, &headers, &body).await.unwrap().status);
            }
            statuses
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(fx.mock.wait_for(61, WAIT).await);
    assert_eq!(fx.mock.streams_seen(), 61);
    assert_eq!(fx.mock.connections_accepted(), 21);
}

#[tokio::test]
async fn many_streams_on_one_connection_complete() {
    let mut fx = Fixture::new().await;
    let auth = format!("bearer {}", fx.jwt);
    let body = alert();
    let path = format!("/3/device/{TOKEN}");
    let headers = alert_headers(&auth);
    let client = &fx.client;
    let sends = (0..200).map(|_| {
        let mut client = client.clone();
        let (body, path, headers) = (&body, &path, &headers);
        async move { client.post(path, headers, body).await.unwrap().status }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert!(fx.mock.wait_for(200, WAIT).await);
    assert_eq!(fx.mock.connections_accepted(), 1);
    assert_eq!(fx.mock.distinct_jwts(), 1);
    let _ = fx.push(TOKEN, &[], &alert()).await;
}

#[tokio::test]
async fn wait_for_times_out_and_wakes_on_push() {
    let fx = Fixture::new().await;
    assert!(!fx.mock.wait_for(1, Duration::from_millis(20)).await);

    let Fixture {
        mut client,
        mock,
        jwt,
        ..
    } = fx;
    let waiter = mock.wait_for(1, WAIT);
    let push = async {
        let auth = format!("bearer {jwt}");
        let headers = alert_headers(&auth);
        client
            .post(&format!("/3/device/{TOKEN}"), &headers, &alert())
            .await
            .unwrap()
            .status
    };
    let (reached, status) = tokio::join!(waiter, push);
    assert_eq!(status, 200);
    assert!(reached);
}

#[tokio::test]
async fn shutdown_closes_listener_and_connections() {
    let mut fx = Fixture::new().await;
    let r = fx.push(TOKEN, &[], &alert()).await;
    assert_eq!(r.status, 200);

    fx.mock.shutdown();
    tokio::time::timeout(WAIT, fx.mock.closed())
        .await
        .expect("mock closes");
    assert!(Client::connect(&fx.ca, fx.mock.addr()).await.is_err());
    let auth = format!("bearer {}", fx.jwt);
    let headers = alert_headers(&auth);
    assert!(fx
        .client
        .post(&format!("/3/device/{TOKEN}"), &headers, &alert())
        .await
        .is_err());
}

#[tokio::test]
async fn drop_stops_the_server() {
    let ca = TestCa::generate().unwrap();
    let creds = Credentials::generate().unwrap();
    let mock = MockApns::start(&ca, &creds, Config::default()).unwrap();
    let addr = mock.addr();
    let closed = mock.closed_owned();
    drop(mock);
    tokio::time::timeout(WAIT, closed)
        .await
        .expect("server tasks end");
    assert!(Client::connect(&ca, addr).await.is_err());
}

#[test]
fn credentials_debug_redacts_the_key() {
    let creds = Credentials::generate().unwrap();
    let debug = format!("{creds:?}");
    assert!(!debug.contains("PRIVATE KEY"));
    assert!(debug.contains(&creds.key_id));
    assert_eq!(creds.key_id.len(), 10);
    assert_eq!(creds.team_id.len(), 10);
}

#[test]
fn key_file_is_written_under_apple_name() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials::generate().unwrap();
    let path = creds.write_key_file(dir.path()).unwrap();
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("AuthKey_{}.p8", creds.key_id)
    );
    let pem = std::fs::read_to_string(path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn canonical_uuid_check() {
    assert!(is_canonical_uuid("123e4567-e89b-12d3-a456-426614174000"));
    assert!(!is_canonical_uuid("123E4567-E89B-12D3-A456-426614174000"));
    assert!(!is_canonical_uuid("123e4567e89b12d3a456426614174000"));
    assert!(!is_canonical_uuid("123e4567-e89b-12d3-a456-4266141740000"));
}

/// Injected faults on the wire: 429 with Retry-After (scripted and probabilistic),
/// RST_STREAM REFUSED_STREAM, GOAWAY after N streams, an outage refusing connections.
#[tokio::test]
async fn injected_faults_look_like_the_vendor() {
    use crate::mock::faults::{Close, FaultCounts};
    let mut f = Fixture::new().await;
    f.mock.set_token_throttle(TOKEN, 1, 3);
    let r = f.push(TOKEN, &[], &alert()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["reason"], "TooManyRequests");
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(
        f.push(TOKEN, &[], &alert()).await.status,
        200,
        "one 429 only"
    );

    f.mock.faults().set_unavailable(1.0, 2);
    let r = f.push(TOKEN, &[], &alert()).await;
    assert_eq!((r.status, r.header("retry-after")), (503, Some("2")));
    assert_eq!(r.json()["reason"], "ServiceUnavailable");
    f.mock.faults().set_unavailable(0.0, 0);

    f.mock.faults().set_refuse_stream(1.0);
    let auth = format!("bearer {}", f.jwt);
    let headers = alert_headers(&auth);
    let err = f
        .client
        .post(&format!("/3/device/{TOKEN}"), &headers, &alert())
        .await
        .unwrap_err();
    let h2 = err.downcast_ref::<h2::Error>().expect("an h2 error");
    assert_eq!(h2.reason(), Some(h2::Reason::REFUSED_STREAM));
    f.mock.faults().set_refuse_stream(0.0);
    assert_eq!(
        f.mock.received_count(),
        1,
        "faulted pushes are not processed"
    );

    // GOAWAY once a connection carried 2 streams; later streams need a new one.
    f.mock.faults().set_goaway_every(2);
    let mut c = Client::connect(&f.ca, f.mock.addr()).await.unwrap();
    for _ in 0..2 {
        let r = c
            .post(&format!("/3/device/{TOKEN}"), &headers, &alert())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(c
        .post(&format!("/3/device/{TOKEN}"), &headers, &alert())
        .await
        .is_err());
    assert_eq!(FaultCounts::get(&f.mock.faults().counts().goaways), 1);
    f.mock.faults().set_goaway_every(0);

    // Outage: new connections are reset until it ends.
    f.mock
        .faults()
        .outage(Duration::from_secs(60), Close::Abrupt);
    assert!(Client::connect(&f.ca, f.mock.addr()).await.is_err());
    assert_eq!(
        FaultCounts::get(&f.mock.faults().counts().refused_connections),
        1
    );
    assert_eq!(f.mock.received_count(), 3);
}
