//! The vendor sections (`[apns]`, `[fcm]`, `[huawei]`, ...). Each declares its own keys;
//! [`vendor_section!`] adds the knobs every vendor client shares (`connections`,
//! `max_in_flight`, `max_rps`, `ca_file`) with their docs and checks written once here,
//! flat in the section as the TOML has them (serde's `flatten` cannot be combined with
//! `deny_unknown_fields`, so the macro writes the fields out instead).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{opt_string_or_int, Check, Secret};
use crate::providers::connect::Connect;

/// The client knobs of one vendor section, as every vendor's client uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub connections: usize,
    pub max_in_flight: usize,
    pub max_rps: u32,
    pub ca_file: Option<PathBuf>,
}

impl Client {
    /// These knobs under `[transport]`, checked (every problem goes to `check`) and
    /// converted once into what the vendor's client connects with.
    pub fn connect(&self, transport: &super::Transport, check: &mut Check) -> Connect {
        if !(1..=64).contains(&self.connections) {
            check.key(
                "connections",
                format_args!(" must be between 1 and 64, not {}", self.connections),
            );
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            check.key(
                "max_in_flight",
                format_args!(" must be between 1 and 65536, not {}", self.max_in_flight),
            );
        }
        if let Some(path) = &self.ca_file {
            if let Err(e) = crate::transport::tls::read_ca_file(path) {
                check.key("ca_file", format_args!(": {e}"));
            }
        }
        Connect {
            ca_file: self.ca_file.clone(),
            pool: crate::transport::pool::Options::from_config(self.connections, transport),
        }
    }
}

/// A vendor section: its own keys (`key: Type = default,`), then the shared client
/// knobs with the vendor's default `connections` and `max_rps`.
macro_rules! vendor_section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident: $ty:ty = $default:expr,)*
        }
        defaults(connections: $connections:expr, max_rps: $max_rps:expr)
    ) => {
        $(#[$meta])*
        /// (`Serialize`: an app's table is merged over it, `[apps.<id>.<vendor>]`.)
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Connections to each of the vendor's hosts: HTTP/2 when the server offers
            /// it (requests multiplexed), else keep-alive HTTP/1.1; 1 to 64.
            pub connections: usize,
            /// Pushes in flight to this vendor at once (the lane's concurrency limit),
            /// 1 to 65536.
            pub max_in_flight: usize,
            /// Requests per second this lane may send (token bucket); 0 = unpaced. 429
            /// answers that throttle the whole app shrink the pace further (AIMD) and it
            /// recovers additively.
            pub max_rps: u32,
            /// Extra trusted root certificates (PEM) for every host of this vendor (API
            /// and token endpoints), e.g. a test CA.
            pub ca_file: Option<PathBuf>,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                    connections: $connections,
                    max_in_flight: 1024,
                    max_rps: $max_rps,
                    ca_file: None,
                }
            }
        }

        impl $name {
            /// The shared client knobs of this section.
            pub fn client(&self) -> Client {
                Client {
                    connections: self.connections,
                    max_in_flight: self.max_in_flight,
                    max_rps: self.max_rps,
                    ca_file: self.ca_file.clone(),
                }
            }
        }
    };
}

vendor_section! {
    /// Apple Push Notification service; absent `key_file` = APNs unconfigured.
    pub struct Apns {
        /// The `.p8` token-signing key (PKCS#8 PEM, P-256). Unset = APNs not configured.
        pub key_file: Option<PathBuf> = None,
        /// The 10-character Key ID of that key (JWT `kid`).
        pub key_id: Option<String> = None,
        /// The 10-character Team ID (JWT `iss`).
        pub team_id: Option<String> = None,
        /// Default `apns-topic` (bundle id) for bindings without an `app_id`.
        pub topic: Option<String> = None,
        /// Base URL for production bindings.
        pub endpoint_production: String = "https://api.push.apple.com".into(),
        /// Base URL for sandbox bindings.
        pub endpoint_sandbox: String = "https://api.sandbox.push.apple.com".into(),
    }
    defaults(connections: 2, max_rps: 0)
}

vendor_section! {
    /// Firebase Cloud Messaging HTTP v1; absent `service_account_file` = FCM unconfigured.
    pub struct Fcm {
        /// Google service-account key file (JSON); its `project_id`, `client_email`,
        /// `private_key` and `token_uri` are used as given. Unset = FCM not configured.
        pub service_account_file: Option<PathBuf> = None,
        /// Base URL of the FCM HTTP v1 API.
        pub endpoint: String = "https://fcm.googleapis.com".into(),
    }
    // FCM's default project quota: 600,000 messages per minute (VENDORS.md §2.7).
    defaults(connections: 2, max_rps: 10_000)
}

vendor_section! {
    /// Huawei Push Kit v1; absent `app_id` = Huawei unconfigured.
    pub struct Huawei {
        /// The AppId: OAuth `client_id` and the `{appId}` of the send path. Unset = Huawei
        /// not configured.
        #[serde(deserialize_with = "opt_string_or_int")]
        pub app_id: Option<String> = None,
        /// The AppSecret (OAuth `client_secret`).
        pub client_secret: Option<Secret> = None,
        /// Base URL of the Push Kit API (`/v1/{appId}/messages:send` is appended).
        pub endpoint: String = "https://push-api.cloud.huawei.com".into(),
        /// Full URL of the OAuth 2.0 client-credentials token endpoint.
        pub token_endpoint: String = "https://oauth-login.cloud.huawei.com/oauth2/v3/token".into(),
        /// `android.category` sent with every message (message classification; `IM` for
        /// chat), empty = not sent. [U]: Huawei's classification values change.
        pub category: String = "IM".into(),
        /// `android.notification.channel_id` (the app's notification channel), if any.
        pub channel_id: Option<String> = None,
        /// The app's launcher activity class (`com.example.chat.MainActivity`): Push Kit
        /// sets the app icon's badge (`badge.set_num`, from `push.badge` or the
        /// recipient's total of `push.badge_increment`) only with it; unset = no badge.
        pub badge_class: Option<String> = None,
    }
    defaults(connections: 4, max_rps: 0)
}

