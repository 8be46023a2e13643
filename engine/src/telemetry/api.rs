//! API request telemetry: the route template a request matched (the label of
//! `fanfare_api_request_duration_seconds`: a fixed set, never a raw path with ids in
//! it) and the optional access log (`[log] access = true`).
//!
//! The access log line carries the method, route template, status, duration and a
//! request id (the client's `x-request-id` when it is short and printable, else one
//! numbered by the engine); never the path's ids, a header's value, the token or a
//! body.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, Method, StatusCode};

use super::Stats;

macro_rules! routes {
    ($($Route:ident = $template:literal,)+) => {
        /// Every route template the API serves, and `Other` for paths it does not.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Route {
            $($Route,)+
        }

        impl Route {
            pub const ALL: [Route; [$($template),+].len()] = [$(Route::$Route),+];
            pub const COUNT: usize = Self::ALL.len();

            /// The route as API.md writes it, the `route` label.
            pub fn template(self) -> &'static str {
                match self {
                    $(Route::$Route => $template,)+
                }
            }
        }
    };
}

routes! {
    Healthz = "/healthz",
    Readyz = "/readyz",
    Metrics = "/metrics",
    Docs = "/docs",
    PushId = "/v1/push-ids/{push_id}",
    UserPushIds = "/v1/users/{user_id}/push-ids",
    UserNotification = "/v1/users/{user_id}/conversations/{type}/{conversation_id}/notification",
    UserBadge = "/v1/users/{user_id}/badge",
    User = "/v1/users/{user_id}",
    Presence = "/v1/presence",
    PresenceUser = "/v1/presence/{user_id}",
    GroupMembers = "/v1/groups/{group_id}/members",
    Group = "/v1/groups/{group_id}",
    Messages = "/v1/messages",
    Message = "/v1/messages/{message_id}",
    Calls = "/v1/calls",
    Call = "/v1/calls/{call_id}",
    CallCancel = "/v1/calls/{call_id}/cancel",
    DebugPush = "/v1/debug/push",
    Stats = "/v1/stats",
    Openapi = "/v1/openapi.json",
    AdminReload = "/v1/admin/reload",
    AdminConfig = "/v1/admin/config",
    Console = "/console",
    ConsoleAsset = "/console/{asset}",
    Other = "other",
}

impl Route {
    /// The route of a request path (raw, as received: an encoded `/` inside an id
    /// stays inside its segment, as the router sees it). No allocation.
    pub fn of(path: &str) -> Route {
        let mut seg = [""; 8];
        let mut n = 0;
        for s in path.trim_start_matches('/').split('/') {
            if n == seg.len() {
                return Route::Other;
            }
            seg[n] = s;
            n += 1;
        }
        match &seg[..n] {
            ["healthz"] => Route::Healthz,
            ["readyz"] => Route::Readyz,
            ["metrics"] => Route::Metrics,
            ["docs"] => Route::Docs,
            ["console"] => Route::Console,
            ["console", _] => Route::ConsoleAsset,
            ["v1", rest @ ..] => match rest {
                ["push-ids", _] => Route::PushId,
                ["users", _, "push-ids"] => Route::UserPushIds,
                ["users", _, "conversations", _, _, "notification"] => Route::UserNotification,
                ["users", _, "badge"] => Route::UserBadge,
                ["users", _] => Route::User,
                ["presence"] => Route::Presence,
                ["presence", _] => Route::PresenceUser,
                ["groups", _, "members"] => Route::GroupMembers,
                ["groups", _] => Route::Group,
                ["messages"] => Route::Messages,
                ["messages", _] => Route::Message,
                ["calls"] => Route::Calls,
                ["calls", _] => Route::Call,
                ["calls", _, "cancel"] => Route::CallCancel,
                ["debug", "push"] => Route::DebugPush,
                ["stats"] => Route::Stats,
                ["openapi.json"] => Route::Openapi,
                ["admin", "reload"] => Route::AdminReload,
                ["admin", "config"] => Route::AdminConfig,
                _ => Route::Other,
            },
            _ => Route::Other,
        }
    }
}

