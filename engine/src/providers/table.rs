//! The one table of vendors, and what the rest of the engine derives from it.
//!
//! Each row of [`vendor_table!`] names a vendor module, its lane and the provider kinds
//! (`provider` in the API) it serves. From the rows come: [`ProviderKind`] (re-exported
//! by `state::registry`), [`Lane`] (re-exported by `fanout::plan`), the bodies of a
//! [`Push`], every vendor's validated [`Settings`] (checked once, with every problem
//! listed), the clients of [`Providers`] with `send`, `is_configured` and
//! `auth_tokens`, each lane's limits and config section ([`Lane::limits`],
//! [`Lane::name`]) and the API's token validation ([`parse_token`]). Every `match` over them is generated and exhaustive, as STYLE.md
//! wants of a closed set; what a vendor does is its [`Vendor`] impl.
//!
//! Adding a vendor is a new folder implementing [`Vendor`] (an HTTP vendor with one
//! push per request: [`super::oem::Oem`], over the shared client), its config section,
//! and a row here (README.md, "Adding a vendor").

use std::borrow::Cow;
use std::future::Future;

use super::connect::{self, Connect};
use super::{Attempt, Content, Delivery, Kind, TooLarge, Verdict};
use crate::config::{Check, Config, LaneLimits, Resource};
use crate::state::Token;

/// A vendor client could not be set up (connecting; its settings were checked before).
#[derive(Debug, thiserror::Error)]
#[error("{vendor} setup failed")]
pub struct Error {
    pub vendor: &'static str,
    #[source]
    pub source: connect::Error,
}

/// A vendor's config section and its check into the vendor's typed settings: part of
/// [`Vendor`], and of an OEM vendor's part ([`super::oem::Oem`]) that the shared client
/// is built from.
pub trait Configure {
    /// The vendor's config section (`[name]`).
    type Section;
    /// The section validated: everything the client is built from.
    type Settings: Send + Sync + std::fmt::Debug;

    /// Check `section`, recording every problem in `check`; the settings when the
    /// vendor is configured (`None` when it is not). `connect` is the section's shared
    /// client knobs under `[transport]`, already checked.
    fn settings(
        section: &Self::Section,
        connect: Connect,
        check: &mut Check,
    ) -> Option<Self::Settings>;
}

/// What one vendor gives the engine. Implemented by each vendor's `Client`; the engine
/// reaches it only through the generated enum-dispatch below, never as a trait object.
pub trait Vendor: Configure + Sized + Send + Sync + 'static {
    /// The vendor's body, rendered once per push and shared by its devices.
    type Body: Default + std::fmt::Debug + Send + Sync;

    /// The client for validated settings; only connecting can still fail.
    fn build(settings: &Self::Settings) -> Result<Self, connect::Error>;

    /// Render the content once for this vendor, with the vendor's part of the push's
    /// `[resources.<id>]` rule set (empty without one); fails over its size limit.
    fn render(
        kind: &Kind,
        content: &Content,
        rule: &Resource,
        ttl_s: u64,
    ) -> Result<Self::Body, TooLarge>;

    /// Send one push to one device ([`Attempt`]).
    fn send(&self, to: Attempt<'_>) -> impl Future<Output = Verdict> + Send;

    /// Auth tokens obtained so far (minted JWTs or fetched access tokens).
    fn auth_tokens(&self) -> u64;

    /// A client for an app's settings `mine` that shares this client's connections and
    /// auth-token cache (this client was built from `top`), when the vendor allows it:
    /// APNs with the same key and hosts and another topic. `None`: the app gets its
    /// own client ([`Vendor::build`]).
    fn share(&self, mine: &Self::Settings, top: &Self::Settings) -> Option<Self> {
        let _ = (mine, top);
        None
    }

    /// A device token as the API receives it, checked and stored compactly; the error
    /// says what the token should look like.
    fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>>;
}

/// `token` when it has `len` characters, all `ok`; otherwise `why`.
pub fn text_token(
    token: &str,
    len: std::ops::RangeInclusive<usize>,
    ok: impl Fn(u8) -> bool,
    why: impl FnOnce() -> Cow<'static, str>,
) -> Result<Token, Cow<'static, str>> {
    if len.contains(&token.len()) && token.bytes().all(ok) {
        Ok(Token::Text(token.into()))
    } else {
        Err(why())
    }
}

