use std::time::Duration;

use http::Method;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::mock::server::unix_secs;
use crate::mock::test_client::{rejections, Client, Response};

const WAIT: Duration = Duration::from_secs(5);
const DEVICE: &str = "dGVzdC1yZWdpc3RyYXRpb24tdG9rZW4:APA91bH-example_token";

struct Fixture {
    ca: TestCa,
    mock: MockFcm,
    client: Client,
    account: Value,
}

impl Fixture {
    async fn start(config: Config) -> Fixture {
        let ca = TestCa::generate().unwrap();
        let mock = MockFcm::start(&ca, config).unwrap();
        let client = Client::connect(&ca, mock.addr()).await.unwrap();
        let account = serde_json::from_str(&mock.service_account_json()).unwrap();
        Fixture {
            ca,
            mock,
            client,
            account,
        }
    }

    async fn new() -> Fixture {
        Fixture::start(Config::default()).await
    }

    /// An assertion as the Admin SDKs build it, with `edit` applied to the claims.
    fn assertion(&self, edit: impl FnOnce(&mut Value)) -> String {
        let key = self.account["private_key"].as_str().unwrap().to_owned();
        self.assertion_signed_by(&key, edit)
    }

    fn assertion_signed_by(&self, key_pem: &str, edit: impl FnOnce(&mut Value)) -> String {
        let now = unix_secs();
        let mut claims = json!({
            "iss": self.account["client_email"],
            "scope": SCOPE_FIREBASE_MESSAGING,
            "aud": self.account["token_uri"],
            "iat": now,
            "exp": now + 3600,
        });
        edit(&mut claims);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account["private_key_id"].as_str().map(str::to_owned);
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    async fn token_request(&mut self, form: &str) -> Response {
        self.client
            .post(
                "/token",
                &[("content-type", "application/x-www-form-urlencoded")],
                form.as_bytes(),
            )
            .await
            .unwrap()
    }

    async fn exchange(&mut self, assertion: &str) -> Response {
        let form = format!(
            "grant_type={}&assertion={}",
            urlencoding::encode(GRANT_TYPE_JWT_BEARER),
            urlencoding::encode(assertion)
        );
        self.token_request(&form).await
    }

    async fn access_token(&mut self) -> String {
        let assertion = self.assertion(|_| {});
        let response = self.exchange(&assertion).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn send_as(&mut self, bearer: Option<&str>, path: &str, body: &Value) -> Response {
        let auth = bearer.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        self.client
            .post(path, &headers, body.to_string().as_bytes())
            .await
            .unwrap()
    }

    async fn send(&mut self, token: &str, body: &Value) -> Response {
        self.send_as(Some(token), "/v1/projects/fanfare-test/messages:send", body)
            .await
    }
}

fn to_device(message: Value) -> Value {
    let mut message = message;
    message["token"] = json!(DEVICE);
    json!({ "message": message })
}

#[track_caller]
fn assert_status(response: &Response, code: u16, status: &str) -> Value {
    assert_eq!(
        response.status,
        code,
        "body: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.data_frames, 1);
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["status"], status, "{body}");
    body
}

fn detail<'b>(body: &'b Value, kind: &str) -> Option<&'b Value> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == kind)
}

#[tokio::test]
async fn token_endpoint_issues_a_token_for_a_signed_assertion() {
    let mut fx = Fixture::new().await;
    let assertion = fx.assertion(|_| {});
    let response = fx.exchange(&assertion).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(fx.mock.tokens_issued(), 1);

    // The broader scope works too, and `+` for spaces in a form is understood.
    let assertion = fx.assertion(|c| {
        c["scope"] = json!(format!("openid {SCOPE_CLOUD_PLATFORM}"));
    });
    let response = fx.exchange(&assertion).await;
    assert_eq!(response.status, 200);
    assert_eq!(fx.mock.tokens_issued(), 2);
}

