//! One mock for Huawei Push Kit and Honor Push (a Push Kit descendant, `VENDORS.md`
//! §3.1–3.2): [`PushKit`] serves the client-credentials grant and routes sends, and
//! checks what both vendors check alike (the bearer token, the body limit, the message
//! rule — a data message carries `data`, a notification message a title and body —,
//! the option fields and the scripted per-token answers). The small per-vendor part is
//! a [`Variant`]: paths, the grant's form rules, the send's message shape and the
//! error body ([`Refusal`] is rendered by the vendor).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use http::StatusCode;
use rand::Rng as _;
use serde_json::{json, Value};

use super::server::{Reply, Request};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Dialect, Mock, Oem, Refused, Scripted};

/// What sets Huawei Push Kit and Honor Push apart; the rest of [`PushKit`] is shared.
pub trait Variant: fmt::Debug + Send + Sync + 'static {
    /// The OAuth endpoint.
    const GRANT: Grant;
    /// The send path around the app id: `POST {prefix}{appId}{suffix}`.
    const SEND_PATH: (&'static str, &'static str);

    /// The grant request's form, or the vendor's refusal of a malformed request.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn grant_form(r: &Request) -> Result<HashMap<String, String>, Refused>;

    /// The vendor's refusal of a grant for an unknown client or a wrong secret.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn bad_client() -> Refused;

    /// Checks and accepts one send for the app id in the path (`app`'s or another).
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn send(app: &App, core: &Core, r: &Request, app_id: &str) -> Result<Reply, Refusal>;

    /// The vendor's body for a refused send.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn answer(refusal: &Refusal) -> Reply;
}

/// A variant's OAuth endpoint: its path, what the tokens it issues start with, and
/// whose id the OAuth client has.
#[derive(Debug)]
pub struct Grant {
    path: &'static str,
    token_prefix: &'static str,
    client: Client,
}

/// Whose id a Push Kit app's OAuth client has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// The client is the app (Huawei: `client_id` = `app_id`).
    App,
    /// The client has an id of its own (Honor).
    Own,
}

impl Grant {
    pub const fn new(path: &'static str, token_prefix: &'static str, client: Client) -> Grant {
        Grant {
            path,
            token_prefix,
            client,
        }
    }
}

/// A running Push Kit mock of variant `V`.
pub type MockPushKit<V> = Mock<Oem<PushKit<V>>>;

/// A Push Kit vendor: its app's credentials, the vendor's part in `V`.
#[derive(Debug)]
pub struct PushKit<V> {
    pub app: App,
    variant: PhantomData<fn() -> V>,
}

/// Start a Push Kit mock of variant `V` with fresh credentials on `127.0.0.1:0`.
pub fn start<V: Variant>(ca: &TestCa, common: Common) -> anyhow::Result<MockPushKit<V>> {
    let kit = PushKit::<V> {
        app: App::random(V::GRANT.client),
        variant: PhantomData,
    };
    vendor::start_oem(ca, &common, kit)
}

impl<V: Variant> Mock<Oem<PushKit<V>>> {
    /// `https://127.0.0.1:PORT` + the variant's token path.
    pub fn token_endpoint(&self) -> String {
        format!("{}{}", self.url(), V::GRANT.path)
    }
}

#[allow(private_interfaces)]
impl<V: Variant> Dialect for PushKit<V> {
    const H2: bool = true;

    fn serve(&self, core: &Core, r: &Request) -> Result<Reply, Refused> {
        if r.head.uri.path() == V::GRANT.path {
            if !self.app.is_grant(&V::grant_form(r)?) {
                return Err(V::bad_client());
            }
            return Ok(grant(core, V::GRANT.token_prefix));
        }
        let (prefix, suffix) = V::SEND_PATH;
        let app_id = vendor::post_param(r, prefix, suffix)
            .map_err(|(status, code)| Refused::new(status.as_u16(), code, Reply::empty(status)))?;
        V::send(&self.app, core, r, app_id).map_err(|refusal| {
            Refused::new(
                refusal.status.as_u16(),
                refusal.recorded,
                V::answer(&refusal),
            )
        })
    }
}