vendor_section! {
    /// Honor Push; absent `app_id` = Honor unconfigured.
    pub struct Honor {
        /// The Honor app id (`{appId}` of the send path). Unset = Honor not configured.
        #[serde(deserialize_with = "opt_string_or_int")]
        pub app_id: Option<String> = None,
        /// OAuth `client_id` of the app.
        #[serde(deserialize_with = "opt_string_or_int")]
        pub client_id: Option<String> = None,
        /// OAuth `client_secret` of the app.
        pub client_secret: Option<Secret> = None,
        /// Base URL of the Honor push API (`/api/v1/{appId}/sendMessage` is appended).
        pub endpoint: String = "https://push-api.cloud.honor.com".into(),
        /// Full URL of the client-credentials token endpoint. [U]: some clients use
        /// `https://hnoauth-login.cloud.honor.com/oauth2/v3/token`.
        pub token_endpoint: String = "https://iam.developer.honor.com/auth/token".into(),
        /// Body `code`s that mean every token of the request is dead. [U]
        pub dead_token_codes: Vec<i64> = vec![80300007],
    }
    defaults(connections: 4, max_rps: 0)
}

vendor_section! {
    /// Xiaomi MiPush; absent `app_secret` = Xiaomi unconfigured.
    pub struct Xiaomi {
        /// The AppSecret, sent as `Authorization: key=<secret>`. Unset = not configured.
        pub app_secret: Option<Secret> = None,
        /// The Android package (`restricted_package_name`).
        pub package_name: Option<String> = None,
        /// Regional base URL: mainland `https://api.xmpush.xiaomi.com`; overseas hosts are
        /// `https://{ru,idmb,fr,sgp}-api.xmpush.global.xiaomi.com`.
        pub endpoint: String = "https://api.xmpush.xiaomi.com".into(),
        /// `extra.channel_id` (the app's notification channel), if any.
        pub channel_id: Option<String> = None,
    }
    defaults(connections: 4, max_rps: 0)
}

vendor_section! {
    /// OPPO Push (HeyTap); absent `app_key` = OPPO unconfigured.
    pub struct Oppo {
        /// The AppKey. Unset = OPPO not configured.
        #[serde(deserialize_with = "opt_string_or_int")]
        pub app_key: Option<String> = None,
        /// The MasterSecret (only used inside the SHA-256 auth sign).
        pub master_secret: Option<Secret> = None,
        /// Base URL for mainland registration ids (no `_`, `CN_<id>`, `<brand>_CN_<id>`).
        pub endpoint: String = "https://api.push.oppomobile.com".into(),
        /// Base URL for overseas registration ids.
        pub endpoint_intl: String = "https://api-intl.push.oppomobile.com".into(),
        /// `notification.channel_id` (the app's notification channel), if any.
        pub channel_id: Option<String> = None,
        /// `notification.category` (message classification, e.g. `IM`), empty = not sent. [U]
        pub category: String = "IM".into(),
        /// Business `code`s of a unicast answer that mean the registration id is dead. [U]
        pub dead_token_codes: Vec<i64> = vec![10000],
    }
    defaults(connections: 8, max_rps: 0)
}

vendor_section! {
    /// vivo Push; absent `app_id` = vivo unconfigured.
    pub struct Vivo {
        /// The numeric AppID. Unset = vivo not configured.
        #[serde(deserialize_with = "opt_string_or_int")]
        pub app_id: Option<String> = None,
        /// The AppKey.
        #[serde(deserialize_with = "opt_string_or_int")]
        pub app_key: Option<String> = None,
        /// The AppSecret (only used inside the MD5 auth sign).
        pub app_secret: Option<Secret> = None,
        /// Base URL of the vivo push API.
        pub endpoint: String = "https://api-push.vivo.com.cn".into(),
        /// `classification`: 0 operational, 1 system (IM messages need approval). [U]
        pub classification: u8 = 1,
        /// `pushMode`: 0 formal, 1 test. [U]
        pub push_mode: u8 = 0,
        /// `result` codes meaning the authToken is invalid or expired (re-auth, retry). [U]
        pub auth_error_codes: Vec<i64> = vec![10040, 10050],
    }
    defaults(connections: 8, max_rps: 0)
}

vendor_section! {
    /// Standard Web Push (RFC 8030/8291/8292); absent `vapid_private_key_file` = unconfigured.
    pub struct Webpush {
        /// VAPID key: a PEM EC P-256 private key (PKCS#8 or SEC1). Unset = not configured.
        pub vapid_private_key_file: Option<PathBuf> = None,
        /// VAPID `sub` claim: a `mailto:` or `https:` contact (push services require it).
        pub subject: Option<String> = None,
        /// Push-service origins with an open connection pool at once (least recently
        /// used beyond it are closed).
        pub max_origins: usize = 64,
    }
    defaults(connections: 4, max_rps: 0)
}