#[tokio::test]
async fn token_endpoint_rejects_bad_assertions() {
    let mut fx = Fixture::new().await;

    #[track_caller]
    fn assert_oauth(response: &Response, error: &str) {
        assert_eq!(response.status, 400, "{:?}", response.body);
        assert_eq!(response.json()["error"], error);
        assert!(response.json()["error_description"].is_string());
    }

    // Our key id and claims, signed by some other key.
    let other_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
        .unwrap()
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string();
    let forged = fx.assertion_signed_by(&other_key, |_| {});
    let r = fx.exchange(&forged).await;
    assert_oauth(&r, "invalid_grant");
    assert_eq!(
        r.json()["error_description"],
        "Invalid JWT Signature.",
        "signature must be what fails"
    );

    let r = fx.exchange("not-a-jwt").await;
    assert_oauth(&r, "invalid_grant");

    let a = fx.assertion(|c| c["aud"] = json!("https://oauth2.googleapis.com/token"));
    assert_oauth(&fx.exchange(&a).await, "invalid_grant");

    let a = fx.assertion(|c| c["iss"] = json!("someone@else.iam.gserviceaccount.com"));
    assert_oauth(&fx.exchange(&a).await, "invalid_grant");

    let a = fx.assertion(|c| {
        c["iat"] = json!(unix_secs() - 7200);
        c["exp"] = json!(unix_secs() - 3600);
    });
    assert_oauth(&fx.exchange(&a).await, "invalid_grant");

    let a = fx.assertion(|c| c["exp"] = json!(unix_secs() + 7200));
    assert_oauth(&fx.exchange(&a).await, "invalid_grant");

    let a = fx.assertion(|c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    assert_oauth(&fx.exchange(&a).await, "invalid_grant");

    let a = fx.assertion(|c| c["scope"] = json!("https://www.googleapis.com/auth/userinfo.email"));
    assert_oauth(&fx.exchange(&a).await, "invalid_scope");

    let a = fx.assertion(|_| {});
    let r = fx
        .token_request(&format!("grant_type=client_credentials&assertion={a}"))
        .await;
    assert_oauth(&r, "unsupported_grant_type");

    let r = fx
        .token_request("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
        .await;
    assert_oauth(&r, "invalid_request");

    assert_eq!(fx.mock.tokens_issued(), 0);
    assert!(fx
        .mock
        .rejections()
        .iter()
        .all(|(status, _)| *status == 400));
    assert_eq!(fx.mock.rejections().len(), 10);
}

#[tokio::test]
async fn send_with_a_token_is_accepted_and_recorded() {
    let mut fx = Fixture::new().await;
    let token = fx.access_token().await;
    let body = to_device(json!({
        "notification": {"title": "Hi", "body": "there"},
        "data": {"conv": "c1", "n": "3"},
        "android": {"priority": "high", "ttl": "3.5s", "collapse_key": "c1"},
        "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"badge": 1}}},
    }));
    let response = fx.send(&token, &body).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.data_frames, 1);
    let name = response.json()["name"].as_str().unwrap().to_owned();
    assert!(
        name.starts_with("projects/fanfare-test/messages/"),
        "{name}"
    );

    assert!(fx.mock.wait_for(1, WAIT).await);
    let received = fx.mock.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].token, DEVICE);
    assert_eq!(received[0].message["data"]["conv"], "c1");
    assert_eq!(received[0].message["notification"]["title"], "Hi");

    // The same token keeps working; the token endpoint is not needed again.
    let response = fx
        .send(&token, &to_device(json!({"data": {"k": "v"}})))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(fx.mock.received_count(), 2);
    assert_eq!(fx.mock.tokens_issued(), 1);
    assert!(fx.mock.rejections().is_empty());

    // validate_only is answered but not delivered.
    let mut dry = to_device(json!({"data": {"k": "v"}}));
    dry["validate_only"] = json!(true);
    let response = fx.send(&token, &dry).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["name"],
        "projects/fanfare-test/messages/fake_message_id"
    );
    assert_eq!(fx.mock.received_count(), 2);

    // Topic messages.
    let response = fx
        .send(
            &token,
            &json!({"message": {"topic": "weather", "data": {"k": "v"}}}),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(fx.mock.received()[2].token, "");
}

