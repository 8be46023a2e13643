//! What serde cannot check: addresses, ranges, files, keys, and which keys a vendor
//! needs once it is configured. Every problem is a sentence naming the key, and all
//! are reported at once (`fanfare check-config`).

use std::net::SocketAddr;

use super::{Config, Secret};
use crate::providers::Lane;

impl Config {
    /// Every semantic problem, each as a sentence naming the key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.api.listen.parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() && self.api.token.as_deref().unwrap_or("").is_empty() {
                    p.push(format!(
                        "api.listen is {addr}, not a loopback address: set api.token so the API is not open to the network"
                    ));
                }
            }
            Err(_) => p.push(format!(
                "api.listen {:?} is not an IP:port address (for example 127.0.0.1:7070)",
                self.api.listen
            )),
        }
        if self.api.token.as_deref() == Some("") {
            p.push("api.token is empty; remove it or set a secret".into());
        }
        self.api_problems(&mut p);
        let limit = crate::state::presence::MAX_SESSIONS_LIMIT;
        if !(1..=limit).contains(&self.presence.max_sessions_per_user) {
            p.push(format!(
                "presence.max_sessions_per_user must be between 1 and {limit}, not {}",
                self.presence.max_sessions_per_user
            ));
        }
        if self.presence.user_sweep_interval_ms < 10 {
            p.push("presence.user_sweep_interval_ms must be at least 10".into());
        }
        if self.messages.queue_capacity == 0 {
            p.push("messages.queue_capacity must be at least 1".into());
        }
        if self.messages.ttl_s == 0 {
            p.push("messages.ttl_s must be at least 1".into());
        }
        let r = &self.retry;
        if r.base_ms == 0 || r.max_ms < r.base_ms {
            p.push(
                "retry.base_ms must be at least 1 and retry.max_ms at least retry.base_ms".into(),
            );
        }
        if r.max_attempts == 0 {
            p.push("retry.max_attempts must be at least 1".into());
        }
        let b = &self.breaker;
        if b.failures == 0 || b.open_ms == 0 || b.max_open_ms < b.open_ms {
            p.push("breaker.failures and breaker.open_ms must be at least 1, breaker.max_open_ms at least breaker.open_ms".into());
        }
        let t = &self.transport;
        if t.request_timeout_ms < 10 {
            p.push("transport.request_timeout_ms must be at least 10".into());
        }
        if t.connect_timeout_ms < 10 {
            p.push("transport.connect_timeout_ms must be at least 10".into());
        }
        if t.ping_interval_s > 0 && t.ping_timeout_s == 0 {
            p.push("transport.ping_timeout_s must be at least 1 when pings are on".into());
        }
        if t.connect_backoff_max_ms < 50 {
            p.push("transport.connect_backoff_max_ms must be at least 50".into());
        }
        // The knobs every vendor section shares, checked once for all of them.
        for lane in Lane::ALL {
            lane.client(self).problems(lane.name(), &mut p);
        }
        // APNs
        let a = &self.apns;
        if a.key_file.is_some() {
            for (key, v) in [
                ("key_id", &a.key_id),
                ("team_id", &a.team_id),
                ("topic", &a.topic),
            ] {
                if v.as_deref().unwrap_or("").is_empty() {
                    p.push(format!("apns.{key} is required when apns.key_file is set"));
                }
            }
            if let Some(path) = &a.key_file {
                if let Err(e) = crate::providers::apns::auth::load_key(path) {
                    p.push(format!("apns.key_file: {e}"));
                }
            }
        } else if a.key_id.is_some() || a.team_id.is_some() {
            p.push("apns.key_id/team_id are set but apns.key_file is not".into());
        }
        check_endpoint(&mut p, "apns.endpoint_production", &a.endpoint_production);
        check_endpoint(&mut p, "apns.endpoint_sandbox", &a.endpoint_sandbox);
        // FCM
        let f = &self.fcm;
        if let Some(path) = &f.service_account_file {
            if let Err(e) = crate::providers::fcm::auth::ServiceAccount::load(path) {
                p.push(format!("fcm.service_account_file: {e}"));
            }
        }
        check_endpoint(&mut p, "fcm.endpoint", &f.endpoint);
        self.vendor_problems(&mut p);
        p
    }

    /// Problems of the `[api]` limits and timeouts.
    fn api_problems(&self, p: &mut Vec<String>) {
        let a = &self.api;
        if a.max_body_bytes < 1024 {
            p.push("api.max_body_bytes must be at least 1024".into());
        }
        if !(1..=1_000_000).contains(&a.max_connections) {
            p.push(format!(
                "api.max_connections must be between 1 and 1000000, not {}",
                a.max_connections
            ));
        }
        for (key, ms) in [
            ("header_read_timeout_ms", a.header_read_timeout_ms),
            ("body_read_timeout_ms", a.body_read_timeout_ms),
            ("idle_timeout_ms", a.idle_timeout_ms),
        ] {
            if !(100..=86_400_000).contains(&ms) {
                p.push(format!(
                    "api.{key} must be between 100 and 86400000 milliseconds, not {ms}"
                ));
            }
        }
        if !(1..=65_536).contains(&a.h2_max_concurrent_streams) {
            p.push(format!(
                "api.h2_max_concurrent_streams must be between 1 and 65536, not {}",
                a.h2_max_concurrent_streams
            ));
        }
        if a.max_connection_body_bytes < a.max_body_bytes {
            p.push(format!(
                "api.max_connection_body_bytes ({}) must be at least api.max_body_bytes ({})",
                a.max_connection_body_bytes, a.max_body_bytes
            ));
        }
        if a.max_total_body_bytes < a.max_connection_body_bytes {
            p.push(format!(
                "api.max_total_body_bytes ({}) must be at least api.max_connection_body_bytes ({})",
                a.max_total_body_bytes, a.max_connection_body_bytes
            ));
        }
        // Body budgets are semaphores of bytes; tokio caps a semaphore's permits.
        if a.max_total_body_bytes > tokio::sync::Semaphore::MAX_PERMITS {
            p.push("api.max_total_body_bytes is too large".into());
        }
    }

    /// Problems of the Huawei, Honor, Xiaomi, OPPO, vivo and Web Push sections.
    fn vendor_problems(&self, p: &mut Vec<String>) {
        fn need(p: &mut Vec<String>, section: &str, on: &str, key: &str, set: bool) {
            if !set {
                p.push(format!(
                    "{section}.{key} is required when {section}.{on} is set"
                ));
            }
        }
        let filled = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let secret = |v: &Option<Secret>| v.as_ref().is_some_and(|s| !s.0.is_empty());
        let h = &self.huawei;
        if h.app_id.is_some() {
            need(
                p,
                "huawei",
                "app_id",
                "client_secret",
                secret(&h.client_secret),
            );
        } else if h.client_secret.is_some() {
            p.push("huawei.client_secret is set but huawei.app_id is not".into());
        }
        check_endpoint(p, "huawei.endpoint", &h.endpoint);
        check_url(p, "huawei.token_endpoint", &h.token_endpoint);
        let o = &self.honor;
        if o.app_id.is_some() {
            need(p, "honor", "app_id", "client_id", filled(&o.client_id));
            need(
                p,
                "honor",
                "app_id",
                "client_secret",
                secret(&o.client_secret),
            );
        } else if o.client_secret.is_some() || o.client_id.is_some() {
            p.push("honor.client_id/client_secret are set but honor.app_id is not".into());
        }
        check_endpoint(p, "honor.endpoint", &o.endpoint);
        check_url(p, "honor.token_endpoint", &o.token_endpoint);
        let x = &self.xiaomi;
        if x.app_secret.is_some() {
            need(
                p,
                "xiaomi",
                "app_secret",
                "package_name",
                filled(&x.package_name),
            );
            if !secret(&x.app_secret) {
                p.push("xiaomi.app_secret is empty".into());
            }
        } else if x.package_name.is_some() {
            p.push("xiaomi.package_name is set but xiaomi.app_secret is not".into());
        }
        check_endpoint(p, "xiaomi.endpoint", &x.endpoint);
        let o = &self.oppo;
        if o.app_key.is_some() {
            need(
                p,
                "oppo",
                "app_key",
                "master_secret",
                secret(&o.master_secret),
            );
        } else if o.master_secret.is_some() {
            p.push("oppo.master_secret is set but oppo.app_key is not".into());
        }
        check_endpoint(p, "oppo.endpoint", &o.endpoint);
        check_endpoint(p, "oppo.endpoint_intl", &o.endpoint_intl);
        let v = &self.vivo;
        if let Some(id) = &v.app_id {
            need(p, "vivo", "app_id", "app_key", filled(&v.app_key));
            need(p, "vivo", "app_id", "app_secret", secret(&v.app_secret));
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                p.push(format!("vivo.app_id {id:?} must be the numeric AppID"));
            }
        } else if v.app_key.is_some() || v.app_secret.is_some() {
            p.push("vivo.app_key/app_secret are set but vivo.app_id is not".into());
        }
        if v.classification > 1 {
            p.push("vivo.classification must be 0 (operational) or 1 (system)".into());
        }
        if v.push_mode > 1 {
            p.push("vivo.push_mode must be 0 (formal) or 1 (test)".into());
        }
        check_endpoint(p, "vivo.endpoint", &v.endpoint);
        let w = &self.webpush;
        if let Some(path) = &w.vapid_private_key_file {
            if let Err(e) = crate::providers::webpush::vapid::load_key(path) {
                p.push(format!("webpush.vapid_private_key_file: {e}"));
            }
            match w.subject.as_deref() {
                Some(s) if s.starts_with("mailto:") || s.starts_with("https:") => {}
                _ => p.push(
                    "webpush.subject is required with a VAPID key: a mailto: or https: contact"
                        .into(),
                ),
            }
        }
        if w.max_origins == 0 {
            p.push("webpush.max_origins must be at least 1".into());
        }
    }
}

fn check_endpoint(p: &mut Vec<String>, key: &str, url: &str) {
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("https") | Some("http")) && u.host().is_some() => {
            if u.path() != "/" && !u.path().is_empty() {
                p.push(format!("{key} {url:?} must be a base URL without a path"));
            }
        }
        _ => p.push(format!(
            "{key} {url:?} is not an http(s) URL with a host, such as https://api.push.apple.com"
        )),
    }
}

fn check_url(p: &mut Vec<String>, key: &str, url: &str) {
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("https") | Some("http")) && u.host().is_some() => {}
        _ => p.push(format!("{key} {url:?} is not an http(s) URL with a host")),
    }
}