/// `impl Vendor for Client` in a vendor module that is not an [`super::oem`] vendor
/// (APNs, FCM, Web Push), from its parts: the config section type, the body type, the
/// render function `(kind, content, rule, ttl_s)`, the auth-token counter `(&Client) -> u64`,
/// and the module's `settings`, `Settings`, `Client::new`, `Client::send` and
/// `parse_token`.
macro_rules! impl_vendor {
    ($section:ident, $body:ty, $render:expr, $tokens:expr $(, share: $share:expr)?) => {
        impl $crate::providers::Configure for Client {
            type Section = $crate::config::$section;
            type Settings = Settings;

            fn settings(
                section: &Self::Section,
                connect: $crate::providers::connect::Connect,
                check: &mut $crate::config::Check,
            ) -> Option<Settings> {
                settings(section, connect, check)
            }
        }

        impl $crate::providers::Vendor for Client {
            type Body = $body;

            fn build(settings: &Settings) -> Result<Self, $crate::providers::connect::Error> {
                Client::new(settings)
            }

            fn render(
                kind: &$crate::providers::Kind,
                content: &$crate::providers::Content,
                rule: &$crate::config::Resource,
                ttl_s: u64,
            ) -> Result<$body, $crate::providers::TooLarge> {
                ($render)(kind, content, rule, ttl_s)
            }

            fn send(
                &self,
                to: $crate::providers::Attempt<'_>,
            ) -> impl std::future::Future<Output = $crate::providers::Verdict> + Send {
                Client::send(self, to)
            }

            fn auth_tokens(&self) -> u64 {
                ($tokens)(self)
            }

            $(fn share(&self, mine: &Settings, top: &Settings) -> Option<Self> {
                ($share)(self, mine, top)
            })?

            fn parse_token(
                kind: $crate::state::ProviderKind,
                token: &str,
            ) -> Result<$crate::state::Token, std::borrow::Cow<'static, str>> {
                parse_token(kind, token)
            }
        }
    };
}
pub(crate) use impl_vendor;

/// The client for `device`: its app's own when the vendor has app clients and the
/// binding's `app_id` names one of them, else the top-level client. Without `[apps]`
/// for the vendor this is one length check; with them, a scan of a few short ids.
#[inline]
fn pick<'a, C>(
    top: &'a Option<C>,
    apps: &'a [(Box<str>, C)],
    device: &crate::state::Device,
) -> Option<&'a C> {
    if !apps.is_empty() {
        if let Some(id) = device.app_id() {
            if let Some((_, c)) = apps.iter().find(|(app, _)| **app == *id) {
                return Some(c);
            }
        }
    }
    top.as_ref()
}

/// A Push Kit token (Huawei, and Honor, whose push service derives from it): 32 digits
/// on old EMUI, else ~130+ URL-safe characters.
pub fn push_kit_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    text_token(
        token,
        16..=512,
        |b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'),
        || {
            format!(
                "a {} push token is 16 to 512 letters, digits and _ - : .",
                kind.as_str()
            )
            .into()
        },
    )
}