/// A refused send: the HTTP status, the Push Kit result code answered (Huawei sends
/// it as a string, Honor as a number), the code recorded in the mock's rejections,
/// and the message.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub recorded: &'static str,
    pub message: Cow<'static, str>,
}

impl Refusal {
    /// Answers `code` and records it.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        Refusal {
            status,
            code,
            recorded: code,
            message: message.into(),
        }
    }

    /// `80100001`: a parameter is invalid (HTTP 400).
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "80100001", message)
    }

    /// `80100003`: the message structure is wrong (HTTP 400).
    pub fn structure(message: &'static str) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "80100003", message)
    }
}

/// A Push Kit app's credentials: the app id in the send path and the OAuth client
/// that gets access tokens for it.
#[derive(Debug)]
pub struct App {
    pub app_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl App {
    /// Fresh credentials for an app whose OAuth client is `client`.
    fn random(client: Client) -> App {
        let mut rng = rand::thread_rng();
        let app_id = rng.gen_range(100_000_000u64..999_999_999).to_string();
        App {
            client_id: if client == Client::Own {
                hex::encode(rng.gen::<[u8; 8]>())
            } else {
                app_id.clone()
            },
            app_id,
            client_secret: hex::encode(rng.gen::<[u8; 32]>()),
        }
    }

    /// True when `form` is a `client_credentials` grant for this app's client.
    fn is_grant(&self, form: &HashMap<String, String>) -> bool {
        form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id") == Some(&self.client_id)
            && form.get("client_secret") == Some(&self.client_secret)
    }

    /// The app in the path: `80300002` (HTTP 200) when it is not this one.
    pub(crate) fn check(&self, app: &str) -> Result<(), Refusal> {
        if app == self.app_id {
            return Ok(());
        }
        Err(Refusal::new(
            StatusCode::OK,
            "80300002",
            "APP has no permission to send to these tokens",
        ))
    }
}

/// Issues an access token (`prefix` + random) and answers it as the OAuth endpoint does.
fn grant(core: &Core, prefix: &str) -> Reply {
    let token = core.issue_token(prefix);
    Reply::json(
        StatusCode::OK,
        json!({"access_token": token, "expires_in": core.token_lifetime.as_secs(), "token_type": "Bearer"})
            .to_string(),
    )
}

/// The bearer token: 401 `80200003` when expired, `80200001` when missing or unknown.
pub(crate) fn check_bearer(core: &Core, r: &Request) -> Result<(), Refusal> {
    match core.check_bearer(r) {
        Some(true) => Ok(()),
        Some(false) => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "80200003",
            "OAuth token expired",
        )),
        None => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "80200001",
            "Oauth Authentication error",
        )),
    }
}

/// The JSON body, at most `max` bytes (`80300008`, HTTP 200) and well formed
/// (`80100003`).
pub(crate) fn json_body(r: &Request, max: usize) -> Result<Value, Refusal> {
    if r.body_len > max {
        return Err(Refusal::new(
            StatusCode::OK,
            "80300008",
            "The message body size exceeds the default value",
        ));
    }
    serde_json::from_slice(&r.body).map_err(|_| Refusal::structure("Incorrect message structure"))
}