#[tokio::test]
async fn non_string_data_value_is_a_bad_request() {
    let mut fx = Fixture::new().await;
    let token = fx.access_token().await;
    let response = fx
        .send(
            &token,
            &to_device(json!({"data": {"ok": "yes", "count": 3}})),
        )
        .await;
    let body = assert_status(&response, 400, "INVALID_ARGUMENT");
    let bad_request =
        detail(&body, "type.googleapis.com/google.rpc.BadRequest").expect("BadRequest detail");
    let violation = &bad_request["fieldViolations"][0];
    assert_eq!(violation["field"], "message.data[count]");
    assert!(violation["description"]
        .as_str()
        .unwrap()
        .contains("TYPE_STRING"));
    assert_eq!(fx.mock.received_count(), 0);
    assert_eq!(
        fx.mock.rejections(),
        rejections(&[(400, "INVALID_ARGUMENT")])
    );

    for key in ["from", "message_type", "google.x", "gcm.notification.title"] {
        let response = fx
            .send(&token, &to_device(json!({ "data": { key: "v" } })))
            .await;
        let body = assert_status(&response, 400, "INVALID_ARGUMENT");
        let violation = &detail(&body, "type.googleapis.com/google.rpc.BadRequest").unwrap()
            ["fieldViolations"][0];
        assert_eq!(violation["field"], format!("message.data[{key}]"));
    }
}

#[tokio::test]
async fn missing_or_unknown_bearer_is_401() {
    let mut fx = Fixture::new().await;
    let body = to_device(json!({"data": {"k": "v"}}));
    let path = "/v1/projects/fanfare-test/messages:send";

    let response = fx.send_as(None, path, &body).await;
    let error = assert_status(&response, 401, "UNAUTHENTICATED");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Request had invalid authentication credentials."));
    assert!(response.header("www-authenticate").is_some());

    let response = fx.send_as(Some("ya29.made-up"), path, &body).await;
    assert_status(&response, 401, "UNAUTHENTICATED");
    assert_eq!(fx.mock.received_count(), 0);
}