macro_rules! vendor_table {
    ($(
        $(#[$doc:meta])*
        $module:ident => $Lane:ident [$($(#[$kdoc:meta])* $Kind:ident = $name:literal),+ $(,)?]
    ),+ $(,)?) => {
        /// The vendor channel a binding is pushed through (`provider` in the API).
        /// Persisted by name ([`ProviderKind::as_str`]), never by position.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ProviderKind {
            $($($(#[$kdoc])* $Kind,)+)+
        }

        impl ProviderKind {
            pub const ALL: [ProviderKind; [$($(stringify!($Kind)),+),+].len()] =
                [$($(Self::$Kind),+),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($(Self::$Kind => $name,)+)+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|p| p.as_str() == s)
            }

            /// The lane (vendor) that carries this kind.
            pub fn lane(self) -> Lane {
                match self {
                    $($(Self::$Kind)|+ => Lane::$Lane,)+
                }
            }
        }

        /// Vendor lanes, each with its own bounded queue and connection pool, so a slow
        /// or throttling vendor never holds up the others.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Lane {
            $($(#[$doc])* $Lane,)+
        }

        impl Lane {
            pub const COUNT: usize = [$(stringify!($Lane)),+].len();
            pub const ALL: [Lane; Lane::COUNT] = [$(Lane::$Lane),+];

            /// The lane of a provider kind (every kind has one).
            pub fn of(p: ProviderKind) -> Option<Lane> {
                Some(p.lane())
            }

            /// The vendor's name: its config section, lane and stats label.
            pub fn name(self) -> &'static str {
                match self {
                    $(Lane::$Lane => stringify!($module),)+
                }
            }

            /// `max_in_flight` and `max_rps` of the lane's config section.
            pub fn limits(self, c: &Config) -> LaneLimits {
                match self {
                    $(Lane::$Lane => LaneLimits {
                        max_in_flight: c.$module.max_in_flight,
                        max_rps: c.$module.max_rps,
                    },)+
                }
            }
        }

        /// A push rendered once for every vendor, shared by all its device targets.
        #[derive(Debug)]
        pub struct Push {
            pub kind: Kind,
            /// UNIX seconds after which the push is worthless (APNs `apns-expiration`).
            pub expires_at: u64,
            /// Seconds the vendor should keep it (FCM `android.ttl`).
            pub ttl_s: u64,
            $(pub $module: <super::$module::Client as Vendor>::Body,)+
        }

        impl Push {
            /// Render `content` for the vendors `wanted` picks (asked with each lane's
            /// first kind: APNs covers APNs VoIP); the others get empty bodies and must
            /// not be sent to. Fails when a rendered body exceeds its vendor's limit.
            pub fn render_for(
                kind: Kind,
                content: &Content,
                rule: &Resource,
                ttl_s: u64,
                now_unix: u64,
                wanted: impl Fn(ProviderKind) -> bool,
            ) -> Result<Self, TooLarge> {
                $(
                    let $module = if wanted(vendor_table!(@first $($Kind),+)) {
                        <super::$module::Client as Vendor>::render(&kind, content, rule, ttl_s)?
                    } else {
                        Default::default()
                    };
                )+
                Ok(Self {
                    kind,
                    expires_at: now_unix + ttl_s,
                    ttl_s,
                    $($module,)+
                })
            }
        }

        /// Every vendor's validated settings; `None` for a vendor not configured.
        #[derive(Debug, Default)]
        pub struct Settings {
            $(pub $module: Option<<super::$module::Client as Configure>::Settings>,)+
            /// The `[apps.<app_id>]` credential sets, in app id order.
            pub apps: Vec<AppSettings>,
        }

        /// One app's validated vendor settings (`[apps.<app_id>.<vendor>]` merged over
        /// the top-level section); `None` where the app uses the top-level client.
        #[derive(Debug, Default)]
        pub struct AppSettings {
            pub id: Box<str>,
            $(pub $module: Option<<super::$module::Client as Configure>::Settings>,)+
        }

        impl Settings {
            /// Check every vendor section of `config` (its shared client knobs under
            /// `[transport]`, then its own keys), then every app's tables merged over
            /// them, recording each problem in `problems`.
            pub fn check(config: &Config, problems: &mut Vec<String>) -> Self {
                let mut settings = Self {
                    $($module: {
                        let mut check = Check::new(stringify!($module), problems);
                        let connect = config.$module.client().connect(&config.transport, &mut check);
                        let s = <super::$module::Client as Configure>::settings(
                            &config.$module,
                            connect,
                            &mut check,
                        );
                        check.settled(s)
                    },)+
                    apps: Vec::with_capacity(config.apps.len()),
                };
                for (id, app) in &config.apps {
                    let mut one = AppSettings { id: id.as_str().into(), ..AppSettings::default() };
                    $(if let Some(over) = &app.$module {
                        let vendor = stringify!($module);
                        match crate::config::merged_app_section(&config.$module, over, id, vendor) {
                            Err(problem) => problems.push(problem),
                            Ok(None) => {}
                            Ok(Some(section)) => {
                                let name = crate::config::app_section_name(id, vendor);
                                let mut check = Check::new(&name, problems);
                                let connect = section.client().connect(&config.transport, &mut check);
                                let s = <super::$module::Client as Configure>::settings(
                                    &section,
                                    connect,
                                    &mut check,
                                );
                                one.$module = check.settled(s);
                            }
                        }
                    })+
                    settings.apps.push(one);
                }
                settings
            }
        }

        /// The clients of the apps with credentials of their own, per vendor: (app id,
        /// client) pairs, few and short, searched only for a binding with an `app_id`
        /// while the vendor has any.
        #[derive(Default)]
        pub struct Apps {
            $(pub $module: Box<[(Box<str>, super::$module::Client)]>,)+
        }

        /// The configured vendor clients.
        #[derive(Default)]
        pub struct Providers {
            /// Retry, breaker and pace settings the dispatcher applies.
            pub delivery: Delivery,
            /// The `[resources]` rule sets a push selects with `resources_id` (shared:
            /// a push being planned keeps its rule set across a reload).
            pub resources: std::collections::BTreeMap<String, std::sync::Arc<Resource>>,
            /// The top-level clients, used by every binding without an app of its own.
            $(pub $module: Option<super::$module::Client>,)+
            /// The clients of `[apps.<app_id>]` with credentials of their own.
            pub apps: Apps,
        }

        impl Providers {
            /// Build a client for every configured vendor and app from validated
            /// settings; an app shares the top-level client where its vendor allows
            /// ([`Vendor::share`]).
            pub fn new(settings: &crate::config::Settings) -> Result<Self, Error> {
                let mut providers = Providers {
                    delivery: settings.delivery.clone(),
                    resources: settings
                        .resources
                        .iter()
                        .map(|(id, r)| (id.clone(), std::sync::Arc::new(r.clone())))
                        .collect(),
                    $($module: settings.vendors.$module.as_ref()
                        .map(Vendor::build)
                        .transpose()
                        .map_err(|source| Error { vendor: stringify!($module), source })?,)+
                    apps: Apps::default(),
                };
                $(
                    let mut clients = Vec::new();
                    for app in &settings.vendors.apps {
                        let Some(mine) = &app.$module else { continue };
                        let top = providers.$module.as_ref().zip(settings.vendors.$module.as_ref());
                        let client = match top.and_then(|(c, top)| Vendor::share(c, mine, top)) {
                            Some(shared) => shared,
                            None => Vendor::build(mine)
                                .map_err(|source| Error { vendor: stringify!($module), source })?,
                        };
                        clients.push((app.id.clone(), client));
                    }
                    providers.apps.$module = clients.into_boxed_slice();
                )+
                Ok(providers)
            }

            /// Send one push to one device ([`Attempt`]) and return the vendor's verdict.
            pub async fn send(&self, to: Attempt<'_>) -> Verdict {
                match to.device.provider().lane() {
                    $(Lane::$Lane => match pick(&self.$module, &self.apps.$module, to.device) {
                        Some(c) => Vendor::send(c, to).await,
                        None => Verdict::unconfigured(),
                    },)+
                }
            }

            /// Whether pushes of kind `p` can be sent at all: its vendor is configured
            /// at the top level or for some app.
            pub fn is_configured(&self, p: ProviderKind) -> bool {
                match p.lane() {
                    $(Lane::$Lane => self.$module.is_some() || !self.apps.$module.is_empty(),)+
                }
            }

            /// Vendor auth tokens obtained so far (APNs JWTs minted, OAuth/sign tokens
            /// fetched, VAPID JWTs minted), every app's included, for `/v1/stats`; 0 for
            /// unconfigured vendors.
            pub fn auth_tokens(&self, p: ProviderKind) -> u64 {
                match p.lane() {
                    $(Lane::$Lane => self.$module.as_ref().map_or(0, Vendor::auth_tokens)
                        + self.apps.$module.iter().map(|(_, c)| Vendor::auth_tokens(c)).sum::<u64>(),)+
                }
            }
        }

        /// A device token of `kind` as the API receives it, checked by its vendor.
        pub fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
            match kind.lane() {
                $(Lane::$Lane => <super::$module::Client as Vendor>::parse_token(kind, token),)+
            }
        }
    };
    (@first $first:ident $(, $rest:ident)*) => { ProviderKind::$first };
}

vendor_table! {
    /// Apple Push Notification service (alerts and VoIP).
    apns => Apns [Apns = "apns", ApnsVoip = "apns_voip"],
    /// Firebase Cloud Messaging HTTP v1.
    fcm => Fcm [Fcm = "fcm"],
    /// Huawei Push Kit.
    huawei => Huawei [Huawei = "huawei"],
    /// Xiaomi MiPush.
    xiaomi => Xiaomi [Xiaomi = "xiaomi"],
    /// OPPO Push (HeyTap).
    oppo => Oppo [Oppo = "oppo"],
    /// vivo Push.
    vivo => Vivo [Vivo = "vivo"],
    /// Web Push (RFC 8030/8291/8292).
    webpush => Webpush [Webpush = "webpush"],
    /// Honor Push (newer Honor phones take only Honor Push).
    honor => Honor [Honor = "honor"],
}