/// The title and body the device shows (empty for a data message) after the message
/// rule and the option fields pass. `m` is the message object (Huawei's `message`,
/// Honor's whole body); `click_action`: the notification needs
/// `clickAction.type` (Honor).
pub(crate) fn shown(m: &Value, click_action: bool) -> Result<(&str, &str), Refusal> {
    // A data (transparent) message has no notification at all and carries `data`;
    // a notification message has title and body.
    let n = &m["android"]["notification"];
    let shown = if n.is_null() && m["notification"].is_null() {
        if m["data"].as_str().is_none_or(str::is_empty) {
            return Err(Refusal::structure(
                "Incorrect message structure: a data message needs data",
            ));
        }
        ("", "")
    } else {
        let (Some(title), Some(body)) = (n["title"].as_str(), n["body"].as_str()) else {
            return Err(Refusal::invalid(
                "Some request parameters are invalid: notification title/body",
            ));
        };
        if click_action && n["clickAction"]["type"].as_i64().is_none() {
            return Err(Refusal::invalid(
                "Some request parameters are invalid: android.notification.clickAction",
            ));
        }
        (title, body)
    };
    check_options(m).map_err(|field| {
        Refusal::invalid(format!("Some request parameters are invalid: {field}"))
    })?;
    Ok(shown)
}

/// Accepts a send to `token` once its scripted answer lets it through: `shown` is the
/// title and body, `m` the message (its `data` nests the app payload), `v` the body
/// recorded.
pub(crate) fn accept(
    core: &Core,
    r: &Request,
    token: &str,
    (title, content): (&str, &str),
    m: &Value,
    v: &Value,
) -> Result<(), Refusal> {
    check_script(core, token)?;
    let push = Accepted {
        token,
        title,
        content,
        payload: vendor::nested_payload(m["data"].as_str()),
    };
    core.accept(r, push, v.clone());
    Ok(())
}

/// The scripted answer for `token`: dead → `80300007` (HTTP 200); rate limit and
/// quota → HTTP 503 flow control (recorded as `flow_control`).
fn check_script(core: &Core, token: &str) -> Result<(), Refusal> {
    match core.script(token) {
        None => Ok(()),
        Some(Scripted::Dead) => Err(Refusal::new(
            StatusCode::OK,
            "80300007",
            "All the tokens are invalid",
        )),
        Some(Scripted::RateLimit | Scripted::Quota) => Err(Refusal {
            recorded: "flow_control",
            ..Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "81000001", "flow control")
        }),
    }
}

/// The option fields of a Push Kit message (Huawei's names; Honor's camelCase ones
/// too): `android.urgency` `HIGH`|`NORMAL`, `android.collapse_key` an integer -1..100,
/// `notification.importance` `LOW`|`NORMAL`, `tag`/`sound`/`channel_id` strings,
/// `default_sound` a boolean, `badge` a class with `add_num` 1..=99 or `set_num`
/// 0..=99. `Err` names the bad field.
fn check_options(m: &Value) -> Result<(), &'static str> {
    let a = &m["android"];
    if !a["urgency"].is_null() && !matches!(a["urgency"].as_str(), Some("HIGH" | "NORMAL")) {
        return Err("android.urgency");
    }
    if !a["collapse_key"].is_null()
        && !a["collapse_key"]
            .as_i64()
            .is_some_and(|k| (-1..=100).contains(&k))
    {
        return Err("android.collapse_key");
    }
    let n = &a["notification"];
    if !n["importance"].is_null() && !matches!(n["importance"].as_str(), Some("LOW" | "NORMAL")) {
        return Err("android.notification.importance");
    }
    for key in ["tag", "sound", "channel_id"] {
        if !n[key].is_null() && !n[key].is_string() {
            return Err("android.notification string field");
        }
    }
    // Push Kit's badge: the launcher class and a number to add (1..=99) or set (0..=99).
    let b = &n["badge"];
    if !b.is_null() {
        let num = |k: &str| b[k].as_u64();
        let ok = b["class"].as_str().is_some_and(|c| !c.is_empty())
            && match (num("add_num"), num("set_num")) {
                (Some(a), None) => (1..=99).contains(&a),
                (None, Some(s)) => s <= 99,
                _ => false,
            };
        if !ok {
            return Err("android.notification.badge");
        }
    }
    for key in ["default_sound", "defaultSound"] {
        if !n[key].is_null() && !n[key].is_boolean() {
            return Err("android.notification.default_sound");
        }
    }
    Ok(())
}