#[tokio::test]
async fn expired_access_tokens_are_refused() {
    let mut fx = Fixture::start(Config {
        token_lifetime_s: 0,
        ..Config::default()
    })
    .await;
    let token = fx.access_token().await;
    let response = fx.send(&token, &to_device(json!({}))).await;
    assert_status(&response, 401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn token_verdicts_are_answered_with_fcm_errors() {
    let mut fx = Fixture::new().await;
    let token = fx.access_token().await;
    fx.mock.set_token_verdict("gone", FcmVerdict::Unregistered);
    fx.mock
        .set_token_verdict("other", FcmVerdict::SenderIdMismatch);
    fx.mock
        .set_token_verdict("junk", FcmVerdict::InvalidArgument);

    let cases = [
        ("gone", 404, "NOT_FOUND", "UNREGISTERED"),
        ("other", 403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
        ("junk", 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    ];
    for (device, code, status, error_code) in cases {
        let body = json!({"message": {"token": device, "data": {"k": "v"}}});
        let response = fx.send(&token, &body).await;
        let error = assert_status(&response, code, status);
        let fcm_error = detail(
            &error,
            "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        )
        .expect("FcmError detail");
        assert_eq!(fcm_error["errorCode"], error_code);
    }
    assert_eq!(fx.mock.received_count(), 0);
    assert_eq!(
        fx.mock.rejections(),
        rejections(&[
            (404, "UNREGISTERED"),
            (403, "SENDER_ID_MISMATCH"),
            (400, "INVALID_ARGUMENT")
        ])
    );
}

#[tokio::test]
async fn routing_project_and_method_are_checked() {
    let mut fx = Fixture::new().await;
    let token = fx.access_token().await;
    let body = to_device(json!({}));

    let response = fx
        .send_as(
            Some(&token),
            "/v1/projects/someone-else/messages:send",
            &body,
        )
        .await;
    assert_status(&response, 403, "PERMISSION_DENIED");

    let response = fx
        .send_as(Some(&token), "/v1/projects/fanfare-test/other", &body)
        .await;
    assert_status(&response, 404, "NOT_FOUND");

    let auth = format!("Bearer {token}");
    let response = fx
        .client
        .request(
            Method::GET,
            "/v1/projects/fanfare-test/messages:send",
            &[("authorization", &auth)],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(response.status, 405);
}

#[tokio::test]
async fn message_shape_is_validated() {
    let mut fx = Fixture::new().await;
    let token = fx.access_token().await;

    let invalid = [
        json!({"message": {"data": {"k": "v"}}}),
        json!({"message": {"token": DEVICE, "topic": "news"}}),
        json!({"message": {"token": 42}}),
        json!({"message": {"token": ""}}),
        json!({"message": {"topic": "bad topic!"}}),
        json!({"nope": {}}),
        json!({"message": {"token": DEVICE, "extra": 1}}),
        json!({"message": {"token": DEVICE, "notification": {"title": 1}}}),
        json!({"message": {"token": DEVICE, "notification": {"subtitle": "x"}}}),
        json!({"message": {"token": DEVICE, "android": {"priority": "urgent"}}}),
        json!({"message": {"token": DEVICE, "android": {"ttl": "90"}}}),
        json!({"message": {"token": DEVICE, "android": {"ttl": "2419201s"}}}),
        json!({"message": {"token": DEVICE, "android": {"ttl": "-1s"}}}),
        json!({"message": {"token": DEVICE, "android": {"data": {"n": 1}}}}),
        json!({"message": {"token": DEVICE, "data": ["k", "v"]}}),
        json!({"message": {"token": DEVICE}, "validate_only": "yes"}),
        json!({"message": "text"}),
        json!([1, 2]),
    ];
    for body in &invalid {
        let response = fx.send(&token, body).await;
        assert_eq!(response.status, 400, "{body} → {:?}", response.body);
        assert_eq!(
            response.json()["error"]["status"],
            "INVALID_ARGUMENT",
            "{body}"
        );
    }

    let response = fx
        .send(&token, &json!({"message": {"data": {"k": "v"}}}))
        .await;
    assert_eq!(
        response.json()["error"]["message"],
        "Recipient of the message is not set."
    );

    let big = to_device(json!({"data": {"pad": "x".repeat(4096)}}));
    let response = fx.send(&token, &big).await;
    let error = assert_status(&response, 400, "INVALID_ARGUMENT");
    assert_eq!(
        error["error"]["message"],
        "Request contains an invalid argument."
    );
    assert!(error["error"].get("details").is_none());

    let fine = [
        to_device(json!({"android": {"priority": "NORMAL", "ttl": "2419200s"}})),
        to_device(json!({"android": {"priority": "high", "ttl": "0s"}})),
        to_device(json!({"android": {"ttl": "90s"}, "fcmOptions": {"analyticsLabel": "x"}})),
        json!({"message": {"condition": "'a' in topics && 'b' in topics"}}),
        json!({"message": {"topic": "/topics/news"}, "validateOnly": false}),
    ];
    for body in &fine {
        let response = fx.send(&token, body).await;
        assert_eq!(response.status, 200, "{body} → {:?}", response.body);
    }
    assert_eq!(fx.mock.received_count(), fine.len());
}

#[tokio::test]
async fn service_account_file_points_at_the_mock() {
    let fx = Fixture::new().await;
    let account = &fx.account;
    assert_eq!(account["type"], "service_account");
    assert_eq!(account["project_id"], "fanfare-test");
    assert_eq!(account["token_uri"], fx.mock.token_uri());
    assert_eq!(fx.mock.token_uri(), format!("{}/token", fx.mock.url()));
    assert_eq!(
        account["client_email"],
        "fanfare@fanfare-test.iam.gserviceaccount.com"
    );
    assert!(account["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(account["private_key_id"].as_str().unwrap().len(), 40);
    assert!(account["client_id"].as_str().unwrap().len() >= 20);

    let dir = tempfile::tempdir().unwrap();
    let path = fx.mock.write_service_account(dir.path()).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(&written, account);
    let ca = fx.ca.write_ca_file(dir.path()).unwrap();
    assert!(std::fs::read_to_string(ca)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn durations_parse_like_protobuf_json() {
    assert_eq!(parse_duration("90s"), Some(90.0));
    assert_eq!(parse_duration("3.5s"), Some(3.5));
    assert_eq!(parse_duration("0.000000001s"), Some(0.000_000_001));
    assert_eq!(parse_duration("-1s"), Some(-1.0));
    assert_eq!(parse_duration("90"), None);
    assert_eq!(parse_duration("1.0000000001s"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("1e3s"), None);
    assert_eq!(parse_duration(".5s"), None);
}

#[test]
fn forms_decode() {
    let form = vendor::parse_form(b"a=b%20c&d=e+f&g=").unwrap();
    assert_eq!(form["a"], "b c");
    assert_eq!(form["d"], "e f");
    assert_eq!(form["g"], "");
}