/// Longest client request id taken as is.
const MAX_REQUEST_ID: usize = 128;
/// Request ids the engine numbers itself, for requests without one.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One API request being answered: started when its head arrived, finished with its
/// status.
#[derive(Debug)]
pub struct Timer {
    route: Route,
    started: quanta::Instant,
    /// With the access log on: the method and the request id.
    access: Option<(Method, String)>,
}

impl Timer {
    /// Start timing a request; `access` when the access log is on (only then are the
    /// method and the request id kept).
    pub fn start(method: &Method, path: &str, headers: &HeaderMap, access: bool) -> Self {
        Self {
            route: Route::of(path),
            started: quanta::Instant::now(),
            access: access.then(|| (method.clone(), request_id(headers))),
        }
    }

    /// The answer is ready: observe its time and write the access log line.
    pub fn finish(self, stats: &Stats, status: StatusCode) {
        let took = self.started.elapsed();
        stats.api[self.route as usize].observe(took);
        if let Some((method, id)) = self.access {
            tracing::info!(
                target: "fanfare::access",
                method = %method,
                route = self.route.template(),
                status = status.as_u16(),
                duration_ms = took.as_secs_f64() * 1e3,
                request_id = %id,
                "request"
            );
        }
    }
}

/// The client's `x-request-id` when it is 1 to 128 printable ASCII characters, else a
/// number of the engine's own (`fanfare-<n>`).
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .map(|v| v.as_bytes())
        .filter(|v| {
            (1..=MAX_REQUEST_ID).contains(&v.len()) && v.iter().all(|b| b.is_ascii_graphic())
        })
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| format!("fanfare-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_route_template_whatever_their_ids() {
        let cases = [
            ("/healthz", Route::Healthz),
            ("/v1/push-ids/d%2F1", Route::PushId),
            ("/v1/users/u1/push-ids", Route::UserPushIds),
            (
                "/v1/users/u1/conversations/group/g1/notification",
                Route::UserNotification,
            ),
            ("/v1/users/u1/badge", Route::UserBadge),
            ("/v1/presence", Route::Presence),
            ("/v1/presence/u1", Route::PresenceUser),
            ("/v1/groups/g/members", Route::GroupMembers),
            ("/v1/groups/g", Route::Group),
            ("/v1/messages", Route::Messages),
            ("/v1/calls/c1/cancel", Route::CallCancel),
            ("/v1/calls/c1", Route::Call),
            ("/v1/messages/m1", Route::Message),
            ("/v1/debug/push", Route::DebugPush),
            ("/v1/stats", Route::Stats),
            ("/docs", Route::Docs),
            ("/v1/admin/reload", Route::AdminReload),
            ("/console", Route::Console),
            ("/console/app.js", Route::ConsoleAsset),
            ("/v1/users/u1", Route::User),
            ("/v1/admin/config", Route::AdminConfig),
            ("/v1/nope", Route::Other),
            ("/a/b/c/d/e/f/g/h/i/j", Route::Other),
            ("/", Route::Other),
        ];
        for (path, want) in cases {
            assert_eq!(Route::of(path), want, "{path}");
        }
    }

    /// A path's shape: its literal segments, and `{}` for each parameter.
    fn shape(path: &str) -> Vec<&str> {
        let param = |s: &&str| s.starts_with('{');
        path.split('/')
            .map(|s| if param(&s) { "{}" } else { s })
            .collect()
    }

    #[test]
    fn every_documented_path_has_a_route_label_of_its_own() {
        let doc: serde_json::Value = serde_json::from_slice(crate::api::openapi::document())
            .expect("the OpenAPI document is JSON");
        let paths = doc["paths"].as_object().expect("the document has paths");
        let mut labelled = std::collections::BTreeSet::new();
        for path in paths.keys() {
            let route = Route::of(path);
            assert_ne!(route, Route::Other, "{path} is counted as `other`");
            assert_eq!(shape(route.template()), shape(path), "{path}");
            labelled.insert(route.template());
        }
        assert_eq!(labelled.len(), paths.len(), "one label per documented path");
    }

    #[test]
    fn a_request_id_is_the_clients_when_printable_and_short() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", "a b".parse().unwrap());
        assert!(request_id(&h).starts_with("fanfare-"));
        h.insert("x-request-id", "x".repeat(200).parse().unwrap());
        assert!(request_id(&h).starts_with("fanfare-"));
    }
}
